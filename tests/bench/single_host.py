"""Benchmark: the single-host stack (molecule scenario `default`: one GPU box, tag app+gpu), on a lab host that
molecule created and prepared. It converges the host itself and leaves it converged for `molecule verify`.

Method (printed with the figures):
(a) No-op converge: `molecule converge -s default` (site.yml through inventory_aws_ec2.yml, over SSH), then
    `molecule idempotence -s default` (the same converge, failed by molecule if anything changed: it is the
    scenario's idempotence check, which ends the benchmark and the test command). For each: the host's `changed`
    count (PLAY RECAP), the playbook's own time (profile_tasks' running total) and the molecule command's wall
    time. Ratio: second / first.
(b) The connection: the same no-op `ansible-playbook playbooks/site.yml` (the repo's ansible.cfg), 3 times over SSH
    through inventory_aws_ec2.yml (pipelining, ControlPersist, host keys checked) and once over the docker
    connection (`docker exec` into the lab host, what the lab used before; a static inventory with the same host
    name, groups, login user, sudo and group_vars; BENCH_DOCKER_RUNS, 1 to keep the test command in its budget),
    SSH first. Medians of the playbook time; ratio SSH / docker. Goal: changed=0 and a playbook time of at most
    10 s over SSH.
    The anchor: the same no-op site.yml over SSH from the tree of BENCH_ANCHOR (default: main before the roles
    took over their operations, issue 17), its own playbooks, roles, modules and lab inventory (`git archive`),
    its runs in one block before this tree's: the two trees render different gateway configs, so the first run
    of each block moves the host from one to the other (changed=1): it is shown in brackets and the medians
    are of the no-op runs after it.
    Ratio: this tree / the anchor, over SSH.
(c) Gateway overhead: a loader on the lab host's loopback sends small non-streamed completions
    (max_tokens 1) over one keep-alive connection each way: through the gateway
    (https://127.0.0.1/llm_api/chat/completions) and direct to the stand-in
    (http://127.0.0.1:8000/v1/chat/completions), one request each way in turn, alternating which goes first,
    8 rounds a second (within the gateway's 10 r/s per key). p50/p99 of each and the differences. The gateway has
    all of its public-surface rules on (TLS profile, case-sensitive key regexes, allow-list, per-key connection cap,
    identity header). Goal: p50 overhead <= 0.5 ms.
(d) First streamed chunk: the same loader, streamed completions, time from sending the request to the
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
import tempfile
import time

import yaml

from benchlib import ROOT, labenv, profiled, timings

import fleet  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

RUNS = int(os.environ.get("BENCH_CONNECTION_RUNS", "3"))
DOCKER_RUNS = min(RUNS, int(os.environ.get("BENCH_DOCKER_RUNS", "1")))
ANCHOR = os.environ.get("BENCH_ANCHOR", "0340f34")
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


def the_host(lab):
    """The scenario's one instance: container, inventory name, address."""
    return fleet.Fleet(lab, "default").hosts()[0]


def docker_inventory(lab, host, folder):
    """The same host over the docker connection: a static inventory with its name, groups and address, and the
    lab's group_vars (login user ubuntu, sudo)."""
    entry = {"ansible_connection": "community.docker.docker", "ansible_host": host["container"],
             "llmstack_private_address": host["address"]}
    with open(os.path.join(folder, "hosts.yml"), "w") as f:
        yaml.safe_dump({"all": {"children": {"llmstack_app": {"hosts": {host["inventory_name"]: entry}},
                                             "llmstack_gpu": {"hosts": {host["inventory_name"]: None}}}}}, f)
    os.symlink(os.path.join(ROOT, "tests", "lab", "inventory", "group_vars"), os.path.join(folder, "group_vars"))
    return folder


