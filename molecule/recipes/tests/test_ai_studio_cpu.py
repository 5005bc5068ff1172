"""examples/ai-studio-cpu on the lab host: its static inventory (the VPS's address pointed at the lab host), its
group_vars and vault, the README's commands, no AWS at all. What it promises: Ollama on the CPU (the lab's stand-in
of ollama/ollama, checked at its API), its model pulled at deploy time with the progress shown and never pulled
again; the backend under /api/ without a key asking Ollama by name on the stack network; /llm_api/ as Ollama's
OpenAI API for clients with a key, streamed; an unknown model refused with the serving Ollama untouched; the
frontend at /; Ollama reachable on 127.0.0.1 only; TLS from Let's Encrypt (the lab's pebble), renewed with no stream
cut, an unreachable ACME server leaving the old certificate served, and a name without DNS refused before anything
is touched."""
import http.client
import json
import socket
import ssl
import time

import pytest

import acme
import sse
from recipe_host import LAB, ask, deploy, recap

NAME = "ai-studio-cpu"
HOST = "ai-studio-vps"   # the recipe's inventory name
MODEL = "tinyllama:latest"


@pytest.fixture(scope="module")
def recipe(recipe_of, host, lab_host):
    r = recipe_of(NAME)
    # The DNS record a user makes first: the recipe's name, pointed at the VPS (the lab host).
    acme.point(LAB, host, r.group_vars["nginx_gateway_server_name"], lab_host["address"])
    return deploy(r, host, lab_host)


def ollama(host, path):
    return json.loads(host.check_output("curl -sf http://127.0.0.1:11434%s" % path))


def container(host, name):
    return json.loads(host.check_output("docker inspect %s" % name))[0]


def test_the_recipe_converges_pulling_its_model_with_progress_then_changes_nothing(recipe, host):
    assert recipe.check.returncode == 0, recipe.check.stdout[-4000:] + recipe.check.stderr[-2000:]
    assert recipe.untouched_by_check
    out = recipe.first.stdout
    assert "%s: pulling manifest" % MODEL in out and "%s: success" % MODEL in out, out[-4000:]
    assert "100%" in out, "the download's progress is shown"
    assert [m["name"] for m in ollama(host, "/api/tags")["models"]] == [MODEL]
    # The second converge pulls nothing: nothing changed, and the pull log has one pull.
    assert recap(recipe.again, HOST)["changed"] == 0, recipe.again.stdout[-4000:]
    log = host.check_output("cat /var/lib/llmstack/deployments/ollama-pull.log")
    assert log.count("%s: pulling manifest" % MODEL) == 1, log
    assert recipe.leaked(recipe.check.stdout, recipe.first.stdout, recipe.again.stdout) == []


def test_ollama_listens_on_loopback_and_the_stack_network_only(recipe, host):
    config = container(host, "ollama")
    assert config["HostConfig"]["PortBindings"] == {"11434/tcp": [{"HostIp": "127.0.0.1", "HostPort": "11434"}]}
    assert "ollama" in config["NetworkSettings"]["Networks"]["llmstack"]["Aliases"]
    with pytest.raises(OSError):
        socket.create_connection((recipe.address, 11434), timeout=3).close()


def test_the_backend_asks_ollama_by_name_through_the_gateway_without_a_key(recipe):
    body = json.dumps({"message": "Hello", "model": MODEL}).encode()
    status, _h, answer, _d = ask(recipe, "/api/chat", method="POST", body=body,
                                 headers={"Content-Type": "application/json"})
    assert status == 200, answer
    assert json.loads(answer) == {"response": "stand-in", "model": MODEL}
    assert ask(recipe, "/api/health")[0] == 200
    assert ask(recipe, "/api/notes/x")[0] == 404, "only chat, models/* and health pass"


