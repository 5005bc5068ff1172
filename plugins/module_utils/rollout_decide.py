# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run does with what it finds, decided from plain data alone: no Docker, no files.

observed (service_containers.ServiceContainers.observe, plus the switch file's slot):
  {"service": the service's name, "strategy": "recreate" | "blue_green",
   "other": the name of a container the service runs under the other strategy's names, or None,
   "containers": {role: None or {"id", "running", "hash"}}   roles: main, previous | blue, green
   "switch": the slot the switch file names, or None}
history: {"container_id": the container the current deployment saw healthy, or None} (see facts()).
spec_hash: the wanted spec's hash; None when it can't be known (check mode, inputs changed): nothing matches.

A container counts as current only if the history saw it pass its health check: that is what lets a
run repair one that was killed at any point (see faults.PHASES).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from collections import namedtuple

from ansible_collections.llmstack.deploy.plugins.module_utils.errors import RolloutError
from ansible_collections.llmstack.deploy.plugins.module_utils.switch import other_slot

NOOP, CLEANUP, ADOPT, REPLACE = "noop", "cleanup", "adopt", "replace"

# action: one of the above. serving: the role that serves now, per the history (no-op and clean up).
# adopt: the role of a container an interrupted run started with the wanted spec: health-check it, start none.
# restore (recreate): the role a failure brings back. cleanup (recreate): roles left by a run that succeeded,
# removed first, whatever the action. discard: roles removed once the attempt is recorded, before the start.
# live, target, drain (blue_green): the slot serving now, the slot the new or adopted container serves from,
# the slot stopped at the end.
Decision = namedtuple("Decision", "action serving adopt restore cleanup discard live target drain")


def decision(action, serving=None, adopt=None, restore=None, cleanup=(), discard=(), live=None, target=None,
             drain=None):
    return Decision(action, serving, adopt, restore, tuple(cleanup), tuple(discard), live, target, drain)


def facts(history):
    """The history's part in a decision: the container its current deployment saw healthy."""
    current = history.current
    return {"container_id": current.get("container_id") if current else None}


def decide(observed, history, spec_hash):
    """The Decision for this service; RolloutError if it runs with the other strategy."""
    if observed.get("other"):
        raise RolloutError("%s runs with the other strategy (container %s exists); remove the service with state: "
                           "absent first, or keep its strategy" % (observed["service"], observed["other"]))
    view = _View(observed, history, spec_hash)
    return _recreate(view) if observed["strategy"] == "recreate" else _blue_green(view)


class _View:
    """Questions about the observed containers."""

    def __init__(self, observed, history, spec_hash):
        self.containers = observed.get("containers") or {}
        self.switch = observed.get("switch")
        self.verified = (history or {}).get("container_id")
        self.spec_hash = spec_hash

    def get(self, role):
        return self.containers.get(role)

    def running(self, role):
        return bool(self.get(role) and self.get(role)["running"])

    def current(self, role):
        """True if role's container is the one the current deployment saw healthy."""
        return bool(self.get(role) and self.verified and self.get(role)["id"] == self.verified)

    def wanted(self, role):
        """True if role's container runs the wanted spec."""
        return bool(self.get(role) and self.spec_hash is not None and self.get(role)["hash"] == self.spec_hash)


def _recreate(v):
    main_ok = v.running("main") and v.current("main")
    # A rollout that succeeded was killed before it removed the old container.
    cleanup = ("previous",) if main_ok and v.get("previous") else ()
    previous = v.get("previous") and not cleanup
    if main_ok and v.wanted("main"):
        return decision(CLEANUP if cleanup else NOOP, serving="main", cleanup=cleanup)
    if v.running("main") and v.wanted("main"):
        # An interrupted run started it and never saw it healthy: check it now instead of recreating it.
        return decision(ADOPT, adopt="main", restore="previous" if previous else None)
    # The previous container is what served last unless main is the current one (stopped since).
    restore = "previous" if previous and not v.current("main") else ("main" if v.get("main") else None)
    discard = ("main",) if v.get("main") and restore != "main" else ()
    return decision(REPLACE, restore=restore, cleanup=cleanup, discard=discard)


def _blue_green(v):
    # The switch file is the gateway's truth; a slot it names that does not run serves nothing.
    live = v.switch if v.switch and v.running(v.switch) else None
    target = other_slot(v.switch) if v.switch else "blue"
    if live and v.wanted(live):
        drain = target if v.running(target) else None
        if v.current(live):
            return decision(CLEANUP if drain else NOOP, serving=live, live=live, target=live, drain=drain)
        # Killed after its switch (the gateway already sends traffic to the wanted spec): confirm the live slot.
        return decision(ADOPT, adopt=live, live=live, target=live, drain=drain)
    if v.running(target) and v.wanted(target):
        # Killed during the health wait of the slot it started: check that one instead of starting another.
        return decision(ADOPT, adopt=target, live=live, target=target, drain=live)
    return decision(REPLACE, live=live, target=target, discard=(target,) if v.get(target) else (), drain=live)
