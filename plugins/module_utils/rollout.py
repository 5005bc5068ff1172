# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container rollouts: plan, then recreate or blue_green, with health checks and repair.

One service = one name (`agent_service`). Its containers carry the labels llmstack.service,
llmstack.slot (blue_green) and llmstack.spec-hash. The order of a run:

1. Take the service's lock, then read its history (state.py): never from before the lock.
2. Build and validate the whole ContainerSpec (spec.py): parameters, env files, networks, GPU
   support; resolve and pull the image. Bad input fails here, with nothing touched.
3. Look at the host: which container serves (recreate: <name>; blue_green: the slot the switch
   file names, the gateway's truth), and whether the history saw it pass its health check.
   A container counts as current only if it did. That is what lets a run repair one that was
   killed (async timeout, lost SSH) at any point.
4. Record the attempt as pending, then act. Any exception after that point brings the previous
   version back (recreate) or never moves traffic (blue_green).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import envfile, gpu, state
from ansible_collections.llmstack.deploy.plugins.module_utils import spec as specs
from ansible_collections.llmstack.deploy.plugins.module_utils.probe import http_request, read_gauges

SLOTS = specs.SLOTS


class RolloutError(Exception):
    pass


# Failures whose message already says what happened and what to do; anything else is named by its type.
EXPECTED = (RolloutError, dc.DockerError, specs.SpecError, state.StateError, envfile.EnvFileError, gpu.GpuError)


def checkpoint(phase):
    """Test hook: LLMSTACK_TEST_FAULT=<phase>:<action>[:<arg>] stops a rollout at a named phase.

    pause:<file> writes this process's pid to <file> and waits to be killed; sleep:<seconds> waits;
    raise[:timeout] raises (timeout: the SDK's ReadTimeout). The fault tests use it to SIGKILL the
    module exactly at a phase. Phases: pending, stopped_old, health_wait, switched. Unset, a no-op."""
    fault = os.environ.get("LLMSTACK_TEST_FAULT", "")
    want, _sep, rest = fault.partition(":")
    if not fault or want != phase:
        return
    action, _sep, arg = rest.partition(":")
    if action == "pause":
        with open(arg, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)
    elif action == "sleep":
        time.sleep(float(arg))
    elif action == "raise":
        if arg == "timeout":
            import requests.exceptions
            raise requests.exceptions.ReadTimeout("injected at %s" % phase)
        raise RuntimeError("injected fault at %s" % phase)


def running(container):
    return container is not None and container.status == "running"


def other_slot(slot):
    return "green" if slot == "blue" else "blue"


# ---------------------------------------------------------------------------- health

class Health:
    """Wait until a container is healthy: Docker's HEALTHCHECK, an HTTP probe, a command run in the
    container (exec), an OpenAI-compatible server that really answers (openai), or just running."""

    def __init__(self, kind="auto", url=None, status=200, interval=2.0, probe_timeout=5.0,
                 start_period=0.0, timeout=300.0, command=None, model=None, api_key=None,
                 sleep=time.sleep, clock=time.monotonic):
        self.kind, self.url, self.status, self.command = kind or "auto", url, status, command
        self.model, self.api_key = model, api_key
        self.interval, self.probe_timeout, self.start_period = interval, probe_timeout, start_period
        self.timeout, self.sleep, self.clock = timeout, sleep, clock

    def wait(self, container, progress, url=None):
        url = url or self.url
        kind = self.kind
        if kind == "auto":
            has_check = bool((container.attrs.get("Config") or {}).get("Healthcheck", {}).get("Test"))
            kind = "docker" if has_check else ("http" if url else "running")
        start = self.clock()
        last = ""
        phase_logged = -1
        while True:
            waited = self.clock() - start
            with dc.call("inspect %s" % container.name):
                container.reload()
            current = container.attrs.get("State", {})
            if current.get("Status") in ("exited", "dead") or (current.get("Restarting") and current.get("ExitCode")):
                raise RolloutError("container %s exited with code %s while starting"
                                   % (container.name, current.get("ExitCode")))
            if kind == "docker":
                health = current.get("Health") or {}
                logs = health.get("Log") or []
                last = (logs[-1].get("Output") or "").strip() if logs else ""
                if health.get("Status") == "healthy":
                    return kind
                if health.get("Status") == "unhealthy":
                    raise RolloutError("container %s is unhealthy: %s" % (container.name, last[-500:]))
            elif kind == "http":
                ok, last = self.probe(url)
                if ok:
                    return kind
            elif kind == "exec":
                ok, last = self.run_check(container)
                if ok:
                    return kind
            elif kind == "openai":
                ok, last = self.openai_ready(url)
                if ok:
                    return kind
            elif current.get("Running") and waited >= self.start_period:
                return kind
            if waited >= self.timeout:
                raise RolloutError("container %s not healthy after %ds (%s): %s"
                                   % (container.name, waited, kind, last[-500:]))
            # A line every 30 s, so a long model load shows where it is.
            if int(waited // 30) > phase_logged:
                phase_logged = int(waited // 30)
                progress("waiting for %s to be healthy (%s), %ds of %ds: %s"
                         % (container.name, kind, waited, self.timeout, last[-200:] or "starting"))
            self.sleep(self.interval)

    def run_check(self, container):
        """Run the check command in the container (docker exec): exit 0 means healthy."""
        try:
            code, output = container.exec_run(list(self.command), demux=False)
        except dc.SDK_ERRORS as e:
            return False, "exec %s: %s" % (" ".join(self.command), dc.explain(e))
        text = (output or b"").decode("utf-8", "replace").strip()
        return code == 0, "exec %s: exit %s %s" % (" ".join(self.command), code, text[-200:])

    def probe(self, url):
        code, _body, error = self.request("GET", url)
        if error:
            return False, error
        return code == self.status, "GET %s: HTTP %s (want %s)" % (url, code, self.status)

    def request(self, method, url, data=None):
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.api_key:
            headers["Authorization"] = "Bearer %s" % self.api_key
        return http_request(method, url, data=data, headers=headers, timeout=self.probe_timeout)

    def openai_ready(self, base):
        """vLLM's own readiness, in order: /health, then /v1/models (with the key) listing the model,
        then a real one-token completion. /v1/models alone answers before the engine can generate."""
        base = base.rstrip("/")
        code, _body, error = self.request("GET", base + "/health")
        if error or code != 200:
            return False, error or "GET /health: HTTP %s" % code
        code, body, error = self.request("GET", base + "/v1/models")
        if error or code != 200:
            return False, error or "GET /v1/models: HTTP %s%s" % (code, " (the API key is refused)" if code == 401 else "")
        try:
            served = [m.get("id") for m in json.loads(body.decode("utf-8")).get("data", [])]
        except (ValueError, AttributeError):
            return False, "GET /v1/models: not an OpenAI model list"
        if self.model not in served:
            return False, "GET /v1/models lists %s, not %s" % (", ".join(map(str, served)) or "nothing", self.model)
        payload = json.dumps({"model": self.model, "prompt": "Hello", "max_tokens": 1}).encode("utf-8")
        code, body, error = self.request("POST", base + "/v1/completions", data=payload)
        if error or code != 200:
            return False, error or "POST /v1/completions: HTTP %s" % code
        try:
            if json.loads(body.decode("utf-8")).get("choices"):
                return True, "a one-token completion from %s" % self.model
        except (ValueError, AttributeError):
            pass
        return False, "POST /v1/completions: an answer with no choices"


# --------------------------------------------------------------------------- rollout

class Rollout:
    """One service's run. `p` is the module's parameters."""

    def __init__(self, client, p, check_mode=False, sleep=time.sleep, run_command=gpu.run_command):
        self.client, self.p, self.check_mode, self.sleep = client, p, check_mode, sleep
        self.run_command = run_command
        self.name, self.strategy = p["name"], p["strategy"]
        self.log = state.DeployLog(p["state_dir"], self.name, enabled=not check_mode)
        self.warnings = []
        self.history = self.spec = self.key = self.drain_url = None
        self.summary = self.before = self.outage = None

    def warn(self, message):
        self.warnings.append(message)
        self.log("warning: " + message)

    # ----- entry point

    def run(self):
        p = self.p
        with state.Lock(p["state_dir"], self.name, timeout=p["lock_timeout"], shared=self.check_mode):
            # Read under the lock: a run that waited works from the other run's result.
            self.history = state.History(p["state_dir"], self.name)
            self.before = self.history.current
            if p["state"] == "absent":
                return self.absent()
            # Check mode on a fresh host: a throwaway key (nothing is stored, nothing can match).
            self.key = state.host_key(p["state_dir"], create=not self.check_mode) or os.urandom(32)
            spec, image, rollback = self.plan()
            return self.apply(spec, image, rollback)

    def plan(self):
        """(spec, image, rollback) with the whole spec validated and the image local; nothing touched."""
        p = self.p
        rollback = target = None
        if p["state"] == "rolled_back":
            target, note = self.history.rollback_target()
            spec = specs.ContainerSpec.from_record(self.name, self.strategy, target)
            current = self.history.current
            rollback = {"to": target["seq"], "note": note,
                        "from": current["seq"] if target is not current else (current.get("rollback_of") or None)}
        else:
            spec = specs.ContainerSpec.from_params(p)
        spec.load_env(self.key)
        dc.check_networks(self.client, spec)
        key_name = (spec.health.get("healthcheck") or {}).get("api_key_env")
        if key_name and not spec.environment.get(key_name):
            raise specs.SpecError("healthcheck.api_key_env: %s is not set by env_files or env" % key_name)
        # Checked here, before anything is touched; used before the old container stops.
        self.drain_url = spec.url_for(p.get("drain_metrics_url"), option="drain_metrics_url")
        if spec.options["gpus"]:
            missing = dc.gpu_support_missing(p["docker_host"])
            if missing:
                raise specs.SpecError(missing)
            self.check_gpus(spec)
        if self.strategy == "blue_green":
            self.check_switch_folder()
        registry = dc.Registry(self.client, spec.registry, p["registry_username"], p["registry_password"])
        if target is not None:
            self.log(rollback["note"])
            image = registry.local_image(target["image_id"])
            if image is None:
                raise RolloutError("the image of deployment #%d, %s (%s), is no longer on this host; deploy it "
                                   "again with state: present" % (target["seq"], target["digest_ref"], target["image_id"]))
            changed = spec.changed_env_files()
            if changed:
                self.warn("env file(s) %s changed since deployment #%d; the rollback uses their current content "
                          "(values are never recorded)" % (", ".join(changed), target["seq"]))
        else:
            self.log("resolving %s" % spec.image)
            try:
                image, spec.digest_ref = registry.resolve(spec.image, pull=not self.check_mode)
            except dc.RegistryUnreachable as e:
                image = self.outage_fallback(spec, registry, e)
        self.spec = spec
        return spec, image, rollback

    def outage_fallback(self, spec, registry, error):
        """The registry is down: keep the digest recorded for this same tag, if a run can be a no-op."""
        current = self.history.current
        if not current or current.get("image") != spec.image:
            raise error
        spec.digest_ref = current["digest_ref"]
        self.outage = "%s; kept %s, the digest recorded for %s" % (error, current["digest_ref"], spec.image)
        return registry.local_image(current["image_id"])

    def changing(self, result):
        """Called where a run decides to change the host, before it does."""
        if self.outage:
            raise dc.RegistryUnreachable("%s: only a run that changes nothing can go ahead without the registry"
                                         % self.outage)
        result["changed"] = True

    def apply(self, spec, image, rollback):
        hash_ = spec.hash(self.key)
        self.summary = spec.summary(self.key)
        current = self.history.current or {}
        image_id = image.id if image else None
        result = {"service": self.name, "strategy": self.strategy, "image": spec.image, "digest_ref": spec.digest_ref,
                  "spec_hash": hash_, "previous": current.get("digest_ref"), "image_id": image_id,
                  "changes": specs.summary_diff(current.get("summary"), self.summary)}
        if rollback:
            result["rollback"] = rollback
        entry = {"image": spec.image, "digest_ref": spec.digest_ref, "image_id": image_id,
                 "strategy": self.strategy, "spec": spec.record(), "spec_hash": hash_, "summary": self.summary,
                 "rollback_of": rollback and rollback["from"]}
        if self.strategy == "recreate":
            self.recreate(spec, hash_, entry, result)
        else:
            self.blue_green(spec, hash_, entry, result)
        if self.outage:
            self.warn("registry unreachable: %s" % self.outage)
        if result["changed"] and not self.check_mode:
            self.prune()
        result["phases"] = self.log.lines
        return result

    # ----- what is on the host

    def container_name(self, slot=None):
        return "%s-%s" % (self.name, slot) if slot else self.name

    def owned(self, name):
        """The container called name, if this service manages it; a stranger is an error, never touched."""
        container = dc.find(self.client, name)
        if container is not None and container.labels.get(specs.LABEL_SERVICE) != self.name:
            raise RolloutError("a container named %s exists but is not managed as service %s (label %s); "
                               "rename or remove it first" % (name, self.name, specs.LABEL_SERVICE))
        return container

    def refuse_other_strategy(self):
        other = [self.container_name(s) for s in SLOTS] if self.strategy == "recreate" else [self.name]
        for name in other:
            if self.owned(name) is not None:
                raise RolloutError("%s runs with the other strategy (container %s exists); remove the service with "
                                   "state: absent first, or keep its strategy" % (self.name, name))

    # ----- health and failures

    def health(self, spec):
        config = dict((k, v) for k, v in (spec.health.get("healthcheck") or {}).items() if v is not None)
        key_name = config.pop("api_key_env", None)
        if key_name:
            config["api_key"] = (spec.environment or {}).get(key_name)
        return Health(sleep=self.sleep, timeout=spec.health.get("health_timeout") or 300, **config)

    def start(self, spec, slot, hash_):
        name = self.container_name(slot)
        self.log("starting %s from %s" % (name, spec.digest_ref))
        labels = dict(spec.options["labels"])
        labels.update({specs.LABEL_SERVICE: self.name, specs.LABEL_HASH: hash_,
                       specs.LABEL_DIGEST: spec.digest_ref.split("@", 1)[-1]})
        if slot:
            labels[specs.LABEL_SLOT] = slot
        try:
            return dc.run_container(self.client, spec, name, slot, labels, log=self.log)
        except dc.StalePort as e:
            if not self.restart_docker(str(e)):
                raise
            return dc.run_container(self.client, spec, name, slot, labels, log=self.log)

    def restart_docker(self, why):
        """After a dockerd crash the daemon may keep a port allocated to a container that no longer exists, and
        only a restart frees it. With live-restore every container keeps running meanwhile; without, say so
        and leave it to the operator."""
        with dc.call("read the daemon's settings"):
            live_restore = self.client.info().get("LiveRestoreEnabled")
        if not live_restore or not dc.is_local(self.p.get("docker_host")):
            return False
        self.log("restarting the Docker daemon (live-restore keeps every container running): %s" % why)
        # reset-failed first: docker.service allows 3 starts in 60 s, and the crash used one.
        self.run_command(["systemctl", "reset-failed", "docker.service"])
        rc, out, err = self.run_command(["systemctl", "restart", "docker.service"])
        if rc != 0:
            raise RolloutError("%s; restarting Docker failed too (rc %d): %s" % (why, rc, (err or out).strip()))
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client.ping()
                return True
            except Exception:  # pylint: disable=broad-exception-caught
                if time.monotonic() > deadline:
                    raise RolloutError("%s; Docker did not answer within 60 s of its restart" % why)
                self.sleep(1)

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

    def wait_healthy(self, container, spec, slot):
        checkpoint("health_wait")
        kind = self.health(spec).wait(container, self.log, url=spec.health_url(slot))
        self.log("%s is healthy (%s)" % (container.name, kind))

    def failure(self, error, container, spec):
        """The message for a failed rollout: the error, the new container's last log lines, and no env value."""
        message = str(error) or error.__class__.__name__
        if not isinstance(error, EXPECTED):
            message = "%s: %s" % (error.__class__.__name__, message)
        if container is not None and isinstance(error, RolloutError):
            message += "\n--- last lines of %s's log ---\n%s" % (container.name, dc.logs_tail(container).rstrip())
        return envfile.redact(message, spec.env_values())

    def discard(self, container, notes):
        try:
            dc.remove(container)
        except dc.DockerError as e:
            notes.append("Removing %s failed too: %s" % (container.name, e))

    def restored_spec(self, spec):
        """The spec of the deployment a failed recreate goes back to (its health probe, its port)."""
        previous = self.history.current
        if previous and (previous.get("spec") or {}).get("options"):
            return specs.ContainerSpec.from_record(self.name, self.strategy, previous)
        return spec

    def bring_back(self, container, spec):
        """Rename the previous container back and start it: any failed recreate ends here."""
        name = self.container_name()
        try:
            with dc.call("bring back %s" % name):
                container.reload()
                if container.name != name:
                    container.rename(name)
                if container.status != "running":
                    container.start()
            self.log("restarted the previous container %s" % name)
            try:
                restored = self.restored_spec(spec)
                health = self.health(restored)
                health.timeout = min(health.timeout, 60)  # the failure is reported either way; don't wait long
                health.wait(container, self.log, url=restored.health_url())
            except (RolloutError, dc.DockerError, specs.SpecError) as e:
                return "The previous version was restarted but is not healthy yet: %s" % e
            return "The previous version was restarted and is serving."
        except dc.DockerError as e:
            return ("Bringing the previous version back failed too (%s). It is the container %s: start it with "
                    "`docker rename %s %s; docker start %s`, or re-run this task." % (e, container.name, container.name,
                                                                                      name, name))

    # ----- GPUs and draining (recreate)

    def gpu_holders(self, spec, ignore=()):
        """Processes other than `ignore` that hold the GPUs spec will get ([] for a remote daemon)."""
        if not spec.options["gpus"] or not dc.is_local(self.p["docker_host"]):
            return []
        return gpu.holders(self.run_command, spec.options["gpus"], ignore_pids=ignore)

    def check_gpus(self, spec):
        """Before anything is touched: no process outside this service's own container holds its GPUs."""
        main = self.owned(self.name) if self.strategy == "recreate" else None
        found = self.gpu_holders(spec, ignore=dc.host_pids(main) if running(main) else ())
        if found:
            raise specs.SpecError("gpus: %s hold the GPUs %s would use, and are not its container (a vLLM "
                                  "engine worker left by a killed run holds its VRAM until it exits). Stop them "
                                  "(kill PID), check with nvidia-smi, then re-run" % (gpu.describe(found), self.name))

    def wait_gpus_free(self, spec):
        """After the old container stopped: wait until its GPU memory is actually released."""
        timeout, start, found = self.p["gpu_free_timeout"], time.monotonic(), None
        while True:
            found = self.gpu_holders(spec)
            if not found:
                return
            if time.monotonic() - start >= timeout:
                raise RolloutError("gpus: %s still hold the GPUs %ds after the old container stopped; a new %s "
                                   "would fail with out-of-memory. Stop them (kill PID) and re-run"
                                   % (gpu.describe(found), timeout, self.name))
            self.log("waiting for the GPUs to be released: %s" % gpu.describe(found))
            self.sleep(1)

    def drain_requests(self, container):
        """Wait until the container has no request in flight (its metrics gauges at 0), up to drain_seconds.

        The gateway stopped sending it new requests before this run; the rest are finishing."""
        url = self.drain_url
        if not url or not running(container):
            return
        gauges = self.p.get("drain_gauges") or []
        timeout, start, logged = self.p["drain_seconds"], time.monotonic(), -1
        while True:
            in_flight = read_gauges(url, gauges)
            if in_flight is None:
                self.log("draining %s: %s does not answer; stopping it" % (container.name, url))
                return
            waited = time.monotonic() - start
            if in_flight == 0:
                self.log("drained %s: no request in flight (%ds)" % (container.name, waited))
                return
            if waited >= timeout:
                self.warn("%s still has %d request(s) in flight after %ds; stopping it (its own shutdown "
                          "timeout lets them finish)" % (container.name, in_flight, timeout))
                return
            if int(waited // 10) > logged:
                logged = int(waited // 10)
                self.log("draining %s: %d request(s) in flight, %ds of %ds" % (container.name, in_flight, waited, timeout))
            self.sleep(1)

    # ----- recreate

    def recreate(self, spec, hash_, entry, result):
        self.refuse_other_strategy()
        main, prev = self.owned(self.name), self.owned(self.container_name("previous"))
        main_ok = running(main) and self.history.is_current_container(main)
        result.update(changed=False, slot=None, container=self.name)
        if prev is not None and main_ok:
            # A rollout that succeeded was killed before it removed the old container.
            result["changed"] = True
            if not self.check_mode:
                self.log("removing %s, left by an interrupted run" % prev.name)
                dc.remove(prev)
            prev = None
        if main_ok and main.labels.get(specs.LABEL_HASH) == hash_:
            result["image_id"] = main.attrs.get("Image")
            return
        self.changing(result)
        if self.check_mode:
            return
        adopt = leftover = None
        if running(main) and main.labels.get(specs.LABEL_HASH) == hash_ and not main_ok:
            # An interrupted run started it and never saw it healthy: check it now instead of recreating.
            adopt, restore = main, prev
        else:
            restore = prev if prev is not None and not self.history.is_current_container(main) else main
            leftover = main if main is not None and restore is not main else None

        def replace():
            if leftover is not None:
                self.log("removing %s, left unverified by an interrupted run" % leftover.name)
                dc.remove(leftover)
            if restore is not None and restore is main:
                self.drain_requests(main)
                self.log("stopping %s" % main.name)
                with dc.call("stop %s" % main.name):
                    main.stop(timeout=spec.stop_timeout())
                with dc.call("rename %s" % main.name):
                    main.rename(self.container_name("previous"))
                checkpoint("stopped_old")
            self.wait_gpus_free(spec)
            return self.start(spec, None, hash_)

        entry = self.begin(entry, result)
        new, notes = None, []
        try:
            new = self.resume(adopt) if adopt is not None else replace()
            self.wait_healthy(new, spec, None)
        except Exception as e:  # any failure from here on brings the previous version back
            message = self.failure(e, new, spec)
            if new is not None and (new is not adopt or restore is not None):
                self.discard(new, notes)
            elif new is not None:
                notes.append("%s was left running as it was: there is no earlier version to go back to." % new.name)
            if restore is not None:
                notes.append(self.bring_back(restore, spec))
            self.history.fail(entry, message)
            raise RolloutError("\n".join([message] + notes))
        if restore is not None and restore is not new:
            try:
                dc.remove(restore)
            except dc.DockerError as e:
                self.warn("the new version serves, but the old container stays: %s" % e)
        self.history.succeed(entry, new.id)
        result.update(container=new.name, image_id=result["image_id"] or new.attrs.get("Image"))

    # ----- blue_green

    def check_switch_folder(self):
        folder = os.path.dirname(os.path.abspath(self.p["switch_file"]))
        if not os.path.isdir(folder):
            raise specs.SpecError("switch_file: the folder %s does not exist (the gateway role creates it)" % folder)

    def read_switch(self):
        """The slot the gateway sends traffic to, from the switch file; None if there is none yet."""
        path = self.p["switch_file"]
        try:
            with open(path) as f:
                content = f.read().strip()
        except (IOError, OSError) as e:
            if not os.path.exists(path):
                return None
            raise RolloutError("cannot read the switch file %s: %s" % (path, e))
        slot = specs.switched_slot(content, self.name)
        if slot:
            return slot
        raise RolloutError("the switch file %s says %r, not %s_blue or %s_green: fix or remove it (the gateway "
                           "reads it to pick the live slot)" % (path, content[:80], self.name, self.name))

    def switch(self, slot):
        """Point the gateway at slot: rewrite the switch file it reads per request (no reload)."""
        state.write_file(self.p["switch_file"], "%s_%s\n" % (self.name, slot), mode=0o644)
        self.log("switched traffic to %s (%s)" % (slot, self.p["switch_file"]))

    def drain(self, container):
        """Stop the old slot after the switch; requests it already has finish within drain_seconds."""
        self.log("draining %s (up to %ss)" % (container.name, self.p["drain_seconds"]))
        try:
            with dc.call("stop %s" % container.name):
                container.stop(timeout=self.p["drain_seconds"])
        except dc.DockerError as e:
            self.warn("the new slot serves, but stopping the old one failed (the next run retries): %s" % e)

    def blue_green(self, spec, hash_, entry, result):
        self.refuse_other_strategy()
        containers = dict((s, self.owned(self.container_name(s))) for s in SLOTS)
        switched = self.read_switch()
        live_slot = switched if switched and running(containers[switched]) else None
        live = containers[live_slot] if live_slot else None
        target = other_slot(live_slot or switched) if (live_slot or switched) else "blue"
        standby = containers[target]
        result.update(changed=False, slot=live_slot, container=live.name if live else None)
        if live is not None and live.labels.get(specs.LABEL_HASH) == hash_:
            verified = self.history.is_current_container(live)
            if verified and not running(standby):
                result["image_id"] = live.attrs.get("Image")
                return
            # A run was killed after its switch (the gateway already sends traffic to the wanted spec) or
            # during its drain: confirm and record the live slot, then drain the other one.
            self.changing(result)
            if self.check_mode:
                return
            if not verified:
                entry = self.begin(entry, result)
                self.log("resuming: %s already serves the wanted spec" % live.name)
                try:
                    self.wait_healthy(live, spec, live_slot)
                except Exception as e:
                    message = self.failure(e, live, spec)
                    self.history.fail(entry, message)
                    raise RolloutError("%s\nTraffic stays on %s; nothing was changed." % (message, live.name))
                self.history.succeed(entry, live.id, live_slot)
            if running(standby):
                self.drain(standby)
            return
        self.changing(result)
        if self.check_mode:
            return

        def replace():
            dc.remove(standby)  # the slot's previous container; its image stays for rollbacks
            return self.start(spec, target, hash_)

        entry = self.begin(entry, result)
        adopt = standby if running(standby) and standby.labels.get(specs.LABEL_HASH) == hash_ else None
        new, notes = None, []
        try:
            new = self.resume(adopt) if adopt is not None else replace()
            self.wait_healthy(new, spec, target)
            self.switch(target)
        except Exception as e:  # any failure before the switch leaves traffic where it was
            message = self.failure(e, new, spec)
            if new is not None:
                self.discard(new, notes)  # it never served: safe to remove
            self.history.fail(entry, message)
            raise RolloutError("\n".join([message, "Traffic was not switched: %s is still serving."
                                          % (live.name if live else "nothing")] + notes))
        checkpoint("switched")
        self.history.succeed(entry, new.id, target)
        result.update(slot=target, container=new.name, image_id=result["image_id"] or new.attrs.get("Image"))
        if live is not None:
            # Requests routed before the switch finish; the app stops on SIGTERM after its in-flight work.
            self.sleep(self.p["switch_settle"])
            self.drain(live)

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
            self.warn("pruning skipped: %s" % e)
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
        folder = self.history.folder
        ids = set()
        for filename in sorted(os.listdir(folder)):
            if filename.endswith(".json") and filename != os.path.basename(self.history.path):
                try:
                    ids.update(state.History(self.p["state_dir"], filename[:-5]).image_ids())
                except state.StateError as e:
                    raise state.StateError("cannot tell which images %s needs: %s" % (filename[:-5], e))
        return ids
