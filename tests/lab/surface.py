"""The public surface, tried by an attacker with one client key from another lab host (the scenario's client host,
tests/lab/fleet.py): what is not meant to be public is not, and TLS, limits and keys are as strict as the role
says. Shared by both molecule scenarios: each imports these tests and defines the fixture `surface`
(a Surface for its gateway). The probes run on the client host (client_probe.py)."""
import json
import os
import subprocess

import pytest
import yaml

import labenv

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "inventory", "group_vars", "all.yml")) as _f:
    SERVER_NAME = yaml.safe_load(_f)["nginx_gateway_server_name"]
with open(os.path.join(HERE, "client_probe.py")) as _f:
    PROBE = _f.read()
SECRETS = os.path.join(labenv.read()["LAB_DIR"], "stack")
# One client's key: everything below is what its holder can (not) do.
KEY_NAME = "api_key_alice"
CLIENT_NAME = "alice"
NOT_FOUND = ["POST /agent/admin/cleanup", "GET /agent/docs", "GET /agent/openapi.json", "GET /agent/version",
             "GET /agent/redoc", "GET /agent/", "GET /agent/sessions/", "GET /agent/chat/../admin/cleanup",
             "GET /agent/sessions/x%2F..%2F..%2Fadmin%2Fcleanup", "GET /llm_api/tokenize", "GET /llm_api/../metrics",
             "GET /llm_api/%2e%2e/metrics", "GET /llm_api/v1/models", "GET /metrics", "GET /docs", "GET /admin/cleanup"]
# Suites Mozilla's intermediate profile leaves out: static RSA key exchange (no forward secrecy), CBC with SHA-1.
NO_FORWARD_SECRECY = ["AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA", "AES256-SHA256"]


