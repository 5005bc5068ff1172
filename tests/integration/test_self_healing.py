"""Self-healing (plugins/module_utils/heal.py, the script the docker_host role's timer runs) against the lab's Docker
engine and real containers rolled out by container_rollout: an unhealthy live container is restarted with its log
tail redacted and counted; a healthy one, a slot that is not live and a service whose rollout holds its lock are
left alone."""
import json
import os
import subprocess
import sys
import time
import urllib.request

from ansible_collections.llmstack.deploy.plugins.module_utils import state
from helpers import inspect

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The timer's command line, with heal.py from plugins/module_utils, as the role installs them side by side.
SCRIPT = os.path.join(ROOT, "roles", "docker_host", "files", "llmstack_heal.py")
HEAL_PATH = os.path.join(ROOT, "plugins", "module_utils")


def heal(svc):
    proc = subprocess.run([sys.executable, SCRIPT, "--state-dir", svc.state_dir, "--failing-streak", "3"],
                          capture_output=True, text=True, timeout=180, check=False,
                          env=dict(os.environ, PYTHONPATH=HEAL_PATH))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def make_sick(port):
    req = urllib.request.Request("http://127.0.0.1:%d/sick" % port, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def wait_health(name, status, streak=0, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = (inspect(name)["State"].get("Health") or {})
        if health.get("Status") == status and health.get("FailingStreak", 0) >= streak:
            return
        time.sleep(0.5)
    raise AssertionError("%s: not %s within %ss: %s" % (name, status, timeout, inspect(name)["State"].get("Health")))


def started(name):
    return inspect(name)["State"]["StartedAt"]


def test_an_unhealthy_live_slot_is_restarted_and_nothing_else(blue_green_service, app_images):
    svc = blue_green_service
    for version in ("v1", "v2"):
        assert svc.run(image=app_images[version]).rc == 0
    live = svc.serving_name()
    idle = "%s-%s" % (svc.name, "blue" if live.endswith("-green") else "green")
    # A slot that is not live but runs (started by hand, or left by a killed run), gone bad as well.
    subprocess.run(["docker", "start", idle], check=True, capture_output=True)
    wait_health(idle, "healthy")
    make_sick(svc.serving_port())
    make_sick(svc.ports[idle.rsplit("-", 1)[1]])
    wait_health(live, "unhealthy", streak=3)
    wait_health(idle, "unhealthy", streak=3)
    before = {live: started(live), idle: started(idle)}

    with state.Lock(svc.state_dir, svc.name):
        out = heal(svc)
    assert "%s: left alone: unhealthy" % live in out and "a rollout of %s holds its lock" % svc.name in out, out
    assert "%s: left alone: unhealthy, but not the live %s slot" % (idle, svc.name) in out, out
    assert {live: started(live), idle: started(idle)} == before, "touched while its rollout held the lock"

    out = heal(svc)
    assert "%s: restarting: unhealthy" % live in out and "0 container" not in out, out
    assert started(live) != before[live] and started(idle) == before[idle]
    # Its log tail is in the output, its env values (SECRET_TOKEN from the env file) redacted.
    assert svc.secret not in out, "the log tail shows the env file's secret"
    assert "/health fails from now on" in out and "SECRET_TOKEN=[redacted]" in out, out
    wait_health(live, "healthy")
    with open(os.path.join(svc.state_dir, "heal", "restarts.json")) as f:
        assert json.load(f)[svc.name]["count"] == 1

    # Healthy now: left as it is.
    again = heal(svc)
    assert started(live) != before[live] and "restarting" not in again and "0 container(s) restarted" in again

    args = {"state_dir": svc.state_dir, "services": [svc.name], "gpu": "never", "disk_usage": False}
    status = svc.play.run([{"llmstack.deploy.stack_status": args, "register": "r"}])
    assert status.rc == 0, status.output
    report = status.task()["services"][0]["heal_restarts"]
    assert (report["count"], report["container"]) == (1, live)