def test_llm_api_is_ollamas_openai_api_for_clients_with_a_key(recipe):
    key = recipe.secret("nginx_gateway/api_keys/ci")
    status, _h, body, _d = ask(recipe, "/llm_api/models", headers={"Authorization": "Bearer " + key})
    assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == [MODEL], body
    assert ask(recipe, "/llm_api/models")[0] == 401
    conn = http.client.HTTPSConnection(recipe.address, 443, timeout=30)
    conn.sock = ssl._create_unverified_context().wrap_socket(socket.create_connection((recipe.address, 443), timeout=30),
                                                             server_hostname=recipe.server_name)
    conn.request("POST", "/llm_api/chat/completions",
                 body=json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}),
                 headers={"Host": recipe.server_name, "Authorization": "Bearer " + key,
                          "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    events = [json.loads(line[len(b"data: "):]) for _t, line in sse.arrivals(resp)[:-1]]
    assert "".join(e["choices"][0]["delta"]["content"] for e in events) == "stand-in answer", events


def test_the_frontend_is_at_the_root(recipe):
    status, _h, body, _d = ask(recipe, "/")
    assert status == 200 and b"frontend-version" in body, body[:300]


def test_an_unknown_model_is_refused_naming_it_and_ollama_keeps_serving(recipe, host):
    before = container(host, "ollama")
    proc = recipe.playbook("site.yml", "-e", json.dumps({"ollama_models": [MODEL, "no-such-model:7b"]}),
                           host=recipe.target)
    assert proc.returncode != 0
    assert "pull no-such-model:7b: Ollama says: pull model manifest: file does not exist" in proc.stdout, \
        proc.stdout[-3000:]
    after = container(host, "ollama")
    assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])
    assert [m["name"] for m in ollama(host, "/api/tags")["models"]] == [MODEL]


def live(host, recipe, name="cert.pem"):
    return host.check_output("cat /etc/letsencrypt/live/%s/%s" % (recipe.server_name, name))


def served(recipe):
    return ask(recipe, "/api/health")[3]


def test_lets_encrypt_issued_the_certificate_the_gateway_serves(recipe, host):
    assert served(recipe) == ssl.PEM_cert_to_DER_cert(live(host, recipe))
    issuer = host.check_output("openssl x509 -noout -issuer -in /etc/letsencrypt/live/%s/cert.pem" % recipe.server_name)
    assert "Pebble Intermediate CA" in issuer, issuer
    assert host.check_output("systemctl is-enabled certbot.timer") == "enabled"
    # The private key never shows in the runs' output.
    key_lines = [ln for ln in live(host, recipe, "privkey.pem").splitlines() if not ln.startswith("-----")]
    outputs = recipe.check.stdout + recipe.first.stdout + recipe.again.stdout
    assert key_lines and not [ln for ln in key_lines if ln in outputs]
    # :80 serves the challenges' webroot while everything else redirects.
    # (certbot removes the challenge folders it made once it is done.)
    host.run("mkdir -p /etc/llmstack/nginx_gateway/acme/.well-known/acme-challenge && "
             "echo probe-token > /etc/llmstack/nginx_gateway/acme/.well-known/acme-challenge/probe")
    status, _h, body, _d = ask(recipe, "/.well-known/acme-challenge/probe", tls=False)
    assert (status, body) == (200, b"probe-token\n")
    assert ask(recipe, "/", tls=False)[0] == 301


