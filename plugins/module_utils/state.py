# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules keep on a host, under one state_dir (default /var/lib/llmstack):

  host.key                     per-host secret that keys checksums and spec hashes (0600)
  locks/<service>.lock         one rollout per service at a time (flock)
  deployments/<service>.json   the service's deployment history (0600)
  deployments/<service>.log    the phases of every rollout, to follow a long one with tail -f

Everything here is crash-safe: files are replaced atomically, a lock dies with its holder, and a
deployment is written as `pending` before anything is touched, so the next run knows what an
interrupted one was doing. In check mode nothing is created, not even a folder.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import hashlib
import json
import os
import socket
import tempfile
import time

from ansible_collections.llmstack.deploy.plugins.module_utils import managed_file

# Deployment statuses. Only `succeeded` is ever a rollback target.
PENDING, SUCCEEDED, FAILED, INTERRUPTED, ROLLED_BACK = "pending", "succeeded", "failed", "interrupted", "rolled_back"
HISTORY_FORMAT = 2
LOG_MAX_BYTES = 1024 * 1024


# What to do when a state_dir path can't be written.
WRITE_HINT = "run the task as root (become: true) or set state_dir to a folder this user can write"


class StateError(Exception):
    """A state_dir problem, with what to do about it."""


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def ensure_dir(path, mode=0o700):
    """Create path (and parents) if missing; two services racing on a fresh host both succeed."""
    try:
        os.makedirs(path, mode)
    except OSError as e:
        if e.errno != errno.EEXIST or not os.path.isdir(path):
            raise StateError("cannot create %s: %s; %s" % (path, e.strerror or e, WRITE_HINT))
    return path


def write_file(path, content, mode=0o600):
    """Atomic replace, with a message that names the path when the folder is not writable."""
    try:
        managed_file.write_atomic(path, content, mode=mode)
    except OSError as e:
        raise StateError("cannot write %s: %s; %s" % (path, getattr(e, "strerror", None) or e, WRITE_HINT))


def host_key(state_dir, create=True):
    """The host key as bytes, created on first use. None if it is missing and create=False (check mode)."""
    path = os.path.join(state_dir, "host.key")
    if not os.path.exists(path):
        if not create:
            return None
        ensure_dir(state_dir)
        # Write a temp file, then link it into place: link fails if another process got there first,
        # so two modules starting at once on a fresh host agree on one key.
        try:
            fd, tmp = tempfile.mkstemp(prefix=".host.key.", dir=state_dir)
            with os.fdopen(fd, "w") as f:
                f.write(hashlib.sha256(os.urandom(32)).hexdigest())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
            finally:
                os.unlink(tmp)
        except OSError as e:
            raise StateError("cannot create the host key %s: %s; %s" % (path, e.strerror or e, WRITE_HINT))
    try:
        with open(path) as f:
            key = f.read().strip()
    except OSError as e:
        raise StateError("cannot read the host key %s: %s; run the task as root (become: true)"
                         % (path, e.strerror or e))
    if len(key) < 32:
        raise StateError("the host key %s is damaged (too short); remove it: every service then "
                         "redeploys once on its next run" % path)
    return key.encode("ascii")


# ------------------------------------------------------------------------------ lock

class Lock:
    """One rollout per service per host: an flock on <state_dir>/locks/<service>.lock.

    The kernel drops an flock when its holder dies, so a killed run never leaves a stale lock.
    shared=True (check mode) takes a shared lock on an existing file and creates nothing."""

    def __init__(self, state_dir, service, timeout=300, shared=False, sleep=time.sleep):
        self.path = os.path.join(state_dir, "locks", "%s.lock" % service)
        self.timeout, self.shared, self.sleep = timeout, shared, sleep
        self.fd = None

    def __enter__(self):
        if self.shared:
            if not os.path.exists(self.path):
                return self  # nothing was ever deployed here: nothing to read consistently
            self.fd = os.open(self.path, os.O_RDONLY)
        else:
            ensure_dir(os.path.dirname(self.path))
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as e:
                raise StateError("cannot open the lock %s: %s" % (self.path, e.strerror or e))
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(self.fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
                    os.close(self.fd)
                    self.fd = None
                    raise StateError("another rollout holds %s (%s); waited %ss"
                                     % (self.path, holder, self.timeout))
                self.sleep(0.5)
        if not self.shared:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, ("pid %d on %s since %s\n" % (os.getpid(), socket.gethostname(), now())).encode(), 0)
        return self

    def __exit__(self, *exc):
        if self.fd is None:
            return
        if not self.shared:
            os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


