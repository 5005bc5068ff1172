"""The gateway check (module_utils/gateway_check.py) against a real HTTP server on loopback that answers as the
gateway and its check listener would: per path, a status and a body, with every request recorded."""
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import gateway_check

KEYS = {"ALICE": "sk-alice-" + os.urandom(6).hex(), "CI": "sk-ci-" + os.urandom(6).hex()}
MODELS = {"object": "list", "data": [{"id": "lab/echo"}]}


class Gateway:
    """answers: {path: [(status, body), ...]}: each request to path takes the next answer, the last one repeats."""

    def __init__(self, answers):
        self.answers, self.seen, self.headers = answers, [], []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                gateway.seen.append((self.path, self.headers.get("Authorization")))
                gateway.headers.append(dict(self.headers))
                queue = gateway.answers.get(self.path, [(404, {"error": {"message": "not found"}})])
                status, body = queue.pop(0) if len(queue) > 1 else queue[0]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway():
    started = []

    def start(answers):
        started.append(Gateway(answers))
        return started[-1]
    yield start
    for g in started:
        g.close()


@pytest.fixture
def keys_file(tmp_path):
    path = tmp_path / "nginx_gateway.api_keys.env"
    path.write_text("".join("%s=%s\n" % kv for kv in sorted(KEYS.items(), reverse=True)))
    return str(path)


ROUTES = [{"path": "/llm_api/", "upstream": "llm", "upstream_path": "/v1/", "check": "models"},
          {"path": "/agent/", "upstream": "agent_service", "check": "health"},
          {"path": "/docs/", "upstream": "agent_service"}]
UPSTREAMS = [{"name": "llm", "servers": ["10.0.0.5:8000", "10.0.0.6:8000"]},
             {"name": "agent_service", "blue": "127.0.0.1:8101", "green": "127.0.0.1:8102"}]
GOOD = {"/llm_api/models": [(200, MODELS)], "/agent/health": [(200, {"status": "ok"})],
        "/llm/10.0.0.5:8000/llm_api/models": [(200, MODELS)], "/llm/10.0.0.6:8000/llm_api/models": [(200, MODELS)]}


def check(g, keys_file, routes=None, timeout=1.0, switch_dir=None):
    return gateway_check.run(routes or ROUTES, UPSTREAMS, g.url, g.url, keys_file, switch_dir=switch_dir,
                             timeout=timeout, interval=0.05)


def test_every_route_and_every_server_is_asked_with_the_first_key(gateway, keys_file, tmp_path):
    g = gateway(dict(GOOD))
    (tmp_path / "agent_service.live").write_text("agent_service_green\n")
    results = check(g, keys_file, switch_dir=str(tmp_path))
    assert sorted(path for path, _auth in g.seen) == sorted(GOOD)  # /docs/ names no check: not asked
    assert set(auth for _path, auth in g.seen) == {"Bearer " + KEYS["ALICE"]}  # the first key by name
    assert [(r["route"], r["server"], r["status"], r["error"]) for r in results] == [
        ("/llm_api/", None, 200, None), ("/llm_api/", "10.0.0.5:8000", 200, None),
        ("/llm_api/", "10.0.0.6:8000", 200, None), ("/agent/", "agent_service_green", 200, None)]
    assert not [k for k in KEYS.values() if k in json.dumps(results)]


def test_a_route_at_503_fails_naming_route_upstream_and_the_gateways_message(gateway, keys_file):
    answers = dict(GOOD, **{"/llm_api/models": [(503, {"error": {"message": "the service is restarting"}})]})
    g = gateway(answers)
    with pytest.raises(gateway_check.CheckError) as failed:
        check(g, keys_file, timeout=0.5)
    assert str(failed.value) == ("route /llm_api/ (upstream llm) answered HTTP 503: the service is restarting "
                                 "(after 0s)")
    # Asked again until the timeout, and the others were fine.
    assert [p for p, _a in g.seen].count("/llm_api/models") >= 3
    assert [r["error"] for r in failed.value.results if r["route"] == "/agent/"] == [None]


