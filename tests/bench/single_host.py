"""Benchmark: the single-host stack (molecule scenario `default`), on a lab host that molecule created and
prepared. It converges the host itself and leaves it converged for `molecule idempotence` and `verify`.

Method (printed with the figures):
(a) No-op converge: `molecule converge -s default` twice in a row. For each: the host's `changed` count
    (PLAY RECAP), the playbook's own time (profile_tasks' running total) and the molecule command's wall
    time. Ratio: second / first. Goal: changed=0 and a playbook time of at most 10 s.
(b) Gateway overhead: a loader on the lab host's loopback sends small non-streamed completions
    (max_tokens 1) over one keep-alive connection each way: through the gateway
    (https://127.0.0.1/llm_api/chat/completions) and direct to the stand-in
    (http://127.0.0.1:8000/v1/chat/completions), one request each way in turn, alternating which goes first,
    8 rounds a second (within the gateway's 10 r/s per key). p50/p99 of each and the differences. Goal: p50 overhead <= 1 ms.
(c) First streamed chunk: the same loader, streamed completions, time from sending the request to the
    first `data:` line, each way in turn. Median of each and the difference. Goal: within 50 ms of direct.
With BENCH_FIRST_CONVERGE_LOG set (./tests/run sets it), the first converge runs at -vvv and its whole output goes
to that file, for the verify test that checks it holds no secret; its time then includes -vvv's extra output.
Not a test: it prints figures and exits 0 unless a converge or a request fails.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import time

from benchlib import ROOT, labenv

HOST = "llmstack-molecule-app"
REQUESTS = int(os.environ.get("BENCH_GATEWAY_REQUESTS", "200"))
STREAMS = int(os.environ.get("BENCH_STREAMS", "50"))

# Runs on the lab host (python3 from Debian); the keys arrive on stdin, never on a command line.
LOADER = r'''
import http.client, json, ssl, sys, time
cfg = json.loads(sys.stdin.read())
PATHS = {"gateway": "/llm_api/chat/completions", "direct": "/v1/chat/completions"}

def connect(kind):
    if kind == "gateway":
        return http.client.HTTPSConnection("127.0.0.1", 443, timeout=30, context=ssl._create_unverified_context())
    return http.client.HTTPConnection("127.0.0.1", 8000, timeout=30)

def once(conn, kind, stream):
    body = json.dumps({"model": cfg["model"], "max_tokens": 1, "stream": stream,
                       "messages": [{"role": "user", "content": "ping"}]})
    start = time.perf_counter()
    conn.request("POST", PATHS[kind], body=body,
                 headers={"Authorization": "Bearer " + cfg["keys"][kind], "Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        sys.exit("%s: HTTP %d %s" % (kind, resp.status, resp.read()[:200]))
    if not stream:
        resp.read()
        return time.perf_counter() - start
    while True:
        line = resp.readline()
        if not line:
            sys.exit("%s: the stream ended without a data line" % kind)
        if line.startswith(b"data: "):
            first = time.perf_counter() - start
            resp.read()
            return first

out = {}
for stream, count in ((False, cfg["requests"]), (True, cfg["streams"])):
    conns = {kind: connect(kind) for kind in PATHS}
    times = {kind: [] for kind in PATHS}
    for i in range(count + 10):  # the first 10 rounds warm up (TLS handshake, keepalive upstream)
        started = time.monotonic()
        for kind in (("gateway", "direct") if i % 2 else ("direct", "gateway")):
            took = once(conns[kind], kind, stream)
            if i >= 10:
                times[kind].append(took)
        # A client within the gateway's limit (10 r/s per key): 8 rounds a second.
        time.sleep(max(0.0, 0.125 - (time.monotonic() - started)))
    out["stream" if stream else "plain"] = times
print(json.dumps(out))
'''


def molecule(step, lab, log=None):
    env = dict(os.environ, **lab)
    env.update(NO_COLOR="1", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    start = time.monotonic()
    proc = subprocess.run(["molecule", step, "-s", "default"] + (["--", "-vvv"] if log else []), cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    if log:
        with open(log, "w") as f:
            f.write(out)
    if proc.returncode:
        sys.exit("molecule %s failed (rc=%d):\n%s" % (step, proc.returncode, out[-4000:]))
    recap = re.search(re.escape(HOST) + r"\s*:\s*ok=(\d+)\s+changed=(\d+)", out)
    totals = re.findall(r"\)\s+(\d+):(\d\d):(\d\d\.\d+)", out)  # profile_tasks: "(task time)   h:mm:ss.fff"
    if not recap or not totals:
        sys.exit("molecule %s: no PLAY RECAP or profile_tasks line for %s:\n%s" % (step, HOST, out[-3000:]))
    h, m, s = totals[-1]
    return {"ok": int(recap.group(1)), "changed": int(recap.group(2)),
            "playbook": int(h) * 3600 + int(m) * 60 + float(s), "wall": wall}


def secret(lab, name):
    with open(os.path.join(lab["LAB_DIR"], "stack", name)) as f:
        return f.read().strip()


def load(lab):
    subprocess.run(["docker", "exec", "-i", HOST, "sh", "-c", "cat > /tmp/llmstack-bench-loader.py"],
                   input=LOADER, text=True, check=True)
    cfg = {"model": "lab/echo", "requests": REQUESTS, "streams": STREAMS,
           "keys": {"gateway": secret(lab, "api_key_ci"), "direct": secret(lab, "vllm_api_key")}}
    proc = subprocess.run(["docker", "exec", "-i", HOST, "python3", "/tmp/llmstack-bench-loader.py"],
                          input=json.dumps(cfg), capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit("loader failed: %s" % (proc.stderr[-2000:] or proc.stdout[-2000:]))
    return json.loads(proc.stdout)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100.0 * (len(values) - 1))))]


def main():
    lab = labenv.read()
    print(__doc__.split("Not a test", maxsplit=1)[0].rstrip())
    first = molecule("converge", lab, log=os.environ.get("BENCH_FIRST_CONVERGE_LOG"))
    second = molecule("converge", lab)
    print("\n(a) no-op converge of the whole stack (%s)" % HOST)
    for name, r in (("first", first), ("second", second)):
        print("  %-6s changed=%-3d ok=%-3d playbook %6.1f s   molecule wall %6.1f s"
              % (name, r["changed"], r["ok"], r["playbook"], r["wall"]))
    print("  ratio second/first: playbook %.2f, wall %.2f; goal changed=0 and <= 10 s: %s"
          % (second["playbook"] / first["playbook"], second["wall"] / first["wall"],
             "met" if second["changed"] == 0 and second["playbook"] <= 10 else "NOT met"))

    times = load(lab)
    ms = {mode: {kind: [t * 1000 for t in v] for kind, v in kinds.items()} for mode, kinds in times.items()}
    plain, stream = ms["plain"], ms["stream"]
    print("\n(b) small non-streamed completion, %d each way, loopback, keep-alive" % len(plain["direct"]))
    for q in (50, 99):
        d, g = pct(plain["direct"], q), pct(plain["gateway"], q)
        print("  p%d  direct %7.2f ms   gateway %7.2f ms   overhead %+6.2f ms (ratio %.3f)" % (q, d, g, g - d, g / d))
    overhead = pct(plain["gateway"], 50) - pct(plain["direct"], 50)
    print("  goal p50 overhead <= 1 ms: %s" % ("met" if overhead <= 1 else "NOT met"))
    d, g = statistics.median(stream["direct"]), statistics.median(stream["gateway"])
    print("\n(c) first streamed chunk, %d each way: median direct %.2f ms, gateway %.2f ms, difference %+.2f ms "
          "(ratio %.3f); goal within 50 ms: %s" % (len(stream["direct"]), d, g, g - d, g / d,
                                                   "met" if g - d <= 50 else "NOT met"))


if __name__ == "__main__":
    main()
