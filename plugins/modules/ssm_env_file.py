#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ssm_env_file
short_description: Write AWS SSM Parameter Store parameters to a Docker env file
version_added: 0.1.0
description:
  - Reads parameters from AWS SSM Parameter Store, by path and/or by name, and writes them
    as a literal env file that C(docker run --env-file) reads back with exactly the same values.
  - Runs on the target host, so secrets go from SSM to the host without passing through the
    controller. It also works with C(delegate_to=localhost).
  - Parameter values are never returned, logged or shown in a diff. The diff lists the keys
    that would be added, removed or changed.
  - Keys are sorted and the file is written atomically (temp file in the same folder, then a
    rename), so the content and its RV(checksum) are deterministic.
  - RV(checksum) is an HMAC keyed with a secret kept on the host (C(host.key) in O(state_dir)), so
    it cannot be used to guess a short secret offline even when every other value is known.
author:
  - llmstack.deploy maintainers (@llmstack)
options:
  path:
    description: The env file to write. Missing folders above it are created (see O(folder_mode)).
    type: path
    required: true
  paths:
    description:
      - SSM paths to read with GetParametersByPath. A later path overrides an earlier one,
        key by key.
    type: list
    elements: str
    default: []
  names:
    description:
      - Explicit parameter names, read with GetParameters in batches of 10. They override
        O(paths). A name that does not exist is an error. Their key is always the last segment.
      - A name may carry a version or label selector, C(/app/db_password:3) or C(/app/db_password:prod).
        The selector is not part of the key (both give C(DB_PASSWORD)). An unknown version or label is
        an error naming it.
    type: list
    elements: str
    default: []
  named:
    description:
      - Parameters with an explicit key, as a dict of key to parameter name. They override O(paths) and
        O(names). For wiring one service's secret into another's env file under the name the app
        expects, for example key C(PGPASSWORD) for C(/llmstack/prod/postgres/postgres_password).
      - Selectors work as in O(names). A missing parameter is an error naming it.
    type: dict
    default: {}
  extra:
    description:
      - Extra C(KEY=value) pairs, for example C(IMAGE_TAG). They override O(paths), O(names) and O(named).
      - Meant for values that are not secret; keep secrets in SSM or in O(parameters).
    type: dict
    default: {}
  recursive:
    description: Read O(paths) recursively.
    type: bool
    default: true
  decrypt:
    description: Decrypt SecureString parameters.
    type: bool
    default: true
  key_mode:
    description:
      - How a parameter name becomes an env key. Characters that are not valid in an env name
        become C(_) and the key is upper-cased.
      - C(basename) takes the last path segment (C(/app/production/db_host) -> C(DB_HOST)).
      - C(relative) takes the path relative to the entry of O(paths) it came from
        (C(/app/prod/db/host) under C(/app/prod) -> C(DB_HOST)).
      - If two parameters map to one key the module fails and names both.
    type: str
    choices: [basename, relative]
    default: basename
  required_keys:
    description: Keys that must be present. If any is missing the module fails, names them, and writes nothing.
    type: list
    elements: str
    default: []
  allow_empty:
    description: Accept an entry of O(paths) that holds no parameters (otherwise an error).
    type: bool
    default: false
  mode:
    description:
      - Permissions of the env file, in octal (a string such as C('0600')) or symbolic (C(u=rw,g=r)) form.
      - The file is written 0600 first, so it never holds a value with wider permissions than this.
    type: raw
    default: '0600'
  owner:
    description:
      - Owner of the env file (name or uid). Unset, an existing file keeps its owner and a new one belongs
        to the user running the module.
    type: str
  group:
    description:
      - Group of the env file (name or gid). Unset, an existing file keeps its group and a new one gets the
        user's group.
    type: str
requirements:
  - boto3 and botocore on the host that runs the module
notes:
  - Credentials come from boto3's normal chain (instance profile on EC2, OIDC web identity in
    GitHub Actions, environment, profile).
  - The caller needs C(ssm:GetParametersByPath) on O(paths), C(ssm:GetParameters) on O(names),
    and C(kms:Decrypt) on the KMS keys of SecureString parameters.
  - Every failure names the API call and the path or name involved, never a value.
extends_documentation_fragment:
  - ansible.builtin.files
  - llmstack.deploy.managed_file
  - llmstack.deploy.aws
  - llmstack.deploy.attributes
  - llmstack.deploy.attributes.actiongroup_aws
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff lists keys added, removed and changed, with every value redacted, and each folder created.
  idempotent:
    support: full
"""

EXAMPLES = r"""
- name: Write the agent service's env file from SSM
  llmstack.deploy.ssm_env_file:
    path: /etc/llmstack/agent_service.env
    paths:
      - /llmstack/production/common
      - /llmstack/production/agent_service
    extra:
      IMAGE_TAG: "{{ app_image_tag }}"
    required_keys: [DB_HOST, DB_PASSWORD]
    region: eu-west-1
  register: agent_env

- name: On a VPS without SSM, the same env file from an Ansible Vault file beside the inventory (no AWS call)
  llmstack.deploy.ssm_env_file:
    path: /etc/llmstack/agent_service.env
    paths:
      - /agent/production/agent_service
    parameters:
      /agent/production/agent_service/db_password: "{{ vault_agent_db_password }}"
      /agent/production/agent_service/openai_api_key: "{{ vault_agent_openai_api_key }}"
    required_keys: [DB_PASSWORD]

- name: The agent service gets postgres's password under the name libpq reads
  llmstack.deploy.ssm_env_file:
    path: /etc/llmstack/agent_service.env
    paths: [/llmstack/prod/agent_service]
    named:
      PGPASSWORD: /llmstack/prod/postgres/postgres_password
      LLM_API_KEY: /llmstack/prod/vllm/vllm_api_key

