"""A stand-in for the NVIDIA driver's `nvidia-smi` on a lab host (no GPU, no driver).

On EC2 the driver comes with the AMI, so this is not in a package: tests copy the build of this file
(tests/lab/nvidia-repo puts it in $LAB_DIR with a python3 shebang; lab.env's LAB_NVIDIA_SMI_STANDIN)
to /usr/bin/nvidia-smi on a lab host.

State, all optional:
  /etc/nvidia-standin/gpus      number of GPUs (default 1), each an "NVIDIA A10G" with 23028 MiB
  /etc/nvidia-standin/fail      present: the driver is "not loaded" (the real message, exit 9)
  /etc/nvidia-standin/seed      what the GPU UUIDs derive from (default: the host name)
  /etc/nvidia-standin/visible   host GPU indices this view shows (inside a container, written by
                                the nvidia-container-cli stand-in; absent: every GPU)
  /run/nvidia-standin/holders/<pid>
      a process holding GPUs while /proc/<pid> exists. First line `all` or indices `0,1`;
      optional `used_memory=<MiB>` (default 20480) and `start=<field 22 of /proc/<pid>/stat>`
      lines (with `start`, a reused pid does not count).
NVIDIA_STANDIN_ROOT prefixes those paths and /proc (for tests on this machine).

Output formats are the real tool's: --query-gpu / --query-compute-apps with --format=csv[,noheader]
[,nounits], -L, --version and a short plain table; unknown fields and arguments fail like the real
tool (exit 2).
"""
import hashlib
import os
import socket
import sys
import time

DRIVER_VERSION = "570.133.20"
CUDA_VERSION = "12.8"
GPU_NAME = "NVIDIA A10G"
GPU_MEMORY_MIB = 23028
DEFAULT_USED_MIB = 20480

ROOT = os.environ.get("NVIDIA_STANDIN_ROOT", "")
ETC = ROOT + "/etc/nvidia-standin"
HOLDERS = ROOT + "/run/nvidia-standin/holders"
PROC = ROOT + "/proc" if ROOT else "/proc"

DRIVER_FAILED = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                 "Make sure that the latest NVIDIA driver is installed and running.\n")
BAD_ARGS = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n"

# --query-gpu: canonical name -> (header, unit); aliases as nvidia-smi --help-query-gpu lists them.
GPU_FIELDS = {
    "index": ("index", None), "uuid": ("uuid", None), "name": ("name", None),
    "memory.used": ("memory.used", "MiB"), "memory.total": ("memory.total", "MiB"),
    "memory.free": ("memory.free", "MiB"), "pci.bus_id": ("pci.bus_id", None),
    "driver_version": ("driver_version", None), "count": ("count", None),
    "utilization.gpu": ("utilization.gpu", "%"),
}
GPU_ALIASES = {"gpu_uuid": "uuid", "gpu_name": "name", "gpu_bus_id": "pci.bus_id"}
# --query-compute-apps: used_memory is reported under its long name, as the real tool does.
APP_FIELDS = {
    "pid": ("pid", None), "process_name": ("process_name", None), "gpu_uuid": ("gpu_uuid", None),
    "gpu_name": ("gpu_name", None), "gpu_bus_id": ("gpu_bus_id", None),
    "used_memory": ("used_gpu_memory", "MiB"),
}
APP_ALIASES = {"name": "process_name", "used_gpu_memory": "used_memory"}


class Exit(Exception):
    def __init__(self, code, text=""):
        super().__init__(text)
        self.code, self.text = code, text


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def gpu_uuid(seed, index):
    h = hashlib.sha256(("%s/%d" % (seed, index)).encode()).hexdigest()
    return "GPU-%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:32])


def gpus():
    """The GPUs this view shows, with the host's index (`host`) and the index shown (`index`)."""
    try:
        count = int(read(ETC + "/gpus", "1") or "1")
    except ValueError:
        count = 1
    seed = read(ETC + "/seed") or socket.gethostname()
    visible = read(ETC + "/visible")
    shown = range(count) if visible is None else [int(i) for i in visible.split(",") if i.strip().isdigit()]
    out = []
    for index, host in enumerate(i for i in shown if i < count):
        out.append({"index": index, "host": host, "uuid": gpu_uuid(seed, host), "name": GPU_NAME,
                    "bus": "00000000:00:%02X.0" % (0x1E - count + 1 + host if count <= 4 else 0x1E + host),
                    "total": GPU_MEMORY_MIB, "used": 0})
    return out


