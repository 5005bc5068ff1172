"""rollout: the health loop (with a fake clock; the real one runs in the integration tests) and the test hook."""
import os

import pytest
import requests

from ansible_collections.llmstack.deploy.plugins.module_utils import rollout


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


class ExecContainer(FakeContainer):
    """A running container whose check command fails until its nth run."""

    def __init__(self, ok_on):
        super(ExecContainer, self).__init__([{"Status": "running", "Running": True}], healthcheck=False)
        self.ok_on, self.runs = ok_on, []

    def exec_run(self, cmd, demux=False):
        self.runs.append(cmd)
        ok = len(self.runs) >= self.ok_on
        return (0, b"127.0.0.1:5432 - accepting connections") if ok else (2, b"127.0.0.1:5432 - no response")


def test_health_exec_runs_the_command_until_it_exits_0():
    h, clock = health(timeout=10, kind="exec", command=["pg_isready", "-h", "127.0.0.1"])
    c = ExecContainer(ok_on=3)
    assert h.wait(c, lambda m: None) == "exec"
    assert c.runs == [["pg_isready", "-h", "127.0.0.1"]] * 3 and clock.t == 2


def test_health_exec_timeout_shows_the_last_output():
    h, _clock = health(timeout=5, kind="exec", command=["pg_isready"])
    with pytest.raises(rollout.RolloutError, match="exit 2 127.0.0.1:5432 - no response"):
        h.wait(ExecContainer(ok_on=99), lambda m: None)


def test_checkpoint_is_a_no_op_unless_asked(monkeypatch):
    monkeypatch.delenv("LLMSTACK_TEST_FAULT", raising=False)
    rollout.checkpoint("health_wait")
    monkeypatch.setenv("LLMSTACK_TEST_FAULT", "switched:raise:timeout")
    rollout.checkpoint("health_wait")  # another phase
    with pytest.raises(requests.exceptions.ReadTimeout):
        rollout.checkpoint("switched")


def test_checkpoint_pause_writes_the_pid(monkeypatch, tmp_path):
    slept = []
    monkeypatch.setattr(rollout.time, "sleep", slept.append)
    monkeypatch.setenv("LLMSTACK_TEST_FAULT", "pending:pause:%s" % (tmp_path / "pid"))
    rollout.checkpoint("pending")
    assert (tmp_path / "pid").read_text() == str(os.getpid()) and slept == [600]
