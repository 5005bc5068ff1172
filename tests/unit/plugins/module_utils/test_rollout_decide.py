"""rollout_decide.decide(): what a run does with what it finds, from plain data.

Every phase a run can be killed at (faults.PHASES, the fault tests' kill points) has a case per strategy that
passes it: the host and the history as the killed run left them, and what the next run with the same spec
(and with another one) decides. v1 (container c1, hash h1) is the deployment that served before; the killed
run was rolling out v2 (c2, h2)."""
import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import faults, state
from ansible_collections.llmstack.deploy.plugins.module_utils.errors import RolloutError
from ansible_collections.llmstack.deploy.plugins.module_utils.rollout_decide import decide, facts


def c(cid, running=True, spec_hash=None):
    """A container as observed: c1 runs h1 and c2 h2 unless told otherwise."""
    return {"id": cid, "running": running, "hash": spec_hash or cid.replace("c", "h")}


def recreate(main=None, previous=None):
    return {"service": "svc", "strategy": "recreate", "other": None, "switch": None,
            "containers": {"main": main, "previous": previous}}


def blue_green(switch=None, blue=None, green=None):
    return {"service": "svc", "strategy": "blue_green", "other": None, "switch": switch,
            "containers": {"blue": blue, "green": green}}


NOOP = {"action": "noop", "adopt": None, "restore": None, "cleanup": (), "discard": ()}
REPLACE = {"action": "replace", "adopt": None}

# (id, observed, the container the history saw healthy, wanted hash, what the Decision must say)
RECREATE = [
    ("nothing-deployed-yet", recreate(), None, "h1",
     dict(REPLACE, restore=None, cleanup=(), discard=())),
    ("same-spec-serving-and-verified", recreate(main=c("c1")), "c1", "h1",
     dict(NOOP, serving="main")),
    ("serving-but-never-verified", recreate(main=c("c1")), None, "h1",
     {"action": "adopt", "adopt": "main", "restore": None, "discard": ()}),
    ("new-spec-over-a-verified-one", recreate(main=c("c1")), "c1", "h2",
     dict(REPLACE, restore="main", cleanup=(), discard=())),
    ("stopped-main-same-spec", recreate(main=c("c1", running=False)), "c1", "h1",
     dict(REPLACE, restore="main", discard=())),
    ("stopped-main-new-spec", recreate(main=c("c1", running=False)), "c1", "h2",
     dict(REPLACE, restore="main", discard=())),
    # The previous run failed: its container was removed and v1 brought back, still the current one.
    ("failed-previous-run-same-spec-again", recreate(main=c("c1")), "c1", "h2",
     dict(REPLACE, restore="main", discard=())),
    ("failed-previous-run-back-to-the-serving-spec", recreate(main=c("c1")), "c1", "h1", dict(NOOP, serving="main")),
    # Killed once the attempt was recorded, before anything was touched.
    ("killed-at-pending", recreate(main=c("c1")), "c1", "h2",
     dict(REPLACE, restore="main", cleanup=(), discard=())),
    # Killed after v1 was stopped and renamed <name>-previous, before v2 was started.
    ("killed-at-stopped_old", recreate(previous=c("c1", running=False)), "c1", "h2",
     dict(REPLACE, restore="previous", cleanup=(), discard=())),
    # Killed while v2 started and was waited for: checked, not replaced; a failure goes back to v1.
    ("killed-at-health_wait", recreate(main=c("c2"), previous=c("c1", running=False)), "c1", "h2",
     {"action": "adopt", "adopt": "main", "restore": "previous", "cleanup": (), "discard": ()}),
    ("killed-at-health_wait-then-another-spec", recreate(main=c("c2"), previous=c("c1", running=False)), "c1", "h3",
     dict(REPLACE, restore="previous", cleanup=(), discard=("main",))),
    ("killed-at-health_wait-new-one-exited", recreate(main=c("c2", running=False), previous=c("c1", running=False)),
     "c1", "h2", dict(REPLACE, restore="previous", discard=("main",))),
    # Killed after v2 was recorded healthy, before v1 (<name>-previous) was removed.
    ("killed-after-success-previous-left", recreate(main=c("c2"), previous=c("c1", running=False)), "c2", "h2",
     {"action": "cleanup", "serving": "main", "cleanup": ("previous",), "discard": ()}),
    ("killed-after-success-then-another-spec", recreate(main=c("c2"), previous=c("c1", running=False)), "c2", "h3",
     dict(REPLACE, restore="main", cleanup=("previous",), discard=())),
    # Check mode with inputs_changed: the hash can't be known, so nothing matches.
    ("inputs-changed-hash-unknown", recreate(main=c("c1")), "c1", None, dict(REPLACE, restore="main")),
]

