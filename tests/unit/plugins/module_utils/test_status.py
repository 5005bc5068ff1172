"""status: what a host runs, from the recorded histories and a fake Docker API (the lab host runs the real
one in molecule/default/tests/test_ops.py). Read-only, never an env value, never an exception for a part
that can't be read."""
import json
import os

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import status

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
REPO = "host:5443/llmstack/agent-service"
SECRET = "s3cr3t-value-never-shown"


def entry(seq, status_, digest, tag, **kw):
    e = {"seq": seq, "status": status_, "image": "%s:%s" % (REPO, tag), "digest_ref": "%s@%s" % (REPO, digest),
         "image_id": "sha256:img%d" % seq, "strategy": kw.pop("strategy", "blue_green"),
         "time": "2025-06-0%dT12:00:00Z" % seq, "spec_hash": "hash%d" % seq,
         # What a real entry holds beside: env values never leave the history.
         "spec": {"options": {"env": {"TOKEN": SECRET}}, "env_files": [{"path": "/etc/x.env", "checksum": "c"}]},
         "summary": {"environment": {"TOKEN": "0123456789abcdef"}}}
    if status_ in ("succeeded", "rolled_back"):
        e.update(finished="2025-06-0%dT12:01:00Z" % seq, container_id="c%d" % seq + "0" * 62, slot=kw.pop("slot", "blue"))
    e.update(kw)
    return e


def write_history(state_dir, name, entries, current):
    folder = os.path.join(str(state_dir), "deployments")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + ".json"), "w") as f:
        json.dump({"format": 2, "service": name, "current": current,
                   "deployments": sorted(entries, key=lambda e: -e["seq"])}, f)


def summary(name, cid, service, state="running", digest=D2, mounts=()):
    return {"Id": cid, "Names": ["/" + name], "State": state, "Mounts": list(mounts),
            "Labels": {"llmstack.service": service, "llmstack.image-digest": digest}}


class FakeAPI:
    def __init__(self, containers, health=None):
        self.list, self.health = containers, health or {}

    def containers(self, all=False, filters=None):  # pylint: disable=redefined-builtin
        assert all and filters == {"label": "llmstack.service"}
        return self.list

    def inspect_container(self, cid):
        found = next(c for c in self.list if c["Id"] == cid)
        st = {"Status": found["State"], "ExitCode": 0 if found["State"] == "running" else 137,
              "StartedAt": "2025-06-02T12:00:30Z"}
        if cid in self.health:
            st["Health"] = {"Status": self.health[cid]}
        return {"State": st}


class FakeClient:
    def __init__(self, containers=(), health=None, root="/"):
        self.api = FakeAPI(list(containers), health)
        self.root = root

    def info(self):
        return {"DockerRootDir": self.root}


def no_smi(_name):
    return None


def collect(state_dir, client, **kw):
    kw.setdefault("which", no_smi)
    kw.setdefault("backup_dir", None)
    return status.collect(client, str(state_dir), **kw)


def text(report):
    return "\n".join(report["lines"])


def test_a_rollout_shows_tag_digest_health_last_record_and_the_rollback_target(tmp_path):
    write_history(tmp_path, "agent_service",
                  [entry(1, "succeeded", D1, "1.0.0"), entry(2, "succeeded", D2, "1.0.1", slot="green")], 2)
    client = FakeClient([summary("agent_service-blue", "c1" + "0" * 62, "agent_service", state="exited", digest=D1),
                         summary("agent_service-green", "c2" + "0" * 62, "agent_service")],
                        health={"c2" + "0" * 62: "healthy"})
    report = collect(tmp_path, client)
    s = report["services"][0]
    assert (s["tag"], s["digest"], s["deployment"], s["slot"], s["deployed"]) == (
        "1.0.1", D2, 2, "green", "2025-06-02T12:01:00Z")
    assert s["container"]["name"] == "agent_service-green" and s["container"]["recorded"]
    assert s["last"]["previous_digest"] == D1 and s["last"]["status"] == "succeeded"
    assert s["rollback_to"] == {"deployment": 1, "image": REPO + ":1.0.0", "digest": D1}
    assert report["lines"][:4] == [
        "agent_service: tag 1.0.1, digest sha256:222222222222, deployed 2025-06-02T12:01:00Z (#2, blue_green, slot green)",
        "agent_service: health: agent_service-green running, docker health healthy, seen healthy by its rollout; "
        "last recorded status succeeded",
        "agent_service: last deploy #2 succeeded 2025-06-02T12:01:00Z, 1.0.1 sha256:222222222222, "
        "previous sha256:111111111111",
        "agent_service: a rollback would return to #1, 1.0.0 sha256:111111111111",
    ]


