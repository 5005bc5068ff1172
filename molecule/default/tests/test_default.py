"""Verify the single-host stack molecule converged: every check goes through the real parts (the host's
Docker engine, the gateway over TLS from outside the host, postgres, the vLLM stand-in)."""
import json
import os
import socket
import ssl
import time
import http.client

import pytest

import stack
from stack import SECRETS, docker_json, live_agent, playbook, request, secret


@pytest.fixture(scope="module")
def host_ip():
    return stack.host_ip()


def test_containers_run_healthy_with_their_limits(host):
    for name, memory in (("postgres", None), ("vllm", 512 * 1024 ** 2), (live_agent(host), 512 * 1024 ** 2),
                         ("nginx_gateway", 256 * 1024 ** 2)):
        info = docker_json(host, "inspect", name)[0]
        assert info["State"]["Running"], name
        assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped", name
        if memory:
            assert info["HostConfig"]["Memory"] == memory, name
    assert docker_json(host, "inspect", "nginx_gateway")[0]["HostConfig"]["NetworkMode"] == "host"


def test_env_files_are_0600_root(host):
    names = host.check_output("ls /etc/llmstack/*.env").split()
    assert {"/etc/llmstack/postgres.env", "/etc/llmstack/agent_service.env", "/etc/llmstack/vllm.env",
            "/etc/llmstack/nginx_gateway.api_keys.env"} <= set(names)
    for name in names:
        f = host.file(name)
        assert (f.mode, f.user, f.group) == (0o600, "root", "root"), name


def test_postgres_is_not_reachable_from_outside_the_host(host, host_ip):
    assert host.run("docker exec postgres pg_isready -h 127.0.0.1").rc == 0
    with pytest.raises(OSError):
        socket.create_connection((host_ip, 5432), timeout=3).close()
    with pytest.raises(OSError):  # nor the LLM server's port: the gateway is the only door
        socket.create_connection((host_ip, 8000), timeout=3).close()


def test_the_gateway_serves_the_certificate_from_ssm_and_the_key_is_0600(host, host_ip):
    with open(os.path.join(SECRETS, "tls.crt")) as f:
        seeded = ssl.PEM_cert_to_DER_cert(f.read())
    assert ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host_ip, 443))) == seeded
    key = host.file("/etc/llmstack/nginx_gateway/tls/server.key")
    assert (key.mode, key.user) == (0o600, "root")


def test_http_redirects_to_https_but_healthz_answers(host_ip):
    _c, resp = request(host_ip, "GET", "/", tls=False)
    assert resp.status == 301 and resp.getheader("Location").startswith("https://")
    _c, resp = request(host_ip, "GET", "/healthz", tls=False)
    assert resp.status == 200


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789"])
def test_a_missing_or_wrong_key_gets_401_json(host_ip, key):
    _c, resp = request(host_ip, "GET", "/llm_api/models", key=key)
    assert resp.status == 401
    assert json.loads(resp.read())["error"]["code"] == "invalid_api_key"


def test_the_right_key_reaches_the_llm_with_security_headers(host_ip):
    for client in ("api_key_ci", "api_key_alice"):
        _c, resp = request(host_ip, "GET", "/llm_api/models", key=secret(client))
        assert resp.status == 200, client
        assert json.loads(resp.read())["data"][0]["id"] == "lab/echo"
    assert resp.getheader("X-Content-Type-Options") == "nosniff"
    assert resp.getheader("Strict-Transport-Security", "").startswith("max-age=")


def test_over_the_rate_limit_a_client_gets_429_json(host_ip):
    conn = http.client.HTTPSConnection(host_ip, 443, timeout=30, context=ssl._create_unverified_context())
    statuses, body = [], None
    time.sleep(3)  # a full bucket (earlier tests' requests drain in 2 s)
    for _request in range(40):  # burst 20 at 10 r/s: a quick 40 goes over
        conn.request("GET", "/llm_api/models", headers={"Authorization": "Bearer " + secret("api_key_alice")})
        resp = conn.getresponse()
        data = resp.read()
        statuses.append(resp.status)
        if resp.status == 429:
            body = json.loads(data)
    assert statuses.count(200) >= 20 and 429 in statuses, statuses
    assert body["error"]["code"] == "rate_limit_exceeded"
    time.sleep(3)  # the bucket refills (2 s) before the next test uses the gateway


