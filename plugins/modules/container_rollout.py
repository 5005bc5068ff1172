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
  - Logs in to a registry, resolves O(image) to a digest and pulls it only if the host does not have it
    yet, then runs the service's container.
  - The whole container spec (ports, volumes, networks, GPUs, env files, ...) is validated before anything
    on the host is touched, so bad input fails with a message naming the option and leaves the running
    container alone.
  - If the container that serves has the wanted digest and the same spec hash (run options plus the content
    of every env file), and the module saw it pass its health check, nothing is touched (C(changed=false)).
  - C(recreate) stops the old container, starts the new one and waits until it is healthy. On any failure
    the new container is removed and the old one started again.
  - C(blue_green) starts the new container in the other slot (C(<name>-blue)/C(<name>-green), each with
    its own host ports), waits until it is healthy, switches traffic by rewriting O(switch_file) (the
    gateway reads it per request, so no reload drops connections), then stops the old slot gracefully
    within O(drain_seconds). A new slot that fails its health check is removed; traffic never moves.
  - Each service keeps its deployment history in O(state_dir)C(/deployments/<name>.json) (0600), with every
    attempt with its status, digest, spec hash and recorded spec (run options, env file paths and their
    checksums, health check; never an env file value). Phases go to C(<name>.log) beside it.
  - O(state=rolled_back) recreates the previous good deployment exactly as recorded (digest, run options,
    env files, health check) from the image kept on the host, with no registry call. A failed or
    rolled-back deployment is never a rollback target, and repeating a rollback changes nothing.
  - Crash-safe. Every attempt is recorded as pending before anything is touched, and the live slot comes
    from O(switch_file) (the gateway's truth), so a run killed at any point (an C(async) timeout, a lost
    connection) is repaired by the next run. A container the module never saw healthy is health-checked
    again instead of being counted as current.
  - One rollout per service per host at a time (a file lock in O(state_dir)C(/locks/)); the history is read
    under that lock.
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
      - Resolves the image in the registry but pulls nothing; creates nothing, not even O(state_dir).
  diff_mode:
    support: full
    details:
      - The diff shows the digest and the spec summary; env values appear only as keyed hashes.
  idempotent:
    support: full
