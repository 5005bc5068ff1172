# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Probes: the one HTTP request helper (readiness checks, drain gauges, the gateway check), a container's
health wait, and the wait for a container's requests in flight to finish."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import time

from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils.errors import RolloutError

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


def drain_requests(run, name, url, gauges, timeout, clock=time.monotonic):
    """Wait until container `name` has no request in flight (its metrics gauges at 0), up to timeout seconds.

    The gateway stopped sending it new requests before this run; the rest are finishing. run: the run
    context (log, warn, sleep)."""
    if not url:
        return
    start, logged = clock(), -1
    while True:
        in_flight = read_gauges(url, gauges or [])
        if in_flight is None:
            run.log("draining %s: %s does not answer; stopping it" % (name, url))
            return
        waited = clock() - start
        if in_flight == 0:
            run.log("drained %s: no request in flight (%ds)" % (name, waited))
            return
        if waited >= timeout:
            run.warn("%s still has %d request(s) in flight after %ds; stopping it (its own shutdown "
                     "timeout lets them finish)" % (name, in_flight, timeout))
            return
        if int(waited // 10) > logged:
            logged = int(waited // 10)
            run.log("draining %s: %d request(s) in flight, %ds of %ds" % (name, in_flight, waited, timeout))
        run.sleep(1)


# ---------------------------------------------------------------------------- health

class Health:
    """Wait until a container is healthy: Docker's HEALTHCHECK, an HTTP probe, a command run in the
    container (exec), an OpenAI-compatible server that really answers (openai), or just running."""

    def __init__(self, kind="auto", url=None, status=200, interval=2.0, probe_timeout=5.0,
                 start_period=0.0, timeout=300.0, command=None, model=None, api_key=None,
                 sleep=time.sleep, clock=time.monotonic):
        self.kind, self.url, self.status, self.command = kind or "auto", url, status, command
        self.model, self.api_key = model, api_key
        self.interval, self.probe_timeout, self.start_period = interval, probe_timeout, start_period
        self.timeout, self.sleep, self.clock = timeout, sleep, clock

    @classmethod
    def for_spec(cls, spec, sleep=time.sleep):
        """The health wait a ContainerSpec records (its API key read from the spec's environment)."""
        config = dict((k, v) for k, v in (spec.health.get("healthcheck") or {}).items() if v is not None)
        key_name = config.pop("api_key_env", None)
        if key_name:
            config["api_key"] = (spec.environment or {}).get(key_name)
        return cls(sleep=sleep, timeout=spec.health.get("health_timeout") or 300, **config)

    def wait(self, container, progress, url=None):
        url = url or self.url
        kind = self.kind
        if kind == "auto":
            has_check = bool((container.attrs.get("Config") or {}).get("Healthcheck", {}).get("Test"))
            kind = "docker" if has_check else ("http" if url else "running")
        start = self.clock()
        last = ""
        phase_logged = -1
        while True:
            waited = self.clock() - start
            with dc.call("inspect %s" % container.name):
                container.reload()
            current = container.attrs.get("State", {})
            if current.get("Status") in ("exited", "dead") or (current.get("Restarting") and current.get("ExitCode")):
                raise RolloutError("container %s exited with code %s while starting"
                                   % (container.name, current.get("ExitCode")))
            ok, last = self.check(kind, container, current, url, waited, last)
            if ok:
                return kind
            if waited >= self.timeout:
                raise RolloutError("container %s not healthy after %ds (%s): %s"
                                   % (container.name, waited, kind, last[-500:]))
            # A line every 30 s, so a long model load shows where it is.
            if int(waited // 30) > phase_logged:
                phase_logged = int(waited // 30)
                progress("waiting for %s to be healthy (%s), %ds of %ds: %s"
                         % (container.name, kind, waited, self.timeout, last[-200:] or "starting"))
            self.sleep(self.interval)

    def check(self, kind, container, current, url, waited, last):
        """(healthy, what the check last said) for one round of the wait."""
        if kind == "docker":
            health = current.get("Health") or {}
            logs = health.get("Log") or []
            last = (logs[-1].get("Output") or "").strip() if logs else ""
            if health.get("Status") == "unhealthy":
                raise RolloutError("container %s is unhealthy: %s" % (container.name, last[-500:]))
            return health.get("Status") == "healthy", last
        if kind == "http":
            return self.probe(url)
        if kind == "exec":
            return self.run_check(container)
        if kind == "openai":
            return self.openai_ready(url)
        return bool(current.get("Running") and waited >= self.start_period), last

    def run_check(self, container):
        """Run the check command in the container (docker exec): exit 0 means healthy."""
        try:
            code, output = container.exec_run(list(self.command), demux=False)
        except dc.SDK_ERRORS as e:
            return False, "exec %s: %s" % (" ".join(self.command), dc.explain(e))
        text = (output or b"").decode("utf-8", "replace").strip()
        return code == 0, "exec %s: exit %s %s" % (" ".join(self.command), code, text[-200:])

    def probe(self, url):
        code, _body, error = self.request("GET", url)
        if error:
            return False, error
        return code == self.status, "GET %s: HTTP %s (want %s)" % (url, code, self.status)

    def request(self, method, url, data=None):
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self.api_key:
            headers["Authorization"] = "Bearer %s" % self.api_key
        return http_request(method, url, data=data, headers=headers, timeout=self.probe_timeout)

    def openai_ready(self, base):
        """vLLM's own readiness, in order: /health, then /v1/models (with the key) listing the model,
        then a real one-token completion. /v1/models alone answers before the engine can generate."""
        base = base.rstrip("/")
        code, _body, error = self.request("GET", base + "/health")
        if error or code != 200:
            return False, error or "GET /health: HTTP %s" % code
        code, body, error = self.request("GET", base + "/v1/models")
        if error or code != 200:
            return False, error or "GET /v1/models: HTTP %s%s" % (code, " (the API key is refused)" if code == 401 else "")
        try:
            served = [m.get("id") for m in json.loads(body.decode("utf-8")).get("data", [])]
        except (ValueError, AttributeError):
            return False, "GET /v1/models: not an OpenAI model list"
        if self.model not in served:
            return False, "GET /v1/models lists %s, not %s" % (", ".join(map(str, served)) or "nothing", self.model)
        payload = json.dumps({"model": self.model, "prompt": "Hello", "max_tokens": 1}).encode("utf-8")
        code, body, error = self.request("POST", base + "/v1/completions", data=payload)
        if error or code != 200:
            return False, error or "POST /v1/completions: HTTP %s" % code
        try:
            if json.loads(body.decode("utf-8")).get("choices"):
                return True, "a one-token completion from %s" % self.model
        except (ValueError, AttributeError):
            pass
        return False, "POST /v1/completions: an answer with no choices"