def test_a_forced_renewal_while_a_stream_is_open_serves_the_new_certificate_and_cuts_nothing(recipe, host):
    before = served(recipe)
    conn = http.client.HTTPSConnection(recipe.address, 443, timeout=30)
    conn.sock = ssl._create_unverified_context().wrap_socket(socket.create_connection((recipe.address, 443), timeout=30),
                                                             server_hostname=recipe.server_name)
    # The backend's SSE (stream-app serves .../stream under any prefix): 30 events, 200 ms apart.
    conn.request("GET", "/api/models/stream?tokens=30&interval_ms=200", headers={"Host": recipe.server_name})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    first = resp.fp.readline()
    while not first.startswith(b"data: "):   # the chunk's size line
        assert first, "the stream ended before its first event"
        first = resp.fp.readline()
    renewal = host.run("certbot renew --force-renewal --no-random-sleep-on-renew --cert-name %s" % recipe.server_name)
    assert renewal.rc == 0, renewal.stdout + renewal.stderr
    renewed = ssl.PEM_cert_to_DER_cert(live(host, recipe))
    assert renewed != before
    # nginx -s reload returns before the old workers stop accepting: a handshake right after may still get the old
    # certificate. New workers serve the new one within moments.
    deadline = time.monotonic() + 10
    while served(recipe) != renewed:
        assert time.monotonic() < deadline, "the gateway still serves the old certificate 10 s after the renewal"
        time.sleep(0.2)
    # The 29 other events and [DONE], from the connection opened before the renewal.
    assert len(sse.arrivals(resp)) == 30, "the stream went on to its end"
    conn.close()


def test_an_unreachable_acme_server_fails_clearly_and_the_old_certificate_stays(recipe, host):
    before = served(recipe)
    unreachable = "https://%s:9/dir" % LAB["LAB_GATEWAY"]
    renewal = host.run("certbot renew --force-renewal --no-random-sleep-on-renew --cert-name %s --server %s"
                       % (recipe.server_name, unreachable))
    assert renewal.rc != 0
    assert "Failed to renew certificate %s" % recipe.server_name in renewal.stdout + renewal.stderr, renewal.stderr
    assert served(recipe) == before
    # The renewal settings still name the real server: the next timer run renews from it.
    conf = host.check_output("cat /etc/letsencrypt/renewal/%s.conf" % recipe.server_name)
    assert "server = %s" % LAB["LAB_ACME_URL_FROM_HOSTS"] in conf


def test_a_name_without_dns_is_refused_before_anything_is_touched(recipe, host):
    before = dict((name, container(host, name)) for name in ("nginx_gateway", "ollama"))
    proc = recipe.playbook("site.yml", "-e", "nginx_gateway_server_name=nodns.example.com", host=recipe.target)
    assert proc.returncode != 0
    assert "nginx_gateway_server_name nodns.example.com does not resolve on %s" % HOST in proc.stdout, \
        proc.stdout[-3000:]
    assert recap(proc, HOST)["changed"] == 0
    for name, was in before.items():
        now = container(host, name)
        assert (now["Id"], now["State"]["StartedAt"]) == (was["Id"], was["State"]["StartedAt"]), name
    assert not host.file("/etc/letsencrypt/renewal/nodns.example.com.conf").exists


@pytest.mark.parametrize("extra, says", [
    ({"ollama_models": [MODEL, "Qwen3"]}, 'ollama_models: "Qwen3": not a model name'),
    ({"llmstack_readiness": "fiel"}, 'llmstack_readiness must be ssm, file or none'),
    ({"nginx_gateway_letsencrypt_server": "acme.example.com/directory"},
     "nginx_gateway_letsencrypt_server must be an https:// URL of an ACME directory (got 'acme.example.com/directory')"),
    ({"nginx_gateway_letsencrypt_email": "ops-at-example.com"},
     "nginx_gateway_letsencrypt_email must be empty or an email address (got 'ops-at-example.com')"),
])
def test_bad_input_is_refused_and_the_running_stack_is_untouched(recipe, host, extra, says):
    before = dict((name, container(host, name)) for name in ("nginx_gateway", "ollama"))
    proc = recipe.playbook("site.yml", "-e", json.dumps(extra), host=recipe.target)
    # (The YAML callback folds long messages: compare with the whitespace collapsed.)
    assert proc.returncode != 0 and says in " ".join(proc.stdout.split()), proc.stdout[-3000:]
    assert recap(proc, HOST)["changed"] == 0
    for name, was in before.items():
        now = container(host, name)
        assert (now["Id"], now["State"]["StartedAt"]) == (was["Id"], was["State"]["StartedAt"]), name
