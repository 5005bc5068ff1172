import json
import os
import socket
import stat
import threading

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import daemon_config as dc, managed_file

# What `nvidia-ctk runtime configure --runtime=docker` leaves in daemon.json.
NVIDIA = {"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}, "default-runtime": "nvidia"}
ROLE = {"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}, "live-restore": True}


def test_merge_keeps_keys_it_does_not_set():
    current = dict(NVIDIA, **{"data-root": "/srv/docker"})
    after = dc.merge(current, ROLE)
    assert after["runtimes"] == NVIDIA["runtimes"]
    assert after["default-runtime"] == "nvidia"
    assert after["data-root"] == "/srv/docker"
    assert after["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert after["live-restore"] is True


def test_merge_is_recursive_and_does_not_modify_its_arguments():
    current = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}, "log-opts": {"compress": "true"}}
    snapshot = json.dumps(current, sort_keys=True)
    options = {"runtimes": {"crun": {"path": "/usr/bin/crun"}}, "log-opts": {"max-size": "10m"}}
    after = dc.merge(current, options)
    assert set(after["runtimes"]) == {"nvidia", "crun"}
    assert after["log-opts"] == {"compress": "true", "max-size": "10m"}
    assert json.dumps(current, sort_keys=True) == snapshot
    after["runtimes"]["crun"]["path"] = "changed"
    assert options["runtimes"]["crun"]["path"] == "/usr/bin/crun"


def test_merge_replaces_lists_and_scalars_and_none_removes():
    current = {"registry-mirrors": ["https://a"], "debug": True, "log-opts": {"max-file": "5", "compress": "true"}}
    after = dc.merge(current, {"registry-mirrors": ["https://b"], "debug": None, "log-opts": {"compress": None},
                               "absent": None})
    assert after == {"registry-mirrors": ["https://b"], "log-opts": {"max-file": "5"}}


def test_merge_replaces_a_scalar_with_an_object():
    assert dc.merge({"log-opts": "junk"}, {"log-opts": {"max-size": "1m", "x": None}}) == {"log-opts": {"max-size": "1m"}}


def test_merge_keeps_key_order_and_appends_new_keys():
    after = dc.merge({"b": 1, "a": 2}, {"c": 3, "a": 4})
    assert list(after) == ["b", "a", "c"]


def test_normalize_makes_log_opts_strings():
    out = dc.normalize({"log-opts": {"max-file": 3, "compress": True, "max-size": "10m"}, "live-restore": True})
    assert out == {"log-opts": {"max-file": "3", "compress": "true", "max-size": "10m"}, "live-restore": True}


@pytest.mark.parametrize("data", [b"", b"  \n", "\ufeff{}".encode("utf-8")])
def test_parse_empty_is_an_empty_config(data):
    assert dc.parse(data) == {}


def test_parse_reads_an_object():
    assert dc.parse(json.dumps(NVIDIA, indent=4).encode()) == NVIDIA


@pytest.mark.parametrize("data,match", [
    (b'{"a": 1,}', "not valid JSON.*line 1"),
    (b'{\n  "a": 1\n  "b": 2\n}', "not valid JSON.*line 3"),
    (b"[1, 2]", "must hold a JSON object, not list"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_parse_refuses_what_is_not_a_json_object(data, match):
    with pytest.raises(dc.DaemonConfigError, match=match):
        dc.parse(data, source="/etc/docker/daemon.json")


@pytest.mark.parametrize("config,match", [
    ({"live-restore": "true"}, "live-restore must be a boolean"),
    ({"log-opts": {"max-file": 3}}, "log-opts.max-file must be a string"),
    ({"log-opts": ["max-file=3"]}, "log-opts must be an object"),
    ({"runtimes": []}, "runtimes must be an object"),
])
def test_check_refuses_types_dockerd_refuses(config, match):
    with pytest.raises(dc.DaemonConfigError, match=match):
        dc.check(config)


def test_check_accepts_the_roles_config_and_unknown_keys():
    dc.check(dict(ROLE, **dict(NVIDIA, **{"features": {"buildkit": True}})))


def test_same_compares_as_json():
    assert dc.same({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1})
    assert not dc.same({"live-restore": True}, {"live-restore": 1})
    assert not dc.same({"a": [1, 2]}, {"a": [2, 1]})


def test_render_parses_back_and_ends_with_a_newline():
    config = dc.merge(NVIDIA, dict(ROLE, label="héllo"))
    text = dc.render(config)
    assert text.endswith("}\n")
    assert dc.parse(text.encode("utf-8")) == config


def test_changed_keys():
    before = dict(NVIDIA, **{"log-opts": {"max-size": "10m", "max-file": "3"}})
    after = dc.merge(before, {"log-opts": {"max-file": "5"}, "live-restore": True, "default-runtime": None})
    assert dc.changed_keys(before, after) == ["default-runtime", "live-restore", "log-opts.max-file"]
    assert dc.changed_keys(after, after) == []


def test_dockerd_validate_accepts():
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, "configuration OK\n", ""
    assert dc.dockerd_validate(run, "/usr/bin/dockerd", "/tmp/x.json") is True
    assert calls == [["/usr/bin/dockerd", "--validate", "--config-file", "/tmp/x.json"]]


def test_dockerd_validate_is_skipped_on_an_engine_without_the_flag():
    # What Debian 12's dockerd 20.10 prints (on stderr, exit status 1).
    def run(argv):
        return 1, "", "Status: unknown flag: --validate\nSee 'dockerd --help'., Code: 125\n"
    assert dc.dockerd_validate(run, "dockerd", "x") is False


def test_dockerd_validate_refusal_is_an_error():
    def run(argv):
        return 1, "", "unable to configure the Docker daemon with file x: the following directives don't match any configuration option: bogus\n"
    with pytest.raises(dc.DaemonConfigError, match="refuses the new config: .*bogus"):
        dc.dockerd_validate(run, "dockerd", "x")


def test_read_and_write_atomic_keep_attributes(tmp_path):
    path = str(tmp_path / "daemon.json")
    assert managed_file.read(path) == (None, None)
    managed_file.write_atomic(path, dc.render(ROLE), mode=0o644)
    data, st = managed_file.read(path)
    assert json.loads(data) == ROLE
    assert stat.S_IMODE(st.st_mode) == 0o644
    os.chmod(path, 0o600)
    managed_file.write_atomic(path, dc.render(NVIDIA), mode=0o600)
    data, st = managed_file.read(path)
    assert json.loads(data) == NVIDIA and stat.S_IMODE(st.st_mode) == 0o600
    assert os.listdir(str(tmp_path)) == ["daemon.json"], "no temp file is left behind"


# ------------------------------------------------------------------------------ restart

def recorder(answers):
    """A run_command that records each argv and answers (rc, out, err) from answers, by the argv's verb."""
    calls = []

    def run(argv):
        calls.append(argv)
        return answers.get(argv[1], (0, "", ""))
    return run, calls


def test_restart_daemon_clears_the_start_limit_first():
    run, calls = recorder({})
    assert dc.restart_daemon(run) == (True, "docker.service restarted")
    assert calls == [["systemctl", "reset-failed", "docker.service"], ["systemctl", "restart", "docker.service"]]


def test_restart_daemon_goes_on_when_reset_failed_fails():
    # reset-failed exits 1 when the unit has nothing to reset (or is unknown): the restart decides.
    run, calls = recorder({"reset-failed": (1, "", "Unit docker.service not loaded.\n")})
    assert dc.restart_daemon(run)[0] is True
    assert [argv[1] for argv in calls] == ["reset-failed", "restart"]


def test_restart_daemon_failure_names_the_command_and_systemd_s_words():
    run, _calls = recorder({"restart": (1, "", "Job for docker.service failed because the control process exited.\n")})
    ok, message = dc.restart_daemon(run)
    assert ok is False
    assert message == ("systemctl restart docker.service failed (rc 1): "
                       "Job for docker.service failed because the control process exited.")
    run, _calls = recorder({"restart": (5, "Unit docker.service not found.\n", "")})
    assert dc.restart_daemon(run) == (False, "systemctl restart docker.service failed (rc 5): Unit docker.service not found.")


def test_wait_for_daemon_returns_once_it_answers():
    slept, answers = [], iter([False, False, True])
    assert dc.wait_for_daemon(lambda: next(answers), 60, sleep=slept.append, clock=lambda: sum(slept)) is True
    assert slept == [0.5, 0.5]


def test_wait_for_daemon_gives_up_at_the_timeout():
    slept, pings = [], []
    assert dc.wait_for_daemon(lambda: pings.append(sum(slept)), 5, sleep=slept.append, clock=lambda: sum(slept)) is False
    assert sum(slept) == 5.0 and len(pings) == 11


@pytest.fixture
def fake_dockerd(tmp_path):
    """A unix socket answering each connection with the next of `replies` (None: close without a word)."""
    path = str(tmp_path / "docker.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    replies, requests = [], []

    def serve():
        while True:
            try:
                conn, _addr = server.accept()
            except OSError:
                return
            with conn:
                requests.append(conn.recv(1024))
                reply = replies.pop(0) if replies else None
                if reply:
                    conn.sendall(reply)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, replies, requests
    server.close()


def test_ping_socket_wants_a_200_from_ping(fake_dockerd):
    path, replies, requests = fake_dockerd
    replies.extend([b"HTTP/1.1 200 OK\r\nApi-Version: 1.45\r\n\r\nOK", b"HTTP/1.1 500 Internal Server Error\r\n\r\n", None])
    assert dc.ping_socket(path, timeout=2) is True
    assert requests[0].startswith(b"GET /_ping HTTP/1.0\r\n")
    assert dc.ping_socket(path, timeout=2) is False
    assert dc.ping_socket(path, timeout=2) is False


def test_ping_socket_without_a_daemon_is_false(tmp_path):
    assert dc.ping_socket(str(tmp_path / "nothing.sock"), timeout=1) is False
