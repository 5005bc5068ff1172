# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker env files: literal render/parse, checksum, key-only diff, atomic write.

`docker run --env-file` reads a file line by line: leading white space is
dropped, lines starting with '#' are comments, and the value is everything
after the first '=' with no quoting or escaping. So a value survives the trip
unless it holds a line break or NUL, or would lose a trailing '\\r'. Those are
refused, naming the key and never the value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
import stat
import tempfile

HEADER = "# Managed by Ansible (llmstack.deploy); do not edit by hand.\n"
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Docker reads env files with bufio.Scanner, whose default line limit is 64 KiB.
MAX_LINE_BYTES = 64 * 1024 - 1
REDACTED = "<redacted>"


class EnvFileError(Exception):
    """Names the key or path at fault; never a value."""


def is_valid_key(key):
    return bool(_ENV_KEY_RE.match(key))


def check_value(key, value):
    if not is_valid_key(key):
        raise EnvFileError("key %r is not a valid environment variable name" % (key,))
    for char, label in (("\n", "a newline"), ("\r", "a carriage return"), ("\0", "a NUL byte")):
        if char in value:
            raise EnvFileError("the value of %s contains %s, which a Docker env file cannot hold "
                               "(it has no quoting); store it without line breaks, e.g. base64" % (key, label))
    if len(("%s=%s" % (key, value)).encode("utf-8")) > MAX_LINE_BYTES:
        raise EnvFileError("the value of %s is longer than a Docker env file line allows (64 KiB)" % key)


def render(values):
    """Deterministic content: a header, then KEY=value lines sorted by key."""
    lines = [HEADER]
    for key in sorted(values):
        value = values[key]
        if not isinstance(value, str):
            value = str(value)
        check_value(key, value)
        lines.append("%s=%s\n" % (key, value))
    return "".join(lines)


def parse(text):
    """Read an env file the way Docker does (for diffs and tests)."""
    values = {}
    for line in text.split("\n"):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    return values


def checksum(content):
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def read(path):
    """(content, stat) of an existing file, or (None, None)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data.decode("utf-8", "replace"), os.stat(path)
    except FileNotFoundError:
        return None, None


def key_diff(before_values, after_values):
    """Keys added, removed and changed. Values only decide membership."""
    before_keys, after_keys = set(before_values), set(after_values)
    return {
        "added": sorted(after_keys - before_keys),
        "removed": sorted(before_keys - after_keys),
        "changed": sorted(k for k in before_keys & after_keys if before_values[k] != after_values[k]),
    }


def redacted_view(values, changed=(), meta=None):
    """Text for Ansible's diff: one line per key with the value redacted.

    A changed key reads differently on the 'after' side so the diff marks it."""
    lines = ["# %s: %s\n" % (k, meta[k]) for k in sorted(meta or {})]
    for key in sorted(values):
        lines.append("%s=%s%s\n" % (key, REDACTED, " (changed)" if key in changed else ""))
    return "".join(lines)


def write_atomic(path, content, mode=0o600, uid=-1, gid=-1):
    """Write through a temp file in the same folder, then rename over the target.

    The temp file is created 0600, so a secret never exists with wider permissions,
    and readers see either the old or the new file, never half of one."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise EnvFileError("folder %s does not exist" % folder)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode("utf-8"))
            f.flush()
            os.fchown(f.fileno(), uid, gid)
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def attributes(st):
    """mode/uid/gid of a stat result, for comparison."""
    return {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
