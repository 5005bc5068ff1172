# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker env files: literal render/parse, checksum, key-only diff, redaction.

`docker run --env-file` reads a file line by line: leading white space is
dropped, lines starting with '#' are comments, and the value is everything
after the first '=' with no quoting or escaping. So a value survives the trip
unless it holds a line break or NUL, or would lose a trailing '\\r'. Those are
refused, naming the key and never the value. parse() reads a file the way
Docker does, so the environment a module passes is the one `--env-file` gives.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import hmac
import re


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


# Go's unicode.IsSpace, which Docker uses to trim a line's start. Python's str.isspace() differs
# (it also counts \x1c-\x1f), so the set is spelled out.
_GO_SPACE = frozenset(u"\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
                      + u"".join(chr(c) for c in range(0x2000, 0x200B)))


def _lstrip_go(text):
    i = 0
    while i < len(text) and text[i] in _GO_SPACE:
        i += 1
    return text[i:]


def parse(data, source="env file", strict=True):
    """Read env file content (bytes or text) exactly as `docker run --env-file` does.

    Docker (cli opts/file.go): lines split on LF with one trailing CR dropped; a UTF-8 BOM dropped
    from line 1; leading white space (Go's unicode.IsSpace) dropped; blank lines and '#' lines
    skipped; the value is everything after the first '=' (no quoting, trailing white space kept);
    the last of a repeated key wins. Docker refuses invalid UTF-8, an empty name, a name with a
    space or tab, and a line of 64 KiB or more, all naming the line. Two deliberate differences,
    both refusals: a bare `KEY` (Docker copies it from the CLI's own environment, which on a
    managed host is an accident) and a NUL byte (Docker accepts it, then the container fails to
    start). Errors name source and line number, never a value.

    strict=False skips bad lines instead (for showing a diff against a hand-edited file)."""
    if not isinstance(data, bytes):
        data = data.encode("utf-8")
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    values = {}
    for number, raw in enumerate(lines, 1):
        try:
            values.update(_parse_line(raw, number))
        except EnvFileError as e:
            if strict:
                raise EnvFileError("%s line %d: %s" % (source, number, e))
    return values


def _parse_line(raw, number):
    if len(raw) > MAX_LINE_BYTES:
        raise EnvFileError("the line is 64 KiB or longer (Docker's limit)")
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvFileError("not valid UTF-8")
    if number == 1 and text.startswith(u"\ufeff"):
        text = text[1:]
    line = _lstrip_go(text)
    if not line or line.startswith("#"):
        return {}
    key, sep, value = line.partition("=")
    if not key:
        raise EnvFileError("no variable name before '='")
    if " " in key or "\t" in key:
        raise EnvFileError("variable name %r contains white space" % key)
    if not sep:
        raise EnvFileError("%s has no '=': values are never taken from the environment of the module; "
                           "write %s=value (or %s= for an empty value)" % (key, key, key))
    if "\0" in value:
        raise EnvFileError("the value of %s contains a NUL byte, which no environment variable can hold" % key)
    return {key: value}


def checksum(content, key):
    """HMAC-SHA256 of content under the host key (see state.host_key).

    Keyed, so a checksum that is returned or stored can't be brute-forced offline to recover a
    short secret even when every other value in the file is known."""
    if not isinstance(content, bytes):
        content = content.encode("utf-8")
    return hmac.new(key, content, hashlib.sha256).hexdigest()


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


def redact(text, values):
    """text with every one of values replaced by <redacted>, longest first.

    Apps print their config at start, so a log tail may hold env values. A value of under 8
    characters (a port, a flag, a user name) is replaced only where it stands alone, not inside a
    word or a name: redacting '1' does not garble every number in the log, nor does PGUSER=agent
    turn the container agent_service-blue into <redacted>_service-blue."""
    values = sorted(set(v for v in values if v), key=len, reverse=True)
    for value in values:
        if len(value) >= 8:
            text = text.replace(value, REDACTED)
        else:
            text = re.sub(r"(?<![A-Za-z0-9_-])%s(?![A-Za-z0-9_-])" % re.escape(value), REDACTED, text)
    return text
