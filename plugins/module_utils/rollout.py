# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Container rollouts: spec hash, strategies (recreate, blue_green), health, history, lock, prune.

One service = one name (`agent_service`). Its containers carry the labels
llmstack.service, llmstack.slot (blue_green only) and llmstack.spec-hash; its deployment
record lives in <state_dir>/deployments/<service>.json.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import hashlib
import hmac
import json
import os
import socket
import time

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.llmstack.deploy.plugins.module_utils import envfile
from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc

LABEL_SERVICE = "llmstack.service"
LABEL_SLOT = "llmstack.slot"
LABEL_HASH = "llmstack.spec-hash"
LABEL_DIGEST = "llmstack.image-digest"
SLOTS = ("blue", "green")


class RolloutError(Exception):
    pass


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------------- spec hash

def env_values(env_files, env):
    """The container's environment: env files in order (Docker semantics), then env."""
    values = {}
    for path in env_files or []:
        content, _stat = envfile.read(path)
        if content is None:
            raise RolloutError("env file %s does not exist" % path)
        values.update(envfile.parse(content))
    for key, value in (env or {}).items():
        values[key] = "" if value is None else str(value)
    return values


def host_key(state_dir):
    """A random per-host key (0600) so the stored per-key env hashes can't be brute-forced."""
    path = os.path.join(state_dir, "spec.key")
    if not os.path.exists(path):
        if not os.path.isdir(state_dir):
            os.makedirs(state_dir, 0o755)
        envfile.write_atomic(path, hashlib.sha256(os.urandom(32)).hexdigest(), mode=0o600)
    with open(path) as f:
        return f.read().strip().encode("ascii")


def spec_summary(spec, env, key):
    """What the spec hash covers, with each env value replaced by a keyed hash.

    Safe to store and show: it names every env key but holds no value."""
    summary = dict((k, v) for k, v in spec.items() if k != "environment")
    summary["environment"] = dict((k, hmac.new(key, ("%s=%s" % (k, v)).encode("utf-8"), hashlib.sha256).hexdigest()[:16])
                                  for k, v in sorted(env.items()))
    return summary


