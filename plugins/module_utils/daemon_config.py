# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker's daemon.json: parse, merge settings into it, render, validate; restart the daemon and wait for it.

Other tools write the same file (nvidia-ctk adds `runtimes.nvidia` and `default-runtime`), so
settings are merged into what is there: keys nobody asked about are kept, nested objects are
merged key by key, and the file is only rewritten when the merged content differs as data.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import socket
import time

# dockerd reads log-opts as map[string]string: a number there stops the daemon from starting.
STRING_MAPS = ("log-opts",)
# Top-level keys whose JSON type dockerd insists on (a wrong one stops the daemon from starting).
KNOWN_TYPES = {
    "live-restore": bool,
    "log-driver": str,
    "log-opts": dict,
    "runtimes": dict,
    "default-runtime": str,
    "data-root": str,
    "insecure-registries": list,
    "registry-mirrors": list,
}


class DaemonConfigError(Exception):
    pass


def parse(data, source="daemon.json"):
    """The config object in `data` (bytes or text). Empty or blank means {}, as dockerd reads it."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DaemonConfigError("%s is not UTF-8 (byte %d)" % (source, e.start))
    if data.startswith("\ufeff"):
        data = data[1:]
    if not data.strip():
        return {}
    try:
        config = json.loads(data)
    except ValueError as e:
        # json's message carries line and column; the text itself is not repeated.
        raise DaemonConfigError("%s is not valid JSON: %s" % (source, e))
    if not isinstance(config, dict):
        raise DaemonConfigError("%s must hold a JSON object, not %s" % (source, type(config).__name__))
    return config


def normalize(options):
    """Settings as dockerd wants them: log-opts values as strings (YAML gives max-file: 3 as a number)."""
    out = copy.deepcopy(options)
    for key in STRING_MAPS:
        value = out.get(key)
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, bool):
                    value[k] = "true" if v else "false"
                elif isinstance(v, (int, float)):
                    value[k] = str(v)
    return out


def merge(current, options):
    """current with options merged in, recursively for objects. A None value removes the key.
    Neither argument is modified."""
    out = copy.deepcopy(current)
    for key, value in options.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif isinstance(value, dict):
            out[key] = merge({}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check(config, source="daemon.json"):
    """Refuse a config whose known keys have a type dockerd would reject at start."""
    names = {bool: "a boolean", str: "a string", dict: "an object", list: "a list"}
    for key, kind in KNOWN_TYPES.items():
        if key in config and not isinstance(config[key], kind):
            raise DaemonConfigError("%s: %s must be %s, got %s" % (source, key, names[kind], json.dumps(config[key])))
    for key in STRING_MAPS:
        for k, v in config.get(key, {}).items():
            if not isinstance(v, str):
                raise DaemonConfigError("%s: %s.%s must be a string, got %s" % (source, key, k, json.dumps(v)))


def same(a, b):
    """Equal as JSON (True is not 1, key order does not matter)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def render(config):
    """The file's text: 2-space indent, keys in the order they already had, a final newline."""
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def changed_keys(before, after, prefix=""):
    """Dotted paths of keys added, removed or changed, sorted."""
    out = []
    for key in set(before) | set(after):
        path = prefix + key
        if key not in before or key not in after:
            out.append(path)
        elif isinstance(before[key], dict) and isinstance(after[key], dict):
            out.extend(changed_keys(before[key], after[key], path + "."))
        elif not same(before[key], after[key]):
            out.append(path)
    return sorted(out)


def dockerd_validate(run, dockerd, path):
    """Ask dockerd itself whether it would start with this file (`dockerd --validate`, Engine 23+).

    run(argv) -> (rc, stdout, stderr). Returns True when dockerd accepted the file, False when this
    dockerd has no --validate (Debian 12's 20.10); raises DaemonConfigError when dockerd refuses it."""
    rc, out, err = run([dockerd, "--validate", "--config-file", path])
    if rc == 0:
        return True
    text = ("%s\n%s" % (out, err)).strip()
    if "unknown flag" in text and "validate" in text:
        return False
    raise DaemonConfigError("dockerd refuses the new config: %s" % (text.splitlines()[-1] if text else "rc=%d" % rc))


def restart_daemon(run_command):
    """Restart docker.service; (ok, message). run_command(argv) -> (rc, out, err), e.g. module.run_command.

    reset-failed first: docker.service allows 3 starts in 60 s, and a crash, docker_host or an earlier
    restart may have used them; the restart must not be refused for those."""
    run_command(["systemctl", "reset-failed", "docker.service"])
    rc, out, err = run_command(["systemctl", "restart", "docker.service"])
    if rc != 0:
        return False, "systemctl restart docker.service failed (rc %d): %s" % (rc, (err or out).strip())
    return True, "docker.service restarted"


def ping_socket(path, timeout=5.0):
    """True when dockerd answers GET /_ping on its unix socket with 200, the way the CLI checks it.

    Plain sockets, so it works where the Docker SDK is not installed."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        status = sock.recv(32).split(b" ", 2)
    except OSError:
        return False
    finally:
        sock.close()
    return len(status) > 1 and status[0].startswith(b"HTTP/") and status[1] == b"200"


def wait_for_daemon(ping, timeout, sleep=time.sleep, clock=time.monotonic, interval=0.5):
    """Call ping() until it returns True: True if it did within timeout seconds, else False.

    systemctl restart returns when systemd counts dockerd as started; the tasks after a restart need its API."""
    deadline = clock() + timeout
    while not ping():
        if clock() >= deadline:
            return False
        sleep(interval)
    return True
