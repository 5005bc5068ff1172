# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container rollouts: plan, then recreate or blue_green, with health checks and repair.

One service = one name (`agent_service`). Its containers carry the labels llmstack.service,
llmstack.slot (blue_green) and llmstack.spec-hash. The order of a run:

1. Take the service's lock, then read its history (state.py): never from before the lock.
2. Build and validate the whole ContainerSpec (rollout_plan.py, spec.py): parameters, env files, networks,
   GPU support; resolve and pull the image. Bad input fails here, with nothing touched.
3. Look at the host: which container serves (recreate: <name>; blue_green: the slot the switch
   file names, the gateway's truth), and whether the history saw it pass its health check.
   A container counts as current only if it did (rollout_decide.py). That is what lets a run repair
   one that was killed (async timeout, lost SSH) at any point.
4. Record the attempt as pending, then act (strategies.py). Any exception after that point brings the
   previous version back (recreate) or never moves traffic (blue_green).

This file holds the order; the parts, each below the one that uses it: strategies (Recreate, BlueGreen) ->
rollout_run (the run's context) -> probe (health, drain), gpu -> service_containers -> switch, docker_client
-> faults, errors.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import gpu, state
from ansible_collections.llmstack.deploy.plugins.module_utils import spec as specs
from ansible_collections.llmstack.deploy.plugins.module_utils.rollout_plan import Plan
from ansible_collections.llmstack.deploy.plugins.module_utils.rollout_run import Run
from ansible_collections.llmstack.deploy.plugins.module_utils.service_containers import ServiceContainers, running
from ansible_collections.llmstack.deploy.plugins.module_utils.strategies import BlueGreen, Recreate
from ansible_collections.llmstack.deploy.plugins.module_utils.switch import SwitchError, SwitchFile


def new_in_check_mode(p, check_mode):
    """The result of check mode with inputs_changed for a service this host never deployed, else None.

    That is a fresh host, or one the same run prepares: Docker, the network, the switch folder and the env files
    come from tasks that check mode did not run, so nothing here can be judged, and the rollout would create the
    service. Nothing is touched, Docker is not asked (it may not be installed yet)."""
    if not (check_mode and p.get("inputs_changed") and p["state"] == "present"):
        return None
    if state.History(p["state_dir"], p["name"]).current is not None:
        return None
    return {"changed": True, "service": p["name"], "strategy": p["strategy"], "image": p["image"],
            "msg": "%s would be deployed: it has no deployment on this host yet, and its inputs (inputs_changed) "
                   "are not written in check mode" % p["name"],
            "phases": []}


class Rollout:
    """One service's run. `p` is the module's parameters."""

    def __init__(self, client, p, check_mode=False, sleep=time.sleep, run_command=gpu.run_command):
        self.client, self.p, self.check_mode, self.sleep = client, p, check_mode, sleep
        self.run_command = run_command
        self.name, self.strategy = p["name"], p["strategy"]
        self.context = Run(p, check_mode=check_mode, sleep=sleep)
        self.containers = ServiceContainers(client, self.name, self.strategy, self.log, restart=self.restart_docker)
        self.history = self.spec = self.key = None
        self.summary = self.before = self.note = None

    @property
    def log(self):
        return self.context.log

    @property
    def warnings(self):
        return self.context.warnings

    def run(self):
        p = self.p
        with state.Lock(p["state_dir"], self.name, timeout=p["lock_timeout"], shared=self.check_mode):
            # Read under the lock: a run that waited works from the other run's result.
            self.history = self.context.history = state.History(p["state_dir"], self.name)
            self.before = self.history.current
            if p["state"] == "absent":
                return self.absent()
            # Check mode on a fresh host: a throwaway key (nothing is stored, nothing can match).
            self.key = state.host_key(p["state_dir"], create=not self.check_mode) or os.urandom(32)
            return self.apply(self.plan())

    def plan(self):
        """The Plan, with the whole spec validated and the image local; nothing touched."""
        p = self.p
        plan = Plan.from_params(p, self.history)
        # Check mode after the caller changed an input: the env files on the host are not the ones the run reads.
        plan.check(self.key, self.client, p, read_env=not (self.check_mode and p.get("inputs_changed")))
        if plan.spec.options["gpus"]:
            self.check_gpus(plan.spec)
        if self.strategy == "blue_green":
            try:
                self.switch_file().check_folder()
            except SwitchError as e:
                raise specs.SpecError(str(e))
        registry = dc.Registry(self.client, plan.spec.registry, p["registry_username"], p["registry_password"])
        plan.resolve(registry, self.history.current, not self.check_mode, self.log, self.context.warn)
        self.spec, self.context.outage = plan.spec, plan.outage
        return plan

    def apply(self, plan):
        spec = plan.spec
        hash_ = plan.spec_hash(self.key)
        current = self.history.current or {}
        self.summary = plan.summary(self.key, current)
        image_id = plan.image.id if plan.image else None
        result = {"service": self.name, "strategy": self.strategy, "image": spec.image, "digest_ref": spec.digest_ref,
                  "spec_hash": hash_, "previous": current.get("digest_ref"), "image_id": image_id,
                  "changes": specs.summary_diff(current.get("summary"), self.summary)}
        if plan.rollback:
            result["rollback"] = plan.rollback
        entry = {"image": spec.image, "digest_ref": spec.digest_ref, "image_id": image_id,
                 "strategy": self.strategy, "spec": spec.record(), "spec_hash": hash_, "summary": self.summary,
                 "rollback_of": plan.rollback and plan.rollback["from"]}
        self.strategy_for(plan).apply(spec, hash_, entry, result)
        if plan.outage:
            self.context.warn("registry unreachable: %s" % plan.outage)
        if not plan.env_read and result["changed"] and self.before is not None:
            self.note = result["msg"] = ("%s would be rolled out again: its inputs changed (inputs_changed), and "
                                         "check mode does not read env files the run has not written" % self.name)
            self.log(self.note)
        if result["changed"] and not self.check_mode:
            self.prune()
        result["phases"] = self.log.lines
        return result

    def strategy_for(self, plan):
        if self.strategy == "recreate":
            return Recreate(self.context, self.containers, self.gpu_guard(plan.spec), plan.drain_url)
        return BlueGreen(self.context, self.containers, self.switch_file())

    # ----- the host

    def switch_file(self):
        return SwitchFile(self.p["switch_file"], self.name)

    def gpu_guard(self, spec):
        return gpu.GpuGuard(self.run_command, spec.options["gpus"], dc.is_local(self.p["docker_host"]), self.name,
                            sleep=self.sleep)

    def check_gpus(self, spec):
        """Before anything is touched: no process outside this service's own container holds its GPUs."""
        main = self.containers.owned(self.name) if self.strategy == "recreate" else None
        self.gpu_guard(spec).check_free(dc.host_pids(main) if running(main) else ())

    def restart_docker(self, why):
        return dc.restart_to_free_port(self.client, self.p.get("docker_host"), self.run_command, why, self.log,
                                       sleep=self.sleep)

    # ----- absent

    def absent(self):
        found = dc.labelled(self.client, specs.LABEL_SERVICE, self.name)
        names = sorted(n.lstrip("/") for c in found for n in c.get("Names", [])[:1])
        result = {"service": self.name, "changed": bool(found) or self.history.exists, "removed": names,
                  "phases": self.log.lines}
        if not result["changed"] or self.check_mode:
            return result
        for name in names:
            container = dc.find(self.client, name)
            if container is None:
                continue
            self.log("removing %s" % container.name)
            with dc.call("stop %s" % container.name):
                container.stop(timeout=specs.DEFAULT_STOP_TIMEOUT if self.p.get("stop_timeout") is None else self.p["stop_timeout"])
            dc.remove(container)
        self.history.remove()
        return result

    # ----- prune

    def prune(self):
        """Remove images of this service's recorded deployments beyond the last keep_images good ones.

        Failed deployments' images go too. An image another service's history names, or any
        container uses, stays."""
        keep = set(self.history.images_to_keep(self.p["keep_images"]))
        try:
            others = self.images_of_other_services()
            in_use = dc.image_ids_in_use(self.client)
        except (dc.DockerError, state.StateError) as e:
            self.context.warn("pruning skipped: %s" % e)
            return
        for image_id in sorted(set(self.history.image_ids()) - keep - others - in_use):
            try:
                self.client.images.remove(image_id, force=True)
                self.log("pruned %s" % image_id[:19])
            except dc.docker.errors.ImageNotFound:
                pass
            except dc.SDK_ERRORS as e:
                self.log("kept %s: %s" % (image_id[:19], dc.explain(e)))

    def images_of_other_services(self):
        ids = set()
        for service in state.History.services(self.p["state_dir"]):
            if service == self.name:
                continue
            try:
                ids.update(state.History(self.p["state_dir"], service).image_ids())
            except state.StateError as e:
                raise state.StateError("cannot tell which images %s needs: %s" % (service, e))
        return ids
