#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: container_rollout
short_description: Roll out a service's container with health checks and automatic rollback
version_added: 0.1.0
description:
  - Logs in to a registry (default C(ghcr.io)), resolves O(image) to a digest and pulls it only if the
    host does not have it yet, then runs the service's container.
  - If the running container already has the wanted digest and the same spec hash (run options plus
    the content of every env file), nothing is touched and the result is C(changed=false).
  - C(recreate) stops the old container, starts the new one and waits until it is healthy. If it is not,
    the new container is removed and the old one started again.
  - C(blue_green) starts the new container in the other slot (C(<name>-blue)/C(<name>-green), each with
    its own host ports), waits until it is healthy, switches traffic by rewriting O(switch_file) (the
    gateway reads it per request, so no reload drops connections), then stops the old slot gracefully
    within O(drain_seconds). A new slot that fails its health check is removed; traffic never moves.
  - Each service keeps a deployment record in O(state_dir)C(/deployments/<name>.json) (current and
    previous digest, spec hash, time). O(state=rolled_back) returns to the previous digest from the
    image kept on the host, with no registry call.
  - One rollout per service per host at a time (a file lock in O(state_dir)C(/locks/)).
author:
  - llmstack.deploy maintainers (@llmstack)
options:
  name:
    description: The service (C(agent_service), C(vllm), ...). Container name, label value and record key.
    type: str
    required: true
  state:
    description: C(present) rolls out O(image); C(rolled_back) returns to the previous deployment.
    type: str
    choices: [present, rolled_back]
    default: present
  strategy:
    description: C(blue_green) for stateless services behind the gateway, C(recreate) for singletons.
    type: str
    choices: [recreate, blue_green]
    default: recreate
  image:
    description:
      - Image reference without the registry, with a tag or a digest (C(org/agent:v2),
        C(org/agent@sha256:...)). Required with O(state=present).
    type: str
  registry:
    description: Registry host (and port) the image comes from.
    type: str
    default: ghcr.io
  registry_username:
    description: Registry user. With O(registry_password), the module logs in first (credentials stay in memory).
    type: str
  registry_password:
    description: Registry token or password.
    type: str
  command:
    description: Command or arguments for the container (the image's entrypoint stays).
    type: list
    elements: str
  env_files:
    description: Env files (for example from M(llmstack.deploy.ssm_env_file)); their content is part of the spec hash.
    type: list
    elements: path
    default: []
  env:
    description: Extra environment variables (not secrets; put those in an env file). They override O(env_files).
    type: dict
    default: {}
  ports:
    description: Published ports for O(strategy=recreate), as C([host_ip:]host_port:container_port[/proto]).
    type: list
    elements: str
    default: []
  slots:
    description:
      - "Published ports per slot for O(strategy=blue_green), for example
        C({blue: {ports: ['127.0.0.1:8001:8000']}, green: {ports: ['127.0.0.1:8002:8000']}})."
    type: dict
    default: {}
  volumes:
    description: Binds and volumes, as C(source:target[:ro|rw]).
    type: list
    elements: str
    default: []
  networks:
    description: Networks to join, with aliases. The first one is the container's primary network.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Network name.
        type: str
        required: true
      aliases:
        description: Aliases on that network.
        type: list
        elements: str
  restart_policy:
    description: Docker restart policy.
    type: str
    choices: ['no', always, unless-stopped, on-failure]
    default: unless-stopped
  memory:
    description: Memory limit (C(512m), C(8g)).
    type: str
  cpus:
    description: CPU limit, in CPUs.
    type: float
  gpus:
    description: GPUs to request (NVIDIA runtime) - C(all), a count, or a list of device ids.
    type: raw
  ipc_mode:
    description: IPC mode (C(host) for vLLM's shared memory).
    type: str
  shm_size:
    description: Size of /dev/shm (C(16g)).
    type: str
  user:
    description: User to run as (C(1000:1000)).
    type: str
  read_only:
    description: Mount the container's root filesystem read-only.
    type: bool
    default: false
  security_opts:
    description: Security options.
    type: list
    elements: str
    default: [no-new-privileges]
  log_driver:
    description: Log driver.
    type: str
    default: json-file
  log_options:
    description: Log driver options. The default rotates json-file logs.
    type: dict
    default: {max-size: 10m, max-file: '3'}
  labels:
    description: Extra container labels.
    type: dict
    default: {}
  healthcheck:
    description:
      - How to decide the new container is healthy. C(auto) uses the image's HEALTHCHECK if it has one,
        else the HTTP probe if O(healthcheck.url) is set, else "running".
    type: dict
    suboptions:
      kind:
        description: C(auto), C(docker), C(http) or C(running).
        type: str
        choices: [auto, docker, http, running]
        default: auto
      url:
        description: URL probed from the host (the slot's published port).
        type: str
      status:
        description: Expected HTTP status.
        type: int
        default: 200
      interval:
        description: Seconds between probes.
        type: float
        default: 2
      probe_timeout:
        description: Timeout of one probe, in seconds.
        type: float
        default: 5
      start_period:
        description: Seconds a C(running) check waits before it counts the container as up.
        type: float
        default: 0
  health_timeout:
    description: Overall seconds to wait for health (loading a large model takes tens of minutes).
    type: int
    default: 300
  stop_timeout:
    description: Seconds a stopping container gets before it is killed (O(strategy=recreate)).
    type: int
    default: 30
  drain_seconds:
    description:
      - Seconds the old slot gets to finish in-flight requests after the switch (longer than the longest
        token stream; match nginx C(worker_shutdown_timeout)).
    type: int
    default: 60
  switch_settle:
    description: Seconds between the switch and the old slot's SIGTERM, for requests already routed to it.
    type: float
    default: 1
  switch_file:
    description:
      - File the gateway reads per request to pick the live upstream (content C(<name>_<slot>)).
        Written atomically after the new slot is healthy.
    type: path
  keep_images:
    description: Images of the last N deployments kept on the host for rollbacks; older ones are pruned.
    type: int
    default: 3
  state_dir:
    description: Where deployment records and locks live.
    type: path
    default: /var/lib/llmstack
  lock_timeout:
    description: Seconds to wait for another rollout of the same service to finish.
    type: int
    default: 600
  docker_host:
    description: Docker daemon URL.
    type: str
    default: unix:///var/run/docker.sock
requirements:
  - the docker Python SDK (python3-docker 5.x or docker 7.x) on the target host
notes:
  - Supports check mode (reports image, digest and the spec keys that would change) and diff mode.
    The diff names env keys, never their values.
"""

EXAMPLES = r"""
- name: Roll out the agent service, blue/green behind the gateway
  llmstack.deploy.container_rollout:
    name: agent_service
    image: "myorg/agent-service:{{ agent_service_image_tag }}"
    registry_username: "{{ ghcr_user }}"
    registry_password: "{{ ghcr_token }}"
    strategy: blue_green
    env_files: [/etc/llmstack/agent_service.env]
    slots:
      blue: {ports: ["127.0.0.1:8001:8000"]}
      green: {ports: ["127.0.0.1:8002:8000"]}
    healthcheck: {kind: http, url: "http://127.0.0.1:{port}/health"}
    switch_file: /etc/llmstack/gateway/agent_service.live

- name: vLLM on one GPU host, where only one copy fits (recreate)
  llmstack.deploy.container_rollout:
    name: vllm
    image: vllm/vllm-openai:v0.11.0
    registry: docker.io
    strategy: recreate
    gpus: all
    ipc_mode: host
    ports: ["8000:8000"]
    command: [--model, Qwen/Qwen3-0.6B, --api-key-env, VLLM_API_KEY]
    env_files: [/etc/llmstack/vllm.env]
    healthcheck: {kind: http, url: "http://127.0.0.1:8000/health", interval: 10}
    health_timeout: 2400

- name: Roll back to the previous digest (no registry call)
  llmstack.deploy.container_rollout:
    name: agent_service
    state: rolled_back
    strategy: blue_green
    slots:
      blue: {ports: ["127.0.0.1:8001:8000"]}
      green: {ports: ["127.0.0.1:8002:8000"]}
    switch_file: /etc/llmstack/gateway/agent_service.live
"""

RETURN = r"""
service:
  description: The service name.
  returned: always
  type: str
  sample: agent_service
image:
  description: The image reference that was asked for (or, on rollback, the previous one).
  returned: always
  type: str
  sample: ghcr.io/myorg/agent-service:v2
digest_ref:
  description: The image pinned by digest.
  returned: always
  type: str
  sample: ghcr.io/myorg/agent-service@sha256:0f1e...
image_id:
  description: Local image id of the deployed version (empty in check mode before a pull).
  returned: when known
  type: str
spec_hash:
  description: Hash over the digest, env file contents and run options; stored as the llmstack.spec-hash label.
  returned: always
  type: str
slot:
  description: The live slot after the run (blue_green).
  returned: always
  type: str
  sample: green
container:
  description: Name of the container now serving.
  returned: unless check mode made no change
  type: str
previous:
  description: The digest that was current before this run.
  returned: always
  type: str
changes:
  description: Spec options and env keys (added, removed, changed) that differ from the recorded deployment.
  returned: always
  type: dict
phases:
  description: What the rollout did, with elapsed seconds.
  returned: when changed
  type: list
  elements: str
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import envfile, rollout


def _diff(before, after):
    def text(entry):
        if not entry:
            return ""
        return json.dumps({"image": entry.get("digest_ref"), "spec": entry.get("summary")}, indent=2, sort_keys=True) + "\n"
    return {"before": text(before), "after": text(after)}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "rolled_back"], default="present"),
            strategy=dict(type="str", choices=["recreate", "blue_green"], default="recreate"),
            image=dict(type="str"),
            registry=dict(type="str", default="ghcr.io"),
            registry_username=dict(type="str"),
            registry_password=dict(type="str", no_log=True),
            command=dict(type="list", elements="str"),
            env_files=dict(type="list", elements="path", default=[]),
            env=dict(type="dict", default={}),
            ports=dict(type="list", elements="str", default=[]),
            slots=dict(type="dict", default={}),
            volumes=dict(type="list", elements="str", default=[]),
            networks=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                aliases=dict(type="list", elements="str"))),
            restart_policy=dict(type="str", choices=["no", "always", "unless-stopped", "on-failure"],
                                default="unless-stopped"),
            memory=dict(type="str"),
            cpus=dict(type="float"),
            gpus=dict(type="raw"),
            ipc_mode=dict(type="str"),
            shm_size=dict(type="str"),
            user=dict(type="str"),
            read_only=dict(type="bool", default=False),
            security_opts=dict(type="list", elements="str", default=["no-new-privileges"]),
            log_driver=dict(type="str", default="json-file"),
            log_options=dict(type="dict", default={"max-size": "10m", "max-file": "3"}),
            labels=dict(type="dict", default={}),
            healthcheck=dict(type="dict", options=dict(
                kind=dict(type="str", choices=["auto", "docker", "http", "running"], default="auto"),
                url=dict(type="str"),
                status=dict(type="int", default=200),
                interval=dict(type="float", default=2),
                probe_timeout=dict(type="float", default=5),
                start_period=dict(type="float", default=0))),
            health_timeout=dict(type="int", default=300),
            stop_timeout=dict(type="int", default=30),
            drain_seconds=dict(type="int", default=60),
            switch_settle=dict(type="float", default=1),
            switch_file=dict(type="path"),
            keep_images=dict(type="int", default=3),
            state_dir=dict(type="path", default="/var/lib/llmstack"),
            lock_timeout=dict(type="int", default=600),
            docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
        ),
        required_if=[["state", "present", ["image"]]],
        supports_check_mode=True,
    )
    p = module.params
    if p["strategy"] == "blue_green" and not all(s in p["slots"] for s in rollout.SLOTS):
        module.fail_json(msg="%s: blue_green needs slots.blue and slots.green (each with its ports)" % p["name"])
    try:
        client = dc.connect(p["docker_host"])
        registry = dc.Registry(client, p["registry"], p["registry_username"], p["registry_password"])
        image_ref = "%s/%s" % (p["registry"], p["image"]) if p["image"] else None
        plan = rollout.Rollout(client, p, check_mode=module.check_mode)
        before = plan.history.current
        if module.check_mode:
            result = plan.run(registry, image_ref, rollback=p["state"] == "rolled_back")
        else:
            with rollout.Lock(p["state_dir"], p["name"], timeout=p["lock_timeout"]):
                result = plan.run(registry, image_ref, rollback=p["state"] == "rolled_back")
        if module._diff and result["changed"]:
            after = {"digest_ref": result["digest_ref"], "summary": plan.summary}
            result["diff"] = _diff(before, after)
    except (dc.DockerError, rollout.RolloutError, envfile.EnvFileError) as e:
        module.fail_json(msg="%s: %s" % (p["name"], e))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
