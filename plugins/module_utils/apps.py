# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stack's apps (llmstack_apps), validated whole before anything is touched, with their defaults, and
what the gateway needs of them: an upstream per app with routes, and the routes themselves. No Ansible here;
the filters llmstack.deploy.app_list, app_upstreams and app_routes wrap it.

An app's name is everywhere the app is: its container (and <name>-blue/-green slots), its env file, its
deploy history, its switch file, its gateway upstream, -e service=<name>, --tags <name> and its SSM image tag
(<prefix>/<name>/image_tag).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import posixpath
import re

# The stack's own services: an app can't take their names (containers, history and -e service share them).
# status: <prefix>/status holds the hosts' readiness records, which an app of that name would read as its own.
RESERVED = ("postgres", "vllm", "ollama", "nginx_gateway", "llm", "llmstack", "app", "apps", "all", "always", "never",
            "status")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
STRATEGIES = ("blue_green", "recreate")
STATES = ("present", "absent")
# An entry's keys and what one that leaves them out gets. routes: see routes.py.
DEFAULTS = {
    # absent: the app role removes its containers, env file and history; the gateway drops its routes.
    "state": "present",
    "strategy": "blue_green",
    "container_port": 8000,
    "slots": None,
    "ports": [],
    "ssm_paths": [],
    "ssm_named": {},
    "ssm_allow_empty": False,
    "env": {},
    "required_keys": [],
    "volumes": [],
    # Host folders of its bind mounts archived daily by the app role's backup timer (file data: SQLite, uploads).
    "backup": [],
    "command": [],
    "user": "",
    "network_aliases": [],
    "health": {"path": "/health", "timeout": 120},
    "memory": "1g",
    "cpus": 1,
    "drain_seconds": 300,
    "stop_timeout": 30,
    "routes": [],
    # None: the role's app_registry_username/password (the stack's GHCR login).
    "registry_username": None,
    "registry_password": None,
}
_TYPES = {"ports": list, "ssm_paths": list, "ssm_named": dict, "env": dict, "required_keys": list, "volumes": list,
          "backup": list, "command": list, "network_aliases": list, "health": dict, "routes": list, "ssm_allow_empty": bool}
_INTS = ("container_port", "drain_seconds", "stop_timeout")
_PORT_RE = re.compile(r"^(?:(?P<ip>[0-9.]+|\[[0-9a-fA-F:]+\]):)?(?P<host>\d+):(?P<container>\d+)(?:/tcp)?$")


class AppError(ValueError):
    """An app that can't be deployed as written; the message names the entry and the key."""


def _where(index, name):
    return "llmstack_apps[%d] (%s)" % (index, name or "no name")


def _port(value, where, key):
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if not 0 < port < 65536:
        raise AppError("%s: %s must be a port number (1-65535), not %r" % (where, key, value))
    return port


def _published(spec):
    """[ip:]host:container -> (ip, host, container), or None for a form this module does not read."""
    match = _PORT_RE.match(str(spec))
    if not match:
        return None
    return match.group("ip") or "", int(match.group("host")), int(match.group("container"))


def _normalize_one(index, entry):
    if not isinstance(entry, dict):
        raise AppError("%s: an app is a dict with at least name and image" % _where(index, None))
    name = entry.get("name")
    where = _where(index, name)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise AppError("%s: name must be lower-case letters, digits and _ (up to 40, a letter first): it names "
                       "the container, the env file and the gateway upstream" % where)
    if name in RESERVED:
        raise AppError("%s: name %r is taken by the stack (%s)" % (where, name, ", ".join(RESERVED)))
    unknown = sorted(set(entry) - set(DEFAULTS) - {"name", "image"})
    if unknown:
        raise AppError("%s: unknown key(s) %s (an app has name, image, %s)"
                       % (where, ", ".join(unknown), ", ".join(sorted(DEFAULTS))))
    app = copy.deepcopy(DEFAULTS)
    app.update(copy.deepcopy(entry))
    if app["state"] not in STATES:
        raise AppError("%s: state must be present or absent, not %r" % (where, app["state"]))
    if app["state"] == "absent":
        # Only the name counts: what is removed is found by it (the image may be long gone from the registry).
        return dict(copy.deepcopy(DEFAULTS), name=name, image=app.get("image") or "", state="absent")
    if not isinstance(app.get("image"), str) or not app["image"].strip():
        raise AppError("%s: image is missing (e.g. ghcr.io/your-org/%s:1.0.0)" % (where, name.replace("_", "-")))
    for key, kind in _TYPES.items():
        if not isinstance(app[key], kind):
            raise AppError("%s: %s must be a %s" % (where, key, kind.__name__))
    for key in _INTS:
        app[key] = _port(app[key], where, key) if key == "container_port" else _int(app[key], where, key)
    if app["strategy"] not in STRATEGIES:
        raise AppError("%s: strategy must be blue_green or recreate, not %r" % (where, app["strategy"]))
    health = dict(DEFAULTS["health"], **app["health"])
    if sorted(health) != ["path", "timeout"] or not (health["path"] == "" or str(health["path"]).startswith("/")):
        raise AppError("%s: health is {path: /health, timeout: 120}: path starts with /, or is \"\" for the "
                       "image's own HEALTHCHECK (else: running)" % where)
    health["timeout"] = _int(health["timeout"], where, "health.timeout")
    app["health"] = health
    if app["strategy"] == "blue_green":
        slots = app["slots"]
        if not isinstance(slots, dict) or sorted(slots) != ["blue", "green"]:
            raise AppError("%s: strategy blue_green needs slots: {blue: <port>, green: <port>}, the two host ports "
                           "(on 127.0.0.1) the gateway switches between" % where)
        app["slots"] = {slot: _port(slots[slot], where, "slots.%s" % slot) for slot in ("blue", "green")}
        if app["slots"]["blue"] == app["slots"]["green"]:
            raise AppError("%s: slots.blue and slots.green must be two ports" % where)
        if app["ports"]:
            raise AppError("%s: ports is for strategy recreate; a blue_green app publishes its slots" % where)
    elif app["slots"] is not None:
        raise AppError("%s: slots is for strategy blue_green; a recreate app publishes ports" % where)
    for spec in app["ports"]:
        if _published(spec) is None:
            raise AppError("%s: ports entry %r: write [host_ip:]host_port:container_port" % (where, spec))
    if health["path"] and app["strategy"] == "recreate" and not app["ports"]:
        # The probe runs on the host, through a published port.
        raise AppError("%s: health.path %s is probed through a published port, and this app publishes none: "
                       "publish one in ports, or set health.path to \"\" (the image's own HEALTHCHECK, else "
                       "running)" % (where, health["path"]))
    if app["routes"] and app["strategy"] == "recreate" and _server(app) is None:
        raise AppError("%s: the gateway reaches an app on a host port: publish container_port %d in ports "
                       "(e.g. \"127.0.0.1:8200:%d\") or use strategy blue_green"
                       % (where, app["container_port"], app["container_port"]))
    for key in ("ssm_named", "env"):
        for k in app[key]:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(k)):
                raise AppError("%s: %s key %r is not an environment variable name" % (where, key, k))
    app["backup"] = _backup(app, where)
    app["name"] = name
    return app


