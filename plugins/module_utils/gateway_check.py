# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gateway check: after a converge, one request per route through the gateway on this host, and one per
server of the route's upstream through the gateway's loopback check listener, with a client key read on the
host. A route or server that does not answer 200 (a 502 or 503 above all) is a failure naming the route, the
upstream and the server. Keys are read here and sent, never returned."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time

from ansible_collections.llmstack.deploy.plugins.module_utils import envfile, managed_file, switch
from ansible_collections.llmstack.deploy.plugins.module_utils.probe import http_request


class CheckError(Exception):
    def __init__(self, message, results=None):
        super(CheckError, self).__init__(message)
        self.results = results or []


def client_key(path):
    """The first client key (by name) of the gateway's API keys env file: (name, key)."""
    data, _stat = managed_file.read(path)
    if data is None:
        raise CheckError("no API keys file at %s: the gateway's role writes it" % path)
    try:
        values = envfile.parse(data, source=path)
    except envfile.EnvFileError as e:
        raise CheckError(str(e))
    if not values:
        raise CheckError("%s holds no API key" % path)
    name = sorted(values)[0]
    return name, values[name]


def targets(routes, upstreams, url, check_url, switch_dir=None):
    """What to ask: one request per route that names a `check` path, through the gateway (url), and one per
    server of a plain upstream (several `servers`), through the check listener (check_url). Each target:
    {route, upstream, server, auth, url}."""
    by_name = dict((u.get("name"), u) for u in upstreams)
    found = []
    for route in routes:
        check = route.get("check")
        if not check:
            continue
        path = route["path"]
        name = route.get("upstream")
        up = by_name.get(name) or {}
        auth = auth_mode(route)
        found.append({"route": path, "upstream": name, "server": live_slot(up, switch_dir), "auth": auth,
                      "url": url.rstrip("/") + path + check.lstrip("/")})
        if check_url and up.get("servers") and not route.get("static"):
            for server in up["servers"]:
                found.append({"route": path, "upstream": name, "server": server, "auth": auth,
                              "url": "%s/%s/%s%s%s" % (check_url.rstrip("/"), name, server, path, check.lstrip("/"))})
    return found


def auth_mode(route):
    """How a route takes its key: None (no key), or the header and the prefix before the key. `auth` is bearer,
    header (with auth_header) or none; true and false are the older spelling of bearer and none."""
    auth = route.get("auth", "bearer")
    if auth is True or auth == "bearer":
        return ("Authorization", "Bearer ")
    if auth == "header":
        return (route["auth_header"], "")
    return None


def live_slot(up, switch_dir):
    """For a blue/green upstream, the live slot's upstream as the switch file names it (for messages)."""
    if not up or up.get("servers") or not switch_dir:
        return None
    try:
        content = switch.SwitchFile.in_folder(switch_dir, up["name"]).read_raw()
    except (IOError, OSError):
        content = None
    return "no switch file yet" if content is None else content or None


def judge(code, body, error):
    """None when the answer proves the route serves, else why not. A JSON list answer (OpenAI's `data`, e.g.
    /v1/models) must not be empty: a model server that lists nothing serves nothing."""
    if error:
        return error
    if code != 200:
        return "HTTP %s%s" % (code, detail(body))
    try:
        answer = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    if isinstance(answer, dict) and isinstance(answer.get("data"), list) and not answer["data"]:
        return "HTTP 200 with an empty list"
    return None


def detail(body):
    """The error message of a JSON error body ({"error": {"message": ...}}), short."""
    try:
        error = json.loads(body.decode("utf-8")).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        return ": %s" % str(message)[:200] if message else ""
    except (ValueError, UnicodeDecodeError, AttributeError):
        return ""


def describe(target):
    where = "upstream %s" % target["upstream"] if target["upstream"] else "no upstream"
    if target["server"]:
        where += ", server %s" % target["server"]
    return "route %s (%s)" % (target["route"], where)


def run(routes, upstreams, url, check_url, api_keys_file, switch_dir=None, timeout=30.0, interval=1.0,
        probe_timeout=10.0, sleep=time.sleep, clock=time.monotonic):
    """Ask every target until each has answered well once or `timeout` seconds have passed (a server just
    restarted may be skipped by the gateway for a few seconds). Returns the results; raises CheckError naming
    every target that never answered well."""
    todo = targets(routes, upstreams, url, check_url, switch_dir)
    key = client_key(api_keys_file)[1] if any(t["auth"] for t in todo) else None
    results = dict((id(t), {"route": t["route"], "upstream": t["upstream"], "server": t["server"], "status": None,
                            "error": "not asked"}) for t in todo)
    deadline = clock() + timeout
    pending = list(todo)
    while True:
        still = []
        for target in pending:
            headers = {target["auth"][0]: target["auth"][1] + key} if target["auth"] else None
            code, body, error = http_request("GET", target["url"], headers=headers,
                                             timeout=probe_timeout, validate_certs=False)
            why = judge(code, body, error)
            results[id(target)].update(status=code, error=why)
            if why:
                still.append(target)
        pending = still
        if not pending or clock() >= deadline:
            break
        sleep(interval)
    ordered = [results[id(t)] for t in todo]
    if pending:
        raise CheckError("; ".join("%s answered %s" % (describe(t), results[id(t)]["error"]) for t in pending)
                         + " (after %ds)" % timeout, ordered)
    return ordered
