# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which processes hold the GPUs a container will get, read from nvidia-smi on the host.

After a kill, vLLM's engine workers can outlive the API process and keep their VRAM (vllm #55510);
a new vLLM on those GPUs then fails with out-of-memory. So before a GPU container starts, the
rollout asks nvidia-smi which processes hold the GPUs it will use.

`run` is a callable taking an argv list and returning (rc, stdout, stderr), such as
AnsibleModule.run_command; `run_command` below is the plain subprocess one.

GpuGuard puts it to use in a rollout: nothing may hold the GPUs before anything is touched, and after
the old container stopped its VRAM must be released before the new one starts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import subprocess
import time

NVIDIA_SMI = "nvidia-smi"


class GpuError(Exception):
    """nvidia-smi is missing or failed, or processes hold the GPUs; the message says which and what to do."""


def run_command(argv):
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        return 127, "", str(e)
    out, err = proc.communicate()
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def query(run, what, fields):
    """Rows of `nvidia-smi --query-<what>=<fields> --format=csv,noheader,nounits` as lists of strings."""
    argv = [NVIDIA_SMI, "--query-%s=%s" % (what, ",".join(fields)), "--format=csv,noheader,nounits"]
    rc, out, err = run(argv)
    if rc != 0:
        text = (err or out or "").strip().splitlines()
        raise GpuError("`%s` failed (exit %s): %s" % (" ".join(argv), rc, text[0] if text else "no output"))
    rows = []
    for line in out.splitlines():
        if line.strip():
            cells = [c.strip() for c in line.split(",")]
            if len(cells) != len(fields):
                raise GpuError("`%s` printed %r, not %d fields" % (" ".join(argv), line, len(fields)))
            rows.append(cells)
    return rows


def wanted(gpus, table):
    """The UUIDs of the GPUs a container with the normalised `gpus` option gets.

    table: [(index, uuid)]. 'all' -> every GPU; {'count': n} -> the first n (Docker's
    NVIDIA_VISIBLE_DEVICES=0,...,n-1); {'device_ids': [...]} -> those, by index or UUID."""
    if not gpus:
        return []
    if gpus == "all":
        return [uuid for _index, uuid in table]
    if "count" in gpus:
        return [uuid for _index, uuid in table[:gpus["count"]]]
    by_index = dict(table)
    uuids = set(uuid for _index, uuid in table)
    found, unknown = [], []
    for ident in gpus["device_ids"]:
        if ident in by_index:
            found.append(by_index[ident])
        elif ident in uuids:
            found.append(ident)
        else:
            unknown.append(ident)
    if unknown:
        raise GpuError("gpus: this host has no GPU %s (nvidia-smi lists %s)"
                       % (", ".join(unknown), ", ".join("%s=%s" % row for row in table) or "none"))
    return found


def holders(run, gpus, ignore_pids=()):
    """[{pid, gpu, uuid, used_mib}] of processes (other than ignore_pids) holding a GPU that `gpus` names."""
    table = [tuple(row) for row in query(run, "gpu", ["index", "uuid"])]
    targets = set(wanted(gpus, table))
    index_of = dict((uuid, index) for index, uuid in table)
    found = []
    for pid, uuid, used in query(run, "compute-apps", ["pid", "gpu_uuid", "used_memory"]):
        if uuid in targets and pid not in ignore_pids:
            found.append({"pid": pid, "gpu": index_of.get(uuid, "?"), "uuid": uuid, "used_mib": used})
    return found


def describe(found):
    """'pid 4242 (GPU 0, 20480 MiB), ...' for an error message."""
    return ", ".join("pid %(pid)s (GPU %(gpu)s, %(used_mib)s MiB)" % h for h in found)


class GpuGuard:
    """The GPUs one service's container gets (`gpus`, normalised), watched through nvidia-smi.

    Only a local daemon's GPUs can be asked about (local=False: nothing is ever found)."""

    def __init__(self, run, gpus, local, service, sleep=time.sleep, clock=time.monotonic):
        self.run, self.gpus, self.local, self.service = run, gpus, local, service
        self.sleep, self.clock = sleep, clock

    def holders(self, ignore_pids=()):
        """Processes other than ignore_pids that hold the GPUs ([] without gpus or for a remote daemon)."""
        if not self.gpus or not self.local:
            return []
        return holders(self.run, self.gpus, ignore_pids=ignore_pids)

    def check_free(self, own_pids=()):
        """Before anything is touched: no process outside the service's own container (own_pids) holds its GPUs."""
        found = self.holders(own_pids)
        if found:
            raise GpuError("gpus: %s hold the GPUs %s would use, and are not its container (a vLLM "
                           "engine worker left by a killed run holds its VRAM until it exits). Stop them "
                           "(kill PID), check with nvidia-smi, then re-run" % (describe(found), self.service))

    def wait_free(self, timeout, log):
        """After the old container stopped: wait until its GPU memory is actually released."""
        start = self.clock()
        while True:
            found = self.holders()
            if not found:
                return
            if self.clock() - start >= timeout:
                raise GpuError("gpus: %s still hold the GPUs %ds after the old container stopped; a new %s "
                               "would fail with out-of-memory. Stop them (kill PID) and re-run"
                               % (describe(found), timeout, self.service))
            log("waiting for the GPUs to be released: %s" % describe(found))
            self.sleep(1)
