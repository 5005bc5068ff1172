# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two ways to replace a service's container. Each looks at the host, lets rollout_decide.decide() say
what to do, then does it; `run` is the run's context (rollout_run.Run).

- Recreate: stop the old container, start the new one, wait until it is healthy. Any failure after the
  attempt is recorded brings the previous version back.
- BlueGreen: start the new container in the other slot, wait until it is healthy, move traffic by
  rewriting the switch file, then stop the old slot. Any failure before the switch leaves traffic where it was.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import spec as specs
from ansible_collections.llmstack.deploy.plugins.module_utils.errors import RolloutError
from ansible_collections.llmstack.deploy.plugins.module_utils.faults import checkpoint
from ansible_collections.llmstack.deploy.plugins.module_utils.probe import drain_requests
from ansible_collections.llmstack.deploy.plugins.module_utils.rollout_decide import ADOPT, NOOP, CLEANUP, decide, facts
from ansible_collections.llmstack.deploy.plugins.module_utils.service_containers import MAIN, PREVIOUS, running
from ansible_collections.llmstack.deploy.plugins.module_utils.switch import SwitchError


class Recreate:
    """containers: service_containers.ServiceContainers; gpus: gpu.GpuGuard of the new spec; drain_url: the old
    container's metrics URL (drain_metrics_url, {port} resolved) or None."""

    def __init__(self, run, containers, gpus, drain_url=None):
        self.run, self.containers, self.gpus, self.drain_url = run, containers, gpus, drain_url

    def apply(self, spec, hash_, entry, result):
        run = self.run
        observed, found = self.containers.observe()
        d = decide(observed, facts(run.history), hash_)
        result.update(changed=False, slot=None, container=self.containers.name)
        for role in d.cleanup:
            result["changed"] = True
            if not run.check_mode:
                run.log("removing %s, left by an interrupted run" % found[role].name)
                dc.remove(found[role])
        if d.action in (NOOP, CLEANUP):
            result["image_id"] = found[d.serving].attrs.get("Image")
            return
        run.changing(result)
        if run.check_mode:
            return
        entry = run.begin(entry, result)
        adopt, restore = found.get(d.adopt), found.get(d.restore)
        new, notes = None, []
        try:
            new = run.resume(adopt) if adopt is not None else self.replace(spec, hash_, d, found)
            run.wait_healthy(new, spec, None)
        except Exception as e:  # any failure from here on brings the previous version back
            message = run.failure(e, new, spec)
            if new is not None and (new is not adopt or restore is not None):
                self.containers.discard(new, notes)
            elif new is not None:
                notes.append("%s was left running as it was: there is no earlier version to go back to." % new.name)
            if restore is not None:
                notes.append(self.bring_back(restore, spec))
            run.history.fail(entry, message)
            raise RolloutError("\n".join([message] + notes))
        if restore is not None and restore is not new:
            try:
                dc.remove(restore)
            except dc.DockerError as e:
                run.warn("the new version serves, but the old container stays: %s" % e)
        run.history.succeed(entry, new.id)
        result.update(container=new.name, image_id=result["image_id"] or new.attrs.get("Image"))

    def replace(self, spec, hash_, d, found):
        """Remove what an interrupted run left, stop and set aside the serving container, start the new one."""
        run = self.run
        for role in d.discard:
            run.log("removing %s, left unverified by an interrupted run" % found[role].name)
            dc.remove(found[role])
        if d.restore == MAIN:
            main = found[MAIN]
            if running(main):
                drain_requests(run, main.name, self.drain_url, run.p.get("drain_gauges"), run.p["drain_seconds"])
            run.log("stopping %s" % main.name)
            with dc.call("stop %s" % main.name):
                main.stop(timeout=spec.stop_timeout())
            with dc.call("rename %s" % main.name):
                main.rename(self.containers.name_for(PREVIOUS))
            checkpoint("stopped_old")
        self.gpus.wait_free(run.p["gpu_free_timeout"], run.log)
        return self.containers.start(spec, None, hash_)

    def bring_back(self, container, spec):
        """Start the previous container again under the service's name: any failed recreate ends here."""
        name = self.containers.name_for()
        try:
            self.containers.bring_back(container)
        except dc.DockerError as e:
            return ("Bringing the previous version back failed too (%s). It is the container %s: start it with "
                    "`docker rename %s %s; docker start %s`, or re-run this task." % (e, container.name, container.name,
                                                                                      name, name))
        try:
            restored = self.restored_spec(spec)
            health = self.run.health(restored)
            health.timeout = min(health.timeout, 60)  # the failure is reported either way; don't wait long
            health.wait(container, self.run.log, url=restored.health_url())
        except (RolloutError, dc.DockerError, specs.SpecError) as e:
            return "The previous version was restarted but is not healthy yet: %s" % e
        return "The previous version was restarted and is serving."

    def restored_spec(self, spec):
        """The spec of the deployment a failed recreate goes back to (its health probe, its port)."""
        previous = self.run.history.current
        if previous and (previous.get("spec") or {}).get("options"):
            return specs.ContainerSpec.from_record(self.containers.name, "recreate", previous)
        return spec


