"""Benchmark: a no-op site.yml over SSH (inventory_aws_ec2.yml) for 1 app host + N GPU hosts, N = 1 and 4, on the
split scenario's hosts (tests/run runs it after the split scenario's verify and rolling benchmark).

Method: two more GPU hosts are launched as EC2 instances of the scenario (llmstack-split-gpu3 and -gpu4, tag gpu,
host keys recorded and trusted as tests/lab/launch.yml does), and site.yml converges all of them (their vLLM joins
the gateway's upstream). Then, for N in BENCH_SCALING_SIZES (default 1,4; 1,2,4 adds a point) in turn, that order
repeated BENCH_SCALING_ROUNDS times (default 1; both defaults keep the test command in its budget),
`ansible-playbook -i tests/lab/inventory playbooks/site.yml --limit <the app host and the first N GPU hosts>`: a
no-op (changed=0 checked), timed by the playbook's own time (profile_tasks' running total). With --limit the
inventory and the gateway's upstream keep all four GPU hosts, so every run is a no-op of the same stack; only the
hosts the plays work on differ. Medians per N; growth per added host = (t(N) - t(1)) / (N - 1) / t(1). Goal: at
most +10% per host up to Ansible's forks (5: the app host and 4 GPU hosts run at once). The lab's hosts and the
controller share this machine's 2 cores: Ansible runs the hosts at once, the CPU runs them as it can.
The scenario keeps the four GPU hosts afterwards; `molecule destroy -s split` removes them all.
Not a test: it prints figures and exits 0 unless a run fails or changes something.
"""
import json
import os
import statistics
import sys

from benchlib import ROOT, labenv, profiled, timings

import fleet  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

ROUNDS = int(os.environ.get("BENCH_SCALING_ROUNDS", "1"))
SIZES = [int(n) for n in os.environ.get("BENCH_SCALING_SIZES", "1,4").split(",")]  # N=1 is the base of the growth
HOSTS = ["llmstack-split-app=app"] + ["llmstack-split-gpu%d=gpu" % n for n in (1, 2, 3, 4)]
INVENTORY = os.path.join(ROOT, "tests", "lab", "inventory")


def playbook(path, *args):
    return profiled(path, "-i", INVENTORY, *args)


def no_op(limit):
    """One site.yml limited to these hosts: its playbook time; exits if any host changed."""
    out = playbook(os.path.join(ROOT, "playbooks", "site.yml"), "--limit", ",".join(limit))
    seconds = None
    for name in limit:
        _ok, changed, seconds = timings(out, name, "site.yml --limit")
        if changed:
            sys.exit("site.yml was not a no-op on %s:\n%s" % (name, out[-3000:]))
    return seconds


def main():
    print(__doc__.split("Not a test", maxsplit=1)[0].rstrip())
    lab = labenv.read()
    playbook(os.path.join(ROOT, "tests", "lab", "launch.yml"), "-e", json.dumps(
        {"lab_scenario": "split", "lab_hosts": HOSTS}))
    playbook(os.path.join(ROOT, "playbooks", "site.yml"))
    hosts = dict((h["container"], h["inventory_name"]) for h in fleet.Fleet(lab, "split").hosts())
    app = hosts["llmstack-split-app"]
    gpus = [hosts["llmstack-split-gpu%d" % n] for n in (1, 2, 3, 4)]
    times = dict((n, []) for n in SIZES)
    for _round in range(ROUNDS):
        for n in SIZES:
            times[n].append(no_op([app] + gpus[:n]))
    medians = dict((n, statistics.median(t)) for n, t in times.items())
    print("\n  N GPU hosts  playbook runs (s)        median")
    for n in SIZES:
        print("  %-11d  %-24s %6.1f s" % (n, " ".join("%5.1f" % t for t in times[n]), medians[n]))
    growth = dict((n, (medians[n] - medians[1]) / (n - 1) / medians[1]) for n in SIZES if n > 1)
    print("  growth per added GPU host over N=1: %s; goal at most +10%% per host: %s" % (
        ", ".join("N=%d %+.1f%%" % (n, g * 100) for n, g in sorted(growth.items())),
        "met" if max(growth.values()) <= 0.10 else "NOT met"))


if __name__ == "__main__":
    main()
