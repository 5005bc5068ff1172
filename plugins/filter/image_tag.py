# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""image_tag: the same image reference with another tag (or digest).

'host:5443/org/app:1.0' | llmstack.deploy.image_tag('1.4.2')  -> 'host:5443/org/app:1.4.2'
'ghcr.io/org/app@sha256:...' | llmstack.deploy.image_tag('v2')  -> 'ghcr.io/org/app:v2'
'ghcr.io/org/app:1.0' | llmstack.deploy.image_tag('sha256:<64 hex>') -> 'ghcr.io/org/app@sha256:<64 hex>'

A registry's port is not a tag (only the last path segment can carry one), and a digest, with or without a
tag before it, is replaced whole. Documentation: image_tag.yml beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.errors import AnsibleFilterError

# Docker's grammar (distribution/reference): a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; a digest is
# algorithm:hex (sha256 is the one registries use, 64 hex digits).
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# A repository path: lower-case components separated by / (a registry host may have upper case and a port).
COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                     r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$")


def split_image(image):
    """'host:5443/org/app:1.0@sha256:..' -> ('host:5443/org/app', '1.0', 'sha256:..'); tag and digest may be None.

    Raises ValueError naming what is wrong with the reference."""
    if not isinstance(image, str) or not image.strip():
        raise ValueError("%r is not an image reference" % (image,))
    if image != image.strip() or any(c.isspace() for c in image):
        raise ValueError("%r is not an image reference (it contains white space)" % (image,))
    rest, digest = image, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise ValueError("%r: %r is not a sha256 digest" % (image, digest))
    # Only the last path segment can carry a tag: host:5443/org/app has a port, not a tag.
    head, _sep, last = rest.rpartition("/")
    tag = None
    if ":" in last:
        last, tag = last.split(":", 1)
        if not TAG_RE.match(tag):
            raise ValueError("%r: %r is not a valid tag" % (image, tag))
    repo = "%s/%s" % (head, last) if head else last
    parts = repo.split("/")
    host = parts[0] if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"
                                           or parts[0] != parts[0].lower()) else None
    path = parts[1:] if host else parts
    if host is not None and not HOST_RE.match(host):
        raise ValueError("%r: %r is not a registry host[:port]" % (image, host))
    if not path or not all(COMPONENT_RE.match(p) for p in path):
        raise ValueError("%r: the repository %r is not valid (lower-case names separated by /)"
                         % (image, "/".join(path)))
    return repo, tag, digest


def retag(image, tag):
    """image with its tag (and any digest) replaced by tag; a tag of the form sha256:<hex> pins the digest."""
    if not isinstance(tag, str):
        tag = "" if tag is None else str(tag)
    tag = tag.strip()
    repo, _old_tag, _old_digest = split_image(image)
    if DIGEST_RE.match(tag):
        return "%s@%s" % (repo, tag)
    if not TAG_RE.match(tag):
        raise ValueError("%r is not a valid image tag (letters, digits, _ . -, at most 128, not starting with . "
                         "or -) or a sha256:<64 hex> digest" % (tag,))
    return "%s:%s" % (repo, tag)


def image_tag(image, tag):
    try:
        return retag(image, tag)
    except ValueError as e:
        raise AnsibleFilterError("image_tag: %s" % e)


class FilterModule(object):
    def filters(self):
        return {"image_tag": image_tag}
