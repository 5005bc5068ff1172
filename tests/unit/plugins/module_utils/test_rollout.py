"""The rollout's parts that need no Docker: the health loop and the drain wait (with a fake clock; the real
ones run in the integration tests), the test hook, and the run context's failure messages."""
import os

import pytest
import requests

from ansible_collections.llmstack.deploy.plugins.module_utils import faults, probe, rollout_plan, rollout_run
from ansible_collections.llmstack.deploy.plugins.module_utils import spec as specs
from ansible_collections.llmstack.deploy.plugins.module_utils.errors import RolloutError


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
    return probe.Health(sleep=clock.sleep, clock=clock, interval=1, **kw), clock


def test_health_docker_healthy_after_starting():
    h, _clock = health(timeout=10)
    c = FakeContainer([{"Status": "running", "Health": {"Status": "starting"}},
                       {"Status": "running", "Health": {"Status": "healthy"}}])
    assert h.wait(c, lambda m: None) == "docker"


def test_health_unhealthy_reports_probe_output():
    h, _clock = health(timeout=10)
    c = FakeContainer([{"Status": "running", "Health": {"Status": "unhealthy", "Log": [{"Output": "HTTP 500 from /health"}]}}])
    with pytest.raises(RolloutError, match="HTTP 500 from /health"):
        h.wait(c, lambda m: None)


def test_health_exit_fails_fast_and_timeout_reports_progress():
    h, clock = health(timeout=100)
    with pytest.raises(RolloutError, match="exited with code 3"):
        h.wait(FakeContainer([{"Status": "exited", "ExitCode": 3}]), lambda m: None)
    assert clock.t == 0
    lines = []
    h, clock = health(timeout=65)
    with pytest.raises(RolloutError, match="not healthy after 65s"):
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
    with pytest.raises(RolloutError, match="exit 2 127.0.0.1:5432 - no response"):
        h.wait(ExecContainer(ok_on=99), lambda m: None)


def test_checkpoint_is_a_no_op_unless_asked(monkeypatch):
    monkeypatch.delenv("LLMSTACK_TEST_FAULT", raising=False)
    faults.checkpoint("health_wait")
    monkeypatch.setenv("LLMSTACK_TEST_FAULT", "switched:raise:timeout")
    faults.checkpoint("health_wait")  # another phase
    with pytest.raises(requests.exceptions.ReadTimeout):
        faults.checkpoint("switched")


def test_checkpoint_pause_writes_the_pid(monkeypatch, tmp_path):
    slept = []
    monkeypatch.setattr(faults.time, "sleep", slept.append)
    monkeypatch.setenv("LLMSTACK_TEST_FAULT", "pending:pause:%s" % (tmp_path / "pid"))
    faults.checkpoint("pending")
    assert (tmp_path / "pid").read_text() == str(os.getpid()) and slept == [600]


class Run:
    """The run context's part that drain_requests uses."""

    def __init__(self, clock):
        self.lines, self.warnings, self.sleep = [], [], clock.sleep

    def log(self, line):
        self.lines.append(line)

    def warn(self, message):
        self.warnings.append(message)


def drain(monkeypatch, in_flight, timeout=30, url="http://127.0.0.1:8000/metrics"):
    clock = Clock()
    answers = list(in_flight)
    monkeypatch.setattr(probe, "read_gauges", lambda _url, _names: answers.pop(0) if len(answers) > 1 else answers[0])
    run = Run(clock)
    probe.drain_requests(run, "vllm", url, ["vllm:num_requests_running"], timeout, clock=clock)
    return run, clock


def test_drain_waits_until_no_request_is_in_flight(monkeypatch):
    run, clock = drain(monkeypatch, [3, 2, 0])
    assert clock.t == 2 and run.lines[-1] == "drained vllm: no request in flight (2s)" and not run.warnings


