"""A stand-in for `nvidia-container-cli` (libnvidia-container-tools) on a lab host.

The real CLI talks to the driver through NVML and bind-mounts the driver's devices, libraries and
binaries into a container. Here the "driver" is the nvidia-smi stand-in, so:

- `--version`: cli-version and lib-version (libnvidia-container1's version; without that package the
  CLI fails as the dynamic loader would, exit 127);
- `info`: the driver and GPUs, read with nvidia-smi; a missing or failing nvidia-smi gives the real
  initialization errors;
- `configure --device=<all|indices|UUIDs> --pid=<pid> ... <rootfs>` (what nvidia-container-runtime-hook
  runs in a container's prestart): registers <pid> as holding those GPUs in the driver stand-in's
  registry (/run/nvidia-standin/holders/<pid>), copies the driver's nvidia-smi into <rootfs>/usr/bin
  and tells it, in <rootfs>/etc/nvidia-standin, which host GPUs the container sees.

@VERSION@ is filled in when tests/lab/nvidia-repo builds the package.
"""
import os
import shutil
import socket
import subprocess
import sys

VERSION = "@VERSION@"
LIB_VERSION_FILE = "/usr/share/nvidia-container-standin/libnvidia-container1.version"
HOLDERS = "/run/nvidia-standin/holders"
ETC = "/etc/nvidia-standin"
NO_NVML = ("nvidia-container-cli: initialization error: load library failed: libnvidia-ml.so.1: cannot open shared "
           "object file: no such file or directory\n")
NO_DRIVER = "nvidia-container-cli: initialization error: nvml error: driver not loaded\n"


class Exit(Exception):
    def __init__(self, code, text):
        super().__init__(text)
        self.code, self.text = code, text


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def smi(*args):
    path = shutil.which("nvidia-smi")
    if not path:
        raise Exit(1, NO_NVML)
    proc = subprocess.run([path] + list(args), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise Exit(1, NO_DRIVER)
    return [[c.strip() for c in line.split(",")] for line in proc.stdout.splitlines() if line.strip()], path


def info():
    rows, _path = smi("--query-gpu=index,uuid,name,pci.bus_id,driver_version", "--format=csv,noheader")
    out = ["NVRM version:   %s" % (rows[0][4] if rows else "N/A"), "CUDA version:   12.8", ""]
    for index, uuid, name, bus, _driver in rows:
        out += ["Device Index:   %s" % index, "Device Minor:   %s" % index, "Model:          %s" % name,
                "Brand:          Nvidia", "GPU UUID:       %s" % uuid, "Bus Location:   %s" % bus.lower(),
                "Architecture:   8.6", ""]
    return "\n".join(out)


def process_start(pid):
    fields = (read("/proc/%d/stat" % pid, "") or "").rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def configure(args):
    opts, rootfs = {}, None
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            opts[key] = value
        elif arg.startswith("-"):
            opts[arg.lstrip("-")] = True
        elif rootfs is None:
            rootfs = arg
        else:
            raise Exit(1, "nvidia-container-cli: unexpected argument -- '%s'\n" % arg)
    if rootfs is None or "pid" not in opts:
        raise Exit(1, "nvidia-container-cli: configure: missing rootfs or --pid\n")
    pid = int(opts["pid"])
    rows, smi_path = smi("--query-gpu=index,uuid", "--format=csv,noheader")
    by_id = {}
    for index, uuid in rows:
        by_id[index] = by_id[uuid] = int(index)
    wanted = str(opts.get("device", ""))
    if wanted in ("", "void", "none"):
        chosen = []
    elif wanted == "all":
        chosen = sorted(set(by_id.values()))
    else:
        chosen = []
        for ident in wanted.split(","):
            if ident.strip() not in by_id:
                raise Exit(1, "nvidia-container-cli: device error: %s: unknown device\n" % ident.strip())
            chosen.append(by_id[ident.strip()])
    if not chosen:
        return ""
    os.makedirs(HOLDERS, exist_ok=True)
    for name in os.listdir(HOLDERS):  # containers that are gone
        if name.isdigit() and not os.path.isdir("/proc/" + name):
            os.unlink(os.path.join(HOLDERS, name))
    with open("%s/%d" % (HOLDERS, pid), "w") as f:
        f.write("%s\nstart=%s\n" % (",".join(str(i) for i in chosen), process_start(pid)))
    # The driver's binary and what it needs to show the same GPUs inside the container.
    os.makedirs(os.path.join(rootfs, "usr/bin"), exist_ok=True)
    shutil.copy(smi_path, os.path.join(rootfs, "usr/bin/nvidia-smi"))
    etc = os.path.join(rootfs, ETC.lstrip("/"))
    os.makedirs(etc, exist_ok=True)
    for name, value in (("gpus", read(ETC + "/gpus", "1")), ("seed", read(ETC + "/seed") or socket.gethostname()),
                        ("visible", ",".join(str(i) for i in chosen))):
        with open(os.path.join(etc, name), "w") as f:
            f.write(value + "\n")
    return ""


def run(argv):
    args = [a for a in argv if a not in ("--load-kmods", "-k", "--no-pivot", "-n", "--user", "-u")
            and not a.startswith(("--debug=", "--ldcache=", "--root=", "--user="))]
    lib_version = read(LIB_VERSION_FILE)
    if lib_version is None:
        raise Exit(127, "nvidia-container-cli: error while loading shared libraries: libnvidia-container.so.1: cannot "
                        "open shared object file: No such file or directory\n")
    if not args or args[0] in ("--version", "-V"):
        return "cli-version: %s\nlib-version: %s\nbuild platform: x86_64\n" % (VERSION, lib_version)
    if args[0] == "info":
        return info()
    if args[0] == "configure":
        return configure(args[1:])
    if args[0] == "list":
        _rows, path = smi("-L")
        return path + "\n"
    raise Exit(1, "nvidia-container-cli: unrecognized command `%s'\n" % args[0])


def main():
    try:
        sys.stdout.write(run(sys.argv[1:]))
    except Exit as e:
        sys.stderr.write(e.text)
        sys.exit(e.code)


if __name__ == "__main__":
    main()
