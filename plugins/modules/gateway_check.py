#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gateway_check
short_description: Prove that the gateway on this host serves every route, through every upstream server
version_added: 0.2.0
description:
  - Sends, from the host itself, one C(GET) per route of the gateway that names a C(check) path (for example
    C(/llm_api/models), C(/agent/health)) to the gateway's own listener at O(url), with a client key read on the
    host from O(api_keys_file), as a client would send it.
  - For a route whose upstream lists C(servers) (the LLM servers), also one request per server through the
    gateway's loopback check listener at O(check_url), which forwards to that one server with the route's own
    settings (path, the upstream key). So every GPU host must answer through the gateway, not just one of them.
  - A route or server that does not answer C(200) - a C(502) or C(503) above all - is retried until O(timeout),
    then fails the task with a message naming the route, the upstream and the server. A JSON answer with an
    empty C(data) list (a model list naming no model) counts as a failure too.
  - The key is read on the host and sent; it is never returned or logged.
author:
  - llmstack.deploy maintainers (@llmstack)
extends_documentation_fragment:
  - llmstack.deploy.attributes
attributes:
  check_mode:
    support: full
    details:
      - The module only sends requests; it runs the same way in check mode. Roles skip it in check mode, where
        nothing was deployed.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  url:
    description: The gateway's listener as a client reaches it, on this host (C(https://127.0.0.1:443)). Its
      certificate is not verified - the check is about routing, from the host itself.
    type: str
    required: true
  check_url:
    description:
      - The gateway's loopback check listener (C(http://127.0.0.1:8099)), which serves
        C(/<upstream>/<server><route path>) for each server of each plain upstream. Empty - servers are not
        checked one by one.
    type: str
    default: ""
  routes:
    description:
      - The gateway's routes (the role's C(nginx_gateway_route_list), the apps' included) - each a dict with C(path),
        C(upstream), C(auth) (C(bearer), the default, C(header) with C(auth_header), or C(none); C(true) and C(false)
        also work) and C(check), the path below C(path) to ask (no C(check) - the route is not asked).
    type: list
    elements: dict
    required: true
  upstreams:
    description: The gateway's upstreams (the role's C(nginx_gateway_upstream_list)) - C(name) with C(servers), or C(blue) and C(green).
    type: list
    elements: dict
    required: true
  api_keys_file:
    description: The env file of the client API keys on the host; the first key by name is sent as a Bearer token.
    type: path
    required: true
  switch_dir:
    description: The folder of the blue/green switch files, to name a blue/green upstream's live slot in messages.
    type: path
  timeout:
    description: Seconds to keep asking a route or server that does not answer well yet.
    type: int
    default: 30
"""

EXAMPLES = r"""
- name: Prove the gateway serves every route
  llmstack.deploy.gateway_check:
    url: https://127.0.0.1:443
    check_url: http://127.0.0.1:8099
    routes: "{{ nginx_gateway_routes }}"
    upstreams: "{{ nginx_gateway_upstreams }}"
    api_keys_file: /etc/llmstack/nginx_gateway.api_keys.env
  when: not ansible_check_mode
"""

RETURN = r"""
checked:
  description: One entry per request that answered well - the route, its upstream, the server (a plain
    upstream's server, or a blue/green upstream's live slot; null for the route itself) and the status.
  returned: always
  type: list
  elements: dict
  sample: [{"route": "/llm_api/", "upstream": "llm", "server": null, "status": 200, "error": null}]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmstack.deploy.plugins.module_utils import gateway_check


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            check_url=dict(type="str", default=""),
            routes=dict(type="list", elements="dict", required=True),
            upstreams=dict(type="list", elements="dict", required=True),
            api_keys_file=dict(type="path", required=True),
            switch_dir=dict(type="path"),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        checked = gateway_check.run(p["routes"], p["upstreams"], p["url"], p["check_url"], p["api_keys_file"],
                                    switch_dir=p["switch_dir"], timeout=p["timeout"])
    except gateway_check.CheckError as e:
        module.fail_json(msg=str(e), checked=e.results)
    module.exit_json(changed=False, checked=checked)


if __name__ == "__main__":
    main()
