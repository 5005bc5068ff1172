# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpu_endpoints: each GPU host's vLLM endpoint (<address>:<port>), for the split topology's wiring.

groups['llmstack_gpu'] | llmstack.deploy.gpu_endpoints(hostvars, llmstack_vllm_port)

A host's vllm_endpoint, published by the play that ran on it; for a host outside --limit (no play ran there),
its llmstack_private_address from the inventory and its own vllm_port, else default_port. A host with neither
fails, named. Documentation: gpu_endpoints.yml beside this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


def endpoint(host, hostvars, default_port):
    """One host's endpoint from its variables (a mapping)."""
    published = hostvars.get("vllm_endpoint")
    if published:
        return str(published)
    address = hostvars.get("llmstack_private_address")
    if not address:
        raise AnsibleFilterError(
            "gpu_endpoints: GPU host %s has neither vllm_endpoint nor llmstack_private_address (no play ran on it, "
            "e.g. it is outside --limit): set llmstack_private_address for it in the inventory "
            "(inventory_aws_ec2.yml sets it from the instance's private IP)" % host)
    port = hostvars.get("vllm_port")
    return "%s:%s" % (address, default_port if port in (None, "") else port)


def gpu_endpoints(hosts, hostvars, default_port):
    return [endpoint(host, hostvars[host], default_port) for host in hosts]


class FilterModule(object):
    def filters(self):
        return {"gpu_endpoints": gpu_endpoints}
