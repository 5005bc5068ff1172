# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""gateway_routes: the gateway's routes, validated, with their defaults and the regex of their allow-list.

nginx_gateway_routes | llmstack.deploy.gateway_routes(nginx_gateway_upstreams)
routes | llmstack.deploy.gateway_routes(upstreams, where="llmstack_apps[1] (sse_app) routes")

The logic is plugins/module_utils/routes.py. Documentation: gateway_routes.yml beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.llmstack.deploy.plugins.module_utils import routes as routes_lib


def gateway_routes(routes, upstreams, where="nginx_gateway_routes"):
    try:
        return routes_lib.normalize(routes, upstreams, where=where)
    except routes_lib.RouteError as e:
        raise AnsibleFilterError(str(e))


class FilterModule(object):
    def filters(self):
        return {"gateway_routes": gateway_routes}
