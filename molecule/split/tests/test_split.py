"""Verify the split topology molecule converged: one app host (gateway) and two GPU hosts (vLLM stand-in
on the NVIDIA Container Toolkit stand-in), EC2 instances of the lab on one network, reached over SSH as the
plays reach them. Requests go from this machine to the gateway over TLS, as a client on the network would
send them."""
import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
import fleet  # noqa: E402  pylint: disable=wrong-import-position
import labenv  # noqa: E402  pylint: disable=wrong-import-position
from llm_load import LlmLoad  # noqa: E402  pylint: disable=wrong-import-position

LAB = labenv.read()
HOSTS = dict((h["container"], h) for h in fleet.Fleet(LAB, "split").hosts())
APP = "llmstack-split-app"
# GPU host -> its private address (what the inventory gives as llmstack_private_address).
GPUS = dict((name, h["address"]) for name, h in sorted(HOSTS.items()) if h["role"] == "gpu")
GATEWAY = HOSTS[APP]["address"]
SECRETS = os.path.join(LAB["LAB_DIR"], "stack")
ROLLING_FIGURE = os.path.join(LAB["LAB_DIR"], "split-rolling.json")
_SSH = {}


def secret(name):
    with open(os.path.join(SECRETS, name)) as f:
        return f.read().strip()


def sh(host, script, check=True):
    """A shell script on a lab host, as root, over SSH as the plays reach it; its stdout."""
    if host not in _SSH:
        _SSH[host] = fleet.ssh_host(LAB, HOSTS[host]["address"])
    done = _SSH[host].run(script)
    if check:
        assert done.rc == 0, "%s: %s: %s" % (host, script, done.stderr[-1000:])
    return done.stdout


def upstreams_since(mark):
    """Upstream addresses of the gateway's /llm_api/ requests logged since `mark` (a log line count)."""
    lines = sh(APP, "docker logs nginx_gateway 2>/dev/null").splitlines()[mark:]
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("path", "").startswith("/v1/") or entry.get("path", "").startswith("/llm_api/"):
            found.append(entry["upstream"])
    return found


def health(on, address):
    """The HTTP status of vLLM's /health at address, asked from the lab host `on` ("000": no connection)."""
    return sh(on, "curl -s -o /dev/null -w '%%{http_code}' --max-time 3 http://%s:8000/health" % address, check=False)


def wait_vllm(on, address, timeout=30):
    deadline = time.monotonic() + timeout
    while health(on, address) != "200":
        assert time.monotonic() < deadline, "vLLM at %s did not answer %s within %ds" % (address, on, timeout)
        time.sleep(0.5)


def log_mark():
    return len(sh(APP, "docker logs nginx_gateway 2>/dev/null").splitlines())


def load(**kw):
    return LlmLoad(GATEWAY, secret("api_key_ci"), **kw)