- name: Nested names as keys (/app/prod/db/host -> DB_HOST)
  llmstack.deploy.ssm_env_file:
    path: /etc/llmstack/app.env
    paths: [/app/prod]
    key_mode: relative

- name: Fetch on the controller instead of the host
  llmstack.deploy.ssm_env_file:
    path: /tmp/app.env
    names: [/app/prod/db_password, /app/prod/api_key]
  delegate_to: localhost

- name: Pin a version and a label (keys DB_PASSWORD and API_KEY)
  llmstack.deploy.ssm_env_file:
    path: /etc/llmstack/app.env
    names: ["/app/prod/db_password:3", "/app/prod/api_key:live"]

- name: Set region and endpoint for every llmstack AWS module at once
  module_defaults:
    group/llmstack.deploy.aws:
      region: us-east-1
      endpoint_url: http://127.0.0.1:5500
  block:
    - name: Write the env file
      llmstack.deploy.ssm_env_file:
        path: /etc/llmstack/postgres.env
        paths: [/llmstack/production/postgres]
"""

RETURN = r"""
path:
  description: The env file.
  returned: always
  type: str
  sample: /etc/llmstack/agent_service.env
keys:
  description: The keys in the env file, sorted. Never the values.
  returned: always
  type: list
  elements: str
  sample: [DB_HOST, DB_PASSWORD, IMAGE_TAG]
checksum:
  description:
    - HMAC-SHA256 of the env file's content, keyed with the host's secret (C(host.key) in O(state_dir)).
      Changes exactly when a key or a value changes.
    - Keyed so that it cannot be brute-forced offline to recover a short secret. Two hosts with the
      same file therefore return different checksums; compare checksums of one host only.
    - C(null) in check mode on a host that has no host key yet.
  returned: always
  type: str
  sample: 3b1f0c1e9b3f8d0c8a5e0f7d7c1b2a3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c
parameter_count:
  description: How many SSM parameters were read.
  returned: always
  type: int
  sample: 12
key_changes:
  description:
    - Keys added, removed and changed compared with the file on disk. Never the values.
    - Lines of the old file that Docker would refuse (for example after a hand edit) are skipped.
  returned: always
  type: dict
  sample: {added: [NEW_FLAG], removed: [], changed: [DB_PASSWORD]}
  contains:
    added:
      description: Keys the new file has and the old one does not, sorted.
      returned: always
      type: list
      elements: str
      sample: [NEW_FLAG]
    removed:
      description: Keys the old file has and the new one does not, sorted.
      returned: always
      type: list
      elements: str
      sample: [OLD_FLAG]
    changed:
      description: Keys in both files whose value differs, sorted.
      returned: always
      type: list
      elements: str
      sample: [DB_PASSWORD]
region:
  description: The AWS region used (see O(region) for where it comes from); null with O(parameters).
  returned: always
  type: str
  sample: eu-west-1
api_calls:
  description: SSM API calls made, retries included; 0 with O(parameters).
  returned: always
  type: int
  sample: 3
"""


from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmstack.deploy.plugins.module_utils import envfile, managed_file, ssm, state


def run(module, client):
    p = module.params
    if not (p["paths"] or p["names"] or p["named"] or p["extra"]):
        raise envfile.EnvFileError("nothing to write: set at least one of paths, names, named or extra")
    values, count = ssm.collect(
        client, paths=p["paths"], names=p["names"], recursive=p["recursive"],
        decrypt=p["decrypt"], key_mode=p["key_mode"], allow_empty=p["allow_empty"], named=p["named"])
    for key, value in p["extra"].items():
        values[key] = "" if value is None else str(value)

    missing = sorted(set(p["required_keys"]) - set(values))
    if missing:
        raise envfile.EnvFileError("required key(s) missing: %s (the env file was not written)" % ", ".join(missing))

    content = envfile.render(values).encode("utf-8")
    target = managed_file.ManagedFile(module)
    # The old file may have been edited by hand: skip lines Docker would refuse rather than fail.
    before_values = envfile.parse(target.content, source=p["path"], strict=False) if target.exists else {}
    changes = envfile.key_diff(before_values, values)

    # Check mode creates nothing, not even the state_dir: without a key there is no checksum yet.
    key = state.host_key(p["state_dir"], create=not module.check_mode)

    def meta(attrs):
        return dict(("mode", "%04o" % v) if k == "mode" else (k, v) for k, v in attrs.items())
    result = target.update(
        content,
        before_view=lambda attrs: envfile.redacted_view(before_values, meta=meta(attrs)),
        after_view=lambda attrs: envfile.redacted_view(values, changed=changes["changed"], meta=meta(attrs)))
    result.update(path=p["path"], keys=sorted(values),
                  checksum=envfile.checksum(content, key) if key is not None else None,
                  parameter_count=count, key_changes=changes, api_calls=client.calls, region=client.region)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            paths=dict(type="list", elements="str", default=[]),
            names=dict(type="list", elements="str", default=[]),
            named=dict(type="dict", default={}),
            extra=dict(type="dict", default={}),
            recursive=dict(type="bool", default=True),
            decrypt=dict(type="bool", default=True),
            key_mode=dict(type="str", choices=list(ssm.KEY_MODES), default="basename"),
            required_keys=dict(type="list", elements="str", default=[], no_log=False),
            allow_empty=dict(type="bool", default=False),
            # The file common arguments (add_file_common_args) with this module's defaults.
            mode=dict(type="raw", default="0600"),
            folder_mode=dict(type="raw", default="0750"),
            **ssm.AWS_ARGUMENT_SPEC
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    ssm.run_module(module, run, "env file")


if __name__ == "__main__":
    main()
