# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host of the stack runs, read and summarised without changing anything.

Per service (from <state_dir>/deployments/<name>.json, read through state.History, and the containers
labelled llmstack.service=<name>): the image, tag and digest deployed, when, the serving container's
state and Docker health, whether it is the container the rollout saw healthy, the newest deploy record
(status, when, the digest that served before it) and where a rollback would go. Then the disk use of
the folders and volumes the stack's containers mount, the PostgreSQL backups (count, size, newest),
free space where Docker and the backups live, and GPU memory from nvidia-smi (gpu.py) on a GPU host.

Never an env value: env files are not read, and of a history entry only its image, digest, times,
status, slot and error line (redacted by the rollout when it was recorded) are used. A part that can't
be read (no Docker daemon, a damaged history, nvidia-smi failing) is reported in its place, never raised:
a status is most useful exactly when something is wrong.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import fnmatch
import os
import shutil
import stat
import time

from ansible_collections.llmstack.deploy.plugins.module_utils import docker_client as dc
from ansible_collections.llmstack.deploy.plugins.module_utils import gpu, heal, image_ref, state, switch
from ansible_collections.llmstack.deploy.plugins.module_utils import spec as specs

# The stack's services in the order they depend on each other (single_host.yml's order); others follow by name.
ORDER = ("postgres", "vllm", "ollama", "agent_service", "nginx_gateway")
BACKUP_PATTERN = "postgres-*.dump"
GPU_FIELDS = ["index", "name", "memory.used", "memory.total", "utilization.gpu"]
ERROR_CHARS = 200


def human(size):
    """1536 -> '1.5 KiB'; None -> 'unknown'."""
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024.0


def short_digest(digest):
    """'sha256:6730589a4957...' -> 'sha256:6730589a4957' (12 hex digits, as docker prints ids)."""
    if not digest:
        return None
    algorithm, _sep, value = digest.partition(":")
    return "%s:%s" % (algorithm, value[:12]) if value else digest[:19]


def digest_of(digest_ref):
    return digest_ref.split("@", 1)[1] if digest_ref and "@" in digest_ref else None


def tag_of(image):
    """The tag of a reference ('host:5443/org/app:1.0' -> '1.0', a port is not a tag); None for a digest reference
    and for what is no valid reference (a status never fails on a damaged history)."""
    try:
        return image_ref.parse(image).effective_tag if image else None
    except ValueError:
        return None


def when_of(entry):
    return entry.get("finished") or entry.get("time") if entry else None


def first_line(text, limit=ERROR_CHARS):
    line = (text or "").strip().splitlines()
    return line[0][:limit] if line else None


# ------------------------------------------------------------------------- disk

def disk_usage(path):
    """Bytes on disk under path, as `du -s` counts them (allocated blocks, hard links once, symlinks
    not followed, other file systems included). None if path can't be read at all."""
    try:
        top = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(top.st_mode):
        return top.st_blocks * 512
    seen, total = set(), top.st_blocks * 512
    for root, dirs, files in os.walk(path, onerror=lambda _e: None):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def filesystem(path):
    """{'path', 'free', 'total', 'device'} of the file system holding path (its nearest existing parent)."""
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        st = os.statvfs(probe)
        device = os.stat(probe).st_dev
    except OSError:
        return None
    return {"path": path, "free": st.f_bavail * st.f_frsize, "total": st.f_blocks * st.f_frsize, "device": device}


def backups(folder, pattern=BACKUP_PATTERN):
    """The backups in folder: {'dir', 'exists', 'count', 'bytes', 'newest': {'name', 'bytes', 'time'}}.

    Backup names carry a UTC timestamp (postgres-20250101T020000Z.dump), so the last in order is the newest,
    as the restore picks it; partial files of a running backup (.postgres-*.partial) do not count."""
    report = {"dir": folder, "exists": os.path.isdir(folder), "count": 0, "bytes": 0, "newest": None}
    if not report["exists"]:
        return report
    try:
        names = sorted(n for n in os.listdir(folder) if fnmatch.fnmatch(n, pattern))
    except OSError as e:
        report["error"] = "cannot list %s: %s" % (folder, e.strerror or e)
        return report
    files = []
    for name in names:
        try:
            st = os.stat(os.path.join(folder, name))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            files.append((name, st))
    report["count"] = len(files)
    report["bytes"] = sum(st.st_size for _name, st in files)
    if files:
        name, st = files[-1]
        report["newest"] = {"name": name, "bytes": st.st_size,
                            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))}
    return report