def test_only_v1_paths_reach_the_llm_server(host_ip):
    for path in ("/metrics", "/llm_api/../metrics", "/llm_api/%2e%2e/metrics", "/tokenize"):
        _c, resp = request(host_ip, "GET", path, key=secret("api_key_ci"))
        assert b"vllm:num_requests" not in resp.read(), path


def test_a_streamed_completion_arrives_in_pieces(host_ip):
    words = "one two three four five six seven eight"
    conn, resp = request(host_ip, "POST", "/llm_api/chat/completions", key=secret("api_key_ci"),
                         body={"model": "lab/echo", "stream": True, "messages": [{"role": "user", "content": words}]})
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    arrivals, text = [], ""
    while True:
        line = resp.readline()  # decoded from the chunked framing
        if not line or line.strip() == b"data: [DONE]":
            break
        if line.startswith(b"data: "):
            arrivals.append(time.monotonic())
            text += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
    assert words in text
    assert len(arrivals) >= 8
    # One block at the end would arrive within a millisecond; the stand-in sends a word every 30 ms.
    assert arrivals[-1] - arrivals[0] > 0.15


def test_chat_goes_through_agent_postgres_and_llm_and_remembers(host_ip):
    key = secret("api_key_alice")
    _c, resp = request(host_ip, "POST", "/agent/chat", key=key, body={"message": "my name is Ada"})
    assert resp.status == 200
    first = json.loads(resp.read())
    assert first["reply"] == "echo(1): my name is Ada"
    _c, resp = request(host_ip, "POST", "/agent/chat", key=key,
                       body={"session_id": first["session_id"], "message": "what is my name?"})
    assert json.loads(resp.read())["reply"] == "echo(3): what is my name?"  # the LLM got the history


def test_a_backup_is_written_and_restore_yml_brings_rows_back(host):
    def sql(query):
        return stack.sql(host, query)
    sql("DROP TABLE IF EXISTS verify_restore; CREATE TABLE verify_restore AS SELECT generate_series(1, 500) AS n")
    host.check_output("systemctl start llmstack-postgres-backup.service")
    files = host.check_output("ls /var/backups/llmstack/postgres").split()
    assert any(f.endswith(".dump") for f in files), files
    sql("DROP TABLE verify_restore")
    # The operator's playbook, against the same inventory molecule wrote.
    playbook("restore.yml", check=True)
    assert sql("SELECT count(*) FROM verify_restore").strip() == "500"
    sql("DROP TABLE verify_restore")


def test_an_openai_sdk_works_unchanged_through_the_gateway(host_ip):
    import openai  # pylint: disable=import-outside-toplevel

    def client(key):  # the lab's certificate is self-signed; the SDK is what is under test
        return openai.OpenAI(base_url="https://%s/llm_api" % host_ip, api_key=key,
                             http_client=openai.DefaultHttpxClient(verify=False), max_retries=0)
    sdk = client(secret("api_key_alice"))
    assert [m.id for m in sdk.models.list()] == ["lab/echo"]
    reply = sdk.chat.completions.create(model="lab/echo", messages=[{"role": "user", "content": "hello sdk"}])
    assert "hello sdk" in reply.choices[0].message.content
    pieces = [c.choices[0].delta.content or "" for c in sdk.chat.completions.create(
        model="lab/echo", stream=True, messages=[{"role": "user", "content": "one two three four"}]) if c.choices]
    assert len([p for p in pieces if p]) >= 4 and "one two three four" in "".join(pieces)
    with pytest.raises(openai.AuthenticationError):
        client("wrong-key-0123456789").models.list()


