# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker SDK in one place: connection, registry login/resolve/pull, a container from a
ContainerSpec, and errors that say what to do.

Works with the SDK Ubuntu 24.04 and Debian 12 ship (python3-docker 5.x) and with 7.x: only APIs
present in both are used. Registry credentials stay in memory (the SDK's login keeps them in the
client), nothing is written to ~/.docker. Every SDK failure leaves here as a DockerError.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import signal
import time
from contextlib import contextmanager

from ansible.module_utils.basic import env_fallback

from ansible_collections.llmstack.deploy.plugins.module_utils import daemon_config
from ansible_collections.llmstack.deploy.plugins.module_utils import spec as specs

try:
    import docker
    import docker.errors
    import docker.types
    import requests.exceptions

    HAS_DOCKER = True
    SDK_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)
except ImportError:
    HAS_DOCKER = False
    SDK_ERRORS = ()

DEFAULT_HOST = "unix:///var/run/docker.sock"
# The Docker connection option of every module in the docker action group (doc fragment llmstack.deploy.docker).
DOCKER_ARGUMENT_SPEC = dict(
    docker_host=dict(type="str", fallback=(env_fallback, ["DOCKER_HOST"]), default=DEFAULT_HOST),
)
# moby registers its `gpu` device driver only if this hook is on the daemon's PATH.
NVIDIA_HOOK = "nvidia-container-runtime-hook"
DAEMON_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
# What the daemon says when it can't reach a registry (as opposed to the registry saying no).
UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "tls handshake timeout", "context deadline",
               "network is unreachable", "no route to host", "connection reset", "server misbehaving",
               "502 bad gateway", "503 service unavailable", "504 gateway", "timeout exceeded")


class DockerError(Exception):
    """A failure with a message that says what to do; never contains a token."""


class RegistryUnreachable(DockerError):
    """The registry could not be reached (as opposed to refusing us)."""


# -------------------------------------------------------------------------- errors

def error_text(err):
    text = getattr(err, "explanation", None) or str(err)
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def is_unreachable(err):
    low = error_text(err).lower()
    return isinstance(err, requests.exceptions.ConnectionError) or any(s in low for s in UNREACHABLE)


def explain(err, registry=False):
    """The daemon's message, with what to do where it is recognised.

    registry=True for login/resolve/pull: only there does "denied" mean the token and "not found"
    mean a missing image or tag."""
    text = error_text(err)
    low = text.lower()
    status = getattr(err, "status_code", None)
    if registry:
        if is_unreachable(err):
            return "the registry can't be reached (%s)" % text
        if status == 401 or any(s in low for s in ("unauthorized", "authentication required", "incorrect username",
                                                   "no basic auth credentials")):
            return "unauthorized (check the registry username and token, and that the token can read packages)"
        if "denied" in low:
            return "access denied (the token can't read this package, or the package is not visible to it): %s" % text
        if any(s in low for s in ("manifest unknown", "name unknown", "not found")):
            return "no such image or tag (%s)" % text
        return text
    if "could not select device driver" in low:
        return ("this host's Docker has no NVIDIA GPU support (%s): install the NVIDIA Container Toolkit and "
                "restart Docker" % text)
    if "port is already allocated" in low or "address already in use" in low:
        return "a published port is already in use on this host (%s)" % text
    if "is already in use by container" in low:
        return "the name is taken by a container that is not part of this service; rename or remove it (%s)" % text
    if "permission denied" in low and "docker.sock" in low:
        return "no permission to use the Docker socket (%s): run the task as root (become: true)" % text
    if isinstance(err, requests.exceptions.Timeout) or "read timed out" in low:
        return "the Docker daemon did not answer in time (%s); is it overloaded or hung? (systemctl status docker)" % text
    return text


@contextmanager
def call(what, registry=False):
    """Run SDK calls; any SDK failure becomes DockerError('<what>: <explanation>')."""
    try:
        yield
    except SDK_ERRORS as e:
        if registry and is_unreachable(e):
            raise RegistryUnreachable("%s: %s" % (what, explain(e, registry=True)))
        raise DockerError("%s: %s" % (what, explain(e, registry=registry)))


# ---------------------------------------------------------------------- connection