def converge(*extra, rc=0):
    """A converge of the scenario (site.yml picks split), as an operator's next run."""
    proc = subprocess.run(["molecule", "converge", "-s", "split", "--"] + list(extra), cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert (proc.returncode == 0) == (rc == 0), proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def new_vllm_env():
    return '{"vllm_env": {"LLMSTACK_ROLLOUT": "%d"}}' % (time.time() * 1000)


def container(host, name):
    return json.loads(sh(host, "docker inspect %s" % name))[0]


def test_vllm_listens_only_on_the_configured_address():
    for host, address in GPUS.items():
        config = container(host, "vllm")
        assert config["HostConfig"]["PortBindings"]["8000/tcp"] == [{"HostIp": address, "HostPort": "8000"}]
        listening = sh(host, "ss -ltnH '( sport = :8000 )' | awk '{print $4}'").split()
        assert listening == ["%s:8000" % address], listening
        # Not on loopback or any other address of the host.
        assert sh(host, "curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://127.0.0.1:8000/health",
                  check=False) == "000"


def test_gpu_hosts_run_the_toolkit_and_vllm_gets_its_gpus():
    for host in GPUS:
        held = sh(host, "dpkg --get-selections nvidia-container-toolkit libnvidia-container1 | sed 's/:amd64//'").split()
        assert held == ["nvidia-container-toolkit", "hold", "libnvidia-container1", "hold"], held
        daemon = json.loads(sh(host, "cat /etc/docker/daemon.json"))
        assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
        assert daemon["log-driver"] == "json-file"  # docker_host's keys survive nvidia-ctk
        config = container(host, "vllm")
        assert config["HostConfig"]["DeviceRequests"][0]["Count"] == -1  # gpus: all
        assert config["HostConfig"]["IpcMode"] == "host"
        # nvidia-smi (the driver stand-in) sees vLLM's process on the GPU.
        pid = str(config["State"]["Pid"])
        apps = sh(host, "nvidia-smi --query-compute-apps=pid --format=csv,noheader").split()
        assert pid in apps, (pid, apps)


def test_the_gateway_spreads_requests_over_both_gpu_hosts():
    mark = log_mark()
    run = load(clients=2, pace=4)
    run.during(lambda: time.sleep(4), before=0, after=0)
    assert run.failed == 0, run.errors[:5]
    used = upstreams_since(mark)
    counts = dict((address, sum(1 for u in used if u == "%s:8000" % address)) for address in GPUS.values())
    assert len(used) >= 20 and all(c >= len(used) // 5 for c in counts.values()), counts


def test_a_rolling_vllm_update_under_load_fails_no_request():
    before = dict((h, container(h, "vllm")["Id"]) for h in GPUS)
    run = load(clients=2, pace=3.5)
    # A new setting for vLLM: both GPU hosts are updated, one at a time, drained in the gateway first.

    def update():
        start = time.monotonic()
        return converge("--tags", "vllm", "-e", new_vllm_env()), time.monotonic() - start

    out, seconds = run.during(update, before=3, after=3)
    # The benchmark's rolling figure (tests/bench/split_rolling.py): this same update under this same load.
    with open(ROLLING_FIGURE, "w") as f:
        json.dump({"failed": run.failed, "total": run.total, "seconds": seconds, "errors": run.errors[:50]}, f)
    after = dict((h, container(h, "vllm")["Id"]) for h in GPUS)
    assert all(before[h] != after[h] for h in GPUS), "both GPU hosts were updated"
    assert run.total >= 50 and run.failed == 0, "%s: %s" % (run.figure(), run.errors[:5])
    assert "Drain, recreate" in out
    for host in GPUS:
        log = sh(host, "cat /var/lib/llmstack/deployments/vllm.log")
        # The module waited for requests in flight, then for a real completion from the new container.
        assert "drained vllm" in log and "vllm is healthy (openai)" in log, log[-1500:]
    assert not sh(APP, "ls /var/lib/llmstack/switch/").count("llm.drain"), "the drain file was removed"


def test_a_stopped_gpu_host_is_skipped_within_the_passive_health_window():
    host, address = "llmstack-split-gpu1", GPUS["llmstack-split-gpu1"]
    sh(host, "docker stop -t 0 vllm")
    try:
        mark = log_mark()
        run = load(clients=2, pace=4)
        run.during(lambda: time.sleep(5), before=0, after=0)
        # Connection refused: nginx tries the other server at once, then skips this one for fail_timeout.
        assert run.failed == 0, run.errors[:5]
        used = upstreams_since(mark)
        alone = [u for u in used if u == "%s:8000" % GPUS["llmstack-split-gpu2"]]
        assert len(alone) >= len(used) - 2, used
    finally:
        sh(host, "docker start vllm")
    wait_vllm(host, address)


@pytest.mark.parametrize("host", sorted(GPUS))
def test_the_vllm_key_is_not_on_the_command_line(host):
    key = secret("vllm_api_key")
    config = container(host, "vllm")
    assert key not in json.dumps(config["Args"]) and key not in sh(host, "ps -eo args")


def test_a_leftover_process_on_the_gpu_stops_the_update_before_anything_is_touched():
    """vllm #55510: engine workers that outlive a killed vLLM keep their VRAM. The update must refuse,
    naming the PID, and leave the serving container alone (same id, same start time)."""
    host = "llmstack-split-gpu1"
    before = container(host, "vllm")
    # A process registered with the driver stand-in as holding GPU 0, as such a worker would be.
    pid = sh(host, "setsid sleep 300 >/dev/null 2>&1 & echo $!").strip()
    sh(host, "echo 0 > /run/nvidia-standin/holders/%s" % pid)
    try:
        out = converge("--tags", "vllm", "--limit", HOSTS[host]["inventory_name"], "-e", new_vllm_env(), rc=2)
        assert "pid %s (GPU 0" % pid in out and "hold the GPUs vllm would use" in out, out[-2000:]
        after = container(host, "vllm")
        assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])
        assert not sh(APP, "ls /var/lib/llmstack/switch/").count("llm.drain"), "the host is back in the gateway"
    finally:
        sh(host, "kill %s; rm -f /run/nvidia-standin/holders/%s" % (pid, pid), check=False)
    # Once the process is gone, the same update goes through.
    converge("--tags", "vllm", "--limit", HOSTS[host]["inventory_name"], "-e", new_vllm_env())
    assert container(host, "vllm")["Id"] != before["Id"]


def test_each_gpu_hosts_vllm_answers_the_app_host():
    for host, address in GPUS.items():
        assert health(APP, address) == "200", host


def test_the_converge_fails_naming_a_gpu_host_that_does_not_answer_through_the_gateway():
    """One GPU host down: /llm_api/ still answers (the gateway skips it), but the converge's check asks each
    server through the gateway and must fail, naming that server."""
    host, address = "llmstack-split-gpu2", GPUS["llmstack-split-gpu2"]
    sh(host, "docker stop -t 0 vllm")
    try:
        out = converge("--tags", "gateway", "-e", "nginx_gateway_check_timeout=3", rc=2)
        assert "route /llm_api/ (upstream llm, server %s:8000) answered" % address in out, out[-3000:]
        assert "server %s:8000) answered" % GPUS["llmstack-split-gpu1"] not in out
    finally:
        sh(host, "docker start vllm")
    wait_vllm(APP, address)
    converge("--tags", "gateway")