options:
  name:
    description:
      - The service (C(agent_service), C(vllm), ...). Container name, label value and history key.
      - Letters, digits, C(_), C(.) and C(-).
    type: str
    required: true
  state:
    description:
      - C(present) rolls out O(image).
      - C(rolled_back) returns to the previous good deployment as recorded; no registry call.
      - C(absent) removes the service's containers and its history; images and volumes stay.
    type: str
    choices: [present, rolled_back, absent]
    default: present
  strategy:
    description:
      - C(blue_green) for stateless services behind the gateway, C(recreate) for singletons.
      - A service keeps its strategy; to change it, remove the service with O(state=absent) first.
    type: str
    choices: [recreate, blue_green]
    default: recreate
  image:
    description:
      - Image reference with a tag or a digest, with or without its registry
        (C(ghcr.io/org/agent:v2), C(host:5443/org/agent:v2), C(vllm/vllm-openai:v0.34.0), C(org/agent@sha256:...)).
        Required with O(state=present).
      - Read as Docker reads it. The first component is a registry host only if it has a C(.) or a C(:) or is
        C(localhost); without one the image is Docker Hub's (C(nginx:1.27) is C(docker.io/library/nginx:1.27)),
        unless O(registry) is set, which is then prefixed. No tag and no digest means C(latest).
    type: str
  registry:
    description:
      - Registry host (and port) to log in to, and to prefix to an O(image) that names no host.
      - Defaults to the registry O(image) names, else Docker Hub (C(docker.io)). If both name one, they must
        agree (C(docker.io) and C(index.docker.io) both name Docker Hub).
    type: str
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
    description:
      - Env files (for example from M(llmstack.deploy.ssm_env_file)); their content is part of the spec hash.
      - Read exactly as C(docker run --env-file) reads them (BOM, CRLF, comments, no quoting), except that a
        bare C(KEY) with no C(=) is an error rather than a copy of the module's own environment. Invalid
        lines are errors naming the file and line.
    type: list
    elements: path
    default: []
  env:
    description:
      - Extra environment variables. They override O(env_files).
      - Not for secrets, put those in an env file. Their values are kept in the history, for rollback.
    type: dict
    default: {}
  ports:
    description:
      - Published ports for O(strategy=recreate), as C([host_ip:]host_port:container_port[/proto]).
      - Mutually exclusive with O(slots).
    type: list
    elements: str
  slots:
    description: Published ports per slot for O(strategy=blue_green).
    type: dict
    suboptions:
      blue:
        description: The blue slot.
        type: dict
        required: true
        suboptions:
          ports:
            description: Published ports, as C([host_ip:]host_port:container_port[/proto]).
            type: list
            elements: str
            required: true
      green:
        description: The green slot.
        type: dict
        required: true
        suboptions:
          ports:
            description: Published ports, as C([host_ip:]host_port:container_port[/proto]).
            type: list
            elements: str
            required: true
  volumes:
    description: Binds and volumes, as C(source:target[:ro|rw]) (source is an absolute host path or a volume name).
    type: list
    elements: str
    default: []
  networks:
    description: Networks to join, with aliases. The first one is the container's primary network. They must exist.
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
    description:
      - GPUs to request (NVIDIA runtime) - C(all), a count, or device ids (a list, or C(0,1)).
      - On a local daemon, the module checks first that the NVIDIA Container Toolkit is installed.
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
    description: Extra container labels (the C(llmstack.) prefix is the module's own).
    type: dict
    default: {}
  network_mode:
    description:
      - C(host) shares the host's network stack (a gateway that proxies to ports published on 127.0.0.1),
        C(none) gives no network. With C(host) or C(none) the container has no O(ports) or O(networks)
        of its own, and the strategy must be C(recreate).
      - Unset, the container gets Docker's default bridge and O(networks).
    type: str
    choices: [bridge, host, none]
  healthcheck:
    description:
      - How to decide the new container is healthy. Recorded with the deployment, used again on rollback,
        and not part of the spec hash (changing it restarts nothing).
    type: dict
    suboptions:
      kind:
        description:
          - C(auto) uses the image's HEALTHCHECK if it has one, else the HTTP probe if O(healthcheck.url)
            is set, else "running". C(http) needs O(healthcheck.url).
          - C(exec) runs O(healthcheck.command) in the container (as C(docker exec) does) until it exits 0,
            for example C([pg_isready, -h, 127.0.0.1]).
          - C(openai) is vLLM's readiness, from O(healthcheck.url) (the server's base URL) - C(/health) answers
            200, then C(/v1/models) (with the key) lists O(healthcheck.model), then a one-token
            C(/v1/completions) answers. A refused or reset connection counts as "still loading" (vLLM binds
            its port before the model is loaded), and the progress is logged every 30 s.
        type: str
        choices: [auto, docker, exec, http, openai, running]
        default: auto
      url:
        description:
          - URL probed from the host; C({port}) becomes the slot's first published host port.
          - With O(healthcheck.kind=openai), the base URL (C(http://127.0.0.1:{port})).
        type: str
      command:
        description: The command of O(healthcheck.kind=exec), as a list (no shell).
        type: list
        elements: str
      model:
        description: With O(healthcheck.kind=openai), the served model name C(/v1/models) must list.
        type: str
      api_key_env:
        description:
          - With O(healthcheck.kind=openai), the environment variable (from O(env_files) or O(env)) that holds
            the server's API key, for example C(VLLM_API_KEY). It is sent as a Bearer token and never logged.
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
    description:
      - Seconds a stopping container gets between SIGTERM and SIGKILL, when the module stops it (O(strategy=recreate),
        O(state=absent)) and when Docker does (an operator's C(docker stop), a daemon shutdown) - it is set on the
        container too. Unset, 30 (and Docker's own default of 10 stays on the container).
      - Above the app's own drain time (vLLM's C(--shutdown-timeout)), or Docker kills it mid-drain.
    type: int
  drain_seconds:
    description:
      - Seconds the old slot gets to finish in-flight requests after the switch (longer than the longest
        token stream; match nginx C(worker_shutdown_timeout)).
      - With O(strategy=recreate) and O(drain_metrics_url), the longest wait for in-flight requests before
        the old container is stopped.
    type: int
    default: 60
  drain_metrics_url:
    description:
      - With O(strategy=recreate), a Prometheus metrics URL of the running container (C({port}) becomes its
        first published host port). Before the old container is stopped, the module waits until the sum
        of O(drain_gauges) is 0 (no request in flight), for at most O(drain_seconds); then it stops it.
      - Take the container out of the gateway first, so no new request arrives meanwhile.
    type: str
  drain_gauges:
    description: The gauges of O(drain_metrics_url) that count requests in flight (vLLM's by default).
    type: list
    elements: str
    default: [vllm:num_requests_running, vllm:num_requests_waiting]
  gpu_free_timeout:
    description:
      - With O(gpus), seconds to wait after the old container stopped until no process holds the GPUs the
        new one will use (C(nvidia-smi --query-compute-apps)), before it starts. Then the rollout fails,
        naming the PIDs, and the previous version is brought back.
      - Before anything is touched, a process that is not the service's own container and holds those GPUs
        (a vLLM engine worker left by a killed run) fails the run at once, naming its PID.
    type: int
    default: 60
  switch_settle:
    description: Seconds between the switch and the old slot's SIGTERM, for requests already routed to it.
    type: float
    default: 1
  switch_file:
    description:
      - File the gateway reads per request to pick the live upstream (content C(<name>_<slot>)). Written
        atomically after the new slot is healthy, and read to learn which slot is live. Its folder must exist.
      - Required with O(strategy=blue_green).
    type: path
  keep_images:
    description:
      - Images of the last N good deployments kept on the host for rollbacks. Older ones, and those of failed
        deployments, are removed after a successful rollout, unless a container or another service's history uses them.
    type: int
    default: 3
  state_dir:
    description: Where deployment histories, logs, locks and the host key live.
    type: path
    default: /var/lib/llmstack
  lock_timeout:
    description: Seconds to wait for another rollout of the same service to finish.
    type: int
    default: 600
  inputs_changed:
    description:
      - 'The caller changed an input this module reads, for example the env file
        (C(inputs_changed: "{{ env_file is changed }}")).'
      - In check mode that task wrote nothing, so the env files on the host are missing or old. With
        O(inputs_changed=true) check mode does not read them and reports C(changed=true), for a deployed service
        with a message (and a diff note) that it would be rolled out again.
      - For a service this host never deployed, check mode with O(inputs_changed=true) does not even ask Docker
        (on a fresh host the same run would install it, create the network and the switch folder); it reports
        C(changed=true) with a message that the service would be deployed.
      - Outside check mode it changes nothing (the spec hash covers the env files' content).
    type: bool
    default: false
    version_added: 0.2.0
requirements:
  - the docker Python SDK (python3-docker 5.x or docker 7.x) on the target host
notes:
  - With a tag, every run asks the registry which digest the tag points to. If the registry can't be reached,
    the container runs the digest recorded for that same tag, and nothing else changed, the run is a no-op with
    a warning; otherwise it fails and changes nothing.
  - For a long health wait (vLLM loading a model) use C(async)/C(poll); if the async timeout kills the module,
    the next run resumes the health check of the container it started instead of starting another.
"""

EXAMPLES = r"""
- name: Roll out the agent service, blue/green behind the gateway
  llmstack.deploy.container_rollout:
    name: agent_service
    image: "ghcr.io/myorg/agent-service:{{ app_image_tag }}"
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
    image: vllm/vllm-openai:v0.33.0
    registry: docker.io
    strategy: recreate
    gpus: all
    ipc_mode: host
    ports: ["127.0.0.1:8000:8000"]
    # vLLM drains on SIGTERM only with --shutdown-timeout (default 0 aborts); stop_timeout stays above it.
    command: [--model, Qwen/Qwen3-0.6B, --shutdown-timeout, "60"]
    stop_timeout: 90
    env_files: [/etc/llmstack/vllm.env]   # VLLM_API_KEY: off the command line, out of ps and inspect
    drain_metrics_url: "http://127.0.0.1:{port}/metrics"
    drain_seconds: 600
    healthcheck:
      kind: openai
      url: "http://127.0.0.1:{port}"
      model: Qwen/Qwen3-0.6B
      api_key_env: VLLM_API_KEY
      interval: 10
    health_timeout: 2400
  async: 2700
  poll: 15

- name: Roll back to the previous good deployment, as recorded (no registry call)
  llmstack.deploy.container_rollout:
    name: agent_service
    state: rolled_back
    strategy: blue_green
    switch_file: /etc/llmstack/gateway/agent_service.live

- name: Set the Docker options of every llmstack Docker module at once
  module_defaults:
    group/llmstack.deploy.docker:
      state_dir: /srv/llmstack/state
      registry: ghcr.io
  block:
    - name: Roll out PostgreSQL
      llmstack.deploy.container_rollout:
        name: postgres
        image: myorg/postgres:16
        volumes: [postgres_data:/var/lib/postgresql/data]
        env_files: [/etc/llmstack/postgres.env]

- name: Remove a service (its images and volumes stay)
  llmstack.deploy.container_rollout:
    name: agent_service
    state: absent
"""

RETURN = r"""
service:
  description: The service name.
  returned: always
  type: str
  sample: agent_service
image:
  description: The full image reference that was asked for (on rollback, the recorded one).
  returned: unless O(state=absent)
  type: str
  sample: ghcr.io/myorg/agent-service:v2
digest_ref:
  description: The image pinned by digest.
  returned: unless O(state=absent)
  type: str
  sample: ghcr.io/myorg/agent-service@sha256:0f1e...
image_id:
  description: Local image id of the deployed version (null in check mode before a pull).
  returned: unless O(state=absent)
  type: str
spec_hash:
  description: Hash over the digest, env file contents and run options; stored as the llmstack.spec-hash label.
  returned: unless O(state=absent)
  type: str
slot:
  description: The live slot after the run (blue_green).
  returned: unless O(state=absent)
  type: str
  sample: green
container:
  description: Name of the container now serving.
  returned: unless O(state=absent)
  type: str
previous:
  description: The digest of the current deployment before this run.
  returned: unless O(state=absent)
  type: str
deployment:
  description: The number of the deployment this run recorded in the history.
  returned: when a deployment was recorded
  type: int
  sample: 7
rollback:
  description: With O(state=rolled_back), which deployment was restored, from which, and why.
  returned: when O(state=rolled_back)
  type: dict
  contains:
    to:
      description: The deployment number returned to.
      type: int
    from:
      description: The deployment number rolled back from (null when staying on the current one).
      type: int
    note:
      description: What the rollback decided, in words.
      type: str
changes:
  description: What differs from the current recorded deployment.
  returned: unless O(state=absent)
  type: dict
  contains:
    options:
      description: Spec options whose value differs (C(image), C(ports), C(memory), ...).
      type: list
      elements: str
    env:
      description: Env keys, never values.
      type: dict
      contains:
        added:
          description: Keys the new spec has and the old one did not.
          type: list
          elements: str
        removed:
          description: Keys the old spec had and the new one has not.
          type: list
          elements: str
        changed:
          description: Keys whose value differs.
          type: list
          elements: str
removed:
  description: With O(state=absent), the containers removed.
  returned: when O(state=absent)
  type: list
  elements: str
phases:
  description: What the run did, with elapsed seconds.
  returned: always
  type: list
  elements: str
msg:
  description: In check mode with O(inputs_changed), that the service would be rolled out again, or deployed.
  returned: when O(inputs_changed) is true in check mode
  type: str
"""

import json
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import envfile, rollout, spec
from ansible_collections.llmstack.deploy.plugins.module_utils.rollout_run import EXPECTED


def _diff(before, after, note=None):
    def text(entry):
        if not entry:
            return ""
        return json.dumps({"image": entry.get("digest_ref"), "spec": entry.get("summary")}, indent=2, sort_keys=True) + "\n"
    return {"before": text(before), "after": text(after) + ("# %s\n" % note if note else "")}


SLOT = dict(type="dict", required=True, options=dict(ports=dict(type="list", elements="str", required=True)))
HEALTHCHECK = dict(
    kind=dict(type="str", choices=["auto", "docker", "exec", "http", "openai", "running"], default="auto"),
    url=dict(type="str"),
    command=dict(type="list", elements="str"),
    model=dict(type="str"),
    api_key_env=dict(type="str", no_log=False),
    status=dict(type="int", default=200),
    interval=dict(type="float", default=2),
    probe_timeout=dict(type="float", default=5),
    start_period=dict(type="float", default=0))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "rolled_back", "absent"], default="present"),
            strategy=dict(type="str", choices=list(spec.STRATEGIES), default="recreate"),
            image=dict(type="str"),
            registry=dict(type="str"),
            registry_username=dict(type="str"),
            registry_password=dict(type="str", no_log=True),
            command=dict(type="list", elements="str"),
            env_files=dict(type="list", elements="path", default=[]),
            env=dict(type="dict", default={}),
            ports=dict(type="list", elements="str"),
            slots=dict(type="dict", options=dict(blue=SLOT, green=SLOT)),
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
            network_mode=dict(type="str", choices=["bridge", "host", "none"]),
            healthcheck=dict(type="dict", options=HEALTHCHECK,
                             required_if=[["kind", "http", ["url"]], ["kind", "exec", ["command"]],
                                          ["kind", "openai", ["url", "model"]]]),
            health_timeout=dict(type="int", default=300),
            stop_timeout=dict(type="int"),
            drain_seconds=dict(type="int", default=60),
            drain_metrics_url=dict(type="str"),
            drain_gauges=dict(type="list", elements="str",
                              default=["vllm:num_requests_running", "vllm:num_requests_waiting"]),
            gpu_free_timeout=dict(type="int", default=60),
            switch_settle=dict(type="float", default=1),
            switch_file=dict(type="path"),
            keep_images=dict(type="int", default=3),
            state_dir=dict(type="path", default="/var/lib/llmstack"),
            lock_timeout=dict(type="int", default=600),
            inputs_changed=dict(type="bool", default=False),
            **dc.DOCKER_ARGUMENT_SPEC
        ),
        required_if=[["state", "present", ["image"]], ["strategy", "blue_green", ["switch_file"]]],
        required_together=[["registry_username", "registry_password"]],
        mutually_exclusive=[["ports", "slots"]],
        supports_check_mode=True,
    )
    p = module.params
    plan = None
    new = rollout.new_in_check_mode(p, module.check_mode)
    if new is not None:
        module.exit_json(**new)
    try:
        client = dc.connect(p["docker_host"])
        plan = rollout.Rollout(client, p, check_mode=module.check_mode, run_command=module.run_command)
        result = plan.run()
        if module._diff and result["changed"] and p["state"] != "absent":
            result["diff"] = _diff(plan.before, {"digest_ref": result["digest_ref"], "summary": plan.summary}, plan.note)
    except Exception as e:  # pylint: disable=broad-exception-caught
        # Any env value (from the app's log lines, say) is redacted from what leaves the host.
        values = plan.spec.env_values() if plan is not None and plan.spec is not None else []
        msg = str(e) if isinstance(e, EXPECTED) else (
            "unexpected %s: %s. The phases show how far the run got; re-running the task repairs an "
            "interrupted rollout" % (e.__class__.__name__, e))
        module.fail_json(msg="%s: %s" % (p["name"], envfile.redact(msg, values)),
                         phases=plan.log.lines if plan is not None else [],
                         exception=envfile.redact(traceback.format_exc(), values))
    for warning in plan.warnings:
        module.warn("%s: %s" % (p["name"], warning))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