def process_start(pid):
    stat = read("%s/%d/stat" % (PROC, pid), "")
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def process_name(pid):
    raw = read("%s/%d/cmdline" % (PROC, pid), "") or ""
    argv0 = raw.split("\0")[0]
    return argv0 or read("%s/%d/comm" % (PROC, pid), "?")


def holders(table):
    """[(pid, gpu, used MiB)] for live holders, in GPU order then pid order; adds their memory to `table`."""
    by_host = dict((g["host"], g) for g in table)
    found = []
    try:
        names = os.listdir(HOLDERS)
    except OSError:
        names = []
    for name in sorted((n for n in names if n.isdigit()), key=int):
        pid = int(name)
        if not os.path.isdir("%s/%d" % (PROC, pid)):
            continue
        lines = (read("%s/%s" % (HOLDERS, name), "") or "").splitlines()
        if not lines:
            continue
        opts = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
        if opts.get("start") and opts["start"] != process_start(pid):
            continue  # the pid was reused
        try:
            used = int(opts.get("used_memory", DEFAULT_USED_MIB))
        except ValueError:
            used = DEFAULT_USED_MIB
        spec = lines[0].strip()
        wanted = by_host.keys() if spec == "all" else [int(i) for i in spec.split(",") if i.strip().isdigit()]
        for host in wanted:
            if host in by_host:
                found.append((pid, by_host[host], used))
    for _pid, gpu, used in found:
        gpu["used"] = min(gpu["total"], gpu["used"] + used)
    found.sort(key=lambda h: (h[1]["index"], h[0]))
    return found


def select(table, ids):
    """-i/--id: indices or UUIDs, comma-separated."""
    if ids is None:
        return table
    chosen = []
    for ident in ids.split(","):
        ident = ident.strip()
        match = [g for g in table if str(g["index"]) == ident or g["uuid"] == ident]
        if not match:
            raise Exit(6, "No devices were found\n")
        chosen.extend(match)
    return chosen


def parse_fields(spec, known, aliases):
    names = []
    for raw in spec.split(","):
        name = raw.strip()
        canonical = aliases.get(name, name)
        if canonical not in known:
            raise Exit(2, 'Field "%s" is not a valid field to query.\n\n' % name)
        names.append(canonical)
    return names


def csv(names, known, rows, fmt):
    opts = [o.strip() for o in fmt.split(",")]
    if not opts or opts[0] != "csv" or any(o not in ("noheader", "nounits") for o in opts[1:]):
        raise Exit(2, BAD_ARGS)
    out = []
    if "noheader" not in opts:
        out.append(", ".join(known[n][0] + (" [%s]" % known[n][1] if known[n][1] else "") for n in names))
    for row in rows:
        cells = []
        for n in names:
            unit = known[n][1]
            value = str(row[n])
            cells.append(value if not unit or "nounits" in opts else "%s %s" % (value, unit))
        out.append(", ".join(cells))
    return "".join(line + "\n" for line in out)


def query_gpu(spec, fmt, ids):
    names = parse_fields(spec, GPU_FIELDS, GPU_ALIASES)
    table = gpus()
    holders(table)
    rows = [{"index": g["index"], "uuid": g["uuid"], "name": g["name"], "memory.used": g["used"],
             "memory.total": g["total"], "memory.free": g["total"] - g["used"], "pci.bus_id": g["bus"],
             "driver_version": DRIVER_VERSION, "count": len(table),
             "utilization.gpu": 100 if g["used"] else 0} for g in select(table, ids)]
    return csv(names, GPU_FIELDS, rows, fmt)


def query_apps(spec, fmt, ids):
    names = parse_fields(spec, APP_FIELDS, APP_ALIASES)
    table = gpus()
    chosen = set(g["host"] for g in select(table, ids))
    rows = [{"pid": pid, "process_name": process_name(pid), "gpu_uuid": gpu["uuid"], "gpu_name": gpu["name"],
             "gpu_bus_id": gpu["bus"], "used_memory": used}
            for pid, gpu, used in holders(table) if gpu["host"] in chosen]
    return csv(names, APP_FIELDS, rows, fmt)


def list_gpus(ids):
    return "".join("GPU %d: %s (UUID: %s)\n" % (g["index"], g["name"], g["uuid"]) for g in select(gpus(), ids))


def row(*cells):
    """One line of the table: cells padded to the real layout's column widths (41, 24, 22)."""
    widths = (41, 24, 22) if len(cells) == 3 else (89,)
    return "|" + "|".join(cell[:w].ljust(w) for cell, w in zip(cells, widths)) + "|"


