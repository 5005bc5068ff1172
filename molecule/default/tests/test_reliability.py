"""Reliability and security of the converged single-host stack: secrets in a -vvv converge and in the logs,
bad input at the play level, two plays at once, the Docker daemon killed mid-rollout, a host reboot.
Each test leaves the stack serving; the module's teardown converges agent_service back to the inventory's
settings. Tests named test_a_ .. test_e_ run in that order (the reboot last)."""
import json
import os
import re
import subprocess
import threading
import time

import pytest
import yaml

from stack import (HOST_CONTAINER, INVENTORY_NAME, LAB_DIR, ROOT, docker_json, history, host_ip, leaked, live_agent, playbook,
                   serving, snapshot, sql, wait_serving, with_app)

DEPLOY_LOG = "/var/lib/llmstack/deployments/agent_service.log"


def agent_env(marker):
    """-e llmstack_apps as the inventory has it, plus one key in the agent's env: a new env file, so a real rollout."""
    with open(os.path.join(ROOT, "tests", "lab", "inventory", "group_vars", "all.yml")) as f:
        (agent,) = [a for a in yaml.safe_load(f)["llmstack_apps"] if a["name"] == "agent_service"]
    return with_app(env=dict(agent["env"], LLMSTACK_TEST_RUN=marker))


def rollout_agent(marker, *args, check=False):
    return playbook("site.yml", "--tags", "agent_service", *(agent_env(marker) + list(args)), check=check)


def running_env(host, name):
    return dict(kv.split("=", 1) for kv in docker_json(host, "inspect", name)[0]["Config"]["Env"])


def recap_changed(output):
    found = re.findall(re.escape(INVENTORY_NAME) + r"\s*:\s*ok=\d+\s+changed=(\d+)", output)
    return int(found[-1]) if found else None


@pytest.fixture(scope="module", autouse=True)
def back_to_the_inventory():
    playbook("site.yml", "--tags", "agent_service", check=True)
    yield
    playbook("site.yml", "--tags", "agent_service", check=True)


def test_a_a_vvv_converge_and_the_logs_hold_no_secret(host):
    path = os.environ.get("LLMSTACK_CONVERGE_LOG", os.path.join(LAB_DIR, "converge-vvv.log"))
    assert os.path.exists(path), ("no -vvv converge log at %s: ./tests/run writes it on the host's first converge "
                                  "(BENCH_FIRST_CONVERGE_LOG in tests/bench/single_host.py)" % path)
    with open(path) as f:
        converge = f.read()
    assert "EXEC" in converge, "the log is at -vvv (it shows the connection's commands)"
    assert (recap_changed(converge) or 0) > 10, "the log is the host's first, full converge"
    assert leaked(converge) == []
    # Traffic of its own first (a completion, the agent with postgres, a refused key), then every log.
    ip = host_ip()
    assert serving(ip) is None
    # nginx's access and error logs are its container's stdout and stderr (the image links them there).
    logs = host.check_output("for c in $(docker ps -aq); do docker logs $c 2>&1; done; "
                             "cat /var/lib/llmstack/deployments/*.log /var/lib/llmstack/deployments/*.json")
    assert '"api_key":"CI"' in logs and '"api_key":"ALICE"' in logs, "the logs hold the requests just made"
    assert leaked(logs) == []