def test_a_failed_rollout_shows_its_error_and_what_still_serves(tmp_path):
    write_history(tmp_path, "agent_service", [
        entry(1, "succeeded", D1, "1.0.0"), entry(2, "succeeded", D2, "1.0.1", slot="green"),
        entry(3, "failed", D3, "1.0.2", error="container agent_service-blue not healthy after 120s\nlog lines")], 2)
    client = FakeClient([summary("agent_service-green", "c2" + "0" * 62, "agent_service")])
    report = collect(tmp_path, client)
    s = report["services"][0]
    assert s["tag"] == "1.0.1" and s["last"]["status"] == "failed" and s["last"]["previous_digest"] == D2
    assert s["rollback_to"] is None  # a rollback would stay on #2, which serves
    assert ("agent_service: last deploy #3 failed 2025-06-03T12:00:00Z, 1.0.2 sha256:333333333333, previous "
            "sha256:222222222222: container agent_service-blue not healthy after 120s") in report["lines"]
    assert "log lines" not in text(report)


def test_a_rollback_names_what_it_rolled_back_from(tmp_path):
    write_history(tmp_path, "postgres", [
        entry(1, "succeeded", D1, "15", strategy="recreate", slot=None),
        entry(2, "rolled_back", D2, "16", strategy="recreate", slot=None),
        entry(3, "succeeded", D1, "15", strategy="recreate", slot=None, rollback_of=2)], 3)
    report = collect(tmp_path, FakeClient([summary("postgres", "c3" + "0" * 62, "postgres", digest=D1)]))
    s = report["services"][0]
    assert s["tag"] == "15" and s["digest"] == D1 and s["rollback_to"] is None  # repeating a rollback stays
    assert ("postgres: last deploy #3 succeeded 2025-06-03T12:01:00Z, 15 sha256:111111111111 (rollback of #2), "
            "previous sha256:222222222222") in report["lines"]


def test_a_container_that_is_not_the_recorded_one_and_a_switch_file_that_disagrees(tmp_path):
    write_history(tmp_path, "agent_service", [entry(1, "succeeded", D1, "1.0.0")], 1)
    switch = tmp_path / "switch"
    switch.mkdir()
    (switch / "agent_service.live").write_text("agent_service_green\n")
    # Someone replaced the blue container by hand; the gateway reads green.
    client = FakeClient([summary("agent_service-green", "ffff" + "0" * 60, "agent_service", digest=D3)])
    report = collect(tmp_path, client, switch_dir=str(switch))
    s = report["services"][0]
    assert s["switch"] == "green" and s["container"]["name"] == "agent_service-green"
    line = report["lines"][1]
    assert "NOT the container deployment #1 started" in line and "runs sha256:333333333333" in line
    assert "the switch file says green" in line


def test_recreate_picks_the_container_by_name_and_reports_an_exit(tmp_path):
    write_history(tmp_path, "vllm", [entry(1, "succeeded", D1, "v0.33.0", strategy="recreate", slot=None)], 1)
    client = FakeClient([summary("vllm", "c1" + "0" * 62, "vllm", state="exited", digest=D1)])
    line = collect(tmp_path, client)["lines"][1]
    assert line == "vllm: health: vllm exited (exit 137), seen healthy by its rollout; last recorded status succeeded"


def test_without_docker_the_history_is_still_reported(tmp_path):
    write_history(tmp_path, "agent_service", [entry(1, "succeeded", D1, "1.0.0")], 1)
    report = collect(tmp_path, None, docker_error="cannot reach the Docker daemon at unix:///var/run/docker.sock")
    assert report["lines"][0].startswith("docker: cannot reach the Docker daemon")
    assert report["lines"][1].startswith("agent_service: tag 1.0.0")
    assert "agent_service: health: no container; last recorded status succeeded" in report["lines"]


