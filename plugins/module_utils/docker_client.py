# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker SDK in one place: connection, registry login/resolve/pull, container specs.

Works with the SDK Ubuntu 24.04 and Debian 12 ship (python3-docker 5.x) and with 7.x:
only APIs present in both are used. Registry credentials stay in memory (the SDK's
login keeps them in the client), nothing is written to ~/.docker.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    import docker
    import docker.errors
    import docker.types

    HAS_DOCKER = True
except ImportError:
    HAS_DOCKER = False


class DockerError(Exception):
    """A failure with a message that says what to do; never contains a token."""


def connect(base_url=None, timeout=120):
    if not HAS_DOCKER:
        raise DockerError("the docker Python SDK is missing on this host: install python3-docker "
                          "(apt) or `pip install docker`")
    try:
        client = docker.DockerClient(base_url=base_url or "unix:///var/run/docker.sock", timeout=timeout)
        client.ping()
        return client
    except Exception as e:  # the SDK raises several unrelated types for "no daemon"
        raise DockerError("cannot reach the Docker daemon at %s: %s. Is docker running "
                          "(systemctl status docker) and is this user allowed to use it?"
                          % (base_url or "/var/run/docker.sock", e))


def split_image(image):
    """'ghcr.io/o/app:v1' -> ('ghcr.io/o/app', 'v1', None); 'repo@sha256:..' -> (repo, None, digest)."""
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, None, digest
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = image.rsplit(":", 1)
        return repo, tag, None
    return image, "latest", None


class Registry:
    """Login, resolve a reference to a digest, and pull only when the image is not local."""

    def __init__(self, client, registry=None, username=None, password=None):
        self.client = client
        self.registry = registry
        self.auth = {"username": username, "password": password} if username and password else None
        self.logged_in = False

    def login(self):
        """Log in on first use only, so a rollback from local images needs no registry."""
        if self.auth and not self.logged_in:
            try:
                self.client.login(registry=self.registry, reauth=True, **self.auth)
            except docker.errors.APIError as e:
                raise DockerError("login to registry %s as %s failed: %s"
                                  % (self.registry, self.auth["username"], explain(e)))
            self.logged_in = True

    def local_image(self, ref):
        try:
            return self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None

    def resolve(self, image, pull=True):
        """(image object, digest ref 'repo@sha256:...') for image; pulls layers only if missing.

        With pull=False (check mode) the image object is None when it is not local yet."""
        repo, tag, digest = split_image(image)
        if not digest:
            # A tag may have moved: ask the registry (a manifest request, no layers) what it points to.
            self.login()
            try:
                digest = self.client.images.get_registry_data(image, auth_config=self.auth).id
            except docker.errors.APIError as e:
                raise DockerError("cannot resolve %s in the registry: %s" % (image, explain(e)))
        ref = "%s@%s" % (repo, digest)
        local = self.local_image(ref)
        if local is not None or not pull:
            return local, ref
        self.login()
        try:
            self.client.images.pull(repo, tag=digest, auth_config=self.auth)
        except docker.errors.APIError as e:
            raise DockerError("cannot pull %s: %s" % (image, explain(e)))
        local = self.local_image(ref)
        if local is None:
            raise DockerError("pulled %s but cannot find %s locally" % (image, ref))
        return local, ref


def explain(err):
    text = getattr(err, "explanation", None) or str(err)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    low = text.lower()
    if "unauthorized" in low or "authentication required" in low or "denied" in low:
        return "unauthorized (check the registry username and token, and that the token can read packages)"
    if "manifest unknown" in low or "not found" in low:
        return "no such image or tag (%s)" % text
    return text


def parse_port(spec):
    """'127.0.0.1:8001:8000' -> ('8000/tcp', ('127.0.0.1', 8001)); '8001:8000/udp' etc."""
    proto = "tcp"
    if "/" in spec:
        spec, proto = spec.rsplit("/", 1)
    parts = spec.split(":")
    if len(parts) == 3:
        return "%s/%s" % (parts[2], proto), (parts[0], int(parts[1]))
    if len(parts) == 2:
        return "%s/%s" % (parts[1], proto), int(parts[0])
    raise DockerError("port %r: use [host_ip:]host_port:container_port[/proto]" % spec)


def parse_volume(spec):
    """'src:dst[:mode]' -> (src, {'bind': dst, 'mode': mode})."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise DockerError("volume %r: use source:target[:ro|rw]" % spec)
    return parts[0], {"bind": parts[1], "mode": parts[2] if len(parts) == 3 else "rw"}


def device_requests(gpus):
    """'all' | a count | a list of device ids -> Docker device requests (NVIDIA runtime)."""
    if gpus in (None, "", 0, "0"):
        return None
    if gpus == "all":
        return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, (list, tuple)):
        return [docker.types.DeviceRequest(device_ids=[str(g) for g in gpus], capabilities=[["gpu"]])]
    try:
        return [docker.types.DeviceRequest(count=int(gpus), capabilities=[["gpu"]])]
    except ValueError:
        return [docker.types.DeviceRequest(device_ids=str(gpus).split(","), capabilities=[["gpu"]])]


def find(client, name):
    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def logs_tail(container, lines=30):
    try:
        return container.logs(tail=lines).decode("utf-8", "replace")
    except Exception:  # the container may already be gone
        return ""


def remove(container, timeout=10):
    if container is None:
        return
    try:
        container.remove(force=True, v=False)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError:
        container.stop(timeout=timeout)
        container.remove(force=True)