# The host firewall (llmstack_firewall: true in the lab's group_vars, as in the README): tested from another lab
# host, as traffic from outside reaches a host, not by reading the rules.
def counter(host, name):
    """Packets the firewall's named counter has dropped on a lab host."""
    out = json.loads(sh(host, "nft -j list counter inet llmstack %s" % name))
    return [e["counter"] for e in out["nftables"] if "counter" in e][0]["packets"]


def http_code(on, url):
    return sh(on, "curl -sk -o /dev/null -w '%%{http_code}' --max-time 3 %s" % url, check=False)


def test_a_gpu_host_cannot_reach_another_gpu_hosts_vllm_and_the_drop_is_counted():
    one, (other, address) = sorted(GPUS)[0], sorted(GPUS.items())[1]
    before = counter(other, "forward_dropped")
    assert http_code(one, "http://%s:8000/health" % address) == "000"
    assert counter(other, "forward_dropped") > before
    # The app host, trusted by its private address, still gets through.
    assert http_code(APP, "http://%s:8000/health" % address) == "200"


def test_a_port_published_by_mistake_and_a_host_port_stay_closed_while_the_gateway_answers():
    gpu = sorted(GPUS)[0]
    # A container published on 0.0.0.0, from an image the host has (the agent service's, by id: no pull), and a
    # server on the host itself, both on ports the firewall does not open.
    image = sh(APP, "docker inspect --format '{{.Image}}' $(docker ps -q --filter label=llmstack.service=agent_service"
                    " | head -1)").strip()
    sh(APP, "docker run -d --rm --name llmstack-mistake -p 9999:9999 --entrypoint python3 %s -m http.server 9999"
            % image)
    sh(APP, "setsid python3 -m http.server 9998 >/dev/null 2>&1 < /dev/null &")
    try:
        deadline = time.monotonic() + 20
        while not (http_code(APP, "http://127.0.0.1:9999/") == "200" and http_code(APP, "http://127.0.0.1:9998/") == "200"):
            assert time.monotonic() < deadline, "the servers did not start on the app host"
            time.sleep(0.5)
        dropped = (counter(APP, "forward_dropped"), counter(APP, "input_dropped"))
        assert http_code(gpu, "http://%s:9999/" % GATEWAY) == "000", "the published port is reachable"
        assert http_code(gpu, "http://%s:9998/" % GATEWAY) == "000", "the host's port is reachable"
        assert counter(APP, "forward_dropped") > dropped[0] and counter(APP, "input_dropped") > dropped[1]
        assert http_code(gpu, "https://%s/healthz" % GATEWAY) == "200"
        assert http_code(gpu, "http://%s/healthz" % GATEWAY) == "200"
    finally:
        sh(APP, "docker rm -f llmstack-mistake; pkill -f 'http[.]server 9998'", check=False)


def firewall_state():
    """Per host: the live table (without counters' values) and the rules file, byte for byte."""
    return dict((h, (sh(h, "nft -s list table inet llmstack"), sh(h, "cat /etc/llmstack/firewall.nft")))
                for h in HOSTS)


@pytest.mark.parametrize("extra,named", [
    ({"firewall_extra_input_rules": ["tcp dport 1234 acept"]}, ["acept", "failed to validate"]),
    ({"firewall_allowed_tcp": [80, 443]}, ["firewall_allowed_tcp", "leaves out port 22", "lock it out"]),
], ids=["a misspelt rule", "a list without ssh"])
def test_a_bad_firewall_setting_is_refused_and_changes_nothing(extra, named):
    before = firewall_state()
    out = converge("--tags", "firewall", "-e", json.dumps(extra), rc=2)
    flat = " ".join(out.split())
    for needle in named:
        assert needle in flat, (needle, out[-3000:])
    assert firewall_state() == before


def test_each_host_recorded_what_it_runs_in_ssm():
    """The converge's last play: <prefix>/status/<host>, the versions from each host's deployment histories."""
    client = labenv.ssm_client(LAB)
    for name, h in HOSTS.items():
        param = "/llmstack/lab/status/%s" % h["inventory_name"]
        record = json.loads(client.get_parameter(Name=param)["Parameter"]["Value"])
        assert record["host"] == h["inventory_name"], record
        services = ["vllm"] if name in GPUS else ["agent_service", "nginx_gateway", "postgres"]
        assert sorted(record["versions"]) == services, record
        if name in GPUS:
            # The container runs the image by digest (container_rollout pins it): the recorded one.
            running = container(name, "vllm")["Config"]["Image"]
            assert running.endswith("@" + record["versions"]["vllm"]["digest"]), (running, record)
            assert record["versions"]["vllm"]["image"].endswith(":v0.33.0"), record
