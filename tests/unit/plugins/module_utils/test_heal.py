"""heal: which container self-healing restarts, and what its log shows (the lab's Docker: tests/integration)."""
import json

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import heal


def container(status="unhealthy", streak=3, slot=None, cid="c1", service="app"):
    labels = {heal.SERVICE_LABEL: service}
    if slot:
        labels[heal.SLOT_LABEL] = slot
    health = {"Status": status, "FailingStreak": streak} if status else None
    return {"Id": cid, "Name": "/%s" % service, "State": {"Running": True, "Health": health},
            "Config": {"Labels": labels, "Env": ["TOKEN=s3cr3t-value", "PORT=8000"]}}


def history(tmp_path, service, current_id):
    folder = tmp_path / "deployments"
    folder.mkdir(exist_ok=True)
    (folder / (service + ".json")).write_text(json.dumps({"format": 2, "current": 2, "deployments": [
        {"seq": 2, "container_id": current_id}, {"seq": 1, "container_id": "old"}]}))


@pytest.mark.parametrize("kwargs, restart", [
    (dict(status=None), False),
    (dict(status="healthy", streak=0), False),
    (dict(status="starting", streak=5), False),
    (dict(streak=2), False),
    (dict(streak=3), True),
    (dict(streak=9, slot="blue", cid="live"), True),
    (dict(streak=9, slot="green", cid="idle"), False),
])
def test_only_a_live_container_unhealthy_for_the_streak_is_restarted(tmp_path, kwargs, restart):
    history(tmp_path, "app", "live")
    assert heal.verdict(container(**kwargs), str(tmp_path), 3)[0] is restart


def test_a_slot_without_history_is_not_live(tmp_path):
    assert heal.verdict(container(slot="blue"), str(tmp_path), 3) == (False, "unhealthy, but not the live app slot")


def test_env_values_are_redacted_longest_first_short_ones_kept():
    env = ["TOKEN=abcdef123", "PREFIX=abcdef", "PORT=8000", "EMPTY="]
    assert heal.redact("t=abcdef123 p=abcdef port 8000", env) == "t=[redacted] p=[redacted] port 8000"


def test_restarts_are_counted_per_service(tmp_path):
    assert heal.read_counts(str(tmp_path)) == {}
    assert heal.count(str(tmp_path), "app", "app-blue", "t1") == 1
    assert heal.count(str(tmp_path), "app", "app-green", "t2") == 2
    assert heal.count(str(tmp_path), "web", "web", "t3") == 1
    assert heal.read_counts(str(tmp_path))["app"] == {"count": 2, "last": "t2", "container": "app-green"}