def _backup(app, where):
    """The backup folders, normalized; each must be the source of one of the app's bind mounts."""
    binds = [str(v).split(":", 1)[0].rstrip("/") for v in app["volumes"] if str(v).startswith("/") and ":" in str(v)]
    folders = []
    for folder in app["backup"]:
        path = posixpath.normpath(str(folder)) if str(folder).startswith("/") else None
        if path is None or path == "/":
            raise AppError("%s: backup entry %r must be an absolute folder on the host, not /" % (where, folder))
        if path not in binds:
            raise AppError("%s: backup folder %s is not the source of one of its bind mounts (volumes: %s): only "
                           "the app's own data is archived" % (where, path, ", ".join(binds) or "none"))
        if path not in folders:
            folders.append(path)
    return folders


def _int(value, where, key):
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 0:
        raise AppError("%s: %s must be a whole number of seconds, not %r" % (where, key, value))
    return number


def _server(app):
    """host:port the gateway (on the host's network) reaches a recreate app at, or None."""
    for spec in app["ports"]:
        ip, host, container = _published(spec)
        if container == app["container_port"]:
            ip = ip.strip("[]")
            return "%s:%d" % ("127.0.0.1" if ip in ("", "0.0.0.0") else ip, host)
    return None


def normalize(apps):
    """Every app with its defaults; raises AppError naming the first bad entry and key."""
    if apps is None:
        return []
    if not isinstance(apps, list):
        raise AppError("llmstack_apps must be a list of apps")
    out, names, ports = [], {}, {}
    for index, entry in enumerate(apps):
        app = _normalize_one(index, entry)
        where = _where(index, app["name"])
        if app["name"] in names:
            raise AppError("%s: llmstack_apps[%d] has the same name" % (where, names[app["name"]]))
        names[app["name"]] = index
        host_ports = list((app["slots"] or {}).values()) + [_published(p)[1] for p in app["ports"]]
        for port in host_ports:
            if port in ports and ports[port] != app["name"]:
                raise AppError("%s: host port %d is already %s's" % (where, port, ports[port]))
            ports[port] = app["name"]
        out.append(app)
    return out


def upstreams(apps):
    """The gateway's upstream for each app with routes: its blue/green slots, or its published port."""
    out = []
    for app in normalize(apps):
        if not app["routes"] or app["state"] == "absent":
            continue
        if app["strategy"] == "blue_green":
            out.append({"name": app["name"], "blue": "127.0.0.1:%d" % app["slots"]["blue"],
                        "green": "127.0.0.1:%d" % app["slots"]["green"]})
        else:
            out.append({"name": app["name"], "servers": [_server(app)]})
    return out


def routes(apps):
    """Every app's routes, each going to its own app unless it names an upstream or serves static files."""
    out = []
    for app in normalize(apps):
        for route in app["routes"] if app["state"] == "present" else []:
            if not isinstance(route, dict):
                out.append(route)  # routes.normalize says what is wrong with it
                continue
            route = dict(route)
            if "static" not in route:
                route.setdefault("upstream", app["name"])
            route["app"] = app["name"]
            out.append(route)
    return out