# ------------------------------------------------------------------------- GPUs

def gpus(run):
    """[{index, name, memory_used_mib, memory_total_mib, utilization}] from nvidia-smi (GpuError if it fails)."""
    found = []
    for index, name, used, total, util in gpu.query(run, "gpu", GPU_FIELDS):
        found.append({"index": index, "name": name, "memory_used_mib": _int(used), "memory_total_mib": _int(total),
                      "utilization": _int(util)})
    return found


def _int(text):
    try:
        return int(float(text))
    except (TypeError, ValueError):
        return None  # [N/A] on some boards


# ----------------------------------------------------------------------- services

def service_names(state_dir, containers=()):
    """Services with a deployment history in state_dir, or a container labelled as one."""
    names = set(state.History.services(state_dir))
    for summary in containers:
        name = (summary.get("Labels") or {}).get(specs.LABEL_SERVICE)
        if name:
            names.add(name)
    return ordered(names)


def ordered(names):
    return sorted(set(names), key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def container_name(summary):
    names = summary.get("Names") or []
    return names[0].lstrip("/") if names else summary.get("Id", "")[:12]


def pick_container(name, strategy, current, switch_slot, containers):
    """The summary of the container that serves the service (None if there is none)."""
    if not containers:
        return None
    wanted = current.get("container_id") if current else None
    for summary in containers:
        if wanted and summary.get("Id") == wanted:
            return summary
    by_name = dict((container_name(s), s) for s in containers)
    if strategy == "blue_green" or any(n.startswith(name + "-") for n in by_name):
        for slot in [s for s in (switch_slot,) if s in switch.SLOTS] + list(switch.SLOTS):
            found = by_name.get("%s-%s" % (name, slot))
            if found is not None and (slot == switch_slot or found.get("State") == "running"):
                return found
    if name in by_name:
        return by_name[name]
    running = [s for s in containers if s.get("State") == "running"]
    return (running or containers)[0]


def container_status(client, summary, current):
    """{name, id, state, exit_code, health, started, digest, recorded} of one container (inspect)."""
    info = {"name": container_name(summary), "id": summary.get("Id", "")[:12], "state": summary.get("State"),
            "exit_code": None, "health": None, "started": None,
            "digest": (summary.get("Labels") or {}).get(specs.LABEL_DIGEST),
            "recorded": bool(current and current.get("container_id") == summary.get("Id"))}
    try:
        with dc.call("inspect container %s" % info["name"]):
            attrs = client.api.inspect_container(summary["Id"])
    except dc.DockerError as e:
        info["error"] = str(e)
        return info
    st = attrs.get("State") or {}
    info.update(state=st.get("Status") or info["state"], exit_code=st.get("ExitCode"),
                health=(st.get("Health") or {}).get("Status"), started=st.get("StartedAt"))
    return info


def service_status(client, state_dir, name, containers, switch_dir=None):
    """One service's status (see the module's RETURN); client None when Docker can't be reached."""
    report = {"name": name, "strategy": None, "image": None, "tag": None, "digest": None, "deployed": None,
              "deployment": None, "slot": None, "switch": None, "container": None, "last": None, "rollback_to": None,
              "history": os.path.join(state_dir, "deployments", "%s.json" % name), "error": None,
              "heal_restarts": heal.read_counts(state_dir).get(name)}
    history = current = None
    try:
        history = state.History(state_dir, name)
    except state.StateError as e:
        report["error"] = str(e)
    if history is not None and history.exists:
        current = history.current
        newest = history.newest
        if current is not None:
            report.update(strategy=current.get("strategy"), image=current.get("image"), tag=tag_of(current.get("image")),
                          digest=digest_of(current.get("digest_ref")), deployed=when_of(current),
                          deployment=current["seq"], slot=current.get("slot"))
        if newest is not None:
            previous = history.previous(newest)
            report["last"] = {
                "deployment": newest["seq"], "status": newest["status"], "time": when_of(newest),
                "image": newest.get("image"), "digest": digest_of(newest.get("digest_ref")),
                "rollback_of": newest.get("rollback_of"), "error": first_line(newest.get("error")),
                "previous_digest": digest_of(previous.get("digest_ref")) if previous else None,
                "previous_image": previous.get("image") if previous else None}
            report["strategy"] = report["strategy"] or newest.get("strategy")
        try:
            target, _note = history.rollback_target()
            if current is not None and target is not current:
                report["rollback_to"] = {"deployment": target["seq"], "image": target.get("image"),
                                         "digest": digest_of(target.get("digest_ref"))}
        except state.StateError:
            pass
    if switch_dir:
        switch_file = switch.SwitchFile.in_folder(switch_dir, name)
        if report["strategy"] == "blue_green" or os.path.exists(switch_file.path):
            report["switch"] = switch_file.peek()
    if client is not None:
        serving = pick_container(name, report["strategy"], current, report["switch"], containers)
        if serving is not None:
            report["container"] = container_status(client, serving, current)
    return report


# ------------------------------------------------------------------------ report

def collect(client, state_dir, services=None, backup_dir=None, switch_dir=None, disk=True, gpu_mode="auto",
            run=gpu.run_command, which=shutil.which, docker_error=None, local=True):
    """The whole report (the module's RETURN values and `lines`). client None: Docker could not be reached
    (docker_error says why); local False: the daemon is remote, so its paths can't be measured here."""
    report = {"state_dir": state_dir, "docker": {"error": docker_error, "root": None}, "services": [],
              "volumes": [], "backups": None, "filesystems": [], "gpus": None, "gpu_error": None}
    containers = []
    if client is not None:
        try:
            containers = dc.labelled(client, specs.LABEL_SERVICE)
        except dc.DockerError as e:
            report["docker"]["error"] = str(e)
            client = None
    names = ordered(services) if services else service_names(state_dir, containers)
    for name in names:
        mine = [c for c in containers if (c.get("Labels") or {}).get(specs.LABEL_SERVICE) == name]
        report["services"].append(service_status(client, state_dir, name, mine, switch_dir))
    if client is not None:
        report["volumes"] = volumes(containers, names, disk and local)
        if local:
            try:
                with dc.call("docker info"):
                    report["docker"]["root"] = client.info().get("DockerRootDir")
            except dc.DockerError:
                pass
    if backup_dir:
        report["backups"] = backups(backup_dir)
    seen = set()
    for path in [report["docker"]["root"], backup_dir, state_dir]:
        fs = filesystem(path) if path and (local or path != report["docker"]["root"]) else None
        if fs is not None and fs["device"] not in seen:
            seen.add(fs["device"])
            report["filesystems"].append(dict((k, v) for k, v in fs.items() if k != "device"))
    if gpu_mode != "never":
        if which(gpu.NVIDIA_SMI):
            try:
                report["gpus"] = gpus(run)
            except gpu.GpuError as e:
                report["gpu_error"] = str(e)
        elif gpu_mode == "always":
            report["gpu_error"] = "%s is not on this host's PATH (no NVIDIA driver)" % gpu.NVIDIA_SMI
    report["lines"] = lines(report)
    return report


def volumes(containers, names, measure):
    """The folders and volumes the services' containers mount, once each, with their disk use."""
    found = {}
    for summary in containers:
        service = (summary.get("Labels") or {}).get(specs.LABEL_SERVICE)
        if service not in names:
            continue
        for mount in summary.get("Mounts") or []:
            source = mount.get("Source")
            if not source:
                continue
            entry = found.setdefault(source, {"name": mount.get("Name") if mount.get("Type") == "volume" else source,
                                              "type": mount.get("Type"), "source": source, "bytes": None,
                                              "services": []})
            if service not in entry["services"]:
                entry["services"].append(service)
    result = sorted(found.values(), key=lambda v: (ORDER.index(v["services"][0]) if v["services"][0] in ORDER
                                                   else len(ORDER), v["name"]))
    if measure:
        for entry in result:
            entry["bytes"] = disk_usage(entry["source"])
    return result


def lines(report):
    """The short readable summary: a few lines per service, then disk, backups and GPUs."""
    out = []
    if report["docker"]["error"]:
        out.append("docker: %s" % report["docker"]["error"])
    if not report["services"]:
        out.append("no service deployed (no history in %s/deployments)" % report["state_dir"])
    for s in report["services"]:
        out.extend(service_lines(s))
    for v in report["volumes"]:
        out.append("volume %s (%s): %s" % (v["name"], ", ".join(v["services"]), human(v["bytes"])))
    b = report["backups"]
    if b is not None:
        if not b["exists"]:
            out.append("backups %s: none (no such folder)" % b["dir"])
        elif b.get("error"):
            out.append("backups %s: %s" % (b["dir"], b["error"]))
        elif not b["count"]:
            out.append("backups %s: none" % b["dir"])
        else:
            n = b["newest"]
            out.append("backups %s: %d, %s; newest %s (%s, %s)" % (b["dir"], b["count"], human(b["bytes"]), n["name"],
                                                                   human(n["bytes"]), n["time"]))
    for fs in report["filesystems"]:
        out.append("disk %s: %s free of %s" % (fs["path"], human(fs["free"]), human(fs["total"])))
    if report["gpu_error"]:
        out.append("GPU: %s" % report["gpu_error"])
    for g in report["gpus"] or []:
        used, total = g["memory_used_mib"], g["memory_total_mib"]
        share = " (%d%%)" % (100 * used // total) if used is not None and total else ""
        out.append("GPU %s %s: %s / %s MiB used%s" % (g["index"], g["name"], used if used is not None else "?",
                                                      total if total is not None else "?", share))
    return out


def service_lines(s):
    name = s["name"]
    out = []
    if s["error"]:
        out.append("%s: %s" % (name, s["error"]))
    if s["deployment"] is not None:
        where = s["strategy"] or "?"
        if s["slot"]:
            where += ", slot %s" % s["slot"]
        out.append("%s: tag %s, digest %s, deployed %s (#%d, %s)" % (
            name, s["tag"] or "-", short_digest(s["digest"]) or "?", s["deployed"], s["deployment"], where))
    elif not s["error"]:
        out.append("%s: no successful deployment recorded" % name)
    c = s["container"]
    if c is None:
        health = "no container"
    else:
        health = "%s %s" % (c["name"], c["state"] or "?")
        if c["state"] == "exited" and c["exit_code"] is not None:
            health += " (exit %s)" % c["exit_code"]
        if c["health"]:
            health += ", docker health %s" % c["health"]
        if c["recorded"]:
            health += ", seen healthy by its rollout"
        elif s["deployment"] is not None:
            health += ", NOT the container deployment #%d started and saw healthy" % s["deployment"]
        if s["digest"] and c["digest"] and c["digest"] != s["digest"]:
            health += ", runs %s" % short_digest(c["digest"])
    if s["switch"] not in (None, s["slot"]):
        health += "; the switch file says %s" % s["switch"]
    last = s["last"]
    if last is not None:
        health += "; last recorded status %s" % last["status"]
    out.append("%s: health: %s" % (name, health))
    if last is not None:
        text = "%s: last deploy #%d %s %s, %s %s" % (
            name, last["deployment"], last["status"], last["time"], tag_of(last["image"]) or "-",
            short_digest(last["digest"]) or "?")
        if last["rollback_of"]:
            text += " (rollback of #%d)" % last["rollback_of"]
        text += ", previous %s" % (short_digest(last["previous_digest"]) if last["previous_digest"] else "none")
        if last["error"] and last["status"] != state.SUCCEEDED:
            text += ": %s" % last["error"]
        out.append(text)
    if s["heal_restarts"]:
        h = s["heal_restarts"]
        out.append("%s: restarted %d time%s by self-healing, last %s (%s)" % (
            name, h["count"], "" if h["count"] == 1 else "s", h.get("last"), h.get("container")))
    if s["rollback_to"]:
        r = s["rollback_to"]
        out.append("%s: a rollback would return to #%d, %s %s" % (name, r["deployment"], tag_of(r["image"]) or "-",
                                                                  short_digest(r["digest"]) or "?"))
    return out
