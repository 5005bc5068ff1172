"""Constant load on the gateway's LLM route (/llm_api/), for the split scenario's checks and benchmark.

Paced clients, each on one keep-alive HTTPS connection that is never retried: a request fails on a
connection error, a timeout, a status other than 200, or a stream that ends without `data: [DONE]`
(a stream cut by a stopped server). Every third request streams a few hundred milliseconds of tokens,
so a drain that cuts streams shows. The pace stays under the gateway's per-client rate limit."""
import http.client
import json
import ssl
import time

from gateway import PacedLoad


class LlmLoad(PacedLoad):
    def __init__(self, host, key, model="lab/echo", clients=2, pace=3.5, max_seconds=600):
        super().__init__(clients, pace, max_seconds)
        self.host, self.key, self.model = host, key, model

    def connect(self):
        # The lab gateway's certificate is self-signed; the point here is the gateway, not the CA.
        return http.client.HTTPSConnection(self.host, 443, timeout=30, context=ssl._create_unverified_context())

    def one(self, conn, n):
        stream = n % 3 == 0
        words = "one two three four five six seven eight nine ten" if stream else "ping"
        body = {"model": self.model, "prompt": words, "max_tokens": 10, "stream": stream}
        conn.request("POST", "/llm_api/completions", body=json.dumps(body),
                     headers={"Authorization": "Bearer " + self.key, "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            return "HTTP %s %s" % (resp.status, data[:120])
        if stream and b"data: [DONE]" not in data:
            return "stream cut after %d bytes" % len(data)
        return None

    def client(self):
        conn, n, started = None, 0, time.monotonic()
        while not self.stop_event.is_set() and time.monotonic() - started < self.max_seconds:
            t0 = time.monotonic()
            n += 1
            try:
                conn = conn or self.connect()
                error = self.one(conn, n)
            except (OSError, http.client.HTTPException) as e:
                error = repr(e)
                conn.close()
                conn = None
            self.record(error)
            time.sleep(max(0.0, 1.0 / self.pace - (time.monotonic() - t0)))
        if conn is not None:
            conn.close()
