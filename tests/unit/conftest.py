"""Fixtures of the unit tests: the lab's Ollama stand-in as a local process (its server is the standard library)."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

STANDIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "images", "ollama-standin",
                       "ollama_standin.py")


@pytest.fixture
def ollama_standin(tmp_path):
    """The stand-in's base URL, on a free port of this machine, its models in tmp_path; qwen3:0.6b and
    tinyllama:latest are in its library."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OLLAMA_HOST="127.0.0.1:%d" % port, OLLAMA_MODELS=str(tmp_path / "models"),
               OLLAMA_STANDIN_PULL_SECONDS="0.2", OLLAMA_STANDIN_LIBRARY="qwen3:0.6b,tinyllama:latest")
    proc = subprocess.Popen([sys.executable, STANDIN, "serve"], env=env, stdout=subprocess.DEVNULL)
    url = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(url + "/", timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the stand-in did not start"
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
