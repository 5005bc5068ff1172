"""docker_client: errors say what happened where, and only registry calls blame the registry."""
import docker.errors
import pytest
import requests

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc


def api_error(text, status=500):
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError("500 Server Error", response=response, explanation=text)


@pytest.mark.parametrize("text,registry,expected", [
    ("Get https://ghcr.io/v2/: unauthorized: authentication required", True, "unauthorized (check"),
    ("denied: requested access to the resource is denied", True, "access denied (the token"),
    ("manifest unknown: manifest unknown", True, "no such image or tag"),
    ("Get https://127.0.0.1:5443/v2/: dial tcp 127.0.0.1:5443: connect: connection refused", True,
     "the registry can't be reached"),
    # Outside the registry, "denied" and "not found" mean other things and pass through as the daemon said.
    ("open /data: permission denied", False, "open /data: permission denied"),
    ("network llm not found", False, "network llm not found"),
    ("No such image: sha256:abc", False, "No such image: sha256:abc"),
    ("could not select device driver \"\" with capabilities: [[gpu]]", False, "no NVIDIA GPU support"),
    ("driver failed programming external connectivity: Bind for 127.0.0.1:8001 failed: port is already allocated",
     False, "a published port is already in use"),
])
def test_explain_depends_on_the_call(text, registry, expected):
    assert expected in dc.explain(api_error(text), registry=registry)


def test_unreachable_is_its_own_error():
    with pytest.raises(dc.RegistryUnreachable):
        with dc.call("resolve x", registry=True):
            raise api_error("Get https://r/v2/: dial tcp: lookup r: no such host")
    with pytest.raises(dc.DockerError) as err:
        with dc.call("resolve x", registry=True):
            raise api_error("unauthorized: authentication required", 401)
    assert not isinstance(err.value, dc.RegistryUnreachable)


def test_sdk_timeouts_become_messages():
    with pytest.raises(dc.DockerError) as err:
        with dc.call("stop svc"):
            raise requests.exceptions.ReadTimeout("UnixHTTPConnectionPool: Read timed out. (read timeout=60)")
    assert str(err.value).startswith("stop svc: the Docker daemon did not answer in time")


def test_gpu_support_is_checked_only_on_a_local_daemon(monkeypatch, tmp_path):
    monkeypatch.setattr(dc, "DAEMON_PATH", (str(tmp_path),))
    assert "nvidia-container-runtime-hook" in dc.gpu_support_missing("unix:///var/run/docker.sock")
    assert dc.gpu_support_missing("tcp://10.0.0.5:2376") is None
    hook = tmp_path / dc.NVIDIA_HOOK
    hook.write_text("#!/bin/sh\n")
    hook.chmod(0o755)
    assert dc.gpu_support_missing(None) is None
