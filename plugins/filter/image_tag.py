# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""image_tag: the same image reference with another tag (or digest).

'host:5443/org/app:1.0' | llmstack.deploy.image_tag('1.4.2')  -> 'host:5443/org/app:1.4.2'
'ghcr.io/org/app@sha256:...' | llmstack.deploy.image_tag('v2')  -> 'ghcr.io/org/app:v2'
'ghcr.io/org/app:1.0' | llmstack.deploy.image_tag('sha256:<64 hex>') -> 'ghcr.io/org/app@sha256:<64 hex>'

The reference is parsed by module_utils/image_ref.py (Docker's grammar), as the modules parse it. A registry's
port is not a tag, and a digest, with or without a tag before it, is replaced whole; the registry and
repository stay as written (a Docker Hub short name stays short). Documentation: image_tag.yml beside this file.

image_version: the version an image's tag names ('nginx:1.27.3-bookworm' -> '1.27.3'), '' if none (image_version.yml).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.errors import AnsibleFilterError

from ansible_collections.llmstack.deploy.plugins.module_utils import image_ref


def retag(image, tag):
    """image with its tag (and any digest) replaced by tag; a tag of the form sha256:<hex> pins the digest."""
    # A tag from YAML may be a number, or read from SSM or a file with a newline after it.
    tag = ("" if tag is None else str(tag)).strip()
    return str(image_ref.parse(image).with_tag(tag))


def image_tag(image, tag):
    try:
        return retag(image, tag)
    except ValueError as e:
        raise AnsibleFilterError("image_tag: %s" % e)


def image_version(image):
    """The version its tag names: 'nginx:1.27.3-bookworm' -> '1.27.3'; '' for a digest or a tag that is no version."""
    try:
        tag = image_ref.parse(image).tag or ""
    except ValueError as e:
        raise AnsibleFilterError("image_version: %s" % e)
    version = tag.lstrip("v").split("-", 1)[0]
    return version if re.match(r"^[0-9]+(\.[0-9]+)*$", version) else ""


class FilterModule(object):
    def filters(self):
        return {"image_tag": image_tag, "image_version": image_version}