def connect(base_url=None, timeout=120):
    if not HAS_DOCKER:
        raise DockerError("the docker Python SDK is missing on this host: install python3-docker "
                          "(apt) or `pip install docker`")
    try:
        client = docker.DockerClient(base_url=base_url or DEFAULT_HOST, timeout=timeout)
        client.ping()
        return client
    except Exception as e:  # the SDK raises several unrelated types for "no daemon"
        raise DockerError("cannot reach the Docker daemon at %s: %s. Is docker running "
                          "(systemctl status docker) and is this user allowed to use it?"
                          % (base_url or DEFAULT_HOST, e))


def is_local(base_url):
    return (base_url or DEFAULT_HOST).startswith("unix://")


def gpu_support_missing(base_url):
    """A reason this host's daemon can't give GPUs (checked before anything is touched), or None.

    Only a local daemon can be checked; a remote one reports it at container start instead."""
    if not is_local(base_url):
        return None
    if any(os.access(os.path.join(d, NVIDIA_HOOK), os.X_OK) for d in DAEMON_PATH):
        return None
    return ("gpus: this host has no %s, so Docker can't give a container GPUs: install the NVIDIA Container "
            "Toolkit (the nvidia_container_toolkit role) and restart Docker" % NVIDIA_HOOK)


def restart_to_free_port(client, base_url, run_command, why, log, sleep=time.sleep, wait=60):
    """After a dockerd crash the daemon may keep a port allocated to a container that no longer exists, and
    only a restart frees it. With live-restore every container keeps running meanwhile; without, say so
    and leave it to the operator: False. True once the restarted daemon answers."""
    with call("read the daemon's settings"):
        live_restore = client.info().get("LiveRestoreEnabled")
    if not live_restore or not is_local(base_url):
        return False
    log("restarting the Docker daemon (live-restore keeps every container running): %s" % why)
    ok, message = daemon_config.restart_daemon(run_command)
    if not ok:
        raise DockerError("%s; restarting Docker failed too: %s" % (why, message))
    deadline = time.monotonic() + wait
    while True:
        try:
            client.ping()
            return True
        except Exception:  # pylint: disable=broad-exception-caught
            if time.monotonic() > deadline:
                raise DockerError("%s; Docker did not answer within %d s of its restart" % (why, wait))
            sleep(1)


# ------------------------------------------------------------------------ registry

class Registry:
    """Login, resolve a reference to a digest, and pull only when the image is not local."""

    def __init__(self, client, host=None, username=None, password=None):
        self.client, self.host = client, host
        self.auth = {"username": username, "password": password} if username and password else None
        self.logged_in = False

    def login(self):
        """Log in on first use only, so a rollback from local images needs no registry."""
        if self.auth and not self.logged_in:
            with call("login to registry %s as %s" % (self.host, self.auth["username"]), registry=True):
                self.client.login(registry=self.host, reauth=True, **self.auth)
            self.logged_in = True

    def local_image(self, ref):
        with call("inspect image %s" % ref):
            try:
                return self.client.images.get(ref)
            except docker.errors.ImageNotFound:
                return None

    def resolve(self, ref, pull=True):
        """(image object, digest ref 'repo@sha256:...') for a full reference; pulls layers only if missing.

        With pull=False (check mode) the image object is None when it is not local yet."""
        repo, _tag, digest = specs.split_reference(ref)
        if not digest:
            # A tag may have moved: ask the registry (a manifest request, no layers) what it points to.
            self.login()
            with call("cannot resolve %s in the registry" % ref, registry=True):
                digest = self.client.images.get_registry_data(ref, auth_config=self.auth).id
        digest_ref = "%s@%s" % (repo, digest)
        local = self.local_image(digest_ref)
        if local is not None or not pull:
            return local, digest_ref
        self.login()
        with call("cannot pull %s" % ref, registry=True):
            self.client.images.pull(repo, tag=digest, auth_config=self.auth)
        local = self.local_image(digest_ref)
        if local is None:
            raise DockerError("pulled %s but cannot find %s locally" % (ref, digest_ref))
        return local, digest_ref


# ---------------------------------------------------------------------- containers

def device_requests(gpus):
    """A ContainerSpec's normalised gpus -> Docker device requests (NVIDIA runtime)."""
    if not gpus:
        return None
    if gpus == "all":
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if "count" in gpus:
        return [docker.types.DeviceRequest(count=gpus["count"], capabilities=[["gpu"]])]
    return [docker.types.DeviceRequest(device_ids=list(gpus["device_ids"]), capabilities=[["gpu"]])]


