# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image references, parsed once, by Docker's grammar (distribution/reference).

  [host[:port]/]path[:tag][@sha256:<64 hex>]

The first path component is a registry host only if it has a '.' or a ':', is 'localhost', or has upper-case
letters (repository paths are lower case); otherwise the reference is Docker Hub's (docker.io), where a
one-component path is an official image under library/ (nginx:1.27 is docker.io/library/nginx:1.27). Only
the last component can carry a tag, so a registry port is never one. Without a tag or a digest, Docker pulls
`latest`.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
from collections import namedtuple

DOCKER_HUB = "docker.io"
# Docker Hub's old name, which Docker still reads as docker.io.
LEGACY_DOCKER_HUB = "index.docker.io"
OFFICIAL_NAMESPACE = "library"
DEFAULT_TAG = "latest"
NAME_MAX = 255

TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# Docker accepts other algorithms in principle; registries use sha256, and so does everything here.
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                     r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$")


def is_host(component):
    """Whether Docker reads a reference's first path component as a registry host."""
    return "." in component or ":" in component or component == "localhost" or component != component.lower()


def valid_host(host):
    """Whether host (a registry option, say) is a registry host[:port] Docker would read as one."""
    return isinstance(host, str) and is_host(host) and bool(HOST_RE.match(host))


def registry_name(host):
    """The registry a host names, with Docker Hub's legacy name folded into docker.io."""
    return DOCKER_HUB if host == LEGACY_DOCKER_HUB else host


class ImageRef(namedtuple("ImageRef", ["host", "path", "tag", "digest"])):
    """A parsed reference. host, path, tag and digest are as written (None when absent); the properties
    give what Docker makes of them."""

    __slots__ = ()

    @property
    def registry(self):
        """The registry to pull from and log in to: the host written, else Docker Hub."""
        return registry_name(self.host) if self.host else DOCKER_HUB

    @property
    def repository(self):
        """The reference as written, without tag or digest ('host:5443/org/app', 'vllm/vllm-openai')."""
        return "%s/%s" % (self.host, self.path) if self.host else self.path

    @property
    def name(self):
        """The fully qualified repository: registry/path, with library/ for a Docker Hub official image."""
        path = self.path
        if self.registry == DOCKER_HUB and "/" not in path:
            path = "%s/%s" % (OFFICIAL_NAMESPACE, path)
        return "%s/%s" % (self.registry, path)

    @property
    def effective_tag(self):
        """The tag Docker uses: as written, else `latest` unless a digest pins the image (then None)."""
        if self.tag is None and self.digest is None:
            return DEFAULT_TAG
        return self.tag

    @property
    def canonical(self):
        """name[:tag][@digest], with `latest` made explicit ('nginx' -> 'docker.io/library/nginx:latest')."""
        return self._suffixed(self.name, self.effective_tag)

    def with_tag(self, tag):
        """The same repository with tag, dropping the old tag and digest; a tag of the form sha256:<64 hex>
        pins that digest instead."""
        if isinstance(tag, str) and DIGEST_RE.match(tag):
            return self._replace(tag=None, digest=tag)
        if not isinstance(tag, str) or not TAG_RE.match(tag):
            raise ValueError("%r is not a valid image tag (letters, digits, _ . -, at most 128, not starting with . "
                             "or -) or a sha256:<64 hex> digest" % (tag,))
        return self._replace(tag=tag, digest=None)

    def _suffixed(self, base, tag):
        return base + (":" + tag if tag else "") + ("@" + self.digest if self.digest else "")

    def __str__(self):
        """The reference as written."""
        return self._suffixed(self.repository, self.tag)


def parse(image):
    """ImageRef of a reference; ValueError naming the reference and what is wrong with it."""
    if not isinstance(image, str) or not image.strip():
        raise ValueError("%r is not an image reference" % (image,))
    if any(c.isspace() for c in image):
        raise ValueError("%r is not an image reference (it contains white space)" % (image,))
    rest, digest = image, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise ValueError("%r: %r is not a sha256 digest" % (image, digest))
    # Only the last path component can carry a tag: host:5443/org/app has a port, not a tag.
    head, _sep, last = rest.rpartition("/")
    tag = None
    if ":" in last:
        last, tag = last.split(":", 1)
        if not TAG_RE.match(tag):
            raise ValueError("%r: %r is not a valid tag" % (image, tag))
    parts = (head.split("/") if head else []) + [last]
    host = parts.pop(0) if len(parts) > 1 and is_host(parts[0]) else None
    if host is not None and not HOST_RE.match(host):
        raise ValueError("%r: %r is not a registry host[:port]" % (image, host))
    path = "/".join(parts)
    if not all(COMPONENT_RE.match(p) for p in parts):
        raise ValueError("%r: the repository %r is not valid (lower-case names separated by /)" % (image, path))
    ref = ImageRef(host, path, tag, digest)
    if len(ref.repository) > NAME_MAX:
        raise ValueError("%r: the repository is longer than %d characters" % (image, NAME_MAX))
    return ref
