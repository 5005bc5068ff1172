# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gateway's routes, validated whole before anything is rendered, each with the regular expression of
the paths it forwards (its allow-list). No Ansible here; the filter llmstack.deploy.gateway_routes wraps it.

An allow entry is relative to the route's path:
  chat              exactly <path>chat
  sessions/{id}     one path segment in place of {id} (any name; no '/', so no way into a sibling)
  files/*           everything below <path>files/ (a trailing * only)
  *                 everything below the route's path
The gateway matches entries against nginx's $uri: decoded, '.' and '..' resolved, '//' merged, so an
encoded slash or a dot segment can't reach a path the list does not name.

A normalized route has every key of DEFAULTS, with auth one of AUTH_MODES (true/false are bearer/none), rate
one of RATES, `allow_regex`, and `static_name` (the folder name of a static route's releases, "" otherwise).
Routes come back longest path first, the order the gateway renders them in.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

# Characters a literal part of a path may hold. nginx reads $ as a variable and {};" as syntax, so none of
# those; the rest is rendered as a one-character class, which is literal in PCRE whatever the character.
_LITERAL = "A-Za-z0-9._~:@-"
_ENTRY_RE = re.compile(r"^(?:[%s]+|\{[A-Za-z_][A-Za-z0-9_]*\})(?:/(?:[%s]+|\{[A-Za-z_][A-Za-z0-9_]*\}))*"
                       r"(?:/\*)?$|^\*$" % (_LITERAL, _LITERAL))
_PATH_RE = re.compile(r"^/(?:[%s]+/)*$" % _LITERAL)
_PARAM_RE = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
# A header name nginx reads as $http_<name> (no underscores: nginx drops such headers by default).
_HEADER_RE = re.compile(r"^[A-Za-z0-9-]+$")
# Headers the gateway sets or needs itself: a key can't travel in one of them.
_RESERVED_HEADERS = ("authorization", "host", "connection", "upgrade", "content-length", "content-type",
                     "transfer-encoding", "x-forwarded-for", "x-forwarded-proto", "x-real-ip")
AUTH_MODES = ("bearer", "header", "none")
RATES = ("keyed", "general")
# What a route that leaves a key out gets. rate None: keyed when the route takes a key, else general.
DEFAULTS = {"upstream_path": "/", "auth": "bearer", "auth_header": "", "streaming": False, "websocket": False,
            "upstream_auth": False, "rate": None, "static": "", "check": ""}
_BOOLS = ("streaming", "websocket", "upstream_auth")


class RouteError(ValueError):
    """A route that can't be served as written; the message names the route."""


def _literal(text):
    return "".join(c if c.isalnum() or c in "/_" else "[%s]" % c for c in text)


def entry_regex(entry):
    """One allow entry -> a PCRE fragment (relative to the route's path)."""
    if entry == "*":
        return ".*"
    prefix = entry.endswith("/*")
    body = entry[:-1] if prefix else entry
    out, pos = [], 0
    for param in _PARAM_RE.finditer(body):
        out.append(_literal(body[pos:param.start()]))
        out.append("[^/]+")
        pos = param.end()
    out.append(_literal(body[pos:]))
    return "".join(out) + (".*" if prefix else "")


def allow_regex(path, allow):
    """The anchored regex of every path a route forwards."""
    return "^%s(?:%s)$" % (_literal(path), "|".join(entry_regex(e) for e in allow))


def static_name(path):
    """A folder name for a static route's releases: / -> root, /chat/ -> chat, /a/b/ -> a_b."""
    return re.sub(r"[^A-Za-z0-9-]", "_", path.strip("/")) or "root"


def _name(where, index, route):
    path = route.get("path", "no path") if isinstance(route, dict) else route
    if isinstance(route, dict) and route.get("app"):
        # A route of an app's entry (apps.routes marks them): named where the operator wrote it.
        return "llmstack_apps (%s) route %s" % (route["app"], path)
    return "%s[%d] (%s)" % (where, index, path)


def _auth(value, where):
    """auth as one of AUTH_MODES; the booleans of before stay accepted."""
    if value is True:
        return "bearer"
    if value is False:
        return "none"
    if value not in AUTH_MODES:
        raise RouteError("%s: auth must be bearer (Authorization: Bearer <key>), header (the key in auth_header) "
                         "or none, not %r" % (where, value))
    return value


def _check_static(route, given, where):
    """A static route serves files from the gateway's config folder: nothing of a proxy applies."""
    if not isinstance(route["static"], str) or not route["static"].strip():
        raise RouteError("%s: static must be a folder on the controller (a frontend's build output)" % where)
    if route.get("upstream"):
        raise RouteError("%s: set upstream or static, not both (a static route has no upstream)" % where)
    for key in ("upstream_auth", "websocket", "streaming"):
        if route[key]:
            raise RouteError("%s: %s is for a proxied route; a static route serves files" % (where, key))
    if given.get("upstream_path", "/") != "/":
        raise RouteError("%s: upstream_path is for a proxied route; a static route serves files" % where)
    route["upstream"] = ""


def _normalize_one(route, where, names):
    if "static_root" in route:
        # It named a folder inside the container that nothing filled or mounted.
        raise RouteError("%s: static_root is gone: use static: <a folder on the controller>, which the role "
                         "ships into the gateway's config folder" % where)
    given = route
    route = dict(DEFAULTS, **route)
    path = route.get("path")
    if not isinstance(path, str) or not _PATH_RE.match(path) or set(path.split("/")) & {".", ".."}:
        raise RouteError("%s: path must start and end with / and hold only letters, digits and . _ ~ : @ -"
                         % where)
    for key in _BOOLS:
        if not isinstance(route[key], bool):
            raise RouteError("%s: %s must be true or false, not %r" % (where, key, route[key]))
    route["auth"] = _auth(route["auth"], where)
    header = route["auth_header"]
    if route["auth"] == "header":
        if not isinstance(header, str) or not _HEADER_RE.match(header):
            raise RouteError("%s: auth: header needs auth_header, the header that carries the key (letters, "
                             "digits and -, e.g. X-Streaming-Proxy-Key)" % where)
        if header.lower() in _RESERVED_HEADERS:
            raise RouteError("%s: auth_header %r is a header the gateway uses itself (%s); use auth: bearer for "
                             "Authorization, or a header of your own" % (where, header, ", ".join(_RESERVED_HEADERS)))
    elif header:
        raise RouteError("%s: auth_header is for auth: header (this route has auth: %s)" % (where, route["auth"]))
    if route["rate"] is None:
        route["rate"] = "general" if route["auth"] == "none" else "keyed"
    elif route["rate"] not in RATES:
        raise RouteError("%s: rate must be keyed (per client address and per key) or general, not %r"
                         % (where, route["rate"]))
    if route["rate"] == "keyed" and route["auth"] == "none":
        raise RouteError("%s: rate: keyed needs auth (bearer or header): without a key there is nothing to count "
                         "per key; use rate: general" % where)
    if route["upstream_auth"] and route["auth"] == "none":
        # The LLM server's own key would go upstream for anyone who asks.
        raise RouteError("%s: upstream_auth: true needs auth (bearer or header), or anyone could use the "
                         "upstream's key" % where)
    if route["websocket"] and not route["streaming"]:
        raise RouteError("%s: websocket: true needs streaming: true (an upgraded connection is a stream)" % where)
    if route["static"]:
        _check_static(route, given, where)
    elif route.get("upstream") not in names:
        raise RouteError("%s: upstream %r is not one of nginx_gateway_upstreams (%s); a route proxies to an "
                         "upstream or serves static files"
                         % (where, route.get("upstream"), ", ".join(sorted(n for n in names if n))))
    allow = route.get("allow")
    if not isinstance(allow, list) or not allow:
        raise RouteError("%s: allow is missing: name the paths below %s that this route forwards, e.g. "
                         "[chat, \"sessions/{id}\"], or [\"*\"] for all of them" % (where, path))
    for entry in allow:
        if not isinstance(entry, str) or not _ENTRY_RE.match(entry) or set(entry.split("/")) & {".", ".."}:
            raise RouteError("%s: allow entry %r: use a relative path of letters, digits and . _ ~ : @ -, "
                             "{name} for one segment, and /* or * at the end for a prefix" % (where, entry))
    route["allow_regex"] = allow_regex(path, allow)
    check = route["check"]
    if check and not re.match(route["allow_regex"], path + check.lstrip("/")):
        raise RouteError("%s: check path %r is not in allow, so the gateway would answer it 404"
                         % (where, check))
    return route


def normalize(routes, upstreams, where="nginx_gateway_routes"):
    """Routes with their defaults, `allow_regex` and `static_name`, longest path first; raises RouteError naming
    the first bad route (`<where>[i] (<path>)`) and key. `where` names the list for messages, e.g.
    "llmstack_apps[1] (sse_app) routes"."""
    if not isinstance(routes, list):
        raise RouteError("%s must be a list of routes" % where)
    names = set(u.get("name") for u in upstreams or [] if isinstance(u, dict))
    seen, out, folders = set(), [], set()
    for index, route in enumerate(routes):
        name = _name(where, index, route)
        if not isinstance(route, dict):
            raise RouteError("%s: a route is a dict with path, upstream (or static) and allow" % name)
        route = _normalize_one(route, name, names)
        if route["path"] in seen:
            raise RouteError("%s: another route has the same path" % name)
        seen.add(route["path"])
        route["static_name"] = ""
        if route["static"]:
            # Unique: /a/b/ and /a_b/ (or / and /root/) would share one; a later one gets its path's hash.
            folder = static_name(route["path"])
            if folder in folders:
                folder += "_" + hashlib.sha256(route["path"].encode("utf-8")).hexdigest()[:8]
            folders.add(folder)
            route["static_name"] = folder
        out.append(route)
    # Longest prefix first, as nginx picks it (whatever the order), so the rendered file reads the same way.
    return sorted(out, key=lambda r: -len(r["path"]))
