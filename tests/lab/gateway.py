"""The lab's gateway and load: nginx + njs on loopback in front of services, and paced HTTP clients.

Gateway.blue_green() is the switch mechanism container_rollout relies on: one upstream per slot and
an njs function (roles/nginx_gateway/files/live_upstream.js) that reads the service's switch file per
request, so a switch needs no reload. Gateway.plain() is a single upstream whose server lines live in an include
file, the hand-made blue/green operators write (rewrite the include, then `nginx -s reload`).
Tests and benchmarks both use this module; the nginx_gateway role templates the same nginx config.
"""
import http.client
import os
import shutil
import subprocess
import tempfile
import threading
import time

import labenv

# The njs file the nginx_gateway role ships: the lab gateway uses the same code.
NJS = os.path.join(labenv.ROOT, "roles", "nginx_gateway", "files", "live_upstream.js")


class Gateway:
    """An nginx of its own (own pid, own temp dirs) listening on loopback ports."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="llmstack-gw-")
        os.chmod(self.tmp, 0o755)  # nginx workers run as nobody and read files in here
        self.upstreams, self.servers = [], []
        self.started = False

    def blue_green(self, service, blue_port, green_port, switch_file):
        """A server that sends each request to the slot the switch file names. Returns its port."""
        for slot, port in (("blue", blue_port), ("green", green_port)):
            self.upstreams.append("upstream %s_%s { server 127.0.0.1:%d; keepalive 16; }" % (service, slot, port))
        return self._server("set $llmstack_switch_file %s;" % switch_file, "http://$live_upstream")

    def plain(self, name, port):
        """A server with one upstream whose server line is in <tmp>/<name>.upstream. Returns its port."""
        self.write_upstream(name, port)
        self.upstreams.append("upstream %s { include %s; keepalive 16; }" % (name, self.upstream_file(name)))
        return self._server("", "http://" + name)

    def upstream_file(self, name):
        return os.path.join(self.tmp, name + ".upstream")

    def write_upstream(self, name, port):
        with open(self.upstream_file(name), "w") as f:
            f.write("server 127.0.0.1:%d;\n" % port)

    def _server(self, extra, target):
        port = labenv.free_port()
        self.servers.append("""server {
        listen 127.0.0.1:%d;
        %s
        location / {
            proxy_pass %s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }""" % (port, extra, target))
        return port

    def config(self):
        return """worker_processes 2;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
load_module /usr/lib/nginx/modules/ngx_http_js_module.so;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    js_path {njs_dir};
    js_import live from {njs_file};
    js_set $live_upstream live.upstream;
    {upstreams}
    {servers}
}}
""".format(tmp=self.tmp, njs_dir=os.path.dirname(NJS), njs_file=os.path.basename(NJS),
           upstreams="\n    ".join(self.upstreams), servers="\n    ".join(self.servers))

    def start(self):
        ensure_nginx()
        for d in ("body", "proxy"):
            os.makedirs(os.path.join(self.tmp, d), exist_ok=True)
        conf = os.path.join(self.tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(self.config())
        subprocess.run(["nginx", "-c", conf, "-t", "-q"], check=True)
        subprocess.run(["nginx", "-c", conf], check=True)
        self.started = True
        return self

    def reload(self):
        subprocess.run(["nginx", "-c", os.path.join(self.tmp, "nginx.conf"), "-s", "reload"], check=True,
                       stderr=subprocess.DEVNULL)

    def stop(self):
        if self.started:
            subprocess.run(["nginx", "-c", os.path.join(self.tmp, "nginx.conf"), "-s", "stop"], check=False,
                           stderr=subprocess.DEVNULL)
            self.started = False
        shutil.rmtree(self.tmp, ignore_errors=True)


def ensure_nginx():
    """nginx-light with njs (tests/lab/up installs them; this covers a lab brought up before that)."""
    if shutil.which("nginx") and os.path.exists("/usr/lib/nginx/modules/ngx_http_js_module.so"):
        return
    subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                   "--no-install-recommends nginx-light libnginx-mod-http-js", shell=True, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class PacedLoad:
    """Paced clients counting failed requests, bounded in time; subclasses give client(), the loop of one
    client, which counts with record()."""

    def __init__(self, clients=4, pace=15, max_seconds=300):
        self.clients, self.pace, self.max_seconds = clients, pace, max_seconds
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.total = self.failed = 0
        self.errors = []
        self.threads = []

    def client(self):
        raise NotImplementedError

    def record(self, error):
        with self.lock:
            self.total += 1
            if error:
                self.failed += 1
                self.errors.append(error)

    def start(self):
        self.threads = [threading.Thread(target=self.client, daemon=True) for _client in range(self.clients)]
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join()
        return self

    def during(self, action, before=2, after=2):
        """Run action() under load, from `before` seconds before it to `after` seconds after it."""
        self.start()
        time.sleep(before)
        try:
            result = action()
            time.sleep(after)
        finally:
            self.stop()
        return result

    def figure(self):
        return "%d/%d failed" % (self.failed, self.total)


class Load(PacedLoad):
    """Paced HTTP clients against one port, counting failed requests, bounded in time and count.

    keepalive=False: a new connection per request. keepalive=True: one connection per client that
    does not retry (a failed request counts, then the client reconnects). Failed = connection error,
    timeout or a status other than 200."""

    def __init__(self, port, keepalive=False, clients=4, pace=15, max_seconds=300, max_requests=50000):
        super().__init__(clients, pace, max_seconds)
        self.port, self.keepalive, self.max_requests = port, keepalive, max_requests
        self.versions = {}

    def client(self):
        conn = None
        started = time.monotonic()
        while not self.stop_event.is_set() and self.total < self.max_requests \
                and time.monotonic() - started < self.max_seconds:
            t0 = time.monotonic()
            ok, version = False, None
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/", headers={} if self.keepalive else {"Connection": "close"})
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200
                version = body.split(b'"version": "')[1].split(b'"')[0].decode() if ok else None
                if not ok:
                    self.errors.append("HTTP %s" % resp.status)
                if not self.keepalive:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, IndexError) as e:
                self.errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None  # no retry: this request counts as failed
            with self.lock:
                self.total += 1
                self.failed += 0 if ok else 1
                if version:
                    self.versions[version] = self.versions.get(version, 0) + 1
            time.sleep(max(0.0, 1.0 / self.pace - (time.monotonic() - t0)))
