# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ollama's models: which are there (GET /api/tags), pulling the missing ones with their streamed progress
(POST /api/pull, NDJSON), and readiness as a one-token completion through its OpenAI API (/v1/chat/completions),
as ollama/ollama's docs/api.md and docs/openai.md describe them.

A model already there is never pulled again. A pull that fails (a model the library does not have) raises
OllamaError naming the model and Ollama's own message."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import time

from ansible.module_utils.six.moves import http_client
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url

from ansible_collections.llmstack.deploy.plugins.module_utils import probe

# <name>[:<tag>], name segments as Ollama's registry takes them (a namespace/ first is allowed).
_MODEL_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)?(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$")
# A progress line every this many percent of a layer.
PROGRESS_STEP = 10


class OllamaError(Exception):
    """Names the model and the call; never holds a secret (Ollama's API has none)."""


def full_name(model):
    """'llama3.2' -> 'llama3.2:latest' (Ollama's default tag); a name with a tag as it is."""
    return model if ":" in model.rsplit("/", 1)[-1] else model + ":latest"


def check_names(models):
    """Every model name well formed, else OllamaError naming each bad one (before anything is touched)."""
    bad = [m for m in models if not isinstance(m, str) or not _MODEL_RE.match(m)]
    if bad:
        raise OllamaError("ollama_models: %s: not a model name (<name>[:<tag>], e.g. qwen3:0.6b)"
                          % ", ".join(json.dumps(b) for b in bad))


def present(url, timeout=10):
    """The models Ollama has, by full name (GET /api/tags)."""
    code, body, error = probe.http_request("GET", url + "/api/tags", timeout=timeout)
    if error or code != 200:
        raise OllamaError("GET %s/api/tags: %s" % (url, error or "HTTP %s" % code))
    try:
        return set(full_name(m["name"]) for m in json.loads(body)["models"])
    except (ValueError, KeyError, TypeError):
        raise OllamaError("GET %s/api/tags: not a model list" % url)


class Progress:
    """Readable progress of one model's pull, built as its events come: each status once, a layer's download every
    PROGRESS_STEP percent. add() returns the lines the event adds (for the log as it comes); lines has them all."""

    def __init__(self, model):
        self.model, self.lines, self._shown = model, [], {}

    def add(self, event):
        status = event.get("status", "")
        total, done = event.get("total"), event.get("completed", 0)
        before = len(self.lines)
        if total:
            pct = int(100 * done / total)
            step = pct - pct % PROGRESS_STEP
            if self._shown.get(status) is None or step > self._shown[status]:
                self._shown[status] = step
                self.lines.append("%s: %s %d%% of %s" % (self.model, status, pct, human(total)))
        elif status and status not in self._shown:
            self._shown[status] = 0
            self.lines.append("%s: %s" % (self.model, status))
        return self.lines[before:]


def human(size):
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return ("%d %s" % (size, unit)) if unit == "B" else "%.1f %s" % (size, unit)
        size /= 1024.0
    return str(size)


def pull(url, model, timeout, on_event=None):
    """Pull one model, reading the NDJSON stream to its end: the events, or OllamaError with Ollama's error."""
    events = []
    try:
        resp = open_url(url + "/api/pull", method="POST", data=json.dumps({"model": model, "stream": True}),
                        headers={"Content-Type": "application/json"}, timeout=timeout)
    except HTTPError as e:
        raise OllamaError("pull %s: HTTP %s: %s" % (model, e.code, _error_of(e.read())))
    except (URLError, OSError, http_client.HTTPException) as e:
        raise OllamaError("pull %s: POST %s/api/pull: %s" % (model, url, getattr(e, "reason", e)))
    try:
        for raw in resp:
            raw = raw.strip()
            if not raw:
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                raise OllamaError("pull %s: not a progress line: %r" % (model, raw[:120]))
            if "error" in event:
                raise OllamaError("pull %s: Ollama says: %s" % (model, event["error"]))
            events.append(event)
            if on_event is not None:
                on_event(event)
    except (OSError, http_client.HTTPException) as e:
        raise OllamaError("pull %s: the progress stream broke off: %s" % (model, e))
    finally:
        resp.close()
    if not events or events[-1].get("status") != "success":
        raise OllamaError("pull %s: the stream ended without success (last: %s)"
                          % (model, events[-1].get("status") if events else "nothing"))
    return events


def _error_of(body):
    try:
        return json.loads(body).get("error") or body[:200]
    except (ValueError, AttributeError):
        return (body or b"")[:200]


def one_token(url, model, timeout=60):
    """None when a one-token chat completion of model answers, else what went wrong."""
    payload = json.dumps({"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]})
    code, body, error = probe.http_request("POST", url + "/v1/chat/completions", data=payload,
                                           headers={"Content-Type": "application/json"}, timeout=timeout)
    if error:
        return error
    if code != 200:
        return "POST /v1/chat/completions (%s): HTTP %s: %s" % (model, code, _error_of(body))
    try:
        if json.loads(body)["choices"]:
            return None
    except (ValueError, KeyError, TypeError):
        pass
    return "POST /v1/chat/completions (%s): an answer with no choices" % model


def ensure(url, models, timeout, check_mode=False, log=None, clock=time.monotonic):
    """Pull what is missing, then ask each model for one token. Returns {pulled, present, progress}; check mode
    only says what it would pull. log(lines): called with each event's new progress lines, as they come."""
    check_names(models)
    try:
        have = present(url)
    except OllamaError:
        if not check_mode:
            raise
        have = set()  # check mode on a host where Ollama does not run yet: every model would be pulled
    wanted = [m for i, m in enumerate(models) if full_name(m) not in [full_name(x) for x in models[:i]]]
    missing = [m for m in wanted if full_name(m) not in have]
    result = {"pulled": missing, "present": [m for m in wanted if m not in missing], "progress": []}
    if check_mode:
        return result
    for model in missing:
        start = clock()
        progress = Progress(model)

        def on_event(event, progress=progress):
            new = progress.add(event)
            if new and log:
                log(new)
        pull(url, model, timeout, on_event=on_event)
        result["progress"].extend(progress.lines)
        result["progress"].append("%s: pulled in %.0f s" % (model, clock() - start))
    for model in wanted:
        problem = one_token(url, model)
        if problem:
            raise OllamaError("%s is not ready: %s" % (model, problem))
    return result
