#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: readiness
short_description: Record what a host runs, once a converge has verified it, in SSM or in a file
version_added: 0.1.0
description:
  - Writes the host's readiness record, C({"host", "versions", "verified"}), JSON, where C(versions) holds each
    service's image and digest from the deployment histories in O(state_dir) and C(verified) the UTC time at
    which these versions were first recorded.
  - To the SSM String parameter O(name) (the plays use C(<prefix>/status/<host>)), or on a host without SSM to
    the file O(path) (mode C(0644), written atomically).
  - Rewritten only when the host or the versions differ from the stored record, so a converge that changes
    nothing leaves it as it is (C(changed=false)). The plays run it last, after the converge's check through
    the gateway passed.
  - Reads no env file and no secret. O(state_dir) is where the deployment histories are read.
author:
  - llmstack.deploy maintainers (@llmstack)
options:
  name:
    description: The SSM parameter to write. Mutually exclusive with O(path).
    type: str
  path:
    description: The file to write instead, on a host without SSM. Mutually exclusive with O(name).
    type: path
  host:
    description: The host's name in the record (the plays give C(inventory_hostname)).
    type: str
    required: true
  services:
    description: The services to record. Default - every service with a deployment history in O(state_dir).
    type: list
    elements: str
  state_dir:
    description: Where M(llmstack.deploy.container_rollout) keeps the deployment histories.
    type: path
    default: /var/lib/llmstack
  region:
    description:
      - AWS region, for O(name). If not set, found as M(llmstack.deploy.ssm_env_file) finds it (the environment, the
        profile, then EC2 instance metadata).
    type: str
    aliases: [aws_region]
  profile:
    description: AWS profile from the shared config files, for O(name).
    type: str
    aliases: [aws_profile]
  endpoint_url:
    description: URL of the SSM endpoint, for VPC endpoints or a local stand-in.
    type: str
    aliases: [aws_endpoint_url]
  max_attempts:
    description: Attempts per API call when SSM throttles or fails with a 5xx error, as in M(llmstack.deploy.ssm_env_file).
    type: int
    default: 8
  parameters:
    description:
      - The parameters from the controller, which the plays give every module of the C(aws) group with
        C(llmstack_secrets_source=vault). Not read; when set, O(name) is refused (a host without SSM records to O(path)).
    type: dict
extends_documentation_fragment:
  - llmstack.deploy.attributes
  - llmstack.deploy.attributes.actiongroup_aws
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The stored record and the new one.
  idempotent:
    support: full
notes:
  - IAM, C(ssm:GetParameter) and C(ssm:PutParameter) on O(name).
  - With O(parameters) (a host without SSM) only O(path) is accepted.
requirements:
  - boto3 and botocore on the host, for O(name)
"""

EXAMPLES = r"""
- name: Record what this host runs, in SSM
  llmstack.deploy.readiness:
    name: "/llmstack/production/status/{{ inventory_hostname }}"
    host: "{{ inventory_hostname }}"

- name: On a VPS, in a file
  llmstack.deploy.readiness:
    path: /var/lib/llmstack/readiness.json
    host: "{{ inventory_hostname }}"
"""

RETURN = r"""
record:
  description: The record stored now - C(host), C(versions) (C({service - {image, digest}})), C(verified).
  returned: always
  type: dict
  sample:
    host: app-i-0123456789abcdef0
    versions:
      agent_service:
        image: ghcr.io/your-org/agent-service:1.4.2
        digest: sha256:6730589a4957740233e5f24ef8d2140d2f28f59b26ccf0df60f6a1200486ce0a
    verified: "2026-12-05T12:00:00Z"
where:
  description: Where it is, C(SSM parameter <name>) or the file's path.
  returned: always
  type: str
api_calls:
  description: SSM API calls made (0 for a file).
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.llmstack.deploy.plugins.module_utils import readiness, ssm


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            path=dict(type="path"),
            host=dict(type="str", required=True),
            services=dict(type="list", elements="str"),
            **ssm.AWS_ARGUMENT_SPEC
        ),
        mutually_exclusive=[("name", "path")],
        required_one_of=[("name", "path")],
        supports_check_mode=True,
    )
    p = module.params
    if p["name"] is not None and p["parameters"] is not None:
        module.fail_json(msg="name %s: a readiness record in SSM needs SSM, and this host's parameters come from the "
                             "controller (llmstack_secrets_source vault): write it to a file (path)" % p["name"])
    if p["name"] is not None and not ssm.HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3 and botocore"))
    client = None
    try:
        if p["name"] is not None:
            if not p["name"].startswith("/"):
                raise ssm.SsmError("name %r must start with '/'" % p["name"])
            client = ssm.SsmClient.connect(region=p["region"], profile=p["profile"], endpoint_url=p["endpoint_url"],
                                           max_attempts=p["max_attempts"])
            target = readiness.SsmTarget(client, p["name"])
        else:
            target = readiness.FileTarget(p["path"])
        found = readiness.collect_versions(p["state_dir"], p["services"])
        changed, rec, diff = readiness.update(target, p["host"], found, check_mode=module.check_mode)
    except ssm.SsmError as e:
        module.fail_json(msg="readiness: %s" % e)
    except OSError as e:
        module.fail_json(msg="readiness: %s: %s" % (p["path"], e.strerror or e))
    module.exit_json(changed=changed, record=rec, where=target.where, diff=diff,
                     api_calls=client.calls if client is not None else 0)


if __name__ == "__main__":
    main()
