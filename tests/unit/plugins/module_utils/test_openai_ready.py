"""The vLLM readiness (probe.Health kind openai) and the drain gauges, against the vLLM stand-in server
run as a local process (the same server the lab image runs, with vLLM 0.33.0's command line)."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from urllib.request import Request, urlopen

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import probe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
STANDIN = os.path.join(ROOT, "tests", "images", "vllm-standin", "vllm_standin.py")
KEY = "sk-unit-" + os.urandom(8).hex()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *args, load=0.0, delay_ms=1):
        self.port = free_port()
        env = dict(os.environ, STANDIN_LOAD_SECONDS=str(load), STANDIN_TOKEN_DELAY_MS=str(delay_ms), VLLM_API_KEY=KEY)
        self.proc = subprocess.Popen(
            [sys.executable, STANDIN, "serve", "lab/echo", "--host", "127.0.0.1", "--port", str(self.port)] + list(args),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def server():
    servers = []

    def start(*args, **kw):
        servers.append(Server(*args, **kw))
        return servers[-1]
    yield start
    for s in servers:
        s.stop()


def ready(base, model="lab/echo", key=KEY, timeout=20):
    h = probe.Health(kind="openai", url=base, model=model, api_key=key, interval=0.2, timeout=timeout)
    return h.openai_ready(base)


def wait_listening(base, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ok, why = ready(base)
        if "not listening" not in why:
            return ok, why
        time.sleep(0.1)
    raise AssertionError("the stand-in never listened")


def test_ready_after_a_real_one_token_completion(server):
    s = server("--served-model-name", "lab/echo")
    ok, why = wait_listening(s.base)
    assert ok, why
    assert "one-token completion" in why


def test_loading_counts_as_still_loading_not_failure(server):
    s = server(load=3)
    ok, why = ready(s.base)
    assert not ok and "not listening yet (still loading)" in why
    # And the wait loop rides it out: healthy once the model has "loaded".
    progress = []

    class Running:
        name = "vllm"
        attrs = {"State": {"Status": "running", "Running": True}}

        def reload(self):
            pass
    kind = probe.Health(kind="openai", url=s.base, model="lab/echo", api_key=KEY, interval=0.2,
                        timeout=30).wait(Running(), progress.append)
    assert kind == "openai"
    assert progress and "still loading" in progress[0]


def test_a_wrong_key_or_model_is_not_ready_and_names_what_is_wrong(server):
    s = server()
    wait_listening(s.base)
    ok, why = ready(s.base, key="sk-wrong")
    assert not ok and "HTTP 401" in why and "API key is refused" in why and "sk-wrong" not in why
    ok, why = ready(s.base, model="other/model")
    assert not ok and "lists lab/echo, not other/model" in why


def test_gauges_count_requests_in_flight(server):
    s = server("--max-num-seqs", "1", delay_ms=400)
    wait_listening(s.base)
    gauges = ["vllm:num_requests_running", "vllm:num_requests_waiting"]
    assert probe.read_gauges(s.base + "/metrics", gauges) == 0

    # Two slow completions at once: one runs, one waits; both count.
    def complete():
        req = Request(s.base + "/v1/completions", data=json.dumps(
            {"model": "lab/echo", "prompt": "one two three four five six", "max_tokens": 6}).encode(),
            headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
        urlopen(req, timeout=30).read()
    threads = [threading.Thread(target=complete), threading.Thread(target=complete)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    assert probe.read_gauges(s.base + "/metrics", gauges) == 2
    for t in threads:
        t.join()
    assert probe.read_gauges(s.base + "/metrics", gauges) == 0
    assert probe.read_gauges("http://127.0.0.1:%d/metrics" % free_port(), gauges) is None
