# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One rollout run's context, handed to the parts that act (the strategies): its log and warnings, check
mode, the service's history, and the steps every strategy takes alike - record the attempt, wait for
health, put a failure in words."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import envfile, gpu, state
from ansible_collections.llmstack.deploy.plugins.module_utils import spec as specs
from ansible_collections.llmstack.deploy.plugins.module_utils.errors import RolloutError
from ansible_collections.llmstack.deploy.plugins.module_utils.faults import checkpoint
from ansible_collections.llmstack.deploy.plugins.module_utils.probe import Health
from ansible_collections.llmstack.deploy.plugins.module_utils.switch import SwitchError

# Failures whose message already says what happened and what to do; anything else is named by its type.
EXPECTED = (RolloutError, dc.DockerError, specs.SpecError, state.StateError, envfile.EnvFileError, gpu.GpuError,
            SwitchError)


class Run:
    """The context of one service's run. `p` is the module's parameters; `history` is set once the lock is held."""

    def __init__(self, p, check_mode=False, sleep=time.sleep):
        self.p, self.check_mode, self.sleep = p, check_mode, sleep
        self.log = state.DeployLog(p["state_dir"], p["name"], enabled=not check_mode)
        self.warnings = []
        self.history = None
        self.outage = None  # why the registry was skipped: then only a run that changes nothing may go ahead

    def warn(self, message):
        self.warnings.append(message)
        self.log("warning: " + message)

    def changing(self, result):
        """Called where a run decides to change the host, before it does."""
        if self.outage:
            raise dc.RegistryUnreachable("%s: only a run that changes nothing can go ahead without the registry"
                                         % self.outage)
        result["changed"] = True

    def begin(self, entry, result):
        """Record the attempt as pending: from here on, the next run knows what this one was doing."""
        entry = self.history.begin(entry)
        result["deployment"] = entry["seq"]
        checkpoint("pending")
        return entry

    def resume(self, container):
        """A container an interrupted run started with the wanted spec: check its health instead of replacing it."""
        self.log("resuming: %s runs the wanted spec but never passed its health check" % container.name)
        return container

    def health(self, spec):
        return Health.for_spec(spec, sleep=self.sleep)

    def wait_healthy(self, container, spec, slot):
        checkpoint("health_wait")
        kind = self.health(spec).wait(container, self.log, url=spec.health_url(slot))
        self.log("%s is healthy (%s)" % (container.name, kind))

    @staticmethod
    def failure(error, container, spec):
        """The message for a failed rollout: the error, the new container's last log lines, and no env value."""
        message = str(error) or error.__class__.__name__
        if not isinstance(error, EXPECTED):
            message = "%s: %s" % (error.__class__.__name__, message)
        if container is not None and isinstance(error, RolloutError):
            message += "\n--- last lines of %s's log ---\n%s" % (container.name, dc.logs_tail(container).rstrip())
        return envfile.redact(message, spec.env_values())
