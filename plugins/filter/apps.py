# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack's apps (llmstack_apps), validated whole, with their defaults; and what the gateway needs of them.

llmstack_apps | llmstack.deploy.app_list        every app with its defaults (app_list.yml)
llmstack_apps | llmstack.deploy.app_upstreams   the gateway's upstream per app with routes (app_upstreams.yml)
llmstack_apps | llmstack.deploy.app_routes      every app's routes, upstream set to the app (app_routes.yml)

The logic is plugins/module_utils/apps.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.llmstack.deploy.plugins.module_utils import apps as apps_lib


def _wrap(function):
    def run(apps):
        try:
            return function(apps)
        except apps_lib.AppError as e:
            raise AnsibleFilterError(str(e))
    return run


class FilterModule(object):
    def filters(self):
        return {"app_list": _wrap(apps_lib.normalize), "app_upstreams": _wrap(apps_lib.upstreams),
                "app_routes": _wrap(apps_lib.routes)}
