# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tree_hash: the content hash of a folder on the controller (a frontend's build), which names its release.

'/srv/frontend/dist' | llmstack.deploy.tree_hash      -> 'c0ffee...' (64 hex)
'/srv/frontend/dist' | llmstack.deploy.tree_hash(16)  -> its first 16

The same files give the same hash wherever the folder is: relative paths, contents and whether a file is
executable count; times, owners and the folder's own path do not. Documentation: tree_hash.yml beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os

from ansible.errors import AnsibleFilterError


def tree_hash(path, length=64):
    """The folder's hash, its first `length` hex digits."""
    if not isinstance(path, str) or not os.path.isdir(path):
        raise AnsibleFilterError("tree_hash: %r is not a folder on the controller" % (path,))
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            digest.update(("%s\0%d\0" % (rel, os.access(full, os.X_OK))).encode("utf-8", "surrogateescape"))
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            digest.update(b"\0")
    return digest.hexdigest()[:int(length)]


class FilterModule(object):
    def filters(self):
        return {"tree_hash": tree_hash}
