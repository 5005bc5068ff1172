#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: docker_daemon
short_description: Restart this host's Docker daemon and wait until it answers
version_added: 0.2.0
description:
  - Restarts C(docker.service) with systemd, after C(systemctl reset-failed docker.service). C(docker.service)
    allows 3 starts in 60 seconds, and a crash or an earlier restart of the same play may have used them, so a
    plain restart could be refused.
  - Then waits until the daemon answers C(GET /_ping) on its socket, so the tasks after the restart (or
    after a C(flush_handlers)) find Docker ready.
  - Meant for handlers notified by M(llmstack.deploy.docker_daemon_config) or by a change of the NVIDIA
    runtime.
author:
  - llmstack.deploy maintainers (@llmstack)
options:
  state:
    description:
      - C(restarted) restarts the daemon. Every run restarts it, so call the module from a handler.
    type: str
    choices: [restarted]
    default: restarted
  timeout:
    description:
      - Seconds to wait after the restart for the daemon to answer on O(socket). C(0) does not wait.
    type: int
    default: 60
  socket:
    description:
      - The daemon's unix socket, asked C(GET /_ping) until it answers.
    type: path
    default: /var/run/docker.sock
extends_documentation_fragment:
  - llmstack.deploy.attributes
attributes:
  check_mode:
    support: full
    details: Reports a change and restarts nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: Every run restarts the daemon.
notes:
  - Runs C(systemctl), so it needs root (C(become)) and a host where systemd runs Docker.
  - Takes no C(docker_host) and is not in the C(llmstack.deploy.docker) action group; that option
    can name a daemon elsewhere, and this module restarts the one on this host.
requirements:
  - systemd
seealso:
  - module: llmstack.deploy.docker_daemon_config
"""

EXAMPLES = r"""
# roles/<role>/handlers/main.yml
- name: Restart the Docker daemon
  llmstack.deploy.docker_daemon:
    state: restarted

- name: Restart Docker, and give a slow host longer to come back
  llmstack.deploy.docker_daemon:
    state: restarted
    timeout: 180
"""

RETURN = r"""
elapsed:
  description: Seconds from the start of the restart until the daemon answered (C(0) in check mode).
  returned: always
  type: float
  sample: 2.4
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmstack.deploy.plugins.module_utils import daemon_config as dc


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["restarted"], default="restarted"),
            timeout=dict(type="int", default=60),
            socket=dict(type="path", default="/var/run/docker.sock"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        module.exit_json(changed=True, elapsed=0.0)
    start = time.monotonic()
    ok, message = dc.restart_daemon(module.run_command)
    if not ok:
        module.fail_json(msg=message)
    if p["timeout"] > 0 and not dc.wait_for_daemon(lambda: dc.ping_socket(p["socket"]), p["timeout"]):
        module.fail_json(msg="%s, but the daemon did not answer on %s within %d s (journalctl -u docker.service)"
                         % (message, p["socket"], p["timeout"]))
    module.exit_json(changed=True, elapsed=round(time.monotonic() - start, 1))


if __name__ == "__main__":
    main()
