# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""HTTP probes: the one request helper of the readiness checks, the drain gauges and the gateway check."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

# What a server that is still starting (vLLM loading a model) does to a connection: refuse it, or,
# through Docker's port publishing, accept and then reset it.
NOT_LISTENING = (ConnectionRefusedError, ConnectionResetError, http_client.RemoteDisconnected)


def http_request(method, url, data=None, headers=None, timeout=5.0, validate_certs=True):
    """(status, body, None) or (None, None, what went wrong); an error status comes with its body. A server that
    is not listening yet is reported as still loading, not as a failure."""
    try:
        resp = open_url(url, method=method, data=data, headers=headers or {}, timeout=timeout,
                        validate_certs=validate_certs)
        try:
            return resp.getcode(), resp.read(), None
        finally:
            resp.close()
    except HTTPError as e:
        try:
            body = e.read()
        except (OSError, http_client.HTTPException, AttributeError):
            body = b""
        return e.code, body or b"", None
    except (URLError, OSError, ValueError, http_client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, NOT_LISTENING) or isinstance(e, NOT_LISTENING):
            return None, None, "%s %s: not listening yet (still loading)" % (method, url)
        return None, None, "%s %s: %s" % (method, url, reason)


_GAUGE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def read_gauges(url, names, timeout=5.0):
    """The sum of the named gauges (every label set) on a Prometheus text endpoint; None if it can't be read."""
    code, body, error = http_request("GET", url, timeout=timeout)
    if error or code != 200:
        return None
    total = 0.0
    for line in body.decode("utf-8", "replace").splitlines():
        match = _GAUGE_RE.match(line)
        if match and match.group(1) in names:
            try:
                total += float(match.group(3))
            except ValueError:
                pass
    return int(total)
