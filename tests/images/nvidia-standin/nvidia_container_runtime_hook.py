"""A stand-in for `nvidia-container-runtime-hook` (nvidia-container-toolkit) on a lab host.

Docker 20.10 registers its "nvidia" device driver at daemon start only if this binary is on PATH
(moby daemon/nvidia_linux.go). For `--gpus` it then puts NVIDIA_VISIBLE_DEVICES (`all`, `0,1`, or the
device IDs given) in the container's environment and adds this binary as an OCI prestart hook, run
as `nvidia-container-runtime-hook prestart` with the container's state (JSON: `pid`, `bundle`) on stdin.

Like the real hook in legacy mode, it reads the bundle's config.json and runs
`nvidia-container-cli --load-kmods configure --ldconfig=@/sbin/ldconfig --device=<devices> --compute
--utility --pid=<pid> <rootfs>`, which does the work (see nvidia_container_cli.py). Without
NVIDIA_VISIBLE_DEVICES, and not a CUDA image, it does nothing; `void`, `none` and "" mean no GPU.

@VERSION@ and @COMMIT@ are filled in when tests/lab/nvidia-repo builds the package.
"""
import json
import os
import shutil
import subprocess
import sys

VERSION = "@VERSION@"
COMMIT = "@COMMIT@"


def fail(message):
    sys.stderr.write("nvidia-container-runtime-hook: %s\n" % message)
    sys.exit(1)


def prestart():
    try:
        state = json.load(sys.stdin)
    except ValueError as e:
        fail("could not decode container state: %s" % e)
    bundle = state.get("bundle") or state.get("bundlePath") or "."
    try:
        with open(os.path.join(bundle, "config.json")) as f:
            spec = json.load(f)
    except (OSError, ValueError) as e:
        fail("could not load OCI specification: %s" % e)
    env = dict(item.split("=", 1) for item in (spec.get("process") or {}).get("env", []) if "=" in item)
    devices = env.get("NVIDIA_VISIBLE_DEVICES")
    if devices is None:
        devices = "all" if "CUDA_VERSION" in env or "NVIDIA_REQUIRE_CUDA" in env else ""
    devices = devices.strip()
    if devices in ("", "void", "none"):
        return 0
    rootfs = (spec.get("root") or {}).get("path", "rootfs")
    if not os.path.isabs(rootfs):
        rootfs = os.path.join(bundle, rootfs)
    cli = shutil.which("nvidia-container-cli")
    if not cli:
        fail('exec: "nvidia-container-cli": executable file not found in $PATH')
    argv = [cli, "--load-kmods", "configure", "--ldconfig=@/sbin/ldconfig", "--device=" + devices, "--compute",
            "--utility", "--pid=%d" % int(state["pid"]), rootfs]
    return subprocess.run(argv, check=False).returncode


def main(argv):
    if argv[:1] in (["--version"], ["-version"]):
        sys.stdout.write("NVIDIA Container Runtime Hook version %s\ncommit: %s\n" % (VERSION, COMMIT))
        return 0
    if argv[:1] == ["prestart"]:
        return prestart()
    if argv[:1] in (["poststart"], ["poststop"]):
        return 0
    sys.stderr.write("Usage of nvidia-container-runtime-hook:\n  prestart\n  poststart\n  poststop\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
