# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One service's containers on the host: their names, which are its own, what is there (as plain data for
rollout_decide.decide), and starting, removing and bringing one back.

Names: recreate runs <name> (and <name>-previous while a rollout replaces it), blue_green runs
<name>-blue and <name>-green. Every one carries the label llmstack.service=<name>."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import spec as specs
from ansible_collections.llmstack.deploy.plugins.module_utils.errors import RolloutError
from ansible_collections.llmstack.deploy.plugins.module_utils.switch import SLOTS

MAIN, PREVIOUS = "main", "previous"
# The containers of each strategy, by role (a role is also the name's suffix, but for main).
ROLES = {"recreate": (MAIN, PREVIOUS), "blue_green": SLOTS}


def running(container):
    return container is not None and container.status == "running"


def facts(container):
    """What decide() needs to know of a container, as plain data; None when there is none."""
    if container is None:
        return None
    return {"id": container.id, "running": running(container), "hash": container.labels.get(specs.LABEL_HASH)}


class ServiceContainers:
    """The containers of service `name` run with `strategy`. restart(why) may restart the Docker daemon to free a
    port a crash left allocated (True if it did); log(message) records a phase."""

    def __init__(self, client, name, strategy, log, restart=None):
        self.client, self.name, self.strategy, self.log = client, name, strategy, log
        self.restart = restart

    def name_for(self, role=None):
        return self.name if role in (None, MAIN) else "%s-%s" % (self.name, role)

    def owned(self, name):
        """The container called name, if this service manages it; a stranger is an error, never touched."""
        container = dc.find(self.client, name)
        if container is not None and container.labels.get(specs.LABEL_SERVICE) != self.name:
            raise RolloutError("a container named %s exists but is not managed as service %s (label %s); "
                               "rename or remove it first" % (name, self.name, specs.LABEL_SERVICE))
        return container

    def other_strategy(self):
        """The name of the first container this service runs under the other strategy's names, else None."""
        names = [self.name_for(s) for s in SLOTS] if self.strategy == "recreate" else [self.name]
        return next((n for n in names if self.owned(n) is not None), None)

    def observe(self, read_switch=None):
        """(observed, found): what is on the host as plain data for decide(), and the containers by role.
        read_switch() gives the switch file's slot (blue_green).

        A service found under the other strategy's names is all that is observed: the run stops there."""
        observed = {"service": self.name, "strategy": self.strategy, "other": self.other_strategy(), "containers": {},
                    "switch": None}
        found = {}
        if observed["other"] is None:
            found = dict((role, self.owned(self.name_for(role))) for role in ROLES[self.strategy])
            observed["containers"] = dict((role, facts(c)) for role, c in found.items())
            observed["switch"] = read_switch() if read_switch else None
        return observed, found

    def start(self, spec, slot, hash_):
        name = self.name_for(slot)
        self.log("starting %s from %s" % (name, spec.digest_ref))
        labels = dict(spec.options["labels"])
        labels.update({specs.LABEL_SERVICE: self.name, specs.LABEL_HASH: hash_,
                       specs.LABEL_DIGEST: spec.digest_ref.split("@", 1)[-1]})
        if slot:
            labels[specs.LABEL_SLOT] = slot
        try:
            return dc.run_container(self.client, spec, name, slot, labels, log=self.log)
        except dc.StalePort as e:
            if self.restart is None or not self.restart(str(e)):
                raise
            return dc.run_container(self.client, spec, name, slot, labels, log=self.log)

    @staticmethod
    def discard(container, notes):
        """Remove a container a failed run started; a failure to is added to notes, never raised."""
        try:
            dc.remove(container)
        except dc.DockerError as e:
            notes.append("Removing %s failed too: %s" % (container.name, e))

    def bring_back(self, container):
        """Rename the previous container back to the service's name and start it (DockerError if that fails)."""
        name = self.name_for()
        with dc.call("bring back %s" % name):
            container.reload()
            if container.name != name:
                container.rename(name)
            if container.status != "running":
                container.start()
        self.log("restarted the previous container %s" % name)
