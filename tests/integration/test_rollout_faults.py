"""container_rollout under faults: nothing an operator does wrong, and no crash, may take a service down.

- Bad input fails with a message naming the option, file or line, and the serving container keeps its
  id and start time and keeps answering.
- A run killed (SIGKILL, as an async timeout or a lost SSH connection does) at any phase is repaired
  by the next run; for blue_green, load through the gateway sees no failed request across both.
- Two runs of one service serialise on the lock, and the second works from the first's result.
"""
import os
import signal
import subprocess
import time

import pytest

from gateway import Gateway, Load
from helpers import Play, Service, inspect

# (id, module arguments, what the message must name). Each leaves the running service as it was.
BAD_INPUT_COMMON = [
    ("bad-volume", {"volumes": ["/data"]}, "volumes: '/data'"),
    ("missing-network", {"networks": [{"name": "llmstack-no-such-net"}]}, "llmstack-no-such-net does not exist"),
    ("bad-gpus", {"gpus": -1}, "gpus: -1"),
    ("gpus-without-toolkit", {"gpus": "all"}, "nvidia-container-runtime-hook"),
    ("missing-env-file", {"env_files": ["/nonexistent/app.env"]}, "/nonexistent/app.env does not exist"),
    ("bad-memory", {"memory": "lots"}, "memory: 'lots'"),
    ("reserved-label", {"labels": {"llmstack.service": "other"}}, "llmstack.service: the llmstack. prefix is reserved"),
    ("user-without-password", {"registry_password": None}, "registry_username, registry_password"),
    ("http-probe-without-url", {"healthcheck": {"kind": "http"}}, "url"),
    ("unwritable-state-dir", {"state_dir": "/proc/llmstack"}, "cannot create /proc/llmstack"),
]
BAD_INPUT = {
    "recreate": BAD_INPUT_COMMON + [
        ("malformed-port", {"ports": ["not-a-port"]}, "ports: 'not-a-port'"),
        ("ports-and-slots", {"slots": {"blue": {"ports": []}, "green": {"ports": []}}}, "mutually exclusive"),
    ],
    "blue_green": BAD_INPUT_COMMON + [
        ("malformed-slot-port", {"slots": {"blue": {"ports": ["8001"]}, "green": {"ports": []}}}, "ports: '8001'"),
        ("slot-typo", {"slots": {"blue": {"port": ["127.0.0.1:1:8000"]}, "green": {"ports": []}}}, "port"),
        ("same-port-both-slots", {"slots": {"blue": {"ports": ["127.0.0.1:18001:8000"]},
                                            "green": {"ports": ["127.0.0.1:18001:8000"]}}}, "both publish"),
        ("no-switch-file", {"switch_file": None}, "switch_file"),
    ],
}


@pytest.fixture(scope="module")
def running(request, lab, tmp_path_factory, app_images):
    """One service per strategy (the case's), deployed once and shared by that strategy's bad-input cases."""
    tmp = tmp_path_factory.mktemp("running")
    svc = Service(Play(tmp, lab), lab, tmp, request.param)
    res = svc.run(image=app_images["v1"])
    assert res.rc == 0, res.output
    bad_env = tmp / "bad.env"
    bad_env.write_text("GOOD=1\nBAD KEY=1\n")
    svc.bad_env = str(bad_env)
    yield svc
    svc.cleanup()


def bad_input_cases():
    for strategy, cases in sorted(BAD_INPUT.items()):
        for case_id, args, expected in cases + [("invalid-env-file", None, "line 2")]:
            yield pytest.param(strategy, args, expected, id="%s-%s" % (strategy, case_id))


@pytest.mark.parametrize("running,args,expected", bad_input_cases(), indirect=["running"])
def test_bad_input_leaves_the_service_serving(running, app_images, args, expected):
    before = running.snapshot()
    if args is None:  # a key with a space, on line 2
        args = {"env_files": [running.bad_env]}
        expected = "%s line 2: variable name 'BAD KEY' contains white space" % running.bad_env
    res = running.run(image=app_images["v2"], **args)
    assert res.rc != 0
    msg = res.task()["msg"]
    assert expected in msg, msg
    assert "Traceback" not in res.output
    assert running.snapshot() == before, "bad input must not touch the running container"
    assert running.secret not in res.output


