import os
import subprocess
import sys

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import rollout

KEY = b"k" * 32
SPEC = {"image": "r/app@sha256:1", "ports": ["127.0.0.1:8001:8000"], "memory": "1g", "command": ["serve"]}
ENV = {"A": "1", "B": "two"}


def hash_of(spec, env):
    return rollout.spec_hash(rollout.spec_summary(spec, env, KEY))


def test_changed_value_changes_hash():
    assert hash_of(SPEC, ENV) != hash_of(SPEC, dict(ENV, B="three"))
    assert hash_of(SPEC, ENV) != hash_of(dict(SPEC, memory="2g"), ENV)
    assert hash_of(SPEC, ENV) != hash_of(dict(SPEC, image="r/app@sha256:2"), ENV)


def test_removed_env_key_changes_hash():
    assert hash_of(SPEC, ENV) != hash_of(SPEC, {"A": "1"})


def test_reordered_keys_do_not_change_hash():
    assert hash_of(SPEC, ENV) == hash_of(dict(reversed(list(SPEC.items()))), dict(reversed(list(ENV.items()))))


def test_summary_holds_no_env_value_and_depends_on_host_key():
    summary = rollout.spec_summary(SPEC, {"PASSWORD": "hunter2"}, KEY)
    assert "hunter2" not in repr(summary)
    assert summary != rollout.spec_summary(SPEC, {"PASSWORD": "hunter2"}, b"other-key")


def test_summary_diff_names_options_and_env_keys():
    before = rollout.spec_summary(SPEC, ENV, KEY)
    after = rollout.spec_summary(dict(SPEC, memory="2g"), {"A": "1", "B": "2", "C": "3"}, KEY)
    assert rollout.summary_diff(before, after) == {
        "options": ["memory"], "env": {"added": ["C"], "removed": [], "changed": ["B"]}}


def test_env_values_order_and_missing_file(tmp_path):
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    first.write_text("A=1\nB=1\n")
    second.write_text("B=2\n")
    assert rollout.env_values([str(first), str(second)], {"C": 3}) == {"A": "1", "B": "2", "C": "3"}
    with pytest.raises(rollout.RolloutError, match="nope.env"):
        rollout.env_values([str(tmp_path / "nope.env")], {})


def test_history_current_previous_and_rollback(tmp_path):
    history = rollout.History(str(tmp_path), "svc")
    history.record({"image_id": "sha256:1"})
    history.record({"image_id": "sha256:2"})
    again = rollout.History(str(tmp_path), "svc")
    assert again.current["image_id"] == "sha256:2" and again.previous["image_id"] == "sha256:1"
    again.record(dict(again.previous), rollback=True)
    assert again.current["image_id"] == "sha256:1" and again.current["rollback"] is True
    assert again.previous["image_id"] == "sha256:2"
    assert again.digests_to_keep(2) == ["sha256:1", "sha256:2"]


def test_lock_names_holder_after_timeout(tmp_path):
    lock_path = tmp_path / "locks" / "svc.lock"
    lock_path.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, time\n"
        "fd = os.open(%r, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, b'pid 4242 on elsewhere')\n"
        "print('ok', flush=True)\n"
        "time.sleep(30)\n") % str(lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(rollout.RolloutError, match="pid 4242 on elsewhere"):
            with rollout.Lock(str(tmp_path), "svc", timeout=0.3):
                pass
    finally:
        holder.kill()
        holder.wait()
    with rollout.Lock(str(tmp_path), "svc", timeout=1):
        assert "pid %d" % os.getpid() in lock_path.read_text()


class FakeContainer:
    """States a container goes through, one per reload()."""

    name = "svc"

    def __init__(self, states, healthcheck=True):
        self.states = list(states)
        self.attrs = {"Config": {"Healthcheck": {"Test": ["CMD", "true"]} if healthcheck else {}}}

    def reload(self):
        self.attrs["State"] = self.states.pop(0) if len(self.states) > 1 else self.states[0]


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, seconds):
        self.t += seconds


def health(**kw):
    clock = Clock()
    return rollout.Health(sleep=clock.sleep, clock=clock, interval=1, **kw), clock


def test_health_docker_healthy_after_starting():
    h, _clock = health(timeout=10)
    c = FakeContainer([{"Status": "running", "Health": {"Status": "starting"}},
                       {"Status": "running", "Health": {"Status": "healthy"}}])
    assert h.wait(c, lambda m: None) == "docker"


def test_health_unhealthy_reports_probe_output():
    h, _clock = health(timeout=10)
    c = FakeContainer([{"Status": "running", "Health": {"Status": "unhealthy", "Log": [{"Output": "HTTP 500 from /health"}]}}])
    with pytest.raises(rollout.RolloutError, match="HTTP 500 from /health"):
        h.wait(c, lambda m: None)


def test_health_exit_fails_fast_and_timeout_reports_progress():
    h, clock = health(timeout=100)
    with pytest.raises(rollout.RolloutError, match="exited with code 3"):
        h.wait(FakeContainer([{"Status": "exited", "ExitCode": 3}]), lambda m: None)
    assert clock.t == 0
    lines = []
    h, clock = health(timeout=65)
    with pytest.raises(rollout.RolloutError, match="not healthy after 65s"):
        h.wait(FakeContainer([{"Status": "running", "Health": {"Status": "starting"}}]), lines.append)
    assert len(lines) == 3 and "of 65s" in lines[-1]  # at 0, 30 and 60 s: never silent


@pytest.mark.parametrize("spec,expected", [
    ("127.0.0.1:8001:8000", ("8000/tcp", ("127.0.0.1", 8001))),
    ("8001:8000", ("8000/tcp", 8001)),
    ("127.0.0.1:53:53/udp", ("53/udp", ("127.0.0.1", 53))),
])
def test_parse_port(spec, expected):
    assert dc.parse_port(spec) == expected


def test_parse_port_and_volume_errors_name_the_value():
    with pytest.raises(dc.DockerError, match="'8000'"):
        dc.parse_port("8000")
    with pytest.raises(dc.DockerError, match="'/data'"):
        dc.parse_volume("/data")


@pytest.mark.parametrize("image,expected", [
    ("ghcr.io/o/app:v1", ("ghcr.io/o/app", "v1", None)),
    ("127.0.0.1:5443/o/app", ("127.0.0.1:5443/o/app", "latest", None)),
    ("127.0.0.1:5443/o/app:v2", ("127.0.0.1:5443/o/app", "v2", None)),
    ("ghcr.io/o/app@sha256:abc", ("ghcr.io/o/app", None, "sha256:abc")),
])
def test_split_image(image, expected):
    assert dc.split_image(image) == expected


def test_device_requests():
    assert dc.device_requests(None) is None
    assert dc.device_requests("all")[0]["Count"] == -1
    assert dc.device_requests(2)[0]["Count"] == 2
    assert dc.device_requests(["0", "1"])[0]["DeviceIDs"] == ["0", "1"]
