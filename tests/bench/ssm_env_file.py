"""Benchmark: llmstack.deploy.ssm_env_file against amazon.aws's SSM lookup + copy.

Method (printed with the figures):
- 1,000 parameters (half String, half SecureString) under one path on the lab's moto.
- API calls: moto's request recorder counts the SSM calls each play makes.
- Time: both plays run alternately ROUNDS times in one process tree; the figure is the
  median of the task's own duration (json callback start/end), and, beside it, the median
  wall time of the whole ansible-playbook process. Anchor: lookup('amazon.aws.aws_ssm',
  bypath, recursive, shortnames) templated into ansible.builtin.copy, writing the same file.
Not a test: it prints figures and exits 0 unless a play fails.
"""
import json
import math
import os
import statistics
import tempfile
import urllib.request
import uuid

from benchlib import labenv, play_file, run

COUNT = 1000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def moto(lab, action):
    req = urllib.request.Request("%s/moto-api/recorder/%s" % (lab["LAB_MOTO_URL"], action),
                                 data=b"" if action != "download-recording" else None)
    with urllib.request.urlopen(req) as resp:
        return resp.read().decode()


def count_calls(lab, path):
    moto(lab, "reset-recording")
    moto(lab, "start-recording")
    run(path)
    moto(lab, "stop-recording")
    calls = {}
    for line in moto(lab, "download-recording").splitlines():
        if line.strip():
            target = json.loads(line).get("headers", {}).get("X-Amz-Target", "other")
            calls[target.split(".")[-1]] = calls.get(target.split(".")[-1], 0) + 1
    moto(lab, "reset-recording")
    return calls


def main():
    lab = labenv.read()
    base = "/bench/%s" % uuid.uuid4().hex[:8]
    ssm = labenv.ssm_client(lab)
    for i in range(COUNT):
        ssm.put_parameter(Name="%s/param_%04d" % (base, i), Value=("secure-value-%d" if i % 2 else "value-%d") % i,
                          Type="SecureString" if i % 2 else "String", Overwrite=True)

    with tempfile.TemporaryDirectory() as tmp:
        ours = play_file(tmp, "ours", [{"llmstack.deploy.ssm_env_file": {
            "path": os.path.join(tmp, "ours.env"), "paths": [base], "region": "us-east-1",
            "state_dir": os.path.join(tmp, "state"),
            "endpoint_url": lab["LAB_MOTO_URL"]}}])
        lookup = ("lookup('amazon.aws.aws_ssm', '%s', bypath=true, recursive=true, shortnames=true, "
                  "region='us-east-1', endpoint_url='%s')" % (base, lab["LAB_MOTO_URL"]))
        anchor = play_file(tmp, "anchor", [{"ansible.builtin.copy": {
            "dest": os.path.join(tmp, "anchor.env"), "mode": "0600",
            "content": "{%% for k, v in (%s | dictsort) %%}{{ k | upper }}={{ v }}\n{%% endfor %%}" % lookup},
            "no_log": True}])

        # amazon.aws #2659: the lookup prints decrypted values at -vvvv despite no_log.
        secure = ["secure-value-%d" % i for i in range(1, COUNT, 2)]
        leaks = {}
        for name, path in (("ours", ours), ("anchor", anchor)):
            output = run(path, "-vvvv")
            leaks[name] = sum(1 for v in secure if v in output)

        ours_calls = count_calls(lab, ours)
        anchor_calls = count_calls(lab, anchor)
        times = {"ours": [], "anchor": []}
        for _round in range(ROUNDS):
            for name, path in (("ours", ours), ("anchor", anchor)):
                # A changed file each round, so both really write: remove the previous output.
                for f in ("ours.env", "anchor.env"):
                    if os.path.exists(os.path.join(tmp, f)):
                        os.unlink(os.path.join(tmp, f))
                wall, tasks, _data = run(path)
                times[name].append((wall, tasks[0]))

    minimum = math.ceil(COUNT / 10)
    med = dict((k, (statistics.median(wall for wall, task in v), statistics.median(task for wall, task in v)))
               for k, v in times.items())
    print("ssm_env_file benchmark: %d parameters under one path on moto, %d alternating rounds, median" % (COUNT, ROUNDS))
    print("  SSM API calls   ours: %s   anchor: %s   (API minimum: ceil(%d/10) = %d GetParametersByPath; "
          "moto adds one trailing page with a NextToken)" % (ours_calls, anchor_calls, COUNT, minimum))
    print("  SecureString values printed at -vvvv (of %d)   ours: %d   anchor: %d"
          % (len(secure), leaks["ours"], leaks["anchor"]))
    print("  task time       ours: %.3f s   anchor: %.3f s   ratio ours/anchor: %.2f"
          % (med["ours"][1], med["anchor"][1], med["ours"][1] / med["anchor"][1]))
    print("  process time    ours: %.3f s   anchor: %.3f s   ratio ours/anchor: %.2f"
          % (med["ours"][0], med["anchor"][0], med["ours"][0] / med["anchor"][0]))


if __name__ == "__main__":
    main()
