# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host's readiness record: what it runs (each service's image and digest, from its deployment history) and
when a converge that verified itself first saw those versions, as the operators' user-data wrote it to SSM.

The record goes to an SSM String parameter (<prefix>/status/<host>) or, on a host without SSM, to a file. It is
rewritten only when the versions change, so a converge that changes nothing leaves it alone (and its time says
since when these versions serve). No env value is read: histories hold images and digests only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from ansible_collections.llmstack.deploy.plugins.module_utils import managed_file, status


def versions(report):
    """{service: {image, digest}} of a stack_status report, services without a deployment left out."""
    return dict((s["name"], {"image": s["image"], "digest": s["digest"]})
                for s in report["services"] if s.get("image"))


def record(host, found, now=None):
    return {"host": host, "versions": found,
            "verified": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now if now is not None else time.time()))}


def parse(text):
    """A stored record, or None when there is none or it is not one of ours (it is then rewritten)."""
    if text is None:
        return None
    try:
        old = json.loads(text)
    except ValueError:
        return None
    return old if isinstance(old, dict) and isinstance(old.get("versions"), dict) else None


def dumps(rec):
    return json.dumps(rec, sort_keys=True, separators=(",", ":"))


class FileTarget:
    """The record in a file on the host (0644: it holds no secret)."""

    def __init__(self, path):
        self.path = path
        self.where = path

    def read(self):
        data, _st = managed_file.read(self.path)
        return None if data is None else data.decode("utf-8", "replace")

    def write(self, text):
        managed_file.make_folders(managed_file.missing_folders(self.path), 0o755)
        managed_file.write_atomic(self.path, text + "\n", mode=0o644)


class SsmTarget:
    """The record in an SSM String parameter (GetParameter, PutParameter)."""

    def __init__(self, client, name):
        self.client = client
        self.name = name
        self.where = "SSM parameter %s" % name

    def read(self):
        return self.client.get_one(self.name)

    def write(self, text):
        self.client.put(self.name, text, description="llmstack.deploy readiness: what this host runs, verified")


def update(target, host, found, check_mode=False, now=None):
    """(changed, record, diff): the stored record when its host and versions are these, else a new one written
    (not in check mode)."""
    old = parse(target.read())
    if old is not None and old.get("host") == host and old.get("versions") == found:
        return False, old, {"before": dumps(old) + "\n", "after": dumps(old) + "\n"}
    new = record(host, found, now)
    if not check_mode:
        target.write(dumps(new))
    before = dumps(old) + "\n" if old is not None else ""
    return True, new, {"before": before, "after": dumps(new) + "\n",
                       "before_header": target.where, "after_header": target.where}


def collect_versions(state_dir, services=None):
    """The versions this host runs, from the deployment histories alone (status.collect without Docker, disk or
    GPU work)."""
    return versions(status.collect(None, state_dir, services=services, disk=False, gpu_mode="never"))
