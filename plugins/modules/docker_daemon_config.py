#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: docker_daemon_config
short_description: Merge settings into Docker's daemon.json
version_added: 0.1.0
description:
  - Merges O(options) into Docker's C(daemon.json) and keeps everything else in the file, so entries
    other tools write (the C(runtimes.nvidia) entry of C(nvidia-ctk), for example) survive.
  - Objects are merged key by key, at every level; any other value replaces the old one. A C(null)
    value removes the key.
  - The file is rewritten only when the merged config differs from the old one as data (key order
    and white space do not count), atomically (temp file in the same folder, then a rename), with a
    backup of the old file when O(backup=true). Notify a handler to restart Docker when the task changed
    (M(llmstack.deploy.docker_daemon) restarts it).
  - An existing file that is not a JSON object is an error and is left as it is.
  - Values dockerd would refuse at start are refused before anything is written. Numbers and
    booleans under C(log-opts) are written as strings, as dockerd wants them.
author:
  - llmstack.deploy maintainers (@llmstack)
options:
  path:
    description: The daemon config file. Created if it does not exist; missing folders too (see O(folder_mode)).
    type: path
    default: /etc/docker/daemon.json
  mode:
    description:
      - The file's mode, in octal (a string such as C('0644')) or symbolic form.
      - Unset, an existing file keeps its mode and a new one is C(0644).
    type: raw
  owner:
    description: The file's owner (name or uid). Unset, an existing file keeps its owner.
    type: str
  group:
    description: The file's group (name or gid). Unset, an existing file keeps its group.
    type: str
  folder_mode:
    default: '0755'
  options:
    description:
      - Settings to merge in, with the keys and values C(daemon.json) takes (see the examples).
    type: dict
    required: true
  backup:
    description:
      - Keep a copy of the old file next to it (C(daemon.json.<pid>.<date>~)) before it is replaced.
    type: bool
    default: true
  validate:
    description:
      - Run C(dockerd --validate --config-file <new file>) before the new file replaces the old one
        and fail, changing nothing, if dockerd refuses it.
      - Skipped when C(dockerd) is not installed or is too old to know C(--validate) (before Engine 23,
        for example Debian 12's 20.10); RV(validated) says whether it ran.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.files
  - llmstack.deploy.managed_file
  - llmstack.deploy.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows the old and the new file, a change of its mode, owner or group, and each folder created.
  idempotent:
    support: full
notes:
  - The module does not restart Docker; restart it from a handler notified by this task.
seealso:
  - module: llmstack.deploy.docker_daemon
"""

EXAMPLES = r"""
- name: Log rotation and live restore, keeping what nvidia-ctk wrote
  llmstack.deploy.docker_daemon_config:
    options:
      log-driver: json-file
      log-opts:
        max-size: 10m
        max-file: "3"
      live-restore: true
  notify: Restart the Docker daemon

- name: Drop a key
  llmstack.deploy.docker_daemon_config:
    options:
      debug: null
"""

RETURN = r"""
path:
  description: The daemon config file.
  returned: always
  type: str
  sample: /etc/docker/daemon.json
config:
  description: The config after the merge (what the file holds, or would hold in check mode).
  returned: always
  type: dict
  sample: {"live-restore": true, "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}}
changed_keys:
  description: Dotted paths of the keys added, removed or changed, sorted.
  returned: always
  type: list
  elements: str
  sample: ["live-restore", "log-opts.max-file"]
backup_file:
  description: The copy of the old file.
  returned: when the file was replaced and O(backup=true)
  type: str
  sample: /etc/docker/daemon.json.1234.2025-01-01@10:00:00~
validated:
  description: Whether C(dockerd --validate) checked the new file.
  returned: always
  type: bool
  sample: false
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmstack.deploy.plugins.module_utils import daemon_config as dc, managed_file


def run(module):
    p = module.params
    path = p["path"]
    target = managed_file.ManagedFile(module, new_mode=0o644)
    before = dc.parse(target.content, source=path) if target.exists else {}
    after = dc.merge(before, dc.normalize(p["options"]))
    dc.check(after, source=path)
    rewrite = not target.exists or not dc.same(before, after)
    result = dict(path=path, config=after, changed_keys=dc.changed_keys(before, after), validated=False)
    content = dc.render(after) if rewrite else None
    dockerd = module.get_bin_path("dockerd") if rewrite and p["validate"] else None
    if dockerd:
        # A file of our own, so check mode can validate too without touching the real one.
        probe = os.path.join(module.tmpdir, "daemon.json")
        with open(probe, "w") as f:
            f.write(content)
        result["validated"] = dc.dockerd_validate(
            lambda argv: module.run_command(argv, environ_update={"LC_ALL": "C"}), dockerd, probe)
    # Atomic (temp file, fsync, rename), so dockerd never reads half a file.
    result.update(target.update(content, backup=p["backup"]))
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/etc/docker/daemon.json"),
            options=dict(type="dict", required=True),
            backup=dict(type="bool", default=True),
            validate=dict(type="bool", default=True),
            folder_mode=dict(type="raw", default="0755"),
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    try:
        module.exit_json(**run(module))
    except dc.DaemonConfigError as e:
        module.fail_json(msg=str(e))
    except OSError as e:
        module.fail_json(msg="%s: %s" % (module.params["path"], e.strerror or e))


if __name__ == "__main__":
    main()