def container_args(spec, name, slot, labels):
    """The SDK's containers.create() arguments for spec (the slot's ports for blue_green)."""
    o = spec.options
    ports = {}
    for text in spec.ports_for(slot):
        port = specs.parse_port(text)
        ports.setdefault(port["container"], []).append(
            (port["host_ip"], port["host_port"]) if port["host_ip"] else port["host_port"])
    kwargs = dict(
        name=name, command=o["command"], labels=labels, detach=True,
        # A list keeps exactly what the env files said; the engine applies it like --env-file's list.
        environment=["%s=%s" % item for item in sorted(spec.environment.items())],
        ports=dict((k, v[0] if len(v) == 1 else v) for k, v in ports.items()) or None,
        volumes=list(o["volumes"]) or None,
        restart_policy={"Name": o["restart_policy"]} if o["restart_policy"] not in (None, "no") else None,
        mem_limit=o["memory"], nano_cpus=int(o["cpus"] * 1e9) if o["cpus"] else None,
        device_requests=device_requests(o["gpus"]), ipc_mode=o["ipc_mode"], shm_size=o["shm_size"],
        user=o["user"], read_only=o["read_only"], security_opt=o["security_opts"] or None,
        log_config={"Type": o["log_driver"], "Config": o["log_options"]} if o["log_driver"] else None,
        # Docker's own stop (an operator's `docker stop`, a daemon shutdown) waits as long as the module's.
        stop_timeout=o.get("stop_timeout"),
    )
    if o.get("network_mode"):
        kwargs["network_mode"] = o["network_mode"]
    elif o["networks"]:
        kwargs["network"] = o["networks"][0]["name"]
    return dict((k, v) for k, v in kwargs.items() if v is not None)


def check_networks(client, spec):
    """Every network the spec joins must exist (checked before anything is touched)."""
    for net in spec.options["networks"]:
        with call("inspect network %s" % net["name"]):
            try:
                found = client.networks.get(net["name"])
            except docker.errors.NotFound:
                found = None
        if found is None or found.name != net["name"]:
            raise DockerError("networks: %s does not exist on this host; create it first (docker network create %s)"
                              % (net["name"], net["name"]))


def create(client, image, kwargs):
    """containers.create(), plus what only the low-level API takes (stop_timeout, in SDK 5.x and 7.x alike)."""
    kwargs = dict(kwargs)
    low_level = dict((k, kwargs.pop(k)) for k in ("stop_timeout",) if k in kwargs)
    if not low_level:
        return client.containers.create(image, **kwargs)
    from docker.models.containers import _create_container_args  # pylint: disable=import-outside-toplevel
    kwargs.update(image=image, version=client.api._version)  # pylint: disable=protected-access
    create_kwargs = _create_container_args(kwargs)
    create_kwargs.update(low_level)
    return client.containers.get(client.api.create_container(**create_kwargs)["Id"])


def run_container(client, spec, name, slot, labels, log=None):
    """Create, connect and start a container from spec. On any failure, remove what this call created."""
    networks = spec.options["networks"]
    container = None
    try:
        container = create(client, spec.digest_ref, container_args(spec, name, slot, labels))
        for net in networks:
            network = client.networks.get(net["name"])
            if net is networks[0]:
                network.disconnect(container)  # created on it already: reconnect to set the aliases
            network.connect(container, aliases=net["aliases"] or None)
        try:
            container.start()
        except SDK_ERRORS as e:
            if not release_stale_proxies(client, error_text(e), log):
                raise
            start_again(container, name)
        return container
    except Exception as e:
        try:
            remove(container)  # only what this call created; a stranger holding the name stays
        except DockerError:
            pass
        if isinstance(e, SDK_ERRORS) and not isinstance(e, StalePort):
            raise DockerError("cannot start %s: %s" % (name, explain(e)))
        raise


class StalePort(DockerError):
    """The daemon still counts a published port as allocated to a container that a crash left behind."""


def start_again(container, name, attempts=3, pause=1.0):
    """Start once more after stale proxies were stopped; the daemon may take a moment to let the port go."""
    for attempt in range(attempts):
        try:
            container.start()
            return
        except SDK_ERRORS as e:
            text = error_text(e)
            if attempt == attempts - 1 or not BIND_FAILED.search(text):
                if BIND_FAILED.search(text):
                    raise StalePort("cannot start %s: the Docker daemon still holds the port for a container that "
                                    "a crash left behind, though its docker-proxy was stopped (%s); a restart of "
                                    "Docker frees it (with live-restore the containers keep running)" % (name, text))
                raise
            time.sleep(pause)