def test_one_server_down_is_named_although_the_route_answers(gateway, keys_file):
    g = gateway(dict(GOOD, **{"/llm/10.0.0.6:8000/llm_api/models": [(502, {})]}))
    with pytest.raises(gateway_check.CheckError) as failed:
        check(g, keys_file, timeout=0.3)
    assert str(failed.value).startswith("route /llm_api/ (upstream llm, server 10.0.0.6:8000) answered HTTP 502")
    assert "10.0.0.5" not in str(failed.value)


def test_a_server_that_comes_up_during_the_wait_passes(gateway, keys_file):
    g = gateway(dict(GOOD, **{"/llm/10.0.0.5:8000/llm_api/models": [(502, {}), (502, {}), (200, MODELS)]}))
    results = check(g, keys_file, timeout=5)
    assert all(r["status"] == 200 for r in results)


def test_an_empty_model_list_is_a_failure(gateway, keys_file):
    g = gateway(dict(GOOD, **{"/llm_api/models": [(200, {"object": "list", "data": []})]}))
    with pytest.raises(gateway_check.CheckError, match=r"route /llm_api/ \(upstream llm\) answered HTTP 200 with an "
                                                       r"empty list"):
        check(g, keys_file, timeout=0.2)


def test_a_route_without_auth_gets_no_key(gateway, keys_file):
    g = gateway({"/status/": [(200, {"ok": True})]})
    check(g, keys_file, routes=[{"path": "/status/", "upstream": None, "auth": False, "check": "/"}])
    assert g.seen == [("/status/", None)]


def test_no_keys_file_is_a_clear_error(gateway, tmp_path):
    g = gateway(dict(GOOD))
    missing = str(tmp_path / "nope.env")
    with pytest.raises(gateway_check.CheckError, match="no API keys file at %s" % missing):
        check(g, missing)
    assert g.seen == []


def test_a_gateway_not_listening_is_named_by_its_url(keys_file):
    url = "http://127.0.0.1:9"
    with pytest.raises(gateway_check.CheckError) as failed:
        gateway_check.run(ROUTES[:1], UPSTREAMS, url, "", keys_file, timeout=0.2, interval=0.05)
    assert "route /llm_api/ (upstream llm) answered GET http://127.0.0.1:9/llm_api/models: not listening" \
        in str(failed.value)
    assert not [k for k in KEYS.values() if k in str(failed.value)]


def test_live_slot_names_the_switch_files_upstream(tmp_path):
    up = {"name": "agent_service", "blue": "127.0.0.1:8101", "green": "127.0.0.1:8102"}
    assert gateway_check.live_slot(up, str(tmp_path)) == "no switch file yet"
    (tmp_path / "agent_service.live").write_text("agent_service_blue\n")
    assert gateway_check.live_slot(up, str(tmp_path)) == "agent_service_blue"
    (tmp_path / "agent_service.live").write_text("\n")
    assert gateway_check.live_slot(up, str(tmp_path)) is None
    # A plain upstream (servers) has no switch file; nor is there one without a switch folder.
    assert gateway_check.live_slot({"name": "llm", "servers": ["10.0.0.5:8000"]}, str(tmp_path)) is None
    assert gateway_check.live_slot(up, None) is None


def test_each_route_gets_the_key_its_way(gateway, keys_file):
    """bearer: Authorization; header: the key alone in its header; none: no key at all."""
    routes = [{"path": "/api/", "upstream": "agent_service", "auth": "header", "auth_header": "X-Proxy-Key",
               "check": "health"},
              {"path": "/open/", "upstream": "agent_service", "auth": "none", "check": "health"},
              {"path": "/agent/", "upstream": "agent_service", "auth": "bearer", "check": "health"}]
    g = gateway({"/api/health": [(200, {})], "/open/health": [(200, {})], "/agent/health": [(200, {})]})
    check(g, keys_file, routes=routes)
    sent = dict((path, headers) for (path, _a), headers in zip(g.seen, g.headers))
    assert sent["/api/health"]["X-Proxy-Key"] == KEYS["ALICE"] and "Authorization" not in sent["/api/health"]
    assert "Authorization" not in sent["/open/health"] and "X-Proxy-Key" not in sent["/open/health"]
    assert sent["/agent/health"]["Authorization"] == "Bearer " + KEYS["ALICE"]
