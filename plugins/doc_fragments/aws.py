# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The AWS connection options of the SSM modules (ssm_env_file, ssm_file): ssm.AWS_ARGUMENT_SPEC.
    DOCUMENTATION = r"""
options:
  region:
    description:
      - AWS region.
      - If not set, the first of these that gives one is used, C(AWS_REGION), C(AWS_DEFAULT_REGION),
        the region of the profile (O(profile), else C(AWS_PROFILE), else C(default)) in the AWS config
        file, then the instance's region from EC2 instance metadata (IMDSv2, one attempt with a 1 s
        timeout, no proxies; C(AWS_EC2_METADATA_SERVICE_ENDPOINT) and C(AWS_EC2_METADATA_DISABLED)
        are honoured).
      - If none gives a region, the module fails and names every source it tried.
      - The region used is returned as RV(region).
    type: str
    aliases: [aws_region]
  profile:
    description: AWS profile from the shared config files.
    type: str
    aliases: [aws_profile]
  endpoint_url:
    description:
      - URL of the SSM endpoint, for VPC endpoints or a local stand-in.
      - Old botocore releases ignore C(AWS_ENDPOINT_URL_SSM), so set it here on such hosts.
    type: str
    aliases: [aws_endpoint_url]
  max_attempts:
    description:
      - Attempts per API call when SSM throttles or fails with a 5xx error (exponential backoff with
        jitter), on top of botocore's own adaptive retries.
      - A timeout or a refused connection is retried the same way, at most 3 attempts, since
        botocore already retries those itself (connect timeout 5 s, read timeout 15 s).
    type: int
    default: 8
  parameters:
    description:
      - A Parameter Store kept on the controller, for a host without SSM (a VPS), for example from an Ansible
        Vault file beside the inventory. A dict of full parameter names (C(/app/production/db_password)) to
        values, read in place of SSM with the same paths, names, keys and errors.
      - Every value is treated as a SecureString is, never returned, logged or shown.
      - When set, the module makes no AWS call and needs neither boto3 nor credentials; the other AWS options
        are ignored, RV(region) is C(null) and RV(api_calls) C(0). Version and label selectors need SSM.
      - The plays set it for every SSM module from C(llmstack_vault_parameters) when
        C(llmstack_secrets_source=vault).
    type: dict
  state_dir:
    description:
      - Folder where the modules keep their state on the host, the same as
        O(llmstack.deploy.container_rollout#module:state_dir). The SSM modules keep only C(host.key) there, the per-host secret
        that keys their RV(checksum). It is created (mode C(0700), the key C(0600)) on first use.
      - In check mode nothing is created; on a host without the key RV(checksum) is then C(null).
      - If the folder cannot be created or read (for example when the task does not run as root), the
        module fails and says so.
    type: path
    default: /var/lib/llmstack
"""