def test_sdk_timeout_after_the_old_container_stopped_brings_it_back(recreate_service, app_images):
    """Any exception after the point of no return (here the SDK's ReadTimeout) restores the previous version."""
    svc = recreate_service
    assert svc.run(image=app_images["v1"]).rc == 0
    before = inspect(svc.name)["Id"]
    res = svc.run(image=app_images["v2"], proc_env={"LLMSTACK_TEST_FAULT": "stopped_old:raise:timeout"})
    assert res.rc != 0
    assert "ReadTimeout" in res.task()["msg"] and "previous version was restarted and is serving" in res.task()["msg"]
    assert inspect(svc.name)["Id"] == before and svc.version() == "v1"
    assert inspect(svc.name + "-previous") is None


def kill_at(svc, phase, tmp_path, **over):
    """Start a rollout that pauses at phase, SIGKILL its module there, and return the failed run."""
    pid_file = tmp_path / ("pid-%s" % phase)
    run = svc.start(proc_env={"LLMSTACK_TEST_FAULT": "%s:pause:%s" % (phase, pid_file)}, **over)
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert run.popen.poll() is None, "the run ended before reaching %s:\n%s" % (phase, run.wait().output)
        assert time.monotonic() < deadline, "the run never reached %s" % phase
        time.sleep(0.1)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    killed = run.wait()
    assert killed.rc != 0
    return killed


def test_recreate_killed_after_the_old_container_stopped(recreate_service, app_images, tmp_path):
    svc = recreate_service
    assert svc.run(image=app_images["v1"]).rc == 0
    kill_at(svc, "stopped_old", tmp_path, image=app_images["v2"])
    assert inspect(svc.name) is None and inspect(svc.name + "-previous")["State"]["Running"] is False
    assert svc.history()["deployments"][0]["status"] == "pending"

    again = svc.run(image=app_images["v2"])
    assert again.rc == 0, again.output
    assert again.task()["changed"] is True and svc.version() == "v2"
    assert inspect(svc.name + "-previous") is None
    assert [e["status"] for e in svc.history()["deployments"]] == ["succeeded", "interrupted", "succeeded"]
    assert svc.run(image=app_images["v2"]).task()["changed"] is False


def test_recreate_killed_during_the_health_wait(recreate_service, app_images, tmp_path):
    svc = recreate_service
    v1 = svc.run(image=app_images["v1"])
    assert v1.rc == 0, v1.output
    kill_at(svc, "health_wait", tmp_path, image=app_images["v2"])
    unverified = inspect(svc.name)
    assert unverified["State"]["Running"] and unverified["Id"] != inspect(svc.name + "-previous")["Id"]

    # The container has the wanted spec hash but never passed its health check: not a no-op.
    again = svc.run(image=app_images["v2"])
    assert again.rc == 0, again.output
    assert again.task()["changed"] is True
    assert any("resuming" in line for line in again.task()["phases"])
    assert inspect(svc.name)["Id"] == unverified["Id"], "the started container is checked, not replaced"
    assert svc.version() == "v2" and inspect(svc.name + "-previous") is None
    assert svc.run(image=app_images["v2"]).task()["changed"] is False


@pytest.mark.parametrize("phase", ["health_wait", "switched"])
def test_blue_green_killed_then_rerun_under_load(blue_green_service, app_images, tmp_path, phase):
    """Killed during the health wait or right after the switch: the re-run converges, and requests through
    the gateway never fail, across the kill and the re-run."""
    svc = blue_green_service
    first = svc.run(image=app_images["v1"])
    assert first.rc == 0, first.output
    gateway = Gateway()
    port = gateway.blue_green(svc.name, svc.ports["blue"], svc.ports["green"], svc.switch_file)
    gateway.start()
    load = Load(port).start()
    try:
        time.sleep(1)
        kill_at(svc, phase, tmp_path, image=app_images["v2"])
        assert svc.live_slot() == ("blue" if phase == "health_wait" else "green")
        assert inspect(svc.name + "-blue")["State"]["Running"], "the old slot still serves when the kill comes"
        green = inspect(svc.name + "-green")["Id"]
        time.sleep(1)
        again = svc.run(image=app_images["v2"])
        assert again.rc == 0, again.output
        assert again.task()["changed"] is True
        time.sleep(1)
    finally:
        load.stop()
        gateway.stop()
    assert load.failed == 0, "%s: %s" % (load.figure(), load.errors[:5])
    assert load.versions.get("v1") and load.versions.get("v2"), load.versions
    assert svc.live_slot() == "green" and svc.version() == "v2"
    assert inspect(svc.name + "-green")["Id"] == green, "the started slot is checked, not replaced"
    assert inspect(svc.name + "-blue")["State"]["Running"] is False, "the old slot is drained"
    assert svc.current()["image"].endswith(":v2") and svc.current()["slot"] == "green"
    assert svc.run(image=app_images["v2"]).task()["changed"] is False


