# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container spec: one object, built and validated once, before anything on the host is touched.

It comes from the module's parameters or from a recorded deployment (rollback), and it gives all
three things a rollout needs from it: the spec hash (summary() / hash()), the record kept for
rollback (record()), and, through docker_client.container_args(), the Docker SDK arguments. So an
option can't be hashed one way and applied another: RUN_OPTIONS is the one list of them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import hmac
import json
import re

from ansible_collections.llmstack.deploy.plugins.module_utils import envfile, image_ref, managed_file, switch

# What goes into the container. Hash, SDK arguments and rollback record all iterate this list.
RUN_OPTIONS = ("command", "env", "ports", "slots", "volumes", "networks", "restart_policy", "memory", "cpus",
               "gpus", "ipc_mode", "shm_size", "user", "read_only", "security_opts", "log_driver", "log_options",
               "labels", "network_mode", "stop_timeout")
# Options added after containers were already deployed: left out of the hash while unset, so an
# upgrade of the collection restarts nothing.
LATER_OPTIONS = ("network_mode", "stop_timeout")
# Seconds a container gets between SIGTERM and SIGKILL when stop_timeout is unset (Docker's own is 10).
DEFAULT_STOP_TIMEOUT = 30
NETWORK_MODES = ("bridge", "host", "none")
# How the module decides the container is healthy: recorded for rollback, not part of the hash
# (a new probe setting does not change the container, so it restarts nothing).
HEALTH_OPTIONS = ("healthcheck", "health_timeout")
STRATEGIES = ("recreate", "blue_green")

LABEL_PREFIX = "llmstack."
LABEL_SERVICE = LABEL_PREFIX + "service"
LABEL_SLOT = LABEL_PREFIX + "slot"
LABEL_HASH = LABEL_PREFIX + "spec-hash"
LABEL_DIGEST = LABEL_PREFIX + "image-digest"

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
_SIZE_RE = re.compile(r"^[0-9]+(\.[0-9]+)?([bkmgBKMG][bB]?)?$")
_IPV4_RE = re.compile(r"^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}$")
_VOLUME_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_GPU_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
PROTOCOLS = ("tcp", "udp", "sctp")


class SpecError(Exception):
    """Bad input: names the option and the offending entry; never an env value."""


# ------------------------------------------------------------------------- parsing

def parse_port(spec):
    """'[host_ip:]host_port:container_port[/proto]' -> {'host_ip', 'host_port', 'container'}."""
    text = str(spec)
    proto = "tcp"
    if "/" in text:
        text, proto = text.rsplit("/", 1)
    host_ip = ""
    if text.startswith("["):  # [::1]:8001:8000
        end = text.find("]")
        host_ip, text = text[1:end], text[end + 2:] if end > 0 else ""
    parts = text.split(":")
    if not host_ip and len(parts) == 3:
        host_ip, parts = parts[0], parts[1:]
    hint = "use [host_ip:]host_port:container_port[/tcp|udp|sctp], e.g. 127.0.0.1:8001:8000"
    if len(parts) != 2 or proto not in PROTOCOLS or not all(p.isdigit() and 0 < int(p) < 65536 for p in parts):
        raise SpecError("ports: %r is not a port mapping: %s" % (spec, hint))
    if host_ip and not (_IPV4_RE.match(host_ip) or ":" in host_ip):
        raise SpecError("ports: %r: %r is not an IP address: %s" % (spec, host_ip, hint))
    return {"host_ip": host_ip, "host_port": int(parts[0]), "container": "%s/%s" % (int(parts[1]), proto)}


def port_string(port):
    ip = port["host_ip"]
    ip = ("[%s]" % ip if ":" in ip else ip) + ":" if ip else ""
    return "%s%d:%s" % (ip, port["host_port"], port["container"])


def parse_volume(spec):
    """'source:target[:ro|rw]' -> {'source', 'target', 'mode'}; source is a host path or a volume name."""
    parts = str(spec).split(":")
    hint = "use source:target[:ro|rw] with an absolute target (source: a host path or a volume name)"
    if len(parts) not in (2, 3) or not parts[1].startswith("/") or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise SpecError("volumes: %r: %s" % (spec, hint))
    if not (parts[0].startswith("/") or _VOLUME_NAME_RE.match(parts[0])):
        raise SpecError("volumes: %r: %r is neither an absolute path nor a volume name" % (spec, parts[0]))
    return {"source": parts[0], "target": parts[1], "mode": parts[2] if len(parts) == 3 else "rw"}