def test_a_damaged_history_is_reported_not_raised(tmp_path):
    folder = tmp_path / "deployments"
    folder.mkdir()
    (folder / "vllm.json").write_text("{not json")
    report = collect(tmp_path, FakeClient())
    assert report["services"][0]["error"].startswith("the deployment history")
    assert report["lines"][0].startswith("vllm: the deployment history") and "not valid JSON" in report["lines"][0]


def test_services_come_from_histories_and_labels_in_the_stacks_order(tmp_path):
    for name in ("nginx_gateway", "frontend", "postgres"):
        write_history(tmp_path, name, [entry(1, "succeeded", D1, "1", strategy="recreate", slot=None)], 1)
    client = FakeClient([summary("vllm", "v" * 64, "vllm")])
    assert [s["name"] for s in collect(tmp_path, client)["services"]] == [
        "postgres", "vllm", "nginx_gateway", "frontend"]
    only = collect(tmp_path, client, services=["nginx_gateway", "agent_service"])
    assert [s["name"] for s in only["services"]] == ["agent_service", "nginx_gateway"]
    assert "agent_service: no successful deployment recorded" in only["lines"]
    assert collect(tmp_path / "empty", FakeClient())["lines"][0].startswith("no service deployed")


def test_never_an_env_value(tmp_path):
    write_history(tmp_path, "agent_service", [entry(1, "succeeded", D1, "1.0.0"), entry(2, "succeeded", D2, "1.0.1")], 2)
    report = collect(tmp_path, FakeClient([summary("agent_service-blue", "c2" + "0" * 62, "agent_service")]))
    dumped = json.dumps(report)
    assert SECRET not in dumped and "TOKEN" not in dumped and "0123456789abcdef" not in dumped