def table_view(ids):
    table = gpus()
    found = holders(table)
    table = select(table, ids)
    rule = "+" + "-" * 89 + "+"
    separator = "+" + "+".join("-" * w for w in (41, 24, 22)) + "+"
    lines = [time.strftime("%a %b %e %H:%M:%S %Y") + "       ", rule,
             row(" NVIDIA-SMI %-22s Driver Version: %-14s CUDA Version: %s"
                 % (DRIVER_VERSION, DRIVER_VERSION, CUDA_VERSION)),
             "|" + separator[1:],
             row(" GPU  Name                 Persistence-M", " Bus-Id          Disp.A", " Volatile Uncorr. ECC"),
             row(" Fan  Temp   Perf          Pwr:Usage/Cap", "           Memory-Usage", " GPU-Util  Compute M."),
             row("", "", "               MIG M."),
             "|" + "+".join("=" * w for w in (41, 24, 22)) + "|"]
    for g in table:
        lines += [row(" %3d  %-30s On  " % (g["index"], g["name"]), ("%s Off" % g["bus"]).rjust(23) + " ",
                      "0".rjust(21) + " "),
                  row(" N/A   27C    P8" + ("%dW /  300W" % (9 if not g["used"] else 58)).rjust(24) + " ",
                      ("%dMiB / %dMiB" % (g["used"], g["total"])).rjust(23) + " ",
                      ("%d%%" % (100 if g["used"] else 0)).rjust(8) + "      Default "),
                  row("", "", "                  N/A"), separator]
    lines += [" " * 91, rule, row(" Processes:"),
              row("  GPU   GI   CI              PID   Type   Process name                        GPU Memory"),
              row("        ID   ID                                                               Usage"),
              "|" + "=" * 89 + "|"]
    shown = dict((g["host"], g) for g in table)
    procs = [(pid, gpu, used) for pid, gpu, used in found if gpu["host"] in shown]
    if not procs:
        lines.append(row("  No running processes found"))
    for pid, gpu, used in procs:
        lines.append(row("  %3d   N/A  N/A  %15d      C   %-35s %9s"
                         % (gpu["index"], pid, process_name(pid)[-35:], "%dMiB" % used)))
    lines.append(rule)
    return "".join(line + "\n" for line in lines)


def version():
    return ("\nNVIDIA-SMI version  : %s\nNVML version        : %s\nDRIVER version      : %s\nCUDA Version        : %s\n"
            % (DRIVER_VERSION, DRIVER_VERSION.rsplit(".", 1)[0], DRIVER_VERSION, CUDA_VERSION))


def parse(argv):
    opts = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        key, has_value, value = arg.partition("=")
        if key in ("--query-gpu", "--query-compute-apps", "--format", "-i", "--id"):
            if not has_value:
                if not args:
                    raise Exit(2, BAD_ARGS)
                value = args.pop(0)
            opts["--id" if key == "-i" else key] = value
        elif arg in ("-L", "--list-gpus", "--version", "-h", "--help"):
            opts[{"-L": "--list-gpus", "-h": "--help"}.get(arg, arg)] = True
        else:
            raise Exit(2, BAD_ARGS)
    return opts


def run(argv):
    opts = parse(argv)
    if "--help" in opts:
        return "NVIDIA System Management Interface -- v%s (lab stand-in)\n" % DRIVER_VERSION
    if "--version" in opts:
        return version()
    if os.path.exists(ETC + "/fail"):
        raise Exit(9, DRIVER_FAILED)
    queries = [k for k in ("--query-gpu", "--query-compute-apps", "--list-gpus") if k in opts]
    if len(queries) > 1 or ("--format" in opts and queries[:1] == ["--list-gpus"]):
        raise Exit(2, BAD_ARGS)
    if queries and queries[0] != "--list-gpus" and "--format" not in opts:
        raise Exit(2, BAD_ARGS)
    if "--query-gpu" in opts:
        return query_gpu(opts["--query-gpu"], opts["--format"], opts.get("--id"))
    if "--query-compute-apps" in opts:
        return query_apps(opts["--query-compute-apps"], opts["--format"], opts.get("--id"))
    if "--list-gpus" in opts:
        return list_gpus(opts.get("--id"))
    if "--format" in opts:
        raise Exit(2, BAD_ARGS)
    return table_view(opts.get("--id"))


def main():
    try:
        sys.stdout.write(run(sys.argv[1:]))
    except Exit as e:
        # nvidia-smi prints its errors on stdout.
        sys.stdout.write(e.text)
        sys.exit(e.code)


if __name__ == "__main__":
    main()
