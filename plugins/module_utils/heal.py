# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Self-healing: restart the collection's containers that Docker's health check has found unhealthy N times in a
row. Docker's restart policy acts on exits only, never on health.

Run on each host by a systemd timer: the docker_host role installs this file beside its command line
(roles/docker_host/files/llmstack_heal.py). It imports nothing but the standard library and calls the docker CLI.
What it leaves alone:
  - a container without a Docker health check (no HEALTHCHECK in its image), or one still starting;
  - a blue/green slot that is not the live one (its rollout or rollback decides about it);
  - a service whose rollout holds its lock (<state_dir>/locks/<service>.lock, as state.Lock takes it).
Each restart is logged with the container's last log lines, every value of its environment (its env files: the
secrets) replaced by [redacted], and counted in <state_dir>/heal/restarts.json, which stack_status reports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import json
import os
import subprocess
import tempfile
import time

SERVICE_LABEL = "llmstack.service"  # spec.LABEL_SERVICE
SLOT_LABEL = "llmstack.slot"        # spec.LABEL_SLOT
RESTARTS_FILE = os.path.join("heal", "restarts.json")
REDACTED = "[redacted]"
# Shorter env values (a port, "true") are not secrets, and replacing them would garble every log line.
MIN_SECRET_LENGTH = 6
DEFAULT_STOP_TIMEOUT = 30


def docker(*args, merge=False):
    """The docker CLI's stdout (with its stderr when merge: `docker logs` writes the container's stderr there)."""
    stderr = subprocess.STDOUT if merge else subprocess.PIPE
    return subprocess.run(("docker",) + args, stdout=subprocess.PIPE, stderr=stderr, universal_newlines=True,
                          check=True, timeout=120).stdout


def containers():
    """docker inspect of every running container of the collection (labelled llmstack.service)."""
    ids = docker("ps", "-q", "--filter", "label=" + SERVICE_LABEL).split()
    return json.loads(docker("inspect", *ids)) if ids else []


def live_container(state_dir, service):
    """The container id the service's current deployment recorded (state.History's file), else None."""
    try:
        with open(os.path.join(state_dir, "deployments", service + ".json")) as f:
            history = json.load(f)
    except (IOError, OSError, ValueError):
        return None
    for entry in history.get("deployments", []):
        if entry.get("seq") == history.get("current"):
            return entry.get("container_id")
    return None


def verdict(container, state_dir, failing_streak):
    """(restart?, why) for one inspected container."""
    health = (container.get("State") or {}).get("Health")
    if not health:
        return False, "no health check"
    if health.get("Status") != "unhealthy":
        return False, health.get("Status") or "no health status"
    streak = int(health.get("FailingStreak") or 0)
    if streak < failing_streak:
        return False, "unhealthy, %d failed checks in a row of %d" % (streak, failing_streak)
    labels = (container.get("Config") or {}).get("Labels") or {}
    if labels.get(SLOT_LABEL) and live_container(state_dir, labels[SERVICE_LABEL]) != container["Id"]:
        return False, "unhealthy, but not the live %s slot" % labels[SERVICE_LABEL]
    return True, "unhealthy, %d failed checks in a row" % streak


class ServiceLock:
    """state.Lock's flock on <state_dir>/locks/<service>.lock, without waiting: held means a rollout is running."""

    def __init__(self, state_dir, service):
        self.path = os.path.join(state_dir, "locks", service + ".lock")
        self.fd = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as e:
            os.close(self.fd)
            self.fd = None
            if e.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        # Named in the error a rollout gives when it times out waiting for the lock.
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, ("self-healing, pid %d\n" % os.getpid()).encode(), 0)
        return True

    def __exit__(self, *exc):
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
        return False


def redact(text, env):
    """text with every value of env (["KEY=value", ...]) at least MIN_SECRET_LENGTH long replaced."""
    values = sorted(set(e.split("=", 1)[1] for e in env or [] if "=" in e), key=len, reverse=True)
    for value in values:
        if len(value) >= MIN_SECRET_LENGTH:
            text = text.replace(value, REDACTED)
    return text


def count(state_dir, service, container_name, now):
    """Add one restart to <state_dir>/heal/restarts.json ({service: {"count", "last", "container"}}), atomically."""
    path = os.path.join(state_dir, RESTARTS_FILE)
    counts = read_counts(state_dir)
    entry = counts.setdefault(service, {"count": 0})
    entry.update(count=entry.get("count", 0) + 1, last=now, container=container_name)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".restarts.")
    with os.fdopen(fd, "w") as f:
        json.dump(counts, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return entry["count"]


def read_counts(state_dir):
    """{service: {"count", "last", "container"}} of the restarts so far; {} when there were none."""
    try:
        with open(os.path.join(state_dir, RESTARTS_FILE)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (IOError, OSError, ValueError):
        return {}


def heal(state_dir, failing_streak, log_lines, out, inspect=containers, run=docker):
    """One pass: restart what verdict() allows; returns the names restarted."""
    restarted = []
    for container in inspect():
        name = container.get("Name", "").lstrip("/")
        service = ((container.get("Config") or {}).get("Labels") or {}).get(SERVICE_LABEL)
        restart, why = verdict(container, state_dir, failing_streak)
        if not restart:
            if why.startswith("unhealthy"):
                out("%s: left alone: %s" % (name, why))
            continue
        with ServiceLock(state_dir, service) as free:
            if not free:
                out("%s: left alone: %s, but a rollout of %s holds its lock" % (name, why, service))
                continue
            env = (container.get("Config") or {}).get("Env") or []
            tail = run("logs", "--tail", str(log_lines), container["Id"], merge=True)
            out("%s: restarting: %s; its last %d log lines:\n%s" % (
                name, why, log_lines, "\n".join("  | " + line for line in redact(tail, env).splitlines())))
            stop = (container.get("Config") or {}).get("StopTimeout") or DEFAULT_STOP_TIMEOUT
            run("restart", "--time", str(stop), container["Id"])
            total = count(state_dir, service, name, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            out("%s: restarted (%s: %d restarts by self-healing so far)" % (name, service, total))
            restarted.append(name)
    return restarted