BLUE_GREEN = [
    ("nothing-deployed-yet", blue_green(), None, "h1",
     dict(REPLACE, live=None, target="blue", discard=(), drain=None)),
    ("same-spec-serving-and-verified", blue_green("blue", blue=c("c1")), "c1", "h1",
     dict(NOOP, serving="blue", live="blue", target="blue", drain=None)),
    ("serving-but-never-verified", blue_green("blue", blue=c("c1")), None, "h1",
     {"action": "adopt", "adopt": "blue", "live": "blue", "target": "blue", "drain": None}),
    ("new-spec-over-a-verified-one", blue_green("blue", blue=c("c1")), "c1", "h2",
     dict(REPLACE, live="blue", target="green", discard=(), drain="blue")),
    ("new-spec-replaces-the-old-standby", blue_green("blue", blue=c("c1"), green=c("c0", running=False)), "c1", "h2",
     dict(REPLACE, live="blue", target="green", discard=("green",), drain="blue")),
    # The slot the switch file names has stopped: nothing serves; the other slot is the target.
    ("stopped-live-slot", blue_green("blue", blue=c("c1", running=False)), "c1", "h1",
     dict(REPLACE, live=None, target="green", discard=(), drain=None)),
    # No switch file yet, but a run started blue with the wanted spec: blue is checked, not replaced.
    ("no-switch-file-standby-started", blue_green(None, blue=c("c2")), None, "h2",
     {"action": "adopt", "adopt": "blue", "live": None, "target": "blue", "drain": None}),
    # The previous run failed: its slot was removed, traffic never moved.
    ("failed-previous-run-same-spec-again", blue_green("blue", blue=c("c1")), "c1", "h2",
     dict(REPLACE, live="blue", target="green", drain="blue")),
    ("killed-at-pending", blue_green("blue", blue=c("c1"), green=c("c0", running=False)), "c1", "h2",
     dict(REPLACE, live="blue", target="green", discard=("green",), drain="blue")),
    # Killed while green (v2) was waited for: green is checked, then traffic moves, then blue drains.
    ("killed-at-health_wait", blue_green("blue", blue=c("c1"), green=c("c2")), "c1", "h2",
     {"action": "adopt", "adopt": "green", "live": "blue", "target": "green", "discard": (), "drain": "blue"}),
    ("killed-at-health_wait-then-another-spec", blue_green("blue", blue=c("c1"), green=c("c2")), "c1", "h3",
     dict(REPLACE, live="blue", target="green", discard=("green",), drain="blue")),
    # Killed right after the switch, before the success was recorded: confirm green where it serves, drain blue.
    ("killed-at-switched", blue_green("green", blue=c("c1"), green=c("c2")), "c1", "h2",
     {"action": "adopt", "adopt": "green", "live": "green", "target": "green", "discard": (), "drain": "blue"}),
    ("killed-at-switched-then-another-spec", blue_green("green", blue=c("c1"), green=c("c2")), "c1", "h3",
     dict(REPLACE, live="green", target="blue", discard=("blue",), drain="green")),
    # Killed while blue drained, after the success was recorded: only the drain is left to do.
    ("killed-while-draining", blue_green("green", blue=c("c1"), green=c("c2")), "c2", "h2",
     {"action": "cleanup", "serving": "green", "live": "green", "target": "green", "drain": "blue"}),
    ("inputs-changed-hash-unknown", blue_green("blue", blue=c("c1")), "c1", None,
     dict(REPLACE, live="blue", target="green", drain="blue")),
]

# The phases each strategy passes, so each has its kill case above.
PASSED = {"recreate": ("pending", "stopped_old", "health_wait"), "blue_green": ("pending", "health_wait", "switched")}


def cases():
    for strategy, table in (("recreate", RECREATE), ("blue_green", BLUE_GREEN)):
        for case_id, observed, verified, spec_hash, expected in table:
            yield pytest.param(observed, verified, spec_hash, expected, id="%s-%s" % (strategy, case_id))


@pytest.mark.parametrize("observed,verified,spec_hash,expected", list(cases()))
def test_decide(observed, verified, spec_hash, expected):
    decision = decide(observed, {"container_id": verified}, spec_hash)._asdict()
    assert dict((k, decision[k]) for k in expected) == expected


def test_every_kill_point_has_a_case():
    assert set(PASSED["recreate"]) | set(PASSED["blue_green"]) == set(faults.PHASES)
    for strategy, table in (("recreate", RECREATE), ("blue_green", BLUE_GREEN)):
        ids = set(case[0] for case in table)
        for phase in PASSED[strategy]:
            assert "killed-at-%s" % phase in ids, (strategy, phase)


@pytest.mark.parametrize("observed,other", [
    (dict(recreate(), other="svc-blue"), "svc-blue"),
    (dict(blue_green("blue"), other="svc"), "svc"),
], ids=["recreate-finds-a-slot", "blue_green-finds-the-single-container"])
def test_a_container_of_the_other_strategy_is_refused(observed, other):
    with pytest.raises(RolloutError, match="svc runs with the other strategy \\(container %s exists\\); remove the "
                       "service with state: absent first" % other):
        decide(observed, {"container_id": None}, "h1")


def test_facts_name_the_container_the_current_deployment_saw_healthy(tmp_path):
    history = state.History(str(tmp_path), "svc")
    assert facts(history) == {"container_id": None}
    entry = history.begin({"image": "v1"})
    assert facts(history) == {"container_id": None}, "a pending attempt verified nothing"
    history.succeed(entry, "c1")
    history.fail(history.begin({"image": "v2"}), "boom")
    assert facts(history) == {"container_id": "c1"}
