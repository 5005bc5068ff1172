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


class Daemon:
    """A client whose daemon answers info() and ping() (after `down` failed pings); run records systemctl calls."""

    def __init__(self, live_restore=True, rc=0, down=0):
        self.live_restore, self.rc, self.down, self.calls = live_restore, rc, down, []

    def info(self):
        return {"LiveRestoreEnabled": self.live_restore}

    def ping(self):
        if self.down:
            self.down -= 1
            raise requests.exceptions.ConnectionError("not yet")
        return True

    def run(self, argv):
        self.calls.append(argv)
        return (self.rc, "", "Job for docker.service failed") if argv[1] == "restart" else (0, "", "")


def restart(daemon, base_url="unix:///var/run/docker.sock"):
    lines, slept = [], []
    done = dc.restart_to_free_port(daemon, base_url, daemon.run, "port 8001 held", lines.append, sleep=slept.append)
    return done, lines, slept


def test_a_stale_port_restarts_a_live_restore_daemon_and_waits_for_it():
    daemon = Daemon(down=2)
    done, lines, slept = restart(daemon)
    assert done is True and slept == [1, 1]
    assert daemon.calls == [["systemctl", "reset-failed", "docker.service"], ["systemctl", "restart", "docker.service"]]
    assert "restarting the Docker daemon (live-restore keeps every container running): port 8001 held" in lines


@pytest.mark.parametrize("daemon,base_url", [(Daemon(live_restore=False), "unix:///var/run/docker.sock"),
                                             (Daemon(), "tcp://10.0.0.5:2376")], ids=["no-live-restore", "remote"])
def test_a_daemon_without_live_restore_or_remote_is_left_to_the_operator(daemon, base_url):
    assert restart(daemon, base_url) == (False, [], [])
    assert daemon.calls == []


def test_a_failed_restart_says_so_with_the_reason():
    with pytest.raises(dc.DockerError, match=r"port 8001 held; restarting Docker failed too: systemctl restart "
                                             r"docker.service failed \(rc 1\): Job for docker.service failed"):
        restart(Daemon(rc=1))