def test_drain_stops_waiting_after_the_timeout_or_when_metrics_do_not_answer(monkeypatch):
    run, clock = drain(monkeypatch, [4], timeout=25)
    assert clock.t == 25 and "vllm still has 4 request(s) in flight after 25s" in run.warnings[0]
    assert [line for line in run.lines if "in flight, " in line] == [
        "draining vllm: 4 request(s) in flight, 0s of 25s", "draining vllm: 4 request(s) in flight, 10s of 25s",
        "draining vllm: 4 request(s) in flight, 20s of 25s"]
    run, clock = drain(monkeypatch, [None])
    assert clock.t == 0 and "does not answer; stopping it" in run.lines[0]
    run, clock = drain(monkeypatch, [5], url=None)
    assert run.lines == [] and clock.t == 0, "without drain_metrics_url nothing is waited for"


def params(tmp_path, **over):
    p = {"name": "svc", "strategy": "recreate", "state": "present", "image": "lab/app:v2", "registry": "registry.lab:5443",
         "env_files": [str(tmp_path / "missing.env")], "env": {"EXTRA": "1"}, "ports": ["127.0.0.1:8001:8000"],
         "slots": None, "volumes": [], "networks": [], "restart_policy": "unless-stopped", "memory": None, "cpus": None,
         "gpus": None, "ipc_mode": None, "shm_size": None, "user": None, "read_only": False, "security_opts": [],
         "log_driver": "json-file", "log_options": {}, "labels": {}, "network_mode": None, "stop_timeout": None,
         "healthcheck": {"kind": "openai", "url": "http://127.0.0.1:{port}", "model": "m", "api_key_env": "KEY"},
         "health_timeout": 30, "drain_metrics_url": "http://127.0.0.1:{port}/metrics", "docker_host": None}
    p.update(over)
    return p


def test_a_plan_with_inputs_changed_reads_no_env_file(tmp_path):
    """Check mode with inputs_changed: the env file may not exist yet; its keys stay as recorded, the hash is unknown."""
    plan = rollout_plan.Plan.from_params(params(tmp_path), history=None)
    plan.check(b"k" * 32, None, params(tmp_path), read_env=False)
    plan.spec.digest_ref = "registry.lab:5443/lab/app@sha256:" + "0" * 64
    assert plan.drain_url == "http://127.0.0.1:8001/metrics" and plan.spec_hash(b"k" * 32) is None
    recorded = {"summary": {"environment": {"KEY": "aaaa", "EXTRA": "bbbb"}}}
    summary = plan.summary(b"k" * 32, recorded)
    assert sorted(summary["environment"]) == ["EXTRA", "KEY"] and summary["environment"]["KEY"] == "aaaa"
    assert summary["environment"]["EXTRA"] != "bbbb", "env values the run knows are hashed as always"
    with pytest.raises(specs.SpecError, match="env_files: .*missing.env does not exist"):
        rollout_plan.Plan.from_params(params(tmp_path), history=None).check(b"k" * 32, None, params(tmp_path))


def test_a_plan_checks_the_api_key_of_the_health_check(tmp_path):
    env = tmp_path / "app.env"
    env.write_text("OTHER=1\n")
    p = params(tmp_path, env_files=[str(env)])
    with pytest.raises(specs.SpecError, match="healthcheck.api_key_env: KEY is not set by env_files or env"):
        rollout_plan.Plan.from_params(p, history=None).check(b"k" * 32, None, p)
    env.write_text("KEY=sk-1\n")
    plan = rollout_plan.Plan.from_params(p, history=None)
    plan.check(b"k" * 32, None, p)
    assert plan.env_read and plan.spec.environment == {"KEY": "sk-1", "EXTRA": "1"}


def test_a_failure_names_an_unexpected_error_and_redacts_env_values():
    class Spec:
        @staticmethod
        def env_values():
            return ["sk-secret-value"]
    assert rollout_run.Run.failure(RolloutError("bad"), None, Spec()) == "bad"
    assert rollout_run.Run.failure(KeyError("sk-secret-value"), None, Spec()) == "KeyError: '<redacted>'"
