"""gpu: which processes hold the GPUs a container will get. nvidia-smi's CSV output is given here in the
real tool's format (--format=csv,noheader,nounits); the lab's GPU hosts run the whole path."""
import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import gpu
from test_rollout import Clock  # the fake clock of the health loop's tests

GPUS = "0, GPU-5c1f0e0a-1111-2222-3333-444455556666\n1, GPU-9d2e1b7c-aaaa-bbbb-cccc-ddddeeeeffff\n"
APPS = "4242, GPU-9d2e1b7c-aaaa-bbbb-cccc-ddddeeeeffff, 20480\n77, GPU-5c1f0e0a-1111-2222-3333-444455556666, 512\n"


def smi(gpus=GPUS, apps=APPS, rc=0, err=""):
    calls = []

    def run(argv):
        calls.append(argv)
        assert argv[0] == "nvidia-smi" and argv[2] == "--format=csv,noheader,nounits"
        return rc, (gpus if argv[1].startswith("--query-gpu=") else apps), err
    run.calls = calls
    return run


def test_holders_of_all_gpus_and_the_exact_queries():
    run = smi()
    found = gpu.holders(run, "all")
    assert [h["pid"] for h in found] == ["4242", "77"]
    assert found[0] == {"pid": "4242", "gpu": "1", "uuid": "GPU-9d2e1b7c-aaaa-bbbb-cccc-ddddeeeeffff", "used_mib": "20480"}
    assert run.calls == [["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader,nounits"],
                         ["nvidia-smi", "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits"]]


@pytest.mark.parametrize("gpus,pids", [({"count": 1}, ["77"]), ({"device_ids": ["1"]}, ["4242"]),
                                       ({"device_ids": ["GPU-5c1f0e0a-1111-2222-3333-444455556666"]}, ["77"])])
def test_only_the_gpus_the_container_gets(gpus, pids):
    assert [h["pid"] for h in gpu.holders(smi(), gpus)] == pids


def test_ignored_pids_and_free_gpus():
    assert gpu.holders(smi(), "all", ignore_pids=["4242", "77"]) == []
    assert gpu.holders(smi(apps=""), "all") == []
    assert gpu.describe(gpu.holders(smi(), {"device_ids": ["1"]})) == "pid 4242 (GPU 1, 20480 MiB)"


def test_unknown_device_and_failing_driver_are_clear_errors():
    with pytest.raises(gpu.GpuError, match="no GPU 7 .*0=GPU-5c1f"):
        gpu.holders(smi(), {"device_ids": ["7"]})
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    with pytest.raises(gpu.GpuError, match="exit 9.*couldn't communicate"):
        gpu.holders(smi(rc=9, err=message), "all")
    with pytest.raises(gpu.GpuError, match="not 2 fields"):
        gpu.holders(smi(gpus="0\n"), "all")


def test_run_command_reports_a_missing_binary():
    rc, _out, err = gpu.run_command(["/nonexistent/nvidia-smi"])
    assert rc == 127 and err


def guard(run, gpus="all", local=True):
    clock = Clock()
    return gpu.GpuGuard(run, gpus, local, "vllm", sleep=clock.sleep, clock=clock), clock


def test_guard_asks_nothing_without_gpus_or_for_a_remote_daemon():
    run = smi()
    assert guard(run, gpus=None)[0].holders() == [] and guard(run, local=False)[0].holders() == []
    assert run.calls == []


def test_guard_before_anything_is_touched_ignores_the_service_own_container():
    guard(smi(), {"device_ids": ["1"]})[0].check_free(own_pids=["4242"])
    with pytest.raises(gpu.GpuError, match=r"gpus: pid 4242 \(GPU 1, 20480 MiB\) hold the GPUs vllm would use"):
        guard(smi(), {"device_ids": ["1"]})[0].check_free(own_pids=["77"])


class Releasing:
    """nvidia-smi as a stopped container's VRAM is released: APPS for the first `busy` queries, then nothing."""

    def __init__(self, busy):
        self.busy, self.queries = busy, 0

    def __call__(self, argv):
        if argv[1].startswith("--query-gpu="):
            return 0, GPUS, ""
        self.queries += 1
        return 0, APPS if self.queries <= self.busy else "", ""


def test_guard_waits_until_the_gpus_are_released():
    lines = []
    g, clock = guard(Releasing(busy=3))
    g.wait_free(60, lines.append)
    assert clock.t == 3 and len(lines) == 3 and "pid 4242 (GPU 1, 20480 MiB)" in lines[0]


def test_guard_gives_up_after_the_timeout_naming_the_pids():
    g, clock = guard(Releasing(busy=99))
    with pytest.raises(gpu.GpuError, match="pid 4242 .* still hold the GPUs 5s after the old container stopped; "
                                           "a new vllm would fail"):
        g.wait_free(5, lambda line: None)
    assert clock.t == 5