def test_volumes_are_measured_once_each_with_their_services(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a").write_bytes(b"x" * 10000)
    os.link(str(data / "a"), str(data / "a-link"))  # counted once, as du does
    os.symlink("/", str(data / "root"))  # not followed
    mount = {"Type": "volume", "Name": "postgres_data", "Source": str(data)}
    client = FakeClient([summary("postgres", "p" * 64, "postgres", mounts=[mount]),
                         summary("backup", "b" * 64, "postgres_tools", mounts=[mount]),
                         summary("other", "o" * 64, "postgres", mounts=[{"Type": "bind", "Source": str(tmp_path / "gone")}])],
                        root=str(tmp_path))
    report = collect(tmp_path, client, services=["postgres"])
    by_name = dict((v["name"], v) for v in report["volumes"])
    assert sorted(by_name) == sorted(["postgres_data", str(tmp_path / "gone")])
    vol = by_name["postgres_data"]
    assert vol["services"] == ["postgres"] and 10000 <= vol["bytes"] < 10000 + 64 * 1024
    assert by_name[str(tmp_path / "gone")]["bytes"] is None  # a bind source that is gone
    assert any(line.startswith("volume postgres_data (postgres): ") and "KiB" in line for line in report["lines"])
    assert report["filesystems"][0]["path"] == str(tmp_path) and report["filesystems"][0]["total"] > 0
    assert [v["bytes"] for v in collect(tmp_path, client, services=["postgres"], disk=False)["volumes"]] == [None, None]
    # A remote daemon's paths are not this host's: nothing is measured.
    assert [v["bytes"] for v in collect(tmp_path, client, services=["postgres"], local=False)["volumes"]] == [None, None]


def test_disk_usage_of_a_file_and_of_nothing(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"y" * 5000)
    assert status.disk_usage(str(f)) >= 5000
    assert status.disk_usage(str(tmp_path / "missing")) is None


def test_backups_count_size_and_the_newest_by_name(tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    (folder / "postgres-20250101T020000Z.dump").write_bytes(b"a" * 1000)
    (folder / "postgres-20250103T020000Z.dump").write_bytes(b"b" * 3000)
    (folder / "postgres-20250102T020000Z.dump").write_bytes(b"c" * 2000)
    (folder / ".postgres-20250104T020000Z.dump.partial").write_bytes(b"d" * 9999)
    (folder / ".lock").write_text("")
    report = collect(tmp_path, FakeClient(), backup_dir=str(folder))
    b = report["backups"]
    assert (b["count"], b["bytes"], b["newest"]["name"], b["newest"]["bytes"]) == (
        3, 6000, "postgres-20250103T020000Z.dump", 3000)
    assert any(line.startswith("backups %s: 3, 5.9 KiB; newest postgres-20250103T020000Z.dump (2.9 KiB, " % folder)
               for line in report["lines"])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "backups %s: none" % empty in collect(tmp_path, FakeClient(), backup_dir=str(empty))["lines"]
    assert "backups %s: none (no such folder)" % (tmp_path / "nope") in collect(
        tmp_path, FakeClient(), backup_dir=str(tmp_path / "nope"))["lines"]


def smi(rc=0, out="0, NVIDIA A10G, 20480, 23028, 97\n1, NVIDIA A10G, 0, 23028, 0\n", err=""):
    calls = []

    def run(argv):
        calls.append(argv)
        return rc, out, err
    run.calls = calls
    return run


def test_gpu_memory_from_nvidia_smi(tmp_path):
    run = smi()
    report = collect(tmp_path, FakeClient(), run=run, which=lambda name: "/usr/bin/" + name)
    assert run.calls == [["nvidia-smi", "--query-gpu=index,name,memory.used,memory.total,utilization.gpu",
                          "--format=csv,noheader,nounits"]]
    assert report["gpus"][0] == {"index": "0", "name": "NVIDIA A10G", "memory_used_mib": 20480,
                                 "memory_total_mib": 23028, "utilization": 97}
    assert report["lines"][-2:] == ["GPU 0 NVIDIA A10G: 20480 / 23028 MiB used (88%)",
                                    "GPU 1 NVIDIA A10G: 0 / 23028 MiB used (0%)"]


def test_gpu_failures_and_absence(tmp_path):
    failing = smi(rc=9, out="", err="NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    report = collect(tmp_path, FakeClient(), run=failing, which=lambda name: "/usr/bin/" + name)
    assert report["gpus"] is None and report["lines"][-1].startswith("GPU: `nvidia-smi --query-gpu=")
    assert "couldn't communicate" in report["lines"][-1]
    never = smi()
    assert collect(tmp_path, FakeClient(), run=never, which=lambda name: "/usr/bin/" + name, gpu_mode="never")["gpus"] is None
    assert never.calls == []
    assert not any(line.startswith("GPU") for line in collect(tmp_path, FakeClient())["lines"])  # auto, no nvidia-smi
    assert collect(tmp_path, FakeClient(), gpu_mode="always")["lines"][-1] == (
        "GPU: nvidia-smi is not on this host's PATH (no NVIDIA driver)")
    na = smi(out="0, NVIDIA A10G, [N/A], [N/A], [N/A]\n")
    assert collect(tmp_path, FakeClient(), run=na, which=lambda n: n)["lines"][-1] == "GPU 0 NVIDIA A10G: ? / ? MiB used"


@pytest.mark.parametrize("image,tag", [
    ("host:5443/a/b:1.0", "1.0"), ("host:5443/a/b", "latest"), ("host:5443/a/b@" + D1, None),
    ("ghcr.io/o/a:1.0@" + D1, "1.0"), ("vllm/vllm-openai:v0.34.0", "v0.34.0"), ("nginx", "latest"), (None, None),
    ("Bad Reference", None)])  # a damaged history never fails the status
def test_tag_of(image, tag):
    assert status.tag_of(image) == tag


def test_human_sizes_and_short_digests():
    assert [status.human(n) for n in (None, 0, 1023, 1536, 5 * 1024 ** 3)] == [
        "unknown", "0 B", "1023 B", "1.5 KiB", "5.0 GiB"]
    assert status.short_digest(D1) == "sha256:111111111111" and status.short_digest(None) is None