def test_concurrent_runs_serialise_and_the_second_sees_the_first(recreate_service, app_images):
    svc = recreate_service
    assert svc.run(image=app_images["v1"]).rc == 0
    first = svc.start(image=app_images["v2"], proc_env={"LLMSTACK_TEST_FAULT": "health_wait:sleep:5"})
    lock = os.path.join(svc.state_dir, "locks", svc.name + ".lock")
    deadline = time.monotonic() + 60
    while "pid" not in open(lock).read():
        assert time.monotonic() < deadline and first.popen.poll() is None
        time.sleep(0.1)
    second = svc.run(image=app_images["v5"])  # waits for the lock, then reads the history
    first = first.wait()
    assert first.rc == 0, first.output
    assert second.rc == 0, second.output
    v2 = first.task()["digest_ref"]
    assert second.task()["previous"] == v2, "the second run must work from the first one's result"
    history = svc.history()
    assert [(e["image"].rsplit(":", 1)[1], e["status"]) for e in history["deployments"]] == [
        ("v5", "succeeded"), ("v2", "succeeded"), ("v1", "succeeded")]
    assert svc.version() == "v5"


def test_check_mode_on_a_fresh_host_creates_nothing(recreate_service, app_images, tmp_path):
    svc = recreate_service
    state_dir = tmp_path / "fresh-state"
    res = svc.run(image=app_images["v1"], state_dir=str(state_dir), play_args=["--check", "--diff"])
    assert res.rc == 0, res.output
    assert not state_dir.exists(), "check mode must not create even the state folder"
    assert inspect(svc.name) is None


def test_corrupt_history_names_the_file_and_how_to_recover(recreate_service, app_images):
    svc = recreate_service
    assert svc.run(image=app_images["v1"]).rc == 0
    before = svc.snapshot()
    path = os.path.join(svc.state_dir, "deployments", svc.name + ".json")
    with open(path, "w") as f:
        f.write('{"format": 2, "deployments": [{"seq": ')
    res = svc.run(image=app_images["v1"])
    assert res.rc != 0
    assert path in res.task()["msg"] and "mv %s %s.bad" % (path, path) in res.task()["msg"]
    assert "Traceback" not in res.output and svc.snapshot() == before
    subprocess.run(["mv", path, path + ".bad"], check=True)
    # A new history: the running container is health-checked before it counts as current, not replaced.
    again = svc.run(image=app_images["v1"])
    assert again.rc == 0, again.output
    assert again.task()["changed"] is True and inspect(svc.name)["Id"] == before["id"]
    assert svc.run(image=app_images["v1"]).task()["changed"] is False


def test_a_bad_switch_file_is_named_and_nothing_moves(blue_green_service, app_images):
    svc = blue_green_service
    assert svc.run(image=app_images["v1"]).rc == 0
    before = svc.snapshot()
    with open(svc.switch_file) as f:
        good = f.read()
    with open(svc.switch_file, "w") as f:
        f.write("someone_else_blue\n")
    try:
        res = svc.run(image=app_images["v2"])
        assert res.rc != 0 and svc.switch_file in res.task()["msg"] and "someone_else_blue" in res.task()["msg"]
        assert inspect(svc.name + "-blue")["Id"] == before["id"]
    finally:
        with open(svc.switch_file, "w") as f:
            f.write(good)
    assert svc.snapshot() == before
