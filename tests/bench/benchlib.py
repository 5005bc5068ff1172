"""Shared by the benchmarks: run a one-play playbook (in the foreground or the background) and read its
task durations."""
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
import labenv  # noqa: E402  pylint: disable=wrong-import-position


def play_file(tmp, name, tasks, env=None, variables=None):
    """A localhost play (controller-side interpreter) with the given task list and play vars."""
    path = os.path.join(tmp, name + ".yml")
    play = {"hosts": "localhost", "gather_facts": False,
            "vars": dict(variables or {}, ansible_python_interpreter="{{ ansible_playbook_python }}"),
            "tasks": tasks}
    if env:
        play["environment"] = env
    with open(path, "w") as f:
        json.dump([play], f)
    return path


def run(path, *args, **kwargs):
    """Run a play. Returns (wall seconds, [task seconds], parsed json) or, with extra args, the raw output.

    env: extra environment for ansible-playbook (and so for modules on localhost); may_fail: a failed play
    is returned rather than ending the benchmark."""
    cmd, env = labenv.playbook_command(path, args, kwargs.get("env"))
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.monotonic() - start
    if args:
        return proc.stdout + proc.stderr
    return _result(path, proc.returncode, proc.stdout, proc.stderr, wall, kwargs.get("may_fail"))


def start(path, env=None):
    """Start a play in the background (to kill its module, or to race another run). Finish it with wait()."""
    cmd, full_env = labenv.playbook_command(path, (), env)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=ROOT)
    proc.bench_path, proc.bench_started = path, time.monotonic()
    return proc


def wait(proc, may_fail=True, timeout=600):
    """Wait for a play started with start(); returns what run() returns."""
    stdout, stderr = proc.communicate(timeout=timeout)
    return _result(proc.bench_path, proc.returncode, stdout, stderr, time.monotonic() - proc.bench_started, may_fail)


def _result(path, returncode, stdout, stderr, wall, may_fail):
    data = json.loads(stdout) if stdout.strip() else {}
    if returncode and not may_fail:
        sys.exit("bench play %s failed:\n%s" % (path, stdout[-3000:] + stderr[-2000:]))
    tasks = data.get("plays", [{}])[0].get("tasks", [])
    return wall, [_seconds(t["task"]["duration"]["end"]) - _seconds(t["task"]["duration"]["start"]) for t in tasks], data


def task_result(data, index=0):
    """The localhost result of a play's task (a negative index counts from the last task that ran)."""
    tasks = data.get("plays", [{}])[0].get("tasks", [])
    try:
        return tasks[index]["hosts"]["localhost"]
    except (IndexError, KeyError):
        return {}


def failed(data):
    return bool(data.get("stats", {}).get("localhost", {}).get("failures")) or not data


def _seconds(stamp):
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def timings(out, name, what):
    """(ok, changed, playbook seconds) from a run's PLAY RECAP and profile_tasks' running total."""
    recap = re.search(re.escape(name) + r"\s*:\s*ok=(\d+)\s+changed=(\d+)", out)
    totals = re.findall(r"\)\s+(\d+):(\d\d):(\d\d\.\d+)", out)  # profile_tasks: "(task time)   h:mm:ss.fff"
    if not recap or not totals:
        sys.exit("%s: no PLAY RECAP or profile_tasks line for %s:\n%s" % (what, name, out[-3000:]))
    h, m, sec = totals[-1]
    return int(recap.group(1)), int(recap.group(2)), int(h) * 3600 + int(m) * 60 + float(sec)


def profiled(path, *args, root=ROOT):
    """ansible-playbook <path> <args> as an operator runs it (root's ansible.cfg, the default output) with
    profile_tasks' timings: its stdout. A failed run ends the benchmark."""
    cmd, env = labenv.playbook_command(path, args, {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
                                                    "ANSIBLE_CONFIG": os.path.join(root, "ansible.cfg")},
                                       callback="default")
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit("%s %s failed:\n%s" % (path, " ".join(args), (proc.stdout + proc.stderr)[-4000:]))
    return proc.stdout
