"""Shared by the benchmarks: run a one-play playbook and read its task durations."""
import json
import os
import subprocess
import sys
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
import labenv  # noqa: E402  pylint: disable=wrong-import-position


def play_file(tmp, name, tasks, env=None):
    """A localhost play (controller-side interpreter) with the given task list."""
    path = os.path.join(tmp, name + ".yml")
    play = {"hosts": "localhost", "gather_facts": False,
            "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}, "tasks": tasks}
    if env:
        play["environment"] = env
    with open(path, "w") as f:
        json.dump([play], f)
    return path


def run(path, *args, **kwargs):
    """Run a play. Returns (wall seconds, [task seconds], parsed json) or, with extra args, the raw output."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", **labenv.AWS_ENV)
    env.update(kwargs.get("env") or {})
    start = time.monotonic()
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), path] + list(args),
                          capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.monotonic() - start
    if args:
        return proc.stdout + proc.stderr
    data = json.loads(proc.stdout) if proc.stdout.strip() else {}
    if proc.returncode and not kwargs.get("may_fail"):
        sys.exit("bench play %s failed:\n%s" % (path, proc.stdout[-3000:] + proc.stderr[-2000:]))
    tasks = data.get("plays", [{}])[0].get("tasks", [])
    return wall, [_seconds(t["task"]["duration"]["end"]) - _seconds(t["task"]["duration"]["start"]) for t in tasks], data


def _seconds(stamp):
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
