"""examples/sse-app-vps on the lab host: its static inventory (the VPS's address pointed at the lab host), its
group_vars, the README's commands. What it promises: the frontend at `/` and the streaming API under `/api/` over
TLS with the recipe's certificate, keys taken from X-Streaming-Proxy-Key only and never passed to the app, SSE
in pieces, :80 redirecting (the API refused there), and `rollout.yml -e service=frontend`."""
import json

import pytest

from recipe_host import ask, certificate, deploy, recap
import sse

NAME = "sse-app-vps"
HOST = "devussy-vps"   # the recipe's inventory name
HEADER = "X-Streaming-Proxy-Key"


@pytest.fixture(scope="module")
def recipe(recipe_of, host, lab_host):
    return deploy(recipe_of(NAME), host, lab_host)


def key(r):
    return r.secret("nginx_gateway/api_keys/ci")


def test_check_mode_on_a_fresh_host_succeeds_and_changes_nothing(recipe):
    assert recipe.check.returncode == 0, recipe.check.stdout[-4000:] + recipe.check.stderr[-2000:]
    assert recap(recipe.check, HOST)["changed"] > 0, "check mode shows what would change"
    assert recipe.untouched_by_check


def test_the_recipe_converges_and_a_second_converge_changes_nothing(recipe):
    assert recap(recipe.again, HOST)["changed"] == 0, recipe.again.stdout[-4000:]
    outputs = [p.stdout + p.stderr for p in (recipe.check, recipe.first, recipe.again)]
    assert recipe.leaked(*outputs) == []


def test_the_frontend_is_at_the_root_over_tls_with_the_recipes_certificate(recipe):
    status, headers, body, der = ask(recipe, "/")
    assert status == 200 and b"frontend-version: 1.0.0" in body, body[:300]
    assert headers["cache-control"], "the frontend's own cache headers pass through"
    assert der == certificate(recipe.tls()[0]), "the certificate from nginx_gateway_tls_cert_src"


def test_port_80_redirects_and_the_api_is_refused_there(recipe):
    status, headers, _b, _d = ask(recipe, "/", tls=False)
    assert status == 301 and headers["location"] == "https://%s/" % recipe.server_name
    status, _h, body, _d = ask(recipe, "/api/health", tls=False, headers={HEADER: key(recipe)})
    assert status == 403, body


def test_the_api_takes_its_key_in_the_proxy_key_header_only(recipe):
    for headers in ({}, {HEADER: "not-a-key-0123456789abcdef"}, {"Authorization": "Bearer " + key(recipe)}):
        status, _h, body, _d = ask(recipe, "/api/health", headers=headers)
        assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", (list(headers), body)
    status, _h, body, _d = ask(recipe, "/api/health", headers={HEADER: key(recipe)})
    assert status == 200 and json.loads(body)["status"] == "ok"
    # Only what the recipe allows: design, design/stream, health.
    status, _h, body, _d = ask(recipe, "/api/headers", headers={HEADER: key(recipe)})
    assert status == 404, body


def test_the_design_stream_arrives_in_pieces_and_the_key_never_reaches_the_app(recipe, host):
    import http.client  # pylint: disable=import-outside-toplevel
    import socket  # pylint: disable=import-outside-toplevel
    import ssl  # pylint: disable=import-outside-toplevel
    conn = http.client.HTTPSConnection(recipe.address, 443, timeout=30)
    conn.sock = ssl._create_unverified_context().wrap_socket(socket.create_connection((recipe.address, 443), timeout=30),
                                                             server_hostname=recipe.server_name)
    conn.request("POST", "/api/design/stream", body=json.dumps({"tokens": 6, "interval_ms": 300}),
                 headers={"Host": recipe.server_name, HEADER: key(recipe), "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    arrivals = sse.arrivals(resp)
    assert len(arrivals) == 7 and arrivals[-1][0] - arrivals[0][0] > 1.2, "events came as they were sent"
    # The app logs a warning naming the header whenever a request carries it (tests/images/stream-app).
    logs = host.check_output("docker logs streaming_server-blue 2>&1; docker logs streaming_server-green 2>&1 || true")
    assert HEADER not in logs and "Authorization" not in logs


def running(host):
    """{container name: (id, start time)} of the host's running containers."""
    out = host.check_output("docker ps -q | xargs -r docker inspect --format '{{.Name}} {{.Id}} {{.State.StartedAt}}'")
    return dict((line.split()[0], tuple(line.split()[1:])) for line in out.splitlines())


def test_the_converges_read_secrets_from_the_vault_file_only(recipe, host):
    """No moto, no AWS keys: every AWS endpoint is a dead port (tests/lab/recipes.yml), so the converges above
    passing proves nothing reached for AWS; the app's env file holds the vault's value, 0600."""
    assert recipe.source == "vault"
    env = host.file("/etc/llmstack/streaming_server.env")
    assert env.mode == 0o600 and env.user == "root"
    assert "OPENAI_API_KEY=%s\n" % recipe.secret("streaming_server/openai_api_key") in env.content_string


def test_the_host_recorded_what_it_runs_in_a_file(recipe, host):
    """Without SSM the readiness record goes to a file on the host (llmstack_readiness: file, from the vault source)."""
    record = json.loads(host.file("/var/lib/llmstack/readiness.json").content_string)
    assert record["host"] == HOST and sorted(record["versions"]) == ["frontend", "nginx_gateway", "streaming_server"]
    assert all(v["digest"].startswith("sha256:") for v in record["versions"].values()), record


def test_the_firewall_is_on_as_the_recipe_asks(recipe, host):
    """UFW's 22/80/443 on the operators' VPS: here the firewall role's table, with those three ports only."""
    allowed = json.loads(host.check_output("nft -j list set inet llmstack allowed_tcp"))
    elements = [e["set"] for e in allowed["nftables"] if "set" in e][0]["elem"]
    assert sorted(elements) == [22, 80, 443]


def test_a_converge_at_vvv_shows_no_secret_from_the_vault(recipe, lab_host):
    proc = recipe.playbook("site.yml", "-vvv", "--diff", host=lab_host)
    assert proc.returncode == 0 and recap(proc, HOST)["changed"] == 0, proc.stdout[-3000:]
    assert recipe.leaked(proc.stdout + proc.stderr) == []


def test_a_vault_without_a_secret_is_refused_naming_it_and_nothing_is_touched(recipe, host, lab_host):
    before = running(host)
    recipe.seed(leave_out=["streaming_server/openai_api_key"])
    try:
        proc = recipe.playbook("site.yml", host=lab_host)
    finally:
        recipe.seed()
    assert proc.returncode != 0
    assert "path /devussy/production/streaming_server holds no parameters in the parameters given on the " \
           "controller" in proc.stdout, proc.stdout[-3000:]
    assert running(host) == before, "the running containers were touched"
    assert recipe.leaked(proc.stdout + proc.stderr) == []


def test_rollout_of_the_frontend_as_the_readme_runs_it(recipe, lab_host):
    proc = recipe.playbook("rollout.yml", "-e", "service=frontend", "-e", "image_tag=1.0.1", host=lab_host)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    status, _h, body, _d = ask(recipe, "/")
    assert status == 200 and b"frontend-version: 1.0.1" in body
    status, _h, body, _d = ask(recipe, "/api/health", headers={HEADER: key(recipe)})
    assert status == 200, "the API kept serving"
    assert recipe.leaked(proc.stdout + proc.stderr) == []