def anchor_tree(folder):
    """The anchor commit's files in folder (the ansible.cfg, the .collections link and the lab inventory come
    with them); None if this clone does not have that commit."""
    archive = subprocess.run(["git", "archive", "--format=tar", ANCHOR], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode:
        return None
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    return folder


def site(inventory, name, root=ROOT):
    """One site.yml run as an operator starts it: (changed, playbook seconds)."""
    out = profiled(os.path.join(root, "playbooks", "site.yml"), "-i", inventory, root=root)
    _ok, changed, seconds = timings(out, name, "site.yml -i " + inventory)
    return changed, seconds


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
    ok, changed, seconds = timings(out, the_host(lab)["inventory_name"], "molecule " + step)
    return {"ok": ok, "changed": changed, "playbook": seconds, "wall": wall}


def secret(lab, name):
    with open(os.path.join(lab["LAB_DIR"], "stack", name)) as f:
        return f.read().strip()


def load(lab):
    container = the_host(lab)["container"]
    subprocess.run(["docker", "exec", "-i", container, "sh", "-c", "cat > /tmp/llmstack-bench-loader.py"],
                   input=LOADER, text=True, check=True)
    cfg = {"model": "lab/echo", "requests": REQUESTS, "streams": STREAMS,
           "keys": {"gateway": secret(lab, "api_key_ci"), "direct": secret(lab, "vllm_api_key")}}
    proc = subprocess.run(["docker", "exec", "-i", container, "python3", "/tmp/llmstack-bench-loader.py"],
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
    second = molecule("idempotence", lab)
    host = the_host(lab)
    print("\n(a) no-op converge of the whole stack (%s, %s)" % (host["inventory_name"], host["container"]))
    for name, r in (("first", first), ("second", second)):
        print("  %-6s changed=%-3d ok=%-3d playbook %6.1f s   molecule wall %6.1f s"
              % (name, r["changed"], r["ok"], r["playbook"], r["wall"]))
    print("  ratio second/first: playbook %.2f, wall %.2f"
          % (second["playbook"] / first["playbook"], second["wall"] / first["wall"]))

    ssh_inventory = os.path.join(ROOT, "tests", "lab", "inventory")
    runs = {"anchor": [], "ssh": [], "docker": []}
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as old:
        inventories = {"ssh": ssh_inventory, "docker": docker_inventory(lab, host, folder)}
        anchor = anchor_tree(old)
        # The anchor in a block of its own: the two trees render different gateway configs, so the first run of
        # each block moves the host from one to the other (changed); the medians are of no-op runs.
        for _round in range(RUNS if anchor else 0):
            runs["anchor"].append(site(os.path.join(anchor, "tests", "lab", "inventory"), host["inventory_name"],
                                       root=anchor))
        for round_ in range(RUNS):
            for kind in ("ssh", "docker") if round_ < DOCKER_RUNS else ("ssh",):
                runs[kind].append(site(inventories[kind], host["inventory_name"]))
    print("\n(b) no-op site.yml, %d runs over SSH and %d over docker, SSH first, the anchor's block first"
          % (RUNS, DOCKER_RUNS))
    # The first run of each block after the anchor's only moves the host from one tree's config to the other's:
    # shown in brackets, left out of the medians.
    moves = dict(anchor=1, ssh=1, docker=0) if runs["anchor"] else dict(anchor=0, ssh=0, docker=0)
    counted = dict((kind, runs[kind][moves[kind]:]) for kind in runs)
    medians = dict((kind, statistics.median(t for _c, t in counted[kind])) for kind in runs if counted[kind])

    def listed(kind):
        return " ".join(("[%5.1f]" if i < moves[kind] else "%5.1f") % t for i, (_c, t) in enumerate(runs[kind]))

    for kind, label in (("ssh", "SSH (inventory_aws_ec2.yml)"), ("docker", "docker exec (static inventory)")):
        print("  %-31s playbook %s s   median %5.1f s   changed %s" % (
            label, listed(kind), medians[kind], sorted(set(c for c, _t in runs[kind]))))
    unchanged = all(c == 0 for kind in ("ssh", "docker") for c, _t in counted[kind]) and second["changed"] == 0
    print("  ratio SSH / docker: %.2f; goal changed=0 and <= 10 s over SSH: %s" % (
        medians["ssh"] / medians["docker"], "met" if unchanged and medians["ssh"] <= 10 else "NOT met"))
    if runs["anchor"]:
        print("  anchor %s over SSH: playbook %s s   median %5.1f s   changed %s" % (
            ANCHOR, listed("anchor"), medians["anchor"], sorted(set(c for c, _t in runs["anchor"]))))
        print("  ratio this tree / anchor, over SSH: %.2f" % (medians["ssh"] / medians["anchor"]))
    else:
        print("  anchor %s: not in this clone's history, no ratio" % ANCHOR)

    times = load(lab)
    ms = {mode: {kind: [t * 1000 for t in v] for kind, v in kinds.items()} for mode, kinds in times.items()}
    plain, stream = ms["plain"], ms["stream"]
    print("\n(c) small non-streamed completion, %d each way, loopback, keep-alive" % len(plain["direct"]))
    for q in (50, 99):
        d, g = pct(plain["direct"], q), pct(plain["gateway"], q)
        print("  p%d  direct %7.2f ms   gateway %7.2f ms   overhead %+6.2f ms (ratio %.3f)" % (q, d, g, g - d, g / d))
    overhead = pct(plain["gateway"], 50) - pct(plain["direct"], 50)
    print("  goal p50 overhead <= 0.5 ms: %s" % ("met" if overhead <= 0.5 else "NOT met"))
    d, g = statistics.median(stream["direct"]), statistics.median(stream["gateway"])
    print("\n(d) first streamed chunk, %d each way: median direct %.2f ms, gateway %.2f ms, difference %+.2f ms "
          "(ratio %.3f); goal within 50 ms: %s" % (len(stream["direct"]), d, g, g - d, g / d,
                                                   "met" if g - d <= 50 else "NOT met"))


if __name__ == "__main__":
    main()