def volume_string(volume):
    return "%(source)s:%(target)s:%(mode)s" % volume


def parse_gpus(value):
    """None | 'all' | a count | device ids (a list, or 'id,id') -> None | 'all' | {'count'} | {'device_ids'}."""
    hint = "use all, a count (1, 2, ...) or device ids ([0, 1], '0,1' or GPU UUIDs)"
    if value in (None, "", 0, "0", False):
        return None
    if value == "all":
        return "all"
    if isinstance(value, bool):
        raise SpecError("gpus: %r: %s" % (value, hint))
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit() and "," not in value):
        count = int(value)
        if count < 1:
            raise SpecError("gpus: %r: %s" % (value, hint))
        return {"count": count}
    ids = value if isinstance(value, (list, tuple)) else str(value).split(",")
    ids = [str(i).strip() for i in ids]
    if not ids or not all(_GPU_ID_RE.match(i) for i in ids):
        raise SpecError("gpus: %r: %s" % (value, hint))
    return {"device_ids": ids}


def parse_env(env):
    """{name: value as str}; a name Docker can't take, or a NUL in a value, is an error (naming the key only)."""
    parsed = {}
    for key, value in (env or {}).items():
        key = str(key)
        if not key or "=" in key or "\0" in key or any(c.isspace() for c in key):
            raise SpecError("env: %r is not a valid environment variable name" % (key,))
        value = "" if value is None else str(value)
        if "\0" in value:
            raise SpecError("env: the value of %s contains a NUL byte" % key)
        parsed[key] = value
    return parsed


def parse_networks(networks):
    """[{name, aliases}]: each network named, once."""
    parsed, seen = [], set()
    for net in networks or []:
        if not net.get("name") or net["name"] in seen:
            raise SpecError("networks: %r: each entry needs a name, once" % (net,))
        seen.add(net["name"])
        parsed.append({"name": net["name"], "aliases": [str(a) for a in net.get("aliases") or []]})
    return parsed


def parse_image(image):
    try:
        return image_ref.parse(image)
    except ValueError as e:
        raise SpecError("image: %s" % e)


def image_reference(image, registry=None):
    """(full reference, registry host) for image, the registry being the one the reference names.

    'ghcr.io/org/app:v1' is taken as it is; a reference without a host is Docker Hub's, as Docker reads it
    ('vllm/vllm-openai:v1' -> 'docker.io/vllm/vllm-openai:v1'). An explicit registry option is put in front
    of a reference without a host (its images live there under the same path); one that differs from the
    host a reference names is an error, not a guess."""
    ref = parse_image(image)
    if registry and not image_ref.valid_host(registry):
        raise SpecError("registry: %r is not a registry host[:port] (Docker takes a name for a host only with a "
                        "'.' or a ':' in it, or localhost)" % (registry,))
    if registry and ref.host is None and image_ref.registry_name(registry) != image_ref.DOCKER_HUB:
        return str(parse_image("%s/%s" % (registry, image))), registry
    if registry and image_ref.registry_name(registry) != ref.registry:
        raise SpecError("image %s names registry %s but registry is %s: drop one of them"
                        % (image, ref.registry, registry))
    return (str(ref) if ref.host else ref.canonical), ref.registry


def split_reference(ref):
    """'host/o/app:v1' -> ('host/o/app', 'v1', None); 'host/o/app@sha256:..' -> (repo, None, digest); without
    a tag or a digest, the tag is latest."""
    parsed = parse_image(ref)
    return parsed.repository, parsed.effective_tag, parsed.digest


# ---------------------------------------------------------------------------- spec

