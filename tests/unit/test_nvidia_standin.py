"""The lab's NVIDIA stand-ins (tests/images/nvidia-standin) at their interfaces: nvidia-smi's CSV output and
exit codes as the real tool's, nvidia-ctk's daemon.json edit as the real Go code writes it. The packages,
the repository and Docker's --gpus path run in tests/integration/test_role_nvidia_container_toolkit.py."""
import json
import os
import re
import subprocess
import sys

import pytest

STANDIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "images", "nvidia-standin")
UUID = r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture
def root(tmp_path):
    """A host for nvidia-smi: two GPUs, a fixed UUID seed, the real /proc."""
    (tmp_path / "etc" / "nvidia-standin").mkdir(parents=True)
    (tmp_path / "etc" / "nvidia-standin" / "gpus").write_text("2\n")
    (tmp_path / "etc" / "nvidia-standin" / "seed").write_text("unit-host\n")
    (tmp_path / "run" / "nvidia-standin" / "holders").mkdir(parents=True)
    os.symlink("/proc", str(tmp_path / "proc"))
    return tmp_path


def smi(root, *args):
    return subprocess.run([sys.executable, os.path.join(STANDIN, "nvidia_smi.py")] + list(args), capture_output=True,
                          text=True, env=dict(os.environ, NVIDIA_STANDIN_ROOT=str(root)), check=False)


def uuids(root):
    return [line.split(", ")[1] for line in smi(root, "--query-gpu=index,uuid", "--format=csv,noheader").stdout.splitlines()]


def test_the_two_queries_container_rollout_uses(root):
    gpus = smi(root, "--query-gpu=index,uuid", "--format=csv,noheader")
    assert gpus.returncode == 0
    lines = gpus.stdout.splitlines()
    assert [line.split(", ")[0] for line in lines] == ["0", "1"]
    for line in lines:
        assert re.fullmatch(r"\d, " + UUID, line)
    assert uuids(root) == uuids(root), "stable"
    apps = smi(root, "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits")
    assert (apps.returncode, apps.stdout) == (0, ""), "nothing holds a GPU: no output at all"

    holder = subprocess.Popen(["sleep", "60"])
    try:
        (root / "run" / "nvidia-standin" / "holders" / str(holder.pid)).write_text("1\nused_memory=1000\n")
        apps = smi(root, "--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits")
        assert apps.stdout == "%d, %s, 1000\n" % (holder.pid, uuids(root)[1])
        with_units = smi(root, "--query-compute-apps=used_memory,pid", "--format=csv")
        assert with_units.stdout == "used_gpu_memory [MiB], pid\n1000 MiB, %d\n" % holder.pid
        memory = smi(root, "--query-gpu=memory.used,memory.total", "--format=csv,nounits")
        assert memory.stdout == "memory.used [MiB], memory.total [MiB]\n0, 23028\n1000, 23028\n"
    finally:
        holder.kill()
        holder.wait()
    assert smi(root, "--query-compute-apps=pid", "--format=csv,noheader").stdout == "", "gone with its process"


def test_list_table_errors_and_the_failing_driver(root):
    assert smi(root, "-L").stdout == "".join("GPU %d: NVIDIA A10G (UUID: %s)\n" % (i, u) for i, u in enumerate(uuids(root)))
    table = smi(root)
    assert table.returncode == 0 and "No running processes found" in table.stdout
    assert set(len(line) for line in table.stdout.splitlines()[1:]) == {91}
    bad = smi(root, "--query-gpu=index,bogus", "--format=csv")
    assert (bad.returncode, bad.stdout) == (2, 'Field "bogus" is not a valid field to query.\n\n')
    assert smi(root, "--bogus").returncode == 2
    (root / "etc" / "nvidia-standin" / "fail").write_text("")
    failed = smi(root, "--query-gpu=index,uuid", "--format=csv,noheader")
    assert failed.returncode == 9
    assert failed.stdout == ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                             "Make sure that the latest NVIDIA driver is installed and running.\n")


def ctk(*args):
    return subprocess.run([sys.executable, os.path.join(STANDIN, "nvidia_ctk.py")] + list(args), capture_output=True,
                          text=True, check=False)


def test_nvidia_ctk_keeps_every_key_and_writes_like_go(tmp_path):
    path = tmp_path / "daemon.json"
    path.write_text('{"max-concurrent-downloads": 3, "log-opts": {"max-size": "10m"}, "ratio": 1.0, "x": "<&>"}\n')
    result = ctk("runtime", "configure", "--runtime=docker", "--config=%s" % path)
    assert result.returncode == 0, result.stderr
    assert path.read_text() == (
        '{\n    "log-opts": {\n        "max-size": "10m"\n    },\n    "max-concurrent-downloads": 3,\n'
        '    "ratio": 1,\n    "runtimes": {\n        "nvidia": {\n            "args": [],\n'
        '            "path": "nvidia-container-runtime"\n        }\n    },\n    "x": "\\u003c\\u0026\\u003e"\n}')
    messages = [line.split(" msg=", 1)[1] for line in result.stderr.splitlines()]
    assert messages == ['"Loading config from %s"' % path, '"Wrote updated config to %s"' % path,
                        '"It is recommended that docker daemon be restarted."']
    assert ctk("runtime", "configure", "--config=%s" % path, "--set-as-default").returncode == 0
    assert json.loads(path.read_text())["default-runtime"] == "nvidia"


def test_nvidia_ctk_starts_from_nothing_and_refuses_what_it_does_not_know(tmp_path):
    path = tmp_path / "docker" / "daemon.json"
    result = ctk("runtime", "configure", "--runtime=docker", "--config", str(path))
    assert "Config file does not exist; using empty config" in result.stderr
    assert json.loads(path.read_text()) == {"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}
    assert ctk("runtime", "configure", "--bogus").returncode == 1
    assert "unrecognized runtime 'podman'" in ctk("runtime", "configure", "--runtime=podman").stderr
    path.write_text("")
    assert "unable to load config for runtime docker: EOF" in ctk("runtime", "configure", "--config=%s" % path).stderr
