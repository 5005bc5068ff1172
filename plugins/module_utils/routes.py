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
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# Characters a literal part of a path may hold. nginx reads $ as a variable and {};" as syntax, so none of
# those; the rest is rendered as a one-character class, which is literal in PCRE whatever the character.
_LITERAL = "A-Za-z0-9._~:@-"
_ENTRY_RE = re.compile(r"^(?:[%s]+|\{[A-Za-z_][A-Za-z0-9_]*\})(?:/(?:[%s]+|\{[A-Za-z_][A-Za-z0-9_]*\}))*"
                       r"(?:/\*)?$|^\*$" % (_LITERAL, _LITERAL))
_PATH_RE = re.compile(r"^/(?:[%s]+/)*$" % _LITERAL)
_PARAM_RE = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
DEFAULTS = {"upstream_path": "/", "auth": True, "streaming": False, "upstream_auth": False, "static_root": "",
            "check": ""}


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


def _name(index, route):
    return "nginx_gateway_routes[%d] (%s)" % (index, route.get("path", "no path") if isinstance(route, dict) else route)


def normalize(routes, upstreams):
    """Routes with their defaults and `allow_regex`; raises RouteError naming the first bad route and key."""
    if not isinstance(routes, list):
        raise RouteError("nginx_gateway_routes must be a list of routes")
    names = set(u.get("name") for u in upstreams or [] if isinstance(u, dict))
    seen, out = set(), []
    for index, route in enumerate(routes):
        where = _name(index, route)
        if not isinstance(route, dict):
            raise RouteError("%s: a route is a dict with path, upstream and allow" % where)
        route = dict(DEFAULTS, **route)
        path = route.get("path")
        if not isinstance(path, str) or not _PATH_RE.match(path) or set(path.split("/")) & {".", ".."}:
            raise RouteError("%s: path must start and end with / and hold only letters, digits and . _ ~ : @ -"
                             % where)
        if path in seen:
            raise RouteError("%s: another route has the same path" % where)
        seen.add(path)
        if route["static_root"]:
            if route.get("upstream"):
                raise RouteError("%s: set upstream or static_root, not both" % where)
        elif route.get("upstream") not in names:
            raise RouteError("%s: upstream %r is not one of nginx_gateway_upstreams (%s)"
                             % (where, route.get("upstream"), ", ".join(sorted(n for n in names if n))))
        if route["upstream_auth"] and not route["auth"]:
            # The LLM server's own key would go upstream for anyone who asks.
            raise RouteError("%s: upstream_auth: true needs auth: true, or anyone could use the upstream's key"
                             % where)
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
        out.append(route)
    return out