BIND_FAILED = re.compile(r"Bind for (\S+):(\d+) failed: port is already allocated")


def stale_proxies(bound, container_ips, proc="/proc"):
    """PIDs of docker-proxy processes that hold bound ((host_ip, host_port)) for an IP no running container has.

    A dockerd killed while it started a container leaves such a proxy: the daemon that comes back (live-restore)
    restores it, and it outlives the container, so the port stays allocated until it is stopped."""
    found = []
    for pid in (p for p in os.listdir(proc) if p.isdigit()):
        try:
            with open(os.path.join(proc, pid, "cmdline"), "rb") as f:
                argv = f.read().decode("utf-8", "replace").split("\0")
        except (IOError, OSError):
            continue  # gone meanwhile
        if os.path.basename(argv[0]) != "docker-proxy":
            continue
        args = dict(zip(argv[1::2], argv[2::2]))
        if ((args.get("-host-ip"), args.get("-host-port")) == bound
                and args.get("-container-ip") not in container_ips):
            found.append(int(pid))
    return found


def release_stale_proxies(client, error, log=None):
    """After 'port is already allocated': stop the stale docker-proxies that hold the port, if that is what holds
    it. True if one was stopped (start again); a real process or a live container keeps the port."""
    match = BIND_FAILED.search(error)
    if not match or not os.path.isdir("/proc"):
        return False
    # Running containers only: a stopped one has no proxy, and the one being started may have got the very IP
    # the stale proxy points at (the network hands a freed address out again).
    with call("list containers"):
        ips = set(net.get("IPAddress") for c in client.api.containers()
                  for net in ((c.get("NetworkSettings") or {}).get("Networks") or {}).values())
    pids = stale_proxies((match.group(1), match.group(2)), ips)
    for pid in pids:
        if log:
            log("stopping docker-proxy %d: it holds %s:%s for a container that no longer exists (left by a "
                "Docker daemon that was killed)" % (pid, match.group(1), match.group(2)))
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while any(os.path.exists("/proc/%d" % pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return bool(pids)


def manually_stopped(client, container, base_url=None):
    """dockerd's own mark of a container stopped or signalled through its API (`docker stop`, `docker kill`),
    kept in <DockerRootDir>/containers/<id>/config.v2.json and not shown by `docker inspect`: an unless-stopped
    container so marked is not started again when the daemon starts (a reboot). Only a start clears it.
    None when it can't be read: a remote daemon, or no permission on the daemon's folder."""
    if not is_local(base_url):
        return None
    try:
        root = client.info()["DockerRootDir"]
        with open(os.path.join(root, "containers", container.id, "config.v2.json"), encoding="utf-8") as f:
            return bool(json.load(f).get("HasBeenManuallyStopped"))
    except (OSError, ValueError, KeyError, docker.errors.APIError):
        return None


def find(client, name):
    """The container called exactly name, or None (the daemon also matches id prefixes: not here)."""
    with call("inspect container %s" % name):
        try:
            container = client.containers.get(name)
        except docker.errors.NotFound:
            return None
    return container if container.name == name else None


def labelled(client, label, value=None):
    """Summaries ({'Id', 'Names', 'Image', 'ImageID', 'Labels', 'State'}) of containers with a label.

    The low-level list inspects nothing, so a container removed meanwhile can't fail it."""
    with call("list containers"):
        return client.api.containers(all=True, filters={"label": label if value is None else "%s=%s" % (label, value)})


def image_ids_in_use(client):
    with call("list containers"):
        return set(c.get("ImageID") for c in client.api.containers(all=True))


def host_pids(container):
    """The host PIDs of a running container's processes (what nvidia-smi on the host lists)."""
    with call("list the processes of %s" % container.name):
        top = container.top()
    titles = top.get("Titles") or []
    if "PID" not in titles:
        return []
    column = titles.index("PID")
    return [row[column] for row in top.get("Processes") or []]


def logs_tail(container, lines=30):
    try:
        return container.logs(tail=lines).decode("utf-8", "replace")
    except Exception:  # the container may already be gone
        return ""


def remove(container):
    """Remove a container (its volumes stay); gone already is fine."""
    if container is None:
        return
    with call("remove container %s" % container.name):
        try:
            container.remove(force=True, v=False)
        except docker.errors.NotFound:
            pass