# --------------------------------------------------------------------------- history

class History:
    """<state_dir>/deployments/<service>.json: every deployment attempt, newest first.

    Each entry has a `seq`, a `status` (pending, succeeded, failed, interrupted, rolled_back), what
    was asked for (image, digest_ref, image_id), the recorded spec (run options, env file paths and
    checksums, health check; never an env file value), the spec hash, and for a success the
    container id and slot. `current` is the seq of the deployment that is serving: it only ever
    names a deployment that passed its health check. Read it under the service's Lock."""

    def __init__(self, state_dir, service, keep=20):
        self.folder = os.path.join(state_dir, "deployments")
        self.path = os.path.join(self.folder, "%s.json" % service)
        self.service, self.keep = service, keep
        self.data = {"format": HISTORY_FORMAT, "service": service, "current": None, "deployments": []}
        self.exists = os.path.exists(self.path)
        if self.exists:
            self.data = self._load()

    def _load(self):
        hint = ("move it aside (mv %s %s.bad); the next run starts a new history and re-checks the running "
                "container's health before it counts it as current" % (self.path, self.path))
        try:
            with open(self.path) as f:
                data = json.load(f)
        except ValueError as e:
            raise StateError("the deployment history %s is not valid JSON (%s): %s" % (self.path, e, hint))
        except OSError as e:
            raise StateError("cannot read the deployment history %s: %s" % (self.path, e.strerror or e))
        if not isinstance(data, dict) or data.get("format", 1) not in (1, HISTORY_FORMAT):
            raise StateError("the deployment history %s has an unknown layout: %s" % (self.path, hint))
        if data.get("format", 1) == 1:
            data = _from_format_1(data, self.service)
        entries = data.get("deployments")
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("seq"), int)
                                                    and e.get("status") for e in entries):
            raise StateError("the deployment history %s has damaged entries: %s" % (self.path, hint))
        return data

    @staticmethod
    def services(state_dir):
        """The services with a history in <state_dir>/deployments, sorted; none without the folder.

        A history is <service>.json; a dot file (a write in progress) and the logs beside them are not."""
        try:
            names = os.listdir(os.path.join(state_dir, "deployments"))
        except OSError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and not n.startswith("."))

    # ----- reading

    @property
    def deployments(self):
        return self.data["deployments"]

    def entry(self, seq):
        return next((e for e in self.deployments if e["seq"] == seq), None)

    @property
    def current(self):
        entry = self.entry(self.data.get("current"))
        return entry if entry and entry["status"] == SUCCEEDED else None

    @property
    def newest(self):
        return self.deployments[0] if self.deployments else None

    def is_current_container(self, container):
        """True if container is the one the current deployment started and saw healthy."""
        current = self.current
        return bool(container is not None and current and current.get("container_id") == container.id)

    def rollback_target(self):
        """(entry, note) that state=rolled_back returns to.

        - The newest attempt did not succeed (failed, interrupted): the deployment serving before it,
          which is `current`; a rollback then re-establishes it if it is not running as recorded.
        - `current` is itself a rollback: it stays (repeating a rollback never flips back).
        - Otherwise: the newest earlier deployment that succeeded with a different spec.
        A failed or rolled-back deployment is never a target."""
        current = self.current
        if current is None:
            raise StateError("no successful deployment of %s is recorded in %s: nothing to roll back to"
                             % (self.service, self.path))
        newest = self.newest
        if newest is not current and newest["status"] != SUCCEEDED:
            return current, "the newest deployment (#%d, %s) %s; staying on #%d" % (
                newest["seq"], newest.get("image"), newest["status"], current["seq"])
        if current.get("rollback_of"):
            return current, "#%d is already a rollback (of #%d)" % (current["seq"], current["rollback_of"])
        for entry in self.deployments:
            same = entry.get("spec_hash") is not None and entry.get("spec_hash") == current.get("spec_hash")
            if entry["seq"] < current["seq"] and entry["status"] == SUCCEEDED and not same:
                return entry, "rolling back from #%d to #%d" % (current["seq"], entry["seq"])
        raise StateError("no earlier successful deployment of %s is recorded in %s (only #%d, %s)"
                         % (self.service, self.path, current["seq"], current.get("image")))

    def previous(self, entry):
        """The deployment that served before entry: the newest earlier one that succeeded (or was rolled back from)."""
        for other in self.deployments:
            if other["seq"] < entry["seq"] and other["status"] in (SUCCEEDED, ROLLED_BACK):
                return other
        return None

    def image_ids(self):
        return [e["image_id"] for e in self.deployments if e.get("image_id")]

    def images_to_keep(self, count):
        """Image ids of the current deployment and the newest successful ones, count in all."""
        keep = []
        for entry in ([self.current] if self.current else []) + self.deployments:
            if entry["status"] == SUCCEEDED and entry.get("image_id") and entry["image_id"] not in keep:
                keep.append(entry["image_id"])
        return keep[:max(count, 1)]

    # ----- writing

    def begin(self, entry):
        """Record an attempt as pending before anything on the host is touched."""
        for old in self.deployments:
            if old["status"] == PENDING:  # a run that was killed: whatever it did is repaired by this one
                old["status"] = INTERRUPTED
        seq = max([e["seq"] for e in self.deployments] + [0]) + 1
        entry = dict(entry, seq=seq, status=PENDING, time=now(), pid=os.getpid())
        self.data["deployments"] = [entry] + self.deployments
        self.save()
        return entry

    def succeed(self, entry, container_id, slot=None):
        entry.update(status=SUCCEEDED, finished=now(), container_id=container_id, slot=slot)
        rolled_from = self.entry(entry.get("rollback_of"))
        if rolled_from is not None and rolled_from["status"] == SUCCEEDED:
            rolled_from["status"] = ROLLED_BACK
        self.data["current"] = entry["seq"]
        self.save()

    def fail(self, entry, error):
        entry.update(status=FAILED, finished=now(), error=error.splitlines()[0][:300] if error else "")
        self.save()

    def save(self):
        # Never drop the current deployment, however many attempts came after it.
        kept = self.deployments[:self.keep]
        current = self.entry(self.data.get("current"))
        if current is not None and current not in kept:
            kept.append(current)
        self.data["deployments"] = kept
        ensure_dir(self.folder)
        write_file(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n", mode=0o600)
        self.exists = True

    def remove(self):
        try:
            os.unlink(self.path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise StateError("cannot remove %s: %s" % (self.path, e.strerror or e))
        self.exists = False


def _from_format_1(data, service):
    """Format 1 kept current/previous and a list without statuses: all of them had succeeded."""
    entries = [e for e in data.get("deployments", []) if isinstance(e, dict)]
    total = len(entries)
    for i, entry in enumerate(entries):
        entry.update(seq=total - i, status=SUCCEEDED)
    return {"format": HISTORY_FORMAT, "service": service, "current": total if entries else None,
            "deployments": entries}


class DeployLog:
    """<state_dir>/deployments/<service>.log: one line per phase, kept to about 1 MiB (.log.1 before it)."""

    def __init__(self, state_dir, service, enabled=True):
        self.path = os.path.join(state_dir, "deployments", "%s.log" % service)
        self.enabled = enabled
        self.started = time.monotonic()
        self.lines = []

    def __call__(self, message):
        line = "[%5.1fs] %s" % (time.monotonic() - self.started, message)
        self.lines.append(line)
        if not self.enabled:
            return
        ensure_dir(os.path.dirname(self.path))
        try:
            if os.path.exists(self.path) and os.path.getsize(self.path) > LOG_MAX_BYTES:
                os.rename(self.path, self.path + ".1")
            with open(self.path, "a") as f:
                f.write("%s %s\n" % (now(), line))
        except OSError as e:
            raise StateError("cannot write %s: %s" % (self.path, e.strerror or e))
