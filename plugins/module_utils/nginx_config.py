# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gateway's nginx configuration as releases: build, compare, activate. No Docker here.

Layout under the config folder (mounted read-only into the gateway container):
  releases/<id>/nginx.conf ...   one complete configuration per release, never edited in place
  current -> releases/<id>       the live one; nginx runs with -c <mount>/current/nginx.conf

Relative includes in nginx resolve against the folder of the -c file, so a release validated with
`nginx -t -c <mount>/releases/<id>/nginx.conf` reads only its own files, and a reload after the
`current` link moves reads the new release whole. A bad candidate never becomes `current`.

Secret files (API keys) are rendered here from env files on the host: their values never pass
through the controller, never appear in a diff, and are checked against a safe character set so
a value can't break out of its quoted nginx string.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import errno
import hashlib
import hmac
import os
import re
import shutil

from ansible_collections.llmstack.deploy.plugins.module_utils import envfile, managed_file

RELEASES = "releases"
CURRENT = "current"
# Base64/hex/URL-safe token characters: nothing nginx would read as a quote, a variable or an end of statement.
_SAFE_VALUE_RE = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
_FILE_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class ConfigError(Exception):
    """Bad input or a config nginx refused; names files and keys, never a secret value."""


def check_file_name(name):
    if not _FILE_RE.match(name or "") or name.startswith(".") or "/." in name:
        raise ConfigError("files: %r: use a relative path of letters, digits, '_', '.' and '-'" % (name,))
    return name


def regex_literal(value):
    """A safe value as a PCRE literal: each non-alphanumeric character as a one-character class ([.], [+]), which
    needs no backslash (nginx's quoted strings would have to keep it) and is literal whatever the character."""
    return "".join(c if c.isalnum() else "[%s]" % c for c in value)


def render_secret_file(spec, read=managed_file.read):
    """{file, env_file, line, keys?} -> (file name, content, keys used, their values (for redaction)).

    `line` is formatted once per key with {key}, {value} and {value_re} (the value as a regex literal);
    `keys` limits and orders the keys (default: every key of the env file, sorted)."""
    name = check_file_name(spec["file"])
    data, _st = read(spec["env_file"])
    if data is None:
        raise ConfigError("secret_files: %s: env file %s does not exist" % (name, spec["env_file"]))
    values = envfile.parse(data, source=spec["env_file"])
    keys = spec.get("keys") or sorted(values)
    missing = [k for k in keys if k not in values]
    if missing:
        raise ConfigError("secret_files: %s: %s has no key %s" % (name, spec["env_file"], ", ".join(missing)))
    if not keys:
        raise ConfigError("secret_files: %s: %s holds no keys" % (name, spec["env_file"]))
    lines = []
    for key in keys:
        if not _SAFE_VALUE_RE.match(values[key]):
            raise ConfigError("secret_files: %s: the value of %s in %s has characters outside "
                              "[A-Za-z0-9._~+/=-]; use a token such as `openssl rand -hex 32`"
                              % (name, key, spec["env_file"]))
        lines.append(spec["line"].format(key=key, value=values[key], value_re=regex_literal(values[key])))
    return name, ("\n".join(lines) + "\n").encode("utf-8"), list(keys), [values[k] for k in keys]


def release_id(files, key):
    """A keyed hash over every file name and content (secret files included, so a rotated key is a new
    release; keyed so the id can't be used to guess a key offline)."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for name in sorted(files):
        mac.update(name.encode("utf-8") + b"\0" + hashlib.sha256(files[name]).digest())
    return mac.hexdigest()[:16]


def current_release(root):
    """The id `current` points at, or None."""
    try:
        target = os.readlink(os.path.join(root, CURRENT))
    except OSError:
        return None
    return os.path.basename(target.rstrip("/"))


def read_release(root, rid, names):
    """{name: bytes} of a release, for the diff (missing files give b'')."""
    out = {}
    for name in names:
        try:
            with open(os.path.join(root, RELEASES, rid, name), "rb") as f:
                out[name] = f.read()
        except (IOError, OSError):
            out[name] = b""
    return out


def list_files(root, rid):
    base = os.path.join(root, RELEASES, rid)
    found = []
    for folder, _dirs, names in os.walk(base):
        for n in names:
            found.append(os.path.relpath(os.path.join(folder, n), base))
    return sorted(found)


def diff(root, before_id, files, secret_names):
    """A unified diff of the plain files; secret files show only that they changed."""
    before_names = list_files(root, before_id) if before_id else []
    before = read_release(root, before_id, before_names) if before_id else {}
    lines = []
    for name in sorted(set(before) | set(files)):
        old, new = before.get(name, b""), files.get(name, b"")
        if old == new:
            continue
        if name in secret_names:
            lines.append("--- %s\n+++ %s\n(secret file changed; content hidden)\n" % (name, name))
            continue
        lines.extend(difflib.unified_diff(old.decode("utf-8", "replace").splitlines(True),
                                          new.decode("utf-8", "replace").splitlines(True),
                                          fromfile=name, tofile=name))
    return "".join(lines)


def write_release(root, rid, files, secret_names):
    """Write releases/<rid> through a temp folder and one rename, so a crash never leaves half a release.
    Secret files are 0600 (nginx's master reads them as root), the rest 0644."""
    releases = os.path.join(root, RELEASES)
    final = os.path.join(releases, rid)
    if os.path.isdir(final):
        return final
    for path in (root, releases):
        try:
            os.makedirs(path, 0o755)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
    tmp = os.path.join(releases, ".tmp-%s-%d" % (rid, os.getpid()))
    shutil.rmtree(tmp, ignore_errors=True)
    for name, content in files.items():
        path = os.path.join(tmp, name)
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path), 0o755)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if name in secret_names else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
    os.rename(tmp, final)
    return final


def activate(root, rid):
    """Point `current` at releases/<rid> with one rename (relative link, so it resolves in the container)."""
    link = os.path.join(root, CURRENT)
    tmp = os.path.join(root, ".current-%d" % os.getpid())
    try:
        os.unlink(tmp)
    except OSError:
        pass
    os.symlink(os.path.join(RELEASES, rid), tmp)
    os.rename(tmp, link)


def prune(root, keep, protect=()):
    """Remove all but the newest `keep` releases (and leftovers of killed runs); never `protect`."""
    releases = os.path.join(root, RELEASES)
    if not os.path.isdir(releases):
        return []
    entries = os.listdir(releases)
    removed = []
    for n in entries:
        if n.startswith(".tmp-"):
            shutil.rmtree(os.path.join(releases, n), ignore_errors=True)
    done = sorted((n for n in entries if not n.startswith(".")),
                  key=lambda n: os.path.getmtime(os.path.join(releases, n)), reverse=True)
    for n in done[keep:]:
        if n not in protect:
            shutil.rmtree(os.path.join(releases, n), ignore_errors=True)
            removed.append(n)
    return removed
