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


def _proc(root, pid, *argv):
    folder = root / str(pid)
    folder.mkdir()
    (folder / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_stale_proxies_are_docker_proxies_on_the_port_for_an_ip_no_container_has(tmp_path):
    proxy = ("/usr/sbin/docker-proxy", "-proto", "tcp", "-host-ip", "127.0.0.1", "-host-port", "8102")
    _proc(tmp_path, 11, *(proxy + ("-container-ip", "172.19.0.2", "-container-port", "8000")))  # stale
    _proc(tmp_path, 12, *(proxy + ("-container-ip", "172.19.0.5", "-container-port", "8000")))  # a live container's
    _proc(tmp_path, 13, "/usr/bin/python3", "-m", "http.server", "8102")  # a real process: never touched
    _proc(tmp_path, 14, *(proxy[:-1] + ("8101", "-container-ip", "172.19.0.2", "-container-port", "8000")))
    (tmp_path / "self").mkdir()
    assert dc.stale_proxies(("127.0.0.1", "8102"), {"172.19.0.5", "172.19.0.4"}, proc=str(tmp_path)) == [11]
    assert dc.stale_proxies(("127.0.0.1", "8102"), {"172.19.0.2", "172.19.0.5"}, proc=str(tmp_path)) == []


def test_the_bind_error_names_the_address_the_stale_proxy_holds():
    error = ("driver failed programming external connectivity on endpoint agent_service-green (1ed9): "
             "Bind for 127.0.0.1:8102 failed: port is already allocated")
    assert dc.BIND_FAILED.search(error).groups() == ("127.0.0.1", "8102")