BAD_INPUT = {
    "a missing SSM path": (
        ["--tags", "agent_service"] + with_app(ssm_paths=["/llmstack/lab/agent_service", "/llmstack/lab/no_such_path"]),
        ["/llmstack/lab/no_such_path"]),
    "a wrong region": (["--tags", "agent_service", "-e", "llmstack_aws_region=eu-west-3"], ["eu-west-3"]),
    "an invalid image tag": (
        ["--tags", "agent_service"] + with_app(image="%s:no-such-tag"
                                               % os.environ.get("LAB_IMAGE_AGENT_SERVICE", "").rsplit(":", 1)[0]),
        ["no-such-tag"]),
    "a wrong registry password": (
        ["--tags", "agent_service", "-e", "llmstack_registry_password=not-the-password-0123"],
        [os.environ.get("LAB_REGISTRY_FROM_HOSTS", "")]),
    # argument_specs, before the role touches anything (the whole play: the type check is per role).
    "an invalid variable type": (["-e", json.dumps({"vllm_port": "eighty"})], ["vllm_port"]),
    "an invalid check port": (["-e", json.dumps({"nginx_gateway_check_port": "eighty"})], ["nginx_gateway_check_port"]),
    # llmstack.deploy.gateway_routes, before the gateway role writes anything.
    "a route without an allow-list": (
        ["-e", json.dumps({"nginx_gateway_routes": [{"path": "/agent/", "upstream": "agent_service"}]})],
        ["nginx_gateway_routes[0] (/agent/): allow is missing"]),
    # The apps and their routes, checked before any host is touched (app validate, nginx_gateway validate).
    "two routes with the same path": (
        with_app(routes=[{"path": "/agent/", "allow": ["health"]}, {"path": "/agent/", "allow": ["chat"]}]),
        ["another route has the same path"]),
    "a route to an unknown upstream": (
        with_app(routes=[{"path": "/agent/", "upstream": "nope", "allow": ["health"]}]),
        ["llmstack_apps (agent_service) route /agent/", "nope", "is not one of"]),
    "a WebSocket route with streaming off": (
        with_app(routes=[{"path": "/ws/", "allow": ["*"], "websocket": True, "streaming": False}]),
        ["websocket: true needs streaming: true"]),
    "a static folder that does not exist": (
        with_app(name="frontend", image="unused:1", slots={"blue": 8111, "green": 8112},
                 routes=[{"path": "/", "static": "/no/such/build", "allow": ["*"], "auth": "none"}]),
        ["/no/such/build", "not a folder on the controller"]),
    "two apps with one name": (
        ["-e", json.dumps({"llmstack_apps": [{"name": "x", "image": "i:1", "slots": {"blue": 1, "green": 2}}] * 2})],
        ["llmstack_apps[1] (x): llmstack_apps[0] has the same name"]),
    "a variable of the former agent_service role": (
        ["-e", "agent_service_memory=1g"], ["agent_service_memory no longer exists", "llmstack_apps"]),
    # The firewall role, before it touches anything (llmstack_firewall: true in the lab's group_vars).
    "a firewall list that locks SSH out": (
        ["-e", json.dumps({"firewall_allowed_tcp": [80, 443]})], ["firewall_allowed_tcp", "leaves out port 22"]),
    # 127.0.0.1:8000 is vLLM's: the slot the rollout would start cannot have it (see port_in_use).
    "a port in use": (None, ["127.0.0.1:8000", "already in use"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_b_bad_input_is_a_clear_error_and_changes_nothing(host, case):
    args, named = BAD_INPUT[case]
    if args is None:
        args = port_in_use(host)
    before = snapshot(host)
    proc = playbook("site.yml", *args)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    # A task's failure, or one item's of a loop.
    failed = output[min(i for i in (output.find("fatal:"), output.find("failed: ["), len(output)) if i >= 0):
                    output.rfind("PLAY RECAP")]
    flat = " ".join(failed.split())  # the callback wraps long messages
    for needle in named:
        assert needle in flat, "the error names %r:\n%s" % (needle, failed[-3000:])
    assert leaked(output) == [] and "not-the-password-0123" not in output
    assert recap_changed(output) == 0, output[-2000:]
    assert snapshot(host) == before, "same containers (id, start time, image), env files, switch, gateway config"
    assert serving(host_ip()) is None


def port_in_use(host):
    """The standby slot (the one a rollout starts) gets vLLM's 127.0.0.1:8000; the live slot keeps its port."""
    live = host.file("/var/lib/llmstack/switch/agent_service.live").content_string.strip().rsplit("_", 1)[1]
    standby = "green" if live == "blue" else "blue"
    slots = {live: {"blue": 8101, "green": 8102}[live], standby: 8000}
    return ["--tags", "agent_service"] + with_app(slots=slots)


def stale_proxies(host):
    """docker-proxy processes pointing at an IP no running container has."""
    ips = set(host.check_output("docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "
                                "$(docker ps -q)").split())
    proxies = [line.split() for line in host.check_output("ps -eo args | grep '^/usr/sbin/docker-proxy' || true")
               .splitlines()]
    return [p for p in proxies if p[p.index("-container-ip") + 1] not in ips]


def test_c_two_plays_at_once_one_waits_never_both_half_done(host):
    results = {}

    def run(marker):
        results[marker] = rollout_agent(marker)
    threads = [threading.Thread(target=run, args=(m,)) for m in ("play-a", "play-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = dict((m, (p.returncode, recap_changed(p.stdout))) for m, p in results.items())
    for marker, proc in results.items():
        if proc.returncode:
            assert "lock" in proc.stdout, "a play that fails says it met the other one: %s" % proc.stdout[-3000:]
    assert any(rc == 0 for rc, _changed in outcomes.values()), outcomes
    # Whatever the interleaving: the running agent has the env file's settings, and the history is clean.
    with_file = dict(line.split("=", 1) for line in
                     host.check_output("cat /etc/llmstack/agent_service.env").splitlines() if "=" in line)
    assert running_env(host, live_agent(host))["LLMSTACK_TEST_RUN"] == with_file["LLMSTACK_TEST_RUN"]
    assert history(host)["deployments"][0]["status"] == "succeeded"
    assert not [d for d in history(host)["deployments"] if d["status"] in ("pending", "interrupted")]
    assert int(host.check_output("docker ps -q --filter label=llmstack.service=agent_service | wc -l")) == 1
    assert serving(host_ip()) is None


def wait_docker(host):
    """systemd restarts a killed dockerd (Restart=always); live-restore keeps the containers running meanwhile."""
    deadline = time.monotonic() + 60
    while host.run("docker info").rc != 0:
        assert time.monotonic() < deadline, "dockerd did not come back"
        time.sleep(1)


def test_d_docker_killed_mid_rollout_a_rerun_converges_and_postgres_keeps_its_rows(host):
    sql(host, "DROP TABLE IF EXISTS reliability_rows; CREATE TABLE reliability_rows AS SELECT generate_series(1, 1000) AS n")
    # dockerd killed between two API calls costs the module nothing: docker.socket holds its next connection until
    # systemd has started dockerd again. The kill must land inside a call: the new container's start (network,
    # port proxy: about 0.4 s here), so a watcher on the host itself kills dockerd 0.15 s after the container's
    # `create` event. (Over SSH, polling lands too late.) An attempt whose kill still missed is made again.
    watch = ('docker events --filter type=container --filter event=create --filter label=llmstack.service=agent_service '
             '--format "{{.Actor.Attributes.name}}" | { read -r name && sleep 0.15 && '
             'kill -9 "$(systemctl show -p MainPID --value docker)" && echo "killed dockerd while starting $name"; }')
    for attempt in range(3):
        result = {}

        def watcher():
            result["watch"] = host.run("timeout 120 sh -c %s", watch)
        watching = threading.Thread(target=watcher)
        watching.start()
        time.sleep(2)  # the watcher is in place (SSH, sudo, docker events) long before the play reaches the rollout
        first = rollout_agent("after-kill-%d" % attempt)
        watching.join()
        killed_at = result["watch"].stdout.strip()
        assert killed_at, "the rollout never reached its new container: %s" % first.stdout[-3000:]
        if first.returncode != 0:
            break
        wait_docker(host)
    assert first.returncode != 0, "every kill landed outside a Docker call (%r)" % killed_at
    wait_docker(host)
    second = rollout_agent("after-kill")
    assert second.returncode == 0, second.stdout[-4000:]
    assert running_env(host, live_agent(host))["LLMSTACK_TEST_RUN"] == "after-kill"
    assert history(host)["deployments"][0]["status"] == "succeeded"
    assert int(host.check_output("docker ps -q --filter label=llmstack.service=agent_service | wc -l")) == 1
    # A dockerd killed while it started a container leaves that container's docker-proxy behind, holding the
    # slot's port (the first run of this test found it); the rollout stops such a proxy and starts again.
    assert stale_proxies(host) == []
    assert sql(host, "SELECT count(*) FROM reliability_rows").strip() == "1000"
    sql(host, "DROP TABLE reliability_rows")
    wait_serving(host_ip(), 60)


def test_e_a_host_reboot_brings_every_container_back_and_the_gateway_answers(host):
    before = sorted(host.check_output("docker ps --format '{{.Names}}'").split())
    # Stop the lab host as a shutdown does (systemd's halt signal), then start it: a reboot of the EC2 stand-in.
    subprocess.run(["docker", "kill", "--signal=SIGRTMIN+3", HOST_CONTAINER], check=True, capture_output=True)
    halted = time.monotonic()
    # A halt that takes longer is cut short as a power-off would (the containers must come back either way).
    deadline = halted + 30
    while docker_state() == "running" and time.monotonic() < deadline:
        time.sleep(1)
    forced = docker_state() == "running"
    if forced:
        subprocess.run(["docker", "stop", "-t", "10", HOST_CONTAINER], check=True, capture_output=True)
    halt = "forced by docker stop after 30 s" if forced else "clean, %.0f s" % (time.monotonic() - halted)
    subprocess.run(["docker", "start", HOST_CONTAINER], check=True, capture_output=True)
    try:
        wait_serving(host_ip(), 180)
    except AssertionError as e:
        raise AssertionError("%s\nhalt: %s\n%s" % (e, halt, boot_report())) from None
    assert sorted(host.check_output("docker ps --format '{{.Names}}'").split()) == before
    assert live_agent(host) in before
    # A new network namespace, so the firewall's table is there again only because its service loaded it at boot.
    assert host.run("nft list counter inet llmstack input_dropped").rc == 0, boot_report()


def boot_report():
    """What the host's Docker did at boot: every container's status, whether it runs, whether dockerd holds it
    as stopped by hand (config.v2.json, not shown by docker inspect), its exit code and error, and dockerd's log."""
    script = ("docker ps -a --format '{{.Names}} {{.Status}}'; "
              "for d in /var/lib/docker/containers/*/; do "
              "python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); "
              "print(c[\"Name\"], c[\"State\"][\"Running\"], c[\"HasBeenManuallyStopped\"], "
              "c[\"State\"].get(\"ExitCode\"), c[\"State\"].get(\"Error\"))' $d/config.v2.json; done; "
              "journalctl -u docker --no-pager -n 40 -o cat")
    # From outside: the report must work when the host's sshd did not come back either.
    done = subprocess.run(["docker", "exec", HOST_CONTAINER, "sh", "-c", script], capture_output=True, text=True,
                          check=False)
    return done.stdout + done.stderr


def docker_state():
    return subprocess.run(["docker", "inspect", "-f", "{{.State.Status}}", HOST_CONTAINER], check=True,
                          capture_output=True, text=True).stdout.strip()
