"""A small HTTP service for rollout tests: versioned, health-checked, streams, stops gracefully.

APP_VERSION names the build; APP_MODE=unhealthy fails /health, APP_MODE=crash exits at start. POST /sick makes
/health fail from then on, until the process restarts (a service gone bad while running).
It prints its environment at start, as apps that log their config do.
"""
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("APP_VERSION", "dev")
MODE = os.environ.get("APP_MODE", "ok")
SICK = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real app server

    def send(self, code, body, ctype="application/json"):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            bad = MODE == "unhealthy" or SICK.is_set()
            self.send(500 if bad else 200, json.dumps({"status": "bad" if bad else "ok"}))
        elif self.path.startswith("/stream"):
            # Server-sent events: one token every 50 ms, as a model would stream.
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(int(os.environ.get("APP_STREAM_TOKENS", "40"))):
                self.wfile.write(("data: %s token %d\n\n" % (VERSION, i)).encode())
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True
        else:
            self.send(200, json.dumps({"version": VERSION, "path": self.path}))

    def do_POST(self):
        if self.path == "/sick":
            SICK.set()
            print("app %s: /health fails from now on" % VERSION, flush=True)
            self.send(200, json.dumps({"sick": True}))
        else:
            self.send(404, json.dumps({"error": "not found"}))

    def log_message(self, fmt, *args):
        pass


def main():
    # Like many apps, print the configuration at start: a failed rollout's log tail must not leak it.
    print("app %s config: %s" % (VERSION, " ".join("%s=%s" % kv for kv in sorted(os.environ.items())
                                                   if kv[0] not in ("PATH", "HOME", "HOSTNAME"))), flush=True)
    if MODE == "crash":
        print("app %s: refusing to start (APP_MODE=crash)" % VERSION, flush=True)
        sys.exit(3)
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("APP_PORT", "8000"))), Handler)
    server.daemon_threads = False  # in-flight requests finish on shutdown
    # SIGTERM: stop accepting, finish what is in flight, exit (docker stop's grace period).
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=server.shutdown).start())
    print("app %s listening" % VERSION, flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