def test_the_vllm_key_is_in_the_env_file_not_on_the_command_line(host):
    key = secret("vllm_api_key")
    config = docker_json(host, "inspect", "vllm")[0]
    assert key not in json.dumps(config["Args"]) and key not in json.dumps(config["Config"]["Cmd"])
    assert "--shutdown-timeout" in config["Args"] and config["Config"]["StopTimeout"] > int(
        config["Args"][config["Args"].index("--shutdown-timeout") + 1])
    assert key not in host.check_output("ps -eo args")
    assert host.file("/etc/llmstack/vllm.env").contains("^VLLM_API_KEY=")
    # Bound where the role says: 127.0.0.1 on a single host, never every address.
    assert config["HostConfig"]["PortBindings"]["8000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "8000"}]


def unavailable(host_ip):
    _c, resp = request(host_ip, "GET", "/llm_api/models", key=secret("api_key_ci"))
    body = resp.read()
    return resp.status, resp.getheader("Retry-After"), resp.getheader("X-Content-Type-Options"), body


def test_llm_api_answers_503_with_retry_after_while_vllm_is_drained_or_down(host, host_ip):
    drain = "/var/lib/llmstack/switch/llm.drain"
    assert unavailable(host_ip)[0] == 200
    try:
        # What the vllm role does before it stops the container: the gateway sends it nothing new.
        host.run_expect([0], "echo 127.0.0.1:8000 > %s" % drain)
        status, retry_after, nosniff, body = unavailable(host_ip)
        assert (status, retry_after, nosniff) == (503, "30", "nosniff"), body
        assert json.loads(body)["error"]["code"] == "service_unavailable"
        host.run_expect([0], "rm -f %s" % drain)
        assert unavailable(host_ip)[0] == 200
        # And with the container down (a crash, or a recreate without the drain): 503, not nginx's 502.
        host.run_expect([0], "docker stop -t 0 vllm")
        status, retry_after, _nosniff, _body = unavailable(host_ip)
        assert (status, retry_after) == (503, "30")
    finally:
        host.run("rm -f %s" % drain)
        host.run_expect([0], "docker start vllm")
    deadline = time.monotonic() + 30
    while unavailable(host_ip)[0] != 200:
        assert time.monotonic() < deadline, "vllm did not come back"
        time.sleep(0.5)


def test_the_self_healing_timer_runs_and_leaves_a_healthy_stack_alone(host):
    """The docker_host role's timer on the converged host (tests/integration/test_self_healing.py restarts an unhealthy
    container with the same script): enabled, and a run by hand touches none of the healthy stack's containers."""
    assert host.service("llmstack-heal.timer").is_enabled and host.service("llmstack-heal.timer").is_running
    started = host.check_output("docker ps -q | xargs docker inspect --format '{{.Name}} {{.State.StartedAt}}'")
    assert host.run("systemctl start llmstack-heal.service").rc == 0
    journal = host.check_output("journalctl -u llmstack-heal.service -n 5 --no-pager")
    assert "0 container(s) restarted" in journal, journal
    assert host.check_output("docker ps -q | xargs docker inspect --format '{{.Name}} {{.State.StartedAt}}'") == started


def test_the_host_recorded_what_it_runs_in_ssm(host):
    """site.yml's last task: <prefix>/status/<host>, each service's image and the digest its container runs."""
    client = stack.labenv.ssm_client(stack.LAB)
    record = json.loads(client.get_parameter(Name="/llmstack/lab/status/%s" % stack.INVENTORY_NAME)["Parameter"]["Value"])
    assert record["host"] == stack.INVENTORY_NAME
    assert sorted(record["versions"]) == ["agent_service", "nginx_gateway", "postgres", "vllm"], record
    image = json.loads(host.check_output("docker inspect vllm"))[0]["Config"]["Image"]
    assert image.endswith("@" + record["versions"]["vllm"]["digest"]), (image, record)


def test_the_firewall_drops_what_it_does_not_open_and_counts_it(host, host_ip):
    """From this machine, as from outside: vLLM's port on the host's address is closed (it listens on 127.0.0.1
    only; a server on 0.0.0.0 shows the firewall, not the bind, keeps it closed), and the drop is counted."""
    def dropped():
        out = json.loads(host.check_output("nft -j list counter inet llmstack input_dropped"))
        return [e["counter"] for e in out["nftables"] if "counter" in e][0]["packets"]
    before = dropped()
    host.run("setsid python3 -m http.server 9997 >/dev/null 2>&1 < /dev/null &")
    try:
        assert host.run("curl -s -o /dev/null --max-time 3 http://127.0.0.1:9997/").rc == 0, "the server is up"
        with pytest.raises(OSError):
            socket.create_connection((host_ip, 9997), timeout=3).close()
    finally:
        host.run("pkill -f 'http[.]server 9997'")
    assert dropped() > before
    assert host.service("llmstack-firewall.service").is_enabled