class Surface:
    def __init__(self, scenario, gateway, app_sh):
        """scenario: the lab scenario (its client host); gateway: the gateway's address; app_sh: runs a shell
        command as root on the gateway's host and returns its output."""
        self.client = "llmstack-%s-client" % scenario
        self.gateway = gateway
        self.app_sh = app_sh

    def agent_logs(self):
        """The logs of the agent service's running slots."""
        return self.app_sh("for c in $(docker ps -q --filter name=^agent_service-); do docker logs $c 2>&1; done")

    def probe(self, kind, **ask):
        ask.setdefault("host", self.gateway)
        ask["probe"] = kind
        done = subprocess.run(["docker", "exec", "-i", self.client, "python3", "-c", PROBE], input=json.dumps(ask),
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    def ask(self, method, path, key=None, tls=True, headers=None, body=None):
        headers = dict(headers or {})
        if key is not None:
            headers["Authorization"] = "Bearer " + key
        return self.probe("request", method=method, path=path, tls=tls, port=443 if tls else 80, headers=headers,
                          body=body)


def key():
    with open(os.path.join(SECRETS, KEY_NAME)) as f:
        return f.read().strip()


def error_code(answer):
    return json.loads(answer["body"])["error"]["code"]


def test_the_key_reaches_what_its_routes_allow(surface):
    assert surface.ask("GET", "/llm_api/models", key=key())["status"] == 200
    assert surface.ask("GET", "/agent/health", key=key())["status"] == 200


@pytest.mark.parametrize("request_line", NOT_FOUND)
def test_admin_docs_and_unlisted_paths_are_404_json_even_with_a_key(surface, request_line):
    method, path = request_line.split(" ", 1)
    answer = surface.ask(method, path, key=key(), body={} if method == "POST" else None)
    assert answer["status"] == 404, answer
    assert error_code(answer) == "not_found"


def test_a_key_with_its_letters_case_swapped_gets_401(surface):
    swapped = key().swapcase()
    assert swapped != key(), "the lab key has no letters to swap"
    answer = surface.ask("GET", "/llm_api/models", key=swapped)
    assert answer["status"] == 401, answer
    assert error_code(answer) == "invalid_api_key"


def test_a_burst_of_wrong_keys_gets_429_and_the_right_key_still_works(surface):
    # After every other wrong key of this client address (the limit would answer them 429).
    done = surface.probe("burst", path="/llm_api/models", count=30, headers={"Authorization": "Bearer wrong-" + key()})
    statuses = done["statuses"]
    assert statuses[0] == 401 and 429 in statuses, statuses
    assert statuses.count(401) <= 12, statuses  # nginx_gateway_auth_failure_burst 10 (+1 at 1 r/s)
    assert error_code(done["last"]) == "rate_limit_exceeded"
    # Limited is the guessing, not the address: the same client with its key gets in.
    assert surface.ask("GET", "/llm_api/models", key=key())["status"] == 200


@pytest.mark.parametrize("suite", NO_FORWARD_SECRECY)
def test_a_tls12_suite_without_forward_secrecy_is_refused(surface, suite):
    done = surface.probe("handshake", version="TLSv1_2", ciphers=suite)
    assert not done["ok"] and "handshake failure" in done["error"], done


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_older_than_12_is_refused_by_the_gateway(surface, version):
    done = surface.probe("handshake", version=version, ciphers="DEFAULT")
    # The gateway's alert, not this client's refusal to offer the version.
    assert not done["ok"] and "alert protocol version" in done["error"], done


def test_tls12_with_ecdhe_and_tls13_are_served_without_session_tickets(surface):
    done = surface.probe("handshake", version="TLSv1_2", ciphers="ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256")
    assert done["ok"] and done["cipher"].startswith("ECDHE-"), done
    assert not done["ticket"], "the gateway issued a TLS session ticket"
    assert surface.probe("handshake", version="TLSv1_3")["version"] == "TLSv1.3"


def test_port_80_redirects_to_the_configured_name_not_the_clients_host_header(surface):
    answer = surface.ask("GET", "/index.html", tls=False, headers={"Host": "evil.example"})
    assert answer["status"] == 301, answer
    assert answer["headers"]["location"] == "https://%s/index.html" % SERVER_NAME
    assert surface.ask("GET", "/healthz", tls=False)["status"] == 200


@pytest.mark.parametrize("path", ["/llm_api/models", "/agent/chat"])
def test_an_api_path_over_plain_http_gets_403_json_not_a_redirect(surface, path):
    answer = surface.ask("GET", path, key=key(), tls=False)
    assert answer["status"] == 403 and "location" not in answer["headers"], answer
    assert error_code(answer) == "https_required"


def test_concurrent_requests_of_one_key_over_its_cap_get_429(surface):
    # 33 streams of ~12 s (400 words at the stand-in's 30 ms a token) opened 0.15 s apart: under the rate limit
    # (10 r/s), over nginx_gateway_api_key_connections (32) once the 33rd comes while all the others stream.
    body = {"model": "lab/echo", "stream": True, "max_tokens": 400,
            "messages": [{"role": "user", "content": " ".join(["word"] * 400)}]}
    done = surface.probe("concurrent", path="/llm_api/chat/completions", count=33, interval=0.15, body=body,
                         headers={"Authorization": "Bearer " + key()})
    statuses = [a["status"] for a in done["answers"]]
    assert statuses[:32] == [200] * 32 and statuses[32] == 429, statuses
    assert "concurrent requests" in json.loads(done["answers"][32]["body"])["error"]["message"]


def test_upstream_gets_the_clients_name_never_its_key_nor_a_name_the_client_sent(surface):
    warning = "carries an Authorization header"  # what the agent service logs when one reaches it
    before = surface.agent_logs().count(warning)
    answer = surface.ask("POST", "/agent/chat", key=key(), body={"message": "who am I?"},
                         headers={"X-Llmstack-Client": "admin", "x-llmstack-client": "root"})
    assert answer["status"] == 200, answer
    assert json.loads(answer["body"])["client"].lower() == CLIENT_NAME
    assert surface.agent_logs().count(warning) == before, "the client's Authorization header reached the app"
