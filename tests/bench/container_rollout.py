"""Benchmark: failed requests during a rollout, container_rollout (blue_green) against docker_container.

Method (printed with the figures):
- nginx 1.22 on loopback in front of the rollout test app. Ours: two static upstreams (one per slot)
  and njs reading the service's switch file per request, so the switch needs no reload. Anchor: one
  upstream on the one port community.docker.docker_container publishes.
- Load: CLIENTS threads, each pacing PACE requests/s (CLIENTS*PACE >= 50 rps in all), from 2 s before
  the rollout starts until 2 s after it ends, capped at MAX_SECONDS and MAX_REQUESTS. Two client modes:
  a new connection per request, and one keep-alive connection per client that does not retry (a failed
  request counts, then the client reconnects). Failed = connection error, timeout or non-200.
- Scenarios, all in one run: ours v1 -> v2 (blue_green); ours v2 -> v3 whose health check fails (the
  module keeps v2 serving); anchor v1 -> v2 with docker_container (same image, same port, pull: true).
- No-op: the same play again with nothing to change; median task time of NOOP_ROUNDS runs, ours/anchor.
Not a test: it prints figures and exits 0 unless setting up fails.
"""
import http.client
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid

from benchlib import ROOT, labenv, play_file, run

CLIENTS, PACE = 4, 15          # 60 requests/s in all
MAX_SECONDS, MAX_REQUESTS = 120, 20000
NOOP_ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
NJS = os.path.join(ROOT, "tests", "bench", "gateway", "live_upstream.js")
NGINX_CONF = """
worker_processes 2;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
load_module /usr/lib/nginx/modules/ngx_http_js_module.so;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    js_path {njs_dir};
    js_import live from live_upstream.js;
    js_set $live_upstream live.upstream;
    upstream {svc}_blue {{ server 127.0.0.1:{blue}; keepalive 16; }}
    upstream {svc}_green {{ server 127.0.0.1:{green}; keepalive 16; }}
    upstream anchor {{ server 127.0.0.1:{anchor}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{ours_port};
        set $llmstack_switch_file {switch_file};
        location / {{
            proxy_pass http://$live_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen 127.0.0.1:{anchor_port};
        location / {{
            proxy_pass http://anchor;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class Load:
    """Paced HTTP clients against one port; counts failures, bounded in time and count."""

    def __init__(self, port, keepalive):
        self.port, self.keepalive = port, keepalive
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.total = self.failed = 0
        self.versions = {}
        self.started = time.monotonic()

    def client(self):
        conn = None
        while not self.stop.is_set() and self.total < MAX_REQUESTS and time.monotonic() - self.started < MAX_SECONDS:
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
                if not self.keepalive:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, IndexError):
                if conn is not None:
                    conn.close()
                conn = None  # no retry: this request counts as failed
            with self.lock:
                self.total += 1
                self.failed += 0 if ok else 1
                if version:
                    self.versions[version] = self.versions.get(version, 0) + 1
            time.sleep(max(0.0, 1.0 / PACE - (time.monotonic() - t0)))

    def during(self, action):
        threads = [threading.Thread(target=self.client) for _client in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(2)
        result = action()
        time.sleep(2)
        self.stop.set()
        for t in threads:
            t.join()
        return result

    def figure(self):
        return "%d/%d failed" % (self.failed, self.total)


def ensure_nginx():
    if shutil.which("nginx") and os.path.exists("/usr/lib/nginx/modules/ngx_http_js_module.so"):
        return
    subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                   "--no-install-recommends nginx-light libnginx-mod-http-js", shell=True, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    lab = labenv.read()
    ensure_nginx()
    svc = "bench_%s" % uuid.uuid4().hex[:6]
    ports = dict((k, labenv.free_port()) for k in ("blue", "green", "anchor", "ours_port", "anchor_port"))
    tmp = tempfile.mkdtemp()
    os.chmod(tmp, 0o755)  # nginx workers (nobody) read the switch file in here
    repo = "lab/rollout-app"
    labenv.push_app_images(lab, ("v1", "v2", "v3"))
    switch_file = os.path.join(tmp, "live")
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, njs_dir=os.path.dirname(NJS), svc=svc, switch_file=switch_file, **ports))
    for d in ("body", "proxy"):
        os.makedirs(os.path.join(tmp, d))
    subprocess.run(["nginx", "-c", os.path.join(tmp, "nginx.conf"), "-t", "-q"], check=True)
    subprocess.run(["nginx", "-c", os.path.join(tmp, "nginx.conf")], check=True)
    docker_config = os.path.join(tmp, "docker-config")
    try:
        ours = dict(name=svc, strategy="blue_green", registry=lab["LAB_REGISTRY"],
                    registry_username=lab["LAB_REGISTRY_USER"], registry_password=lab["LAB_REGISTRY_PASSWORD"],
                    state_dir=os.path.join(tmp, "state"), switch_file=switch_file, drain_seconds=10,
                    slots={"blue": {"ports": ["127.0.0.1:%d:8000" % ports["blue"]]},
                           "green": {"ports": ["127.0.0.1:%d:8000" % ports["green"]]}})

        def ours_play(tag):
            return play_file(tmp, "ours-" + tag, [{"llmstack.deploy.container_rollout": dict(ours, image="%s:%s" % (repo, tag))}])

        def anchor_play(tag):
            login = {"registry_url": lab["LAB_REGISTRY"], "username": lab["LAB_REGISTRY_USER"],
                     "password": lab["LAB_REGISTRY_PASSWORD"]}
            container = {"name": svc + "-anchor", "image": "%s/%s:%s" % (lab["LAB_REGISTRY"], repo, tag), "pull": True,
                         "state": "started", "restart_policy": "unless-stopped",
                         "ports": ["127.0.0.1:%d:8000" % ports["anchor"]]}
            return play_file(tmp, "anchor-" + tag, [{"community.docker.docker_login": login, "no_log": True},
                                                    {"community.docker.docker_container": container}],
                             env={"DOCKER_CONFIG": docker_config})
        plays = {"ours": ours_play, "anchor": anchor_play}
        rows = []
        for keepalive in (False, True):
            mode = "keep-alive, no retry" if keepalive else "new connection per request"
            for name, start, target, may_fail in (("ours blue_green v1->v2", "v1", "v2", False),
                                                  ("ours v2->v3 (fails, v2 keeps serving)", "v2", "v3", True),
                                                  ("anchor docker_container v1->v2", "v1", "v2", False)):
                kind = "anchor" if name.startswith("anchor") else "ours"
                run(plays[kind](start))                       # set up the starting version, no load
                load = Load(ports["%s_port" % kind], keepalive)
                outcome = load.during(lambda: run(plays[kind](target), may_fail=may_fail))
                rc = "failed as expected" if may_fail and outcome[2].get("stats", {}).get("localhost", {}).get("failures") else ""
                rows.append((name, mode, load.figure(), load.versions, rc))
        noop = {}
        for kind in ("ours", "anchor"):
            path = plays[kind]("v2")
            run(path)
            noop[kind] = statistics.median(run(path)[1][-1] for _round in range(NOOP_ROUNDS))
    finally:
        subprocess.run(["nginx", "-c", os.path.join(tmp, "nginx.conf"), "-s", "stop"], check=False)
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", "name=" + svc], capture_output=True, text=True,
                             check=False).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f"] + ids, capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    print("container_rollout benchmark: nginx on loopback, %d clients x %d req/s, load from 2 s before to 2 s after "
          "each rollout" % (CLIENTS, PACE))
    for name, mode, figure, versions, note in rows:
        print("  %-42s %-28s %-18s served %s %s" % (name, mode, figure, versions, note))
    print("  no-op re-run (median task time of %d): ours %.3f s   anchor %.3f s   ratio ours/anchor %.2f"
          % (NOOP_ROUNDS, noop["ours"], noop["anchor"], noop["ours"] / noop["anchor"]))


if __name__ == "__main__":
    main()
