#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: stack_status
short_description: Report what a host of the stack runs, read-only
version_added: 0.1.0
description:
  - Reads, without changing anything, what M(llmstack.deploy.container_rollout) recorded in
    O(state_dir)C(/deployments/<service>.json) and what Docker runs, and returns per service - the image, its
    tag and digest, when it was deployed, the serving container's state and Docker health (and whether it is
    the container the rollout saw healthy), the newest deploy record (status, when, the digest that served
    before it) and where a rollback would return to.
  - Also the disk use of every folder and volume the services' containers mount, the PostgreSQL backups in
    O(backup_dir) (count, size, the newest one's name and size), free space where Docker and the backups
    live, and per GPU the memory in use from C(nvidia-smi) on a host that has it.
  - RV(lines) is the same as a few short readable lines, for a C(debug) task.
  - Never returns an env value - env files are not read, and of the history only images, digests, times,
    statuses, slots and the (redacted) error line of a failed deployment are used.
  - Something that can't be read (no Docker daemon, a damaged history, a failing C(nvidia-smi)) is reported in
    its place instead of failing the task.
author:
  - llmstack.deploy maintainers (@llmstack)
extends_documentation_fragment:
  - llmstack.deploy.attributes
  - llmstack.deploy.attributes.actiongroup_docker
  - llmstack.deploy.docker
attributes:
  check_mode:
    support: full
    details:
      - The module only reads; it runs the same way in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
options:
  services:
    description:
      - The services to report (C(agent_service), C(vllm), ...). Default - every service with a deployment
        history in O(state_dir) or a container labelled as one.
    type: list
    elements: str
  state_dir:
    description: Where M(llmstack.deploy.container_rollout) keeps the deployment histories.
    type: path
    default: /var/lib/llmstack
  switch_dir:
    description:
      - The folder of the blue/green switch files (C(<service>.live)), to show the slot the gateway sends
        traffic to when it differs from the recorded one. Default - O(state_dir)C(/switch).
    type: path
  backup_dir:
    description: The folder of the PostgreSQL backups (C(postgres-<UTC timestamp>.dump)). Empty - not reported.
    type: path
    default: /var/backups/llmstack/postgres
  disk_usage:
    description:
      - Measure the disk use of the mounted folders and volumes (as C(du -s); a large Hugging Face cache takes
        a moment). Only with a local Docker daemon.
    type: bool
    default: true
  gpu:
    description:
      - C(auto) reports GPU memory when C(nvidia-smi) is on the host's PATH, C(always) also reports its absence,
        C(never) skips it.
    type: str
    choices: [auto, always, never]
    default: auto
notes:
  - Reading the histories and measuring volumes needs root on the host (C(become=true)).
requirements:
  - the docker Python SDK (python3-docker 5.x or docker 7.x) on the target host
"""

EXAMPLES = r"""
- name: Read the stack's status
  llmstack.deploy.stack_status:
  register: llmstack_status

- name: Show it, a few lines per service
  ansible.builtin.debug:
    msg: "{{ llmstack_status.lines }}"

- name: Only the agent service, without measuring volumes
  llmstack.deploy.stack_status:
    services: [agent_service]
    disk_usage: false
  register: agent_status

- name: Fail when the agent service's container is not the one its rollout saw healthy
  ansible.builtin.assert:
    that: agent_status.services[0].container.recorded
"""

RETURN = r"""
services:
  description: One entry per service, in the stack's order (postgres, vllm, agent_service, nginx_gateway, others).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The service.
      type: str
      sample: agent_service
    strategy:
      description: C(recreate) or C(blue_green), as recorded.
      type: str
    image:
      description: The image reference the current deployment asked for.
      type: str
      sample: ghcr.io/myorg/agent-service:1.4.2
    tag:
      description: Its tag (null for a reference by digest).
      type: str
      sample: 1.4.2
    digest:
      description: The digest deployed.
      type: str
      sample: sha256:6730589a4957740233e5f24ef8d2140d2f28f59b26ccf0df60f6a1200486ce0a
    deployed:
      description: When the current deployment finished (UTC).
      type: str
      sample: "2025-06-01T12:00:00Z"
    deployment:
      description: The current deployment's number in the history (null when none succeeded).
      type: int
    slot:
      description: The recorded live slot (blue_green).
      type: str
    switch:
      description: The slot the switch file names (blue_green), C(?) when it names something else.
      type: str
    container:
      description:
        - The serving container - C(name), C(id) (12 characters), C(state) (running, exited, ...), C(exit_code),
          C(health) (Docker's health status, null without a HEALTHCHECK), C(started), C(digest) (its label),
          C(recorded) (true when it is the container the current deployment started and saw healthy).
        - Null when there is no container.
      type: dict
    last:
      description:
        - The newest deploy record - C(deployment), C(status) (pending, succeeded, failed, interrupted,
          rolled_back), C(time), C(image), C(digest), C(rollback_of), C(error) (first line, for a failure),
          C(previous_digest) and C(previous_image) (what served before it).
      type: dict
    rollback_to:
      description: The deployment C(state=rolled_back) would return to (C(deployment), C(image), C(digest)), or null.
      type: dict
    heal_restarts:
      description:
        - The restarts of the service's containers by self-healing (the docker_host role's timer) - C(count),
          C(last) (UTC time) and C(container) (the name of the last one restarted), or null if there was none.
      type: dict
    history:
      description: The history file.
      type: str
    error:
      description: Why the history could not be read, or null.
      type: str
volumes:
  description: The folders and volumes the services' containers mount - C(name), C(type), C(source), C(bytes), C(services).
  returned: always
  type: list
  elements: dict
backups:
  description:
    - The backups in O(backup_dir) - C(dir), C(exists), C(count), C(bytes), and C(newest) (C(name), C(bytes),
      C(time)). Null without O(backup_dir).
  returned: always
  type: dict
filesystems:
  description: Free and total bytes of the file systems holding Docker's root, O(backup_dir) and O(state_dir).
  returned: always
  type: list
  elements: dict
gpus:
  description: Per GPU - C(index), C(name), C(memory_used_mib), C(memory_total_mib), C(utilization) (%). Null without nvidia-smi.
  returned: always
  type: list
  elements: dict
gpu_error:
  description: What nvidia-smi said when it failed, or null.
  returned: always
  type: str
docker:
  description: C(root) (Docker's root folder) and C(error) (why the daemon could not be asked, or null).
  returned: always
  type: dict
state_dir:
  description: The O(state_dir) read.
  returned: always
  type: str
lines:
  description: The status as short readable lines (tag, digest, health, last deploy, disk, backups, GPUs).
  returned: always
  type: list
  elements: str
  sample:
    - "agent_service: tag 1.4.2, digest sha256:6730589a4957, deployed 2025-06-01T12:00:00Z (#7, blue_green, slot green)"
    - "agent_service: health agent_service-green running, no docker healthcheck; last recorded status succeeded"
    - "agent_service: last deploy #7 succeeded 2025-06-01T12:00:00Z, 1.4.2 sha256:6730589a4957, previous sha256:0f1e2d3c4b5a"
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import status


def main():
    module = AnsibleModule(
        argument_spec=dict(
            services=dict(type="list", elements="str"),
            state_dir=dict(type="path", default="/var/lib/llmstack"),
            switch_dir=dict(type="path"),
            backup_dir=dict(type="path", default="/var/backups/llmstack/postgres"),
            disk_usage=dict(type="bool", default=True),
            gpu=dict(type="str", choices=["auto", "always", "never"], default="auto"),
            **dc.DOCKER_ARGUMENT_SPEC
        ),
        supports_check_mode=True,
    )
    p = module.params
    client, docker_error = None, None
    try:
        client = dc.connect(p["docker_host"], timeout=30)
    except dc.DockerError as e:
        docker_error = str(e)
    report = status.collect(
        client, p["state_dir"], services=p["services"], backup_dir=p["backup_dir"] or None,
        switch_dir=p["switch_dir"] or "%s/switch" % p["state_dir"].rstrip("/"), disk=p["disk_usage"],
        gpu_mode=p["gpu"], run=module.run_command, which=module.get_bin_path,
        docker_error=docker_error, local=dc.is_local(p["docker_host"]))
    module.exit_json(changed=False, **report)


if __name__ == "__main__":
    main()
