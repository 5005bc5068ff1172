"""examples/ai-studio-cpu on the lab host: its static inventory (the VPS's address pointed at the lab host), its
group_vars and vault, the README's commands, no AWS at all. What it promises: Ollama on the CPU (the lab's stand-in
of ollama/ollama, checked at its API), its model pulled at deploy time with the progress shown and never pulled
again; the backend under /api/ without a key asking Ollama by name on the stack network; /llm_api/ as Ollama's
OpenAI API for clients with a key, streamed; an unknown model refused with the serving Ollama untouched; the
frontend at /; Ollama reachable on 127.0.0.1 only."""
import http.client
import json
import socket
import ssl

import pytest

import sse
from recipe_host import ask, deploy, recap

NAME = "ai-studio-cpu"
HOST = "ai-studio-vps"   # the recipe's inventory name
MODEL = "tinyllama:latest"


@pytest.fixture(scope="module")
def recipe(recipe_of, host, lab_host):
    return deploy(recipe_of(NAME), host, lab_host)


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