class BlueGreen:
    """containers: service_containers.ServiceContainers; switch: the service's switch.SwitchFile."""

    def __init__(self, run, containers, switch):
        self.run, self.containers, self.switch = run, containers, switch

    def apply(self, spec, hash_, entry, result):
        observed, found = self.containers.observe(read_switch=self.read_switch)
        d = decide(observed, facts(self.run.history), hash_)
        live = found.get(d.live)
        result.update(changed=False, slot=d.live, container=live.name if live else None)
        if d.action == NOOP:
            result["image_id"] = live.attrs.get("Image")
            return
        self.run.changing(result)
        if self.run.check_mode:
            return
        if d.target == d.live:
            self.confirm(spec, d, found, entry, result)
        else:
            self.move(spec, hash_, d, found, entry, result)

    def read_switch(self):
        """The slot the gateway sends traffic to, from the switch file; None if there is none yet."""
        try:
            return self.switch.read()
        except SwitchError as e:
            raise RolloutError(str(e))

    def confirm(self, spec, d, found, entry, result):
        """A run was killed after its switch (the gateway already sends traffic to the wanted spec) or during
        its drain: confirm and record the live slot, then drain the other one."""
        run, live = self.run, found[d.live]
        if d.action == ADOPT:
            entry = run.begin(entry, result)
            run.log("resuming: %s already serves the wanted spec" % live.name)
            try:
                run.wait_healthy(live, spec, d.live)
            except Exception as e:
                message = run.failure(e, live, spec)
                run.history.fail(entry, message)
                raise RolloutError("%s\nTraffic stays on %s; nothing was changed." % (message, live.name))
            run.history.succeed(entry, live.id, d.live)
        if d.drain:
            self.drain(found[d.drain])

    def move(self, spec, hash_, d, found, entry, result):
        """Start (or adopt) the target slot, wait until it is healthy, switch traffic to it, drain the old slot."""
        run, live, adopt = self.run, found.get(d.live), found.get(d.adopt)
        entry = run.begin(entry, result)
        new, notes = None, []
        try:
            new = run.resume(adopt) if adopt is not None else self.replace(spec, hash_, d, found)
            run.wait_healthy(new, spec, d.target)
            self.switch_to(d.target)
        except Exception as e:  # any failure before the switch leaves traffic where it was
            message = run.failure(e, new, spec)
            if new is not None:
                self.containers.discard(new, notes)  # it never served: safe to remove
            run.history.fail(entry, message)
            raise RolloutError("\n".join([message, "Traffic was not switched: %s is still serving."
                                          % (live.name if live else "nothing")] + notes))
        checkpoint("switched")
        run.history.succeed(entry, new.id, d.target)
        result.update(slot=d.target, container=new.name, image_id=result["image_id"] or new.attrs.get("Image"))
        if live is not None:
            # Requests routed before the switch finish; the app stops on SIGTERM after its in-flight work.
            run.sleep(run.p["switch_settle"])
            self.drain(live)

    def replace(self, spec, hash_, d, found):
        for role in d.discard:
            dc.remove(found[role])  # the slot's previous container; its image stays for rollbacks
        return self.containers.start(spec, d.target, hash_)

    def switch_to(self, slot):
        """Point the gateway at slot: rewrite the switch file it reads per request (no reload)."""
        self.switch.write(slot)
        self.run.log("switched traffic to %s (%s)" % (slot, self.switch.path))

    def drain(self, container):
        """Stop the old slot after the switch; requests it already has finish within drain_seconds."""
        self.run.log("draining %s (up to %ss)" % (container.name, self.run.p["drain_seconds"]))
        try:
            with dc.call("stop %s" % container.name):
                container.stop(timeout=self.run.p["drain_seconds"])
        except dc.DockerError as e:
            self.run.warn("the new slot serves, but stopping the old one failed (the next run retries): %s" % e)
