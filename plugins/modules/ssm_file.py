#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: ssm_file
short_description: Write one AWS SSM Parameter Store parameter to a file, as it is
version_added: 0.1.0
description:
  - Reads one parameter (a SecureString is decrypted) and writes its value, byte for byte, to a file, such as
    a TLS certificate or private key, or anything else with several lines that an env file cannot hold
    (use M(llmstack.deploy.ssm_env_file) for key=value settings).
  - Runs on the target host, so the value goes from SSM to the host without passing through the
    controller. The value is never returned, logged or shown in a diff; the diff shows keyed checksums.
    Ansible masks it (as a C(no_log) value) should anything the module returns contain it.
  - The file is written atomically (a 0600 temp file in the same folder, then a rename).
author:
  - llmstack.deploy maintainers (@llmstack)
options:
  path:
    description: The file to write. Missing folders above it are created (see O(folder_mode)).
    type: path
    required: true
  name:
    description:
      - The parameter's full name, with an optional version or label selector (C(/app/tls_key:3)).
    type: str
    required: true
  mode:
    description:
      - The file's mode, in octal (a string such as C('0600')) or symbolic (C(u=rw,g=r)) form.
      - The file is written 0600 first, so the value never exists with wider permissions than this.
    type: raw
    default: "0600"
  owner:
    description: The file's owner (name or uid); unset keeps the current one (root for a new file).
    type: str
  group:
    description: The file's group (name or gid); unset keeps the current one.
    type: str
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
      - Shows keyed checksums of the old and new content and the file's attributes, never the value, and each
        folder created.
  idempotent:
    support: full
requirements:
  - boto3 and botocore on the host that runs the module
notes:
  - IAM, C(ssm:GetParameters) on the parameter and C(kms:Decrypt) on its key if it is a SecureString.
seealso:
  - module: llmstack.deploy.ssm_env_file
"""

EXAMPLES = r"""
- name: The gateway's TLS private key from SSM
  llmstack.deploy.ssm_file:
    path: /etc/llmstack/nginx_gateway/tls/server.key
    name: /llmstack/production/nginx_gateway/tls_key
    mode: "0600"
"""

RETURN = r"""
path:
  description: The file written (or that would be, in check mode).
  returned: always
  type: str
  sample: /etc/llmstack/nginx_gateway/tls/server.key
checksum:
  description: HMAC-SHA256 of the content, keyed with the host's secret (see O(state_dir)); C(null) in check mode on a host without the key.
  returned: always
  type: str
  sample: 3b1f0c1e9b3f8d0c8a5e0f7d7c1b2a3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c
region:
  description: The AWS region used; null with O(parameters).
  returned: always
  type: str
  sample: eu-west-1
api_calls:
  description: SSM API calls made, retries included; 0 with O(parameters).
  returned: always
  type: int
  sample: 1
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmstack.deploy.plugins.module_utils import envfile, managed_file, ssm, state


def run(module, client):
    p = module.params
    if not p["name"].startswith("/"):
        raise ssm.SsmError("name %r must start with '/'" % p["name"])
    value = client.get_by_names([p["name"]])[0].get("Value", "")
    # A log line or an error may quote one line of a multi-line value (a PEM key).
    managed_file.register_secrets(module, [value] + value.splitlines())
    content = value.encode("utf-8")
    target = managed_file.ManagedFile(module)

    key = state.host_key(p["state_dir"], create=not module.check_mode)

    def view(data):
        def text(attrs):
            sums = "checksum %s" % (envfile.checksum(data, key)[:16] if key is not None else "(no host key yet)")
            return "%s, mode %s\n" % (sums, "%04o" % attrs["mode"] if "mode" in attrs else "-")
        return text
    result = target.update(content, before_view=view(target.content), after_view=view(content))
    result.update(path=p["path"], region=client.region, api_calls=client.calls,
                  checksum=envfile.checksum(content, key) if key is not None else None)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            name=dict(type="str", required=True),
            # The file common arguments (add_file_common_args) with this module's defaults.
            mode=dict(type="raw", default="0600"),
            folder_mode=dict(type="raw", default="0750"),
            **ssm.AWS_ARGUMENT_SPEC
        ),
        add_file_common_args=True,
        supports_check_mode=True,
    )
    ssm.run_module(module, run, "file")


if __name__ == "__main__":
    main()