def spec_hash(summary):
    """One hash over digest, env and run options; key order does not matter."""
    return hashlib.sha256(json.dumps(summary, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def summary_diff(before, after):
    """Top-level spec keys (and env keys) whose value differs."""
    before, after = before or {}, after or {}
    changed = sorted(k for k in set(before) | set(after) if k != "environment" and before.get(k) != after.get(k))
    benv, aenv = before.get("environment", {}), after.get("environment", {})
    env = envfile.key_diff(benv, aenv)
    return {"options": changed, "env": env}


# --------------------------------------------------------------------------- history

class History:
    """<state_dir>/deployments/<service>.json: current, previous and the recent deployments."""

    def __init__(self, state_dir, service, keep=10):
        self.path = os.path.join(state_dir, "deployments", "%s.json" % service)
        self.keep = keep
        self.data = {"service": service, "current": None, "previous": None, "deployments": []}
        if os.path.exists(self.path):
            with open(self.path) as f:
                self.data.update(json.load(f))

    @property
    def current(self):
        return self.data.get("current")

    @property
    def previous(self):
        return self.data.get("previous")

    def record(self, entry, rollback=False):
        # A rollback records the previous version as current, so a second rollback returns.
        entry = dict(entry, time=now(), rollback=rollback)
        self.data["previous"], self.data["current"] = self.data.get("current"), entry
        self.data["deployments"] = ([entry] + self.data.get("deployments", []))[:self.keep]
        self.save()

    def save(self):
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            os.makedirs(folder, 0o755)
        envfile.write_atomic(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n", mode=0o644)

    def digests_to_keep(self, count):
        keep = []
        for entry in [self.current, self.previous] + self.data.get("deployments", []):
            if entry and entry.get("image_id") not in keep:
                keep.append(entry.get("image_id"))
        return keep[:count]


# ------------------------------------------------------------------------------ lock

class Lock:
    """One rollout per service per host: an flock on <state_dir>/locks/<service>.lock."""

    def __init__(self, state_dir, service, timeout=300, sleep=time.sleep):
        self.path = os.path.join(state_dir, "locks", "%s.lock" % service)
        self.timeout = timeout
        self.sleep = sleep
        self.fd = None

    def __enter__(self):
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            os.makedirs(folder, 0o755)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(self.fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
                    os.close(self.fd)
                    raise RolloutError("another rollout holds %s (%s); waited %ss"
                                       % (self.path, holder, self.timeout))
                self.sleep(0.5)
        os.ftruncate(self.fd, 0)
        holder = "pid %d on %s since %s\n" % (os.getpid(), socket.gethostname(), now())
        os.pwrite(self.fd, holder.encode(), 0)
        return self

    def __exit__(self, *exc):
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# ---------------------------------------------------------------------------- health

class Health:
    """Wait until a container is healthy: Docker's HEALTHCHECK, an HTTP probe, or just running."""

    def __init__(self, kind="auto", url=None, status=200, interval=2.0, probe_timeout=5.0,
                 start_period=0.0, timeout=300.0, sleep=time.sleep, clock=time.monotonic):
        self.kind, self.url, self.status = kind, url, status
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
            container.reload()
            state = container.attrs.get("State", {})
            if state.get("Status") in ("exited", "dead") or (state.get("Restarting") and state.get("ExitCode")):
                raise RolloutError("container %s exited with code %s while starting"
                                   % (container.name, state.get("ExitCode")))
            if kind == "docker":
                health = state.get("Health") or {}
                status = health.get("Status")
                logs = health.get("Log") or []
                last = (logs[-1].get("Output") or "").strip() if logs else ""
                if status == "healthy":
                    return kind
                if status == "unhealthy":
                    raise RolloutError("container %s is unhealthy: %s" % (container.name, last[-500:]))
            elif kind == "http":
                ok, last = self.probe(url)
                if ok:
                    return kind
            elif state.get("Running") and waited >= self.start_period:
                return kind
            if waited >= self.timeout:
                raise RolloutError("container %s not healthy after %ds (%s): %s"
                                   % (container.name, waited, kind, last[-500:]))
            # A line every 30 s, so a long model load shows where it is.
            if int(waited // 30) > phase_logged:
                phase_logged = int(waited // 30)
                progress("waiting for %s to be healthy (%s), %ds of %ds" % (container.name, kind, waited, self.timeout))
            self.sleep(self.interval)

    def probe(self, url):
        try:
            resp = open_url(url, timeout=self.probe_timeout)
            code = resp.getcode()
            resp.close()
        except HTTPError as e:
            code = e.code
        except (URLError, OSError, ValueError) as e:
            return False, "GET %s: %s" % (url, getattr(e, "reason", e))
        return code == self.status, "GET %s: HTTP %s (want %s)" % (url, code, self.status)


# --------------------------------------------------------------------------- rollout

def other_slot(slot):
    return "green" if slot == "blue" else "blue"


class Rollout:
    """Plan and carry out one service's rollout. `p` is the module's parameters."""

    def __init__(self, client, p, check_mode=False, sleep=time.sleep):
        self.client, self.p, self.check_mode, self.sleep = client, p, check_mode, sleep
        self.name = p["name"]
        self.started = time.monotonic()
        self.phases = []
        self.history = History(p["state_dir"], self.name)
        self.health = Health(sleep=sleep, timeout=p["health_timeout"], **(p.get("healthcheck") or {}))

    def progress(self, message):
        """Record a phase: in the result, and appended to <state_dir>/deployments/<name>.log so a
        person (or an async-polling task) can follow a long health wait while it runs."""
        line = "[%5.1fs] %s" % (time.monotonic() - self.started, message)
        self.phases.append(line)
        if not self.check_mode:
            folder = os.path.dirname(self.history.path)
            if not os.path.isdir(folder):
                os.makedirs(folder, 0o755)
            with open(os.path.join(folder, "%s.log" % self.name), "a") as f:
                f.write("%s %s\n" % (now(), line))

    # ----- desired and current state

    def container_name(self, slot=None):
        return "%s-%s" % (self.name, slot) if slot else self.name

    def desired(self, digest_ref):
        p = self.p
        env = env_values(p["env_files"], p["env"])
        spec = {
            "image": digest_ref,
            "command": p["command"],
            "environment": env,
            "ports": p["ports"] if p["strategy"] == "recreate" else p["slots"],
            "volumes": p["volumes"], "networks": p["networks"], "restart_policy": p["restart_policy"],
            "memory": p["memory"], "cpus": p["cpus"], "gpus": p["gpus"], "ipc_mode": p["ipc_mode"],
            "shm_size": p["shm_size"], "user": p["user"], "read_only": p["read_only"],
            "security_opts": p["security_opts"], "log_driver": p["log_driver"], "log_options": p["log_options"],
            "labels": p["labels"], "healthcheck": p.get("healthcheck"),
        }
        summary = spec_summary(spec, env, host_key(p["state_dir"]))
        return env, summary, spec_hash(summary)

    def owned(self, name):
        """The container called name, if this service manages it; a stranger is an error, never touched."""
        container = dc.find(self.client, name)
        if container is not None and container.labels.get(LABEL_SERVICE) != self.name:
            raise RolloutError("a container named %s exists but is not managed as service %s (label %s); "
                               "rename or remove it first" % (name, self.name, LABEL_SERVICE))
        return container

    def live(self):
        """(container, slot) now serving, or (None, None)."""
        if self.p["strategy"] == "recreate":
            self.owned(self.name + "-previous")
            return self.owned(self.name), None
        current = self.history.current or {}
        slots = [current.get("slot")] + list(SLOTS) if current.get("slot") else list(SLOTS)
        for slot in slots:
            c = self.owned(self.container_name(slot))
            if c is not None and c.status == "running":
                return c, slot
        return None, None

    # ----- containers

    def slot_ports(self, slot):
        return self.p["ports"] if slot is None else (self.p["slots"].get(slot) or {}).get("ports", [])

    def create(self, name, digest_ref, env, hash_, slot=None):
        p = self.p
        ports = self.slot_ports(slot)
        labels = dict(p["labels"] or {})
        labels.update({LABEL_SERVICE: self.name, LABEL_HASH: hash_, LABEL_DIGEST: digest_ref.split("@", 1)[-1]})
        if slot:
            labels[LABEL_SLOT] = slot
        kwargs = dict(
            name=name, command=p["command"], environment=env, labels=labels, detach=True,
            ports=dict(dc.parse_port(s) for s in ports) or None,
            volumes=dict(dc.parse_volume(v) for v in p["volumes"]) or None,
            restart_policy={"Name": p["restart_policy"]} if p["restart_policy"] != "no" else None,
            mem_limit=p["memory"], nano_cpus=int(p["cpus"] * 1e9) if p["cpus"] else None,
            device_requests=dc.device_requests(p["gpus"]), ipc_mode=p["ipc_mode"], shm_size=p["shm_size"],
            user=p["user"], read_only=p["read_only"], security_opt=p["security_opts"] or None,
            log_config={"Type": p["log_driver"], "Config": dict((k, str(v)) for k, v in (p["log_options"] or {}).items())},
        )
        kwargs = dict((k, v) for k, v in kwargs.items() if v is not None)
        networks = p["networks"] or []
        if networks:
            kwargs["network"] = networks[0]["name"]
        container = None
        try:
            container = self.client.containers.create(digest_ref, **kwargs)
            for net in networks:
                network = self.client.networks.get(net["name"])
                if net is networks[0]:
                    # created on it already: reconnect to set the aliases
                    network.disconnect(container)
                network.connect(container, aliases=net.get("aliases") or None)
            container.start()
        except dc.docker.errors.APIError as e:
            dc.remove(container)  # only what this run created; a stranger holding the name stays
            text = dc.explain(e)
            if "port is already allocated" in text or "address already in use" in text:
                raise RolloutError("cannot start %s: a port in %s is already in use on this host" % (name, ports))
            if "is already in use by container" in text:
                raise RolloutError("cannot create %s: the name is taken by a container that is not part of this "
                                   "service; rename or remove it" % name)
            raise RolloutError("cannot start %s: %s" % (name, text))
        return container

    def host_port(self, slot):
        ports = self.slot_ports(slot)
        if not ports:
            return None
        published = dc.parse_port(ports[0])[1]
        return published[1] if isinstance(published, tuple) else published

    def start_healthy(self, name, digest_ref, env, hash_, slot=None):
        self.progress("starting %s from %s" % (name, digest_ref))
        container = self.create(name, digest_ref, env, hash_, slot)
        try:
            # healthcheck.url may say {port}: the slot's first published host port.
            url = self.health.url.replace("{port}", str(self.host_port(slot))) if self.health.url else None
            kind = self.health.wait(container, self.progress, url=url)
        except RolloutError as e:
            logs = dc.logs_tail(container)
            dc.remove(container)
            raise RolloutError("%s\n--- last lines of %s's log ---\n%s" % (e, name, logs.rstrip()))
        self.progress("%s is healthy (%s)" % (name, kind))
        return container

    # ----- strategies

    def recreate(self, old, digest_ref, env, hash_):
        prev_name = self.name + "-previous"
        dc.remove(dc.find(self.client, prev_name))  # left over from an interrupted run
        if old is not None:
            self.progress("stopping %s" % old.name)
            old.stop(timeout=self.p["stop_timeout"])
            old.rename(prev_name)
        try:
            new = self.start_healthy(self.name, digest_ref, env, hash_)
        except RolloutError as e:
            if old is None:
                raise
            old.rename(self.name)
            old.start()
            self.progress("restarted the previous container %s" % self.name)
            raise RolloutError("%s\nThe previous version was restarted and is serving." % e)
        if old is not None:
            dc.remove(old)
        return new, None

    def blue_green(self, old, old_slot, digest_ref, env, hash_):
        slot = other_slot(old_slot) if old_slot else "blue"
        name = self.container_name(slot)
        dc.remove(dc.find(self.client, name))  # the slot's previous container: its image stays on the host
        try:
            new = self.start_healthy(name, digest_ref, env, hash_, slot)
        except RolloutError as e:
            raise RolloutError("%s\nTraffic was not switched: %s is still serving." % (e, old.name if old else "nothing"))
        self.switch(slot)
        if old is not None:
            # Requests routed before the switch finish; the app stops on SIGTERM after its in-flight work.
            self.sleep(self.p["switch_settle"])
            self.progress("draining %s (up to %ss)" % (old.name, self.p["drain_seconds"]))
            old.stop(timeout=self.p["drain_seconds"])
        return new, slot

    def switch(self, slot):
        """Point the gateway at slot: rewrite the switch file the gateway reads per request."""
        path = self.p["switch_file"]
        if not path:
            return
        content = "%s_%s\n" % (self.name, slot)
        envfile.write_atomic(path, content, mode=0o644)
        self.progress("switched traffic to %s (%s)" % (slot, path))

    # ----- entry point

    def run(self, registry, image_ref, rollback=False):
        old, old_slot = self.live()
        if rollback:
            prev = self.history.previous
            if not prev:
                raise RolloutError("no previous deployment of %s is recorded in %s" % (self.name, self.history.path))
            if registry.local_image(prev["image_id"]) is None:
                raise RolloutError("the previous image %s (%s) is no longer on this host"
                                   % (prev["digest_ref"], prev["image_id"]))
            image, digest_ref = registry.local_image(prev["image_id"]), prev["digest_ref"]
            requested = prev.get("image")
        else:
            self.progress("resolving %s" % image_ref)
            image, digest_ref = registry.resolve(image_ref, pull=not self.check_mode)
            requested = image_ref
        env, summary, hash_ = self.desired(digest_ref)
        self.summary = summary
        current = self.history.current or {}
        result = {
            "service": self.name, "strategy": self.p["strategy"], "image": requested, "digest_ref": digest_ref,
            "spec_hash": hash_, "slot": old_slot, "previous": current.get("digest_ref"),
            "changes": summary_diff(current.get("summary"), summary),
        }
        if old is not None and old.status == "running" and old.labels.get(LABEL_HASH) == hash_:
            result.update(changed=False, container=old.name, image_id=old.image.id)
            return result
        result["changed"] = True
        if self.check_mode:
            return result
        if self.p["strategy"] == "recreate":
            new, slot = self.recreate(old, digest_ref, env, hash_)
        else:
            new, slot = self.blue_green(old, old_slot, digest_ref, env, hash_)
        entry = {"image": requested, "digest_ref": digest_ref, "image_id": image.id, "spec_hash": hash_,
                 "summary": summary, "slot": slot, "strategy": self.p["strategy"]}
        self.history.record(entry, rollback=rollback)
        self.prune()
        result.update(slot=slot, container=new.name, image_id=image.id, phases=self.phases)
        return result

    def prune(self):
        """Remove the images of recorded deployments older than the last keep_images.

        Only images this service deployed are candidates; one a container still uses stays."""
        keep = set(self.history.digests_to_keep(self.p["keep_images"]))
        recorded = set(e.get("image_id") for e in self.history.data.get("deployments", []) if e)
        in_use = set(c.attrs.get("Image") for c in self.client.containers.list(all=True))
        for image_id in sorted(recorded - keep - in_use):
            try:
                self.client.images.remove(image_id, force=True)
                self.progress("pruned %s" % image_id[:19])
            except dc.docker.errors.ImageNotFound:
                pass
            except dc.docker.errors.APIError as e:
                self.progress("kept %s: %s" % (image_id[:19], dc.explain(e)))
