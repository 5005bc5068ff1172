"""Benchmark: a vLLM update across the split scenario's 2 GPU hosts under constant load, rolling against
all at once, in one run (molecule scenario `split`, converged; tests/run runs this after its verify).

Method: the same load for both runs - 2 paced clients at 3.5 requests/s each (under the gateway's per-client
limit), each on one keep-alive HTTPS connection to the gateway that never retries; POST /llm_api/completions,
every third one streamed (a stream without `data: [DONE]` counts as failed), from 3 s before the converge to
3 s after it. The update is a new vLLM env value, so both GPU hosts' containers are recreated:
  rolling      `molecule converge -s split -- --tags vllm` as shipped: serial 1, each host drained in the
               gateway (no new requests, in-flight ones finish), recreated, ready, put back;
  all at once  the same with `llmstack_gpu_serial: 100%` and `vllm_drain: false`: no serial, no drain.
The rolling figure is the one the scenario's verify recorded just before, in this run
(test_a_rolling_vllm_update_under_load_fails_no_request: the same update under the same load, so the slow run
happens once); without that record ($LAB_DIR/split-rolling.json, which tests/run removes before verify) this
script measures it itself.
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


def measure(extra):
    load = LlmLoad(gateway(), key(), clients=2, pace=3.5)
    seconds = load.during(lambda: update(extra), before=3, after=3)
    return {"failed": load.failed, "total": load.total, "seconds": seconds, "errors": load.errors}


def show(name, figure, source=""):
    kinds = {}
    for error in figure["errors"]:
        kinds[error[:40]] = kinds.get(error[:40], 0) + 1
    print("  %-12s %4d/%-4d failed  (converge %5.1f s)  %s%s" % (
        name, figure["failed"], figure["total"], figure["seconds"], ", ".join("%s x%d" % kv for kv in kinds.items()),
        source))


def main():
    print(__doc__.split("\n\n", 1)[1])
    # The split scenario's verify ran the rolling update under this load just before (tests/run removes the
    # figure before verify): the slow end-to-end run once, not twice.
    recorded = os.path.join(os.environ["LAB_DIR"], "split-rolling.json")
    if os.path.exists(recorded):
        with open(recorded) as f:
            rolling = json.load(f)
        source = "  (recorded by verify's test_a_rolling_vllm_update_under_load_fails_no_request)"
    else:
        rolling, source = measure({}), ""
    show("rolling", rolling, source)
    at_once = measure({"llmstack_gpu_serial": "100%", "vllm_drain": False})
    show("all at once", at_once)
    print("  goal: 0 failed with rolling: %s (all at once: %d failed of %d)"
          % ("met" if rolling["failed"] == 0 else "NOT met", at_once["failed"], at_once["total"]))


if __name__ == "__main__":
    main()