class ContainerSpec:
    """What one service's container is: image, run options, env files, health probe.

    Build it with from_params() or from_record(); then load_env() reads the env files. Nothing
    here touches the host except reading the env files."""

    def __init__(self, name, strategy, image, options, env_files, health, registry=None):
        self.name, self.strategy = name, strategy
        self.env_files = list(env_files or [])
        self.health = dict((k, health.get(k)) for k in HEALTH_OPTIONS)
        self.options = self._normalize(dict((k, options.get(k)) for k in RUN_OPTIONS))
        self.image, self.registry = image_reference(image, registry) if image else (None, registry)
        self.digest_ref = None  # set once the image is resolved (or from the record)
        self.environment = None  # set by load_env()
        self.env_file_checksums = None
        self.recorded_env_files = []  # set by from_record(): the env files as the deployment saw them

    @classmethod
    def from_params(cls, p):
        return cls(p["name"], p["strategy"], p.get("image"), p, p.get("env_files"),
                   dict((k, p.get(k)) for k in HEALTH_OPTIONS), registry=p.get("registry"))

    @classmethod
    def from_record(cls, name, strategy, entry):
        """Rebuild what a recorded deployment ran: digest, run options, env files, health probe."""
        recorded = entry.get("spec") or {}
        if entry.get("strategy") != strategy:
            raise SpecError("deployment #%s of %s ran with strategy %s; say strategy: %s"
                            % (entry.get("seq"), name, entry.get("strategy"), entry.get("strategy")))
        if not recorded.get("options"):
            raise SpecError("deployment #%s of %s has no recorded spec (it was recorded by an older version); "
                            "deploy the version you want with state: present" % (entry.get("seq"), name))
        spec = cls(name, strategy, None, recorded["options"], [f["path"] for f in recorded.get("env_files", [])],
                   recorded.get("health") or {})
        spec.image, spec.digest_ref = entry.get("image"), entry.get("digest_ref")
        spec.recorded_env_files = recorded.get("env_files", [])
        return spec

    # ----- validation (everything that can be checked without the host)

    def _normalize(self, o):
        if not _NAME_RE.match(self.name or ""):
            raise SpecError("name: %r: use letters, digits, '_', '.' or '-' (it names containers and files)"
                            % (self.name,))
        if self.strategy not in STRATEGIES:
            raise SpecError("strategy: %r: use one of %s" % (self.strategy, ", ".join(STRATEGIES)))
        if self.strategy == "recreate":
            if o["slots"]:
                raise SpecError("slots are for strategy blue_green; with recreate, use ports")
            o["ports"] = [port_string(parse_port(s)) for s in o["ports"] or []]
            o["slots"] = None
        else:
            if o["ports"]:
                raise SpecError("ports are for strategy recreate; with blue_green, give each slot its ports: "
                                "slots: {blue: {ports: [...]}, green: {ports: [...]}}")
            slots = o["slots"] or {}
            missing = [s for s in switch.SLOTS if not isinstance(slots.get(s), dict)]
            if missing:
                raise SpecError("blue_green needs slots.blue and slots.green (each with its ports); missing: %s"
                                % ", ".join(missing))
            # Same shape as the parameter, so a recorded spec normalises to itself on rollback.
            o["slots"] = dict((s, {"ports": [port_string(parse_port(p)) for p in slots[s].get("ports") or []]})
                              for s in switch.SLOTS)
            clash = set(self._bindings("blue", o)) & set(self._bindings("green", o))
            if clash:
                raise SpecError("slots: blue and green both publish %s; give each slot its own host ports"
                                % ", ".join(sorted(clash)))
            o["ports"] = []
        o["volumes"] = [volume_string(parse_volume(v)) for v in o["volumes"] or []]
        o["gpus"] = parse_gpus(o["gpus"])
        for option in ("memory", "shm_size"):
            if o[option] is not None and not _SIZE_RE.match(str(o[option])):
                raise SpecError("%s: %r: use a number with an optional unit b, k, m or g (512m, 8g)"
                                % (option, o[option]))
        if o.get("stop_timeout") is not None and o["stop_timeout"] < 0:
            raise SpecError("stop_timeout: %r: must be 0 or more seconds" % (o["stop_timeout"],))
        if o["cpus"] is not None and not o["cpus"] > 0:
            raise SpecError("cpus: %r: must be more than 0" % (o["cpus"],))
        o["env"] = parse_env(o["env"])
        mode = o.get("network_mode")
        if mode is not None and mode not in NETWORK_MODES:
            raise SpecError("network_mode: %r: use one of %s" % (mode, ", ".join(NETWORK_MODES)))
        if mode in ("host", "none"):
            if self.strategy == "blue_green":
                raise SpecError("network_mode %s: blue_green needs a port per slot; use strategy recreate" % mode)
            if o["ports"] or o["networks"]:
                raise SpecError("network_mode %s: the container has no ports or networks of its own; "
                                "drop ports and networks" % mode)
        o["networks"] = parse_networks(o["networks"])
        labels = dict((str(k), str(v)) for k, v in (o["labels"] or {}).items())
        reserved = sorted(k for k in labels if k.startswith(LABEL_PREFIX))
        if reserved:
            raise SpecError("labels: %s: the %s prefix is reserved for the module's own labels"
                            % (", ".join(reserved), LABEL_PREFIX))
        o["labels"] = labels
        o["log_options"] = dict((str(k), str(v)) for k, v in (o["log_options"] or {}).items())
        o["command"] = [str(c) for c in o["command"]] if o["command"] is not None else None
        o["security_opts"] = [str(s) for s in o["security_opts"] or []]
        url = (self.health.get("healthcheck") or {}).get("url") or ""
        if "{port}" in url:
            for slot in (switch.SLOTS if self.strategy == "blue_green" else (None,)):
                if not (o["slots"][slot]["ports"] if slot else o["ports"]):
                    raise SpecError("healthcheck.url uses {port}, but %s publishes no port"
                                    % ("slot " + slot if slot else "the container"))
        return o

    @staticmethod
    def _bindings(slot, o):
        return [p.rsplit(":", 1)[0] for p in o["slots"][slot]["ports"]]

    # ----- env files

    def load_env(self, key):
        """Read the env files (as `docker run --env-file` does) and env; errors name file and line."""
        values, checksums = {}, []
        for path in self.env_files:
            try:
                data, _stat = managed_file.read(path)
            except (IOError, OSError) as e:
                raise SpecError("env_files: cannot read %s: %s" % (path, e.strerror or e))
            if data is None:
                raise SpecError("env_files: %s does not exist" % path)
            try:
                values.update(envfile.parse(data, source=path))
            except envfile.EnvFileError as e:
                raise SpecError("env_files: %s" % e)
            checksums.append({"path": path, "checksum": envfile.checksum(data, key)})
        values.update(self.options["env"])
        self.environment, self.env_file_checksums = values, checksums
        return values

    def changed_env_files(self):
        """Recorded env files whose content differs now (rollback: the values are not kept)."""
        recorded = dict((f["path"], f["checksum"]) for f in self.recorded_env_files)
        return [f["path"] for f in self.env_file_checksums if recorded.get(f["path"]) not in (None, f["checksum"])]

    # ----- what the hash covers, and what is recorded

    def summary(self, key):
        """Everything the container gets, with each env value replaced by a keyed hash.

        Safe to store and to show in a diff: it names every env key and holds no env value."""
        summary = dict((k, v) for k, v in self.options.items()
                       if k != "env" and not (k in LATER_OPTIONS and v is None))
        summary["image"] = self.digest_ref
        summary["environment"] = dict(
            (k, hmac.new(key, ("%s=%s" % (k, v)).encode("utf-8"), hashlib.sha256).hexdigest()[:16])
            for k, v in sorted(self.environment.items()))
        return summary

    def hash(self, key):
        """One hash over digest, env and run options; key order does not matter."""
        return spec_hash(self.summary(key))

    def record(self):
        """The spec as kept in the history, to recreate it on rollback. Env file values stay out:
        the files are named with their checksums. `env` values are kept (documented: not for secrets)."""
        return {"options": self.options, "env_files": self.env_file_checksums, "health": self.health}

    # ----- per slot

    def ports_for(self, slot=None):
        return self.options["slots"][slot]["ports"] if slot else self.options["ports"]

    def url_for(self, url, slot=None, option="healthcheck.url"):
        """url with {port} replaced by the slot's first published host port; an error naming `option`
        when it uses {port} and nothing is published."""
        if url and "{port}" in url:
            ports = self.ports_for(slot)
            if not ports:
                raise SpecError("%s uses {port}, but %s publishes no port"
                                % (option, "slot " + slot if slot else "the container"))
            url = url.replace("{port}", str(parse_port(ports[0])["host_port"]))
        return url

    def health_url(self, slot=None):
        """healthcheck.url with {port} replaced by the slot's first published host port."""
        return self.url_for((self.health.get("healthcheck") or {}).get("url"), slot)

    def stop_timeout(self):
        """Seconds the container gets between SIGTERM and SIGKILL, by the module and by Docker itself."""
        value = self.options.get("stop_timeout")
        return DEFAULT_STOP_TIMEOUT if value is None else value

    def env_values(self):
        """Every env value of the service, for redacting app output (see envfile.redact)."""
        return list((self.environment or {}).values())


def spec_hash(summary):
    return hashlib.sha256(json.dumps(summary, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def summary_diff(before, after):
    """Top-level spec keys (and env keys) whose value differs."""
    before, after = before or {}, after or {}
    changed = sorted(k for k in set(before) | set(after) if k != "environment" and before.get(k) != after.get(k))
    return {"options": changed, "env": envfile.key_diff(before.get("environment", {}), after.get("environment", {}))}
