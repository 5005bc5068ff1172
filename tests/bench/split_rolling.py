"""Benchmark: a vLLM update across the split scenario's 2 GPU hosts under constant load, rolling against
all at once, in one run (molecule scenario `split`, converged; tests/run runs this after its verify).

Method: the same load for both runs - 2 paced clients at 3.5 requests/s each (under the gateway's per-client
limit), each on one keep-alive HTTPS connection to the gateway that never retries; POST /llm_api/completions,
every third one streamed (a stream without `data: [DONE]` counts as failed), from 3 s before the converge to
3 s after it. The update is a new vLLM env value, so both GPU hosts' containers are recreated:
  rolling      `molecule converge -s split -- --tags vllm` as shipped: serial 1, each host drained in the
               gateway (no new requests, in-flight ones finish), recreated, ready, put back;
  all at once  the same with `llmstack_gpu_serial: 100%` and `vllm_drain: false`: no serial, no drain.
Goal: 0 failed requests for rolling. Both figures are printed; the anchor is the all-at-once run."""
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
import fleet  # noqa: E402  pylint: disable=wrong-import-position
import labenv  # noqa: E402  pylint: disable=wrong-import-position
from llm_load import LlmLoad  # noqa: E402  pylint: disable=wrong-import-position


def gateway():
    """The app host's address (its instance's private IP)."""
    return next(h["address"] for h in fleet.Fleet(labenv.read(), "split").hosts() if h["role"] == "app")


def key():
    with open(os.path.join(os.environ["LAB_DIR"], "stack", "api_key_ci")) as f:
        return f.read().strip()


def update(extra):
    variables = dict(extra, vllm_env={"LLMSTACK_ROLLOUT": str(time.time())})
    start = time.monotonic()
    proc = subprocess.run(["molecule", "converge", "-s", "split", "--", "--tags", "vllm", "-e", json.dumps(variables)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit("converge failed:\n" + proc.stdout[-3000:] + proc.stderr[-2000:])
    return time.monotonic() - start


def measure(name, extra):
    load = LlmLoad(gateway(), key(), clients=2, pace=3.5)
    seconds = load.during(lambda: update(extra), before=3, after=3)
    kinds = {}
    for error in load.errors:
        kinds[error[:40]] = kinds.get(error[:40], 0) + 1
    print("  %-12s %4d/%-4d failed  (converge %5.1f s)  %s" % (name, load.failed, load.total, seconds,
                                                               ", ".join("%s x%d" % kv for kv in kinds.items())))
    return load


def main():
    print(__doc__.split("\n\n", 1)[1])
    rolling = measure("rolling", {})
    at_once = measure("all at once", {"llmstack_gpu_serial": "100%", "vllm_drain": False})
    print("  goal: 0 failed with rolling: %s (all at once: %d failed of %d)"
          % ("met" if rolling.failed == 0 else "NOT met", at_once.failed, at_once.total))


if __name__ == "__main__":
    main()
