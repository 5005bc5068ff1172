"""state_dir: history with explicit statuses and rollback targets, the lock, the host key."""
import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import state


def deploy(history, image, ok=True, **extra):
    entry = history.begin(dict({"image": image, "image_id": "sha256:" + image, "spec_hash": "h-" + image}, **extra))
    if ok:
        history.succeed(entry, "cid-" + image)
    else:
        history.fail(entry, "boom\nlog lines")
    return entry


def test_pending_before_acting_and_current_only_after_success(tmp_path):
    history = state.History(str(tmp_path), "svc")
    entry = history.begin({"image": "v1"})
    on_disk = state.History(str(tmp_path), "svc")
    assert on_disk.newest["status"] == "pending" and on_disk.current is None
    history.succeed(entry, "cid1")
    on_disk = state.History(str(tmp_path), "svc")
    assert on_disk.current["image"] == "v1" and on_disk.current["container_id"] == "cid1"
    # A pending entry left by a killed run becomes interrupted when the next run begins.
    on_disk.begin({"image": "v2"})
    killed_then = state.History(str(tmp_path), "svc")
    killed_then.begin({"image": "v2"})
    assert [e["status"] for e in killed_then.deployments] == ["pending", "interrupted", "succeeded"]
    assert oct(os.stat(history.path).st_mode)[-3:] == "600"


def test_rollback_target_skips_failed_and_rolled_back(tmp_path):
    history = state.History(str(tmp_path), "svc")
    deploy(history, "v1")
    deploy(history, "v2")
    target, note = history.rollback_target()
    assert target["image"] == "v1" and "from #2 to #1" in note
    back = deploy(history, "v1", rollback_of=2)
    assert history.entry(2)["status"] == "rolled_back"
    # Repeating the rollback stays: the current deployment is already a rollback.
    target, note = history.rollback_target()
    assert target is history.current and target["seq"] == back["seq"] and "already a rollback" in note
    deploy(history, "v3", ok=False)
    # The newest attempt failed: a rollback stays on what serves.
    target, note = history.rollback_target()
    assert target["seq"] == back["seq"] and "failed; staying on #3" in note


def test_rollback_target_needs_an_earlier_good_one(tmp_path):
    history = state.History(str(tmp_path), "svc")
    with pytest.raises(state.StateError, match="nothing to roll back to"):
        history.rollback_target()
    deploy(history, "v1")
    deploy(history, "v2", ok=False)
    deploy(history, "v3")
    target, _note = history.rollback_target()
    assert target["image"] == "v1", "a failed deployment is never a rollback target"


def test_images_to_keep_are_the_newest_good_ones(tmp_path):
    history = state.History(str(tmp_path), "svc")
    for image, ok in (("v1", True), ("v2", True), ("v3", False), ("v4", True)):
        deploy(history, image, ok=ok)
    assert history.images_to_keep(2) == ["sha256:v4", "sha256:v2"]
    assert set(history.image_ids()) == {"sha256:v1", "sha256:v2", "sha256:v3", "sha256:v4"}


def test_previous_is_the_newest_earlier_one_that_served(tmp_path):
    history = state.History(str(tmp_path), "svc")
    first = deploy(history, "v1")
    assert history.previous(first) is None
    deploy(history, "v2")
    failed = deploy(history, "v3", ok=False)
    assert history.previous(failed)["image"] == "v2"
    back = deploy(history, "v1", rollback_of=2)
    # The rolled-back deployment served before the rollback: it counts, a failed one never does.
    assert history.entry(2)["status"] == "rolled_back" and history.previous(back)["seq"] == 2
    assert history.previous(history.entry(2))["seq"] == 1
    pending = history.begin({"image": "v4"})
    assert history.previous(pending)["seq"] == back["seq"]


def test_services_are_the_histories_in_the_folder(tmp_path):
    assert state.History.services(str(tmp_path / "none")) == []
    for name in ("vllm", "agent_service"):
        deploy(state.History(str(tmp_path), name), "v1")
    state.DeployLog(str(tmp_path), "postgres")("a log without a history")
    folder = tmp_path / "deployments"
    for other in (".agent_service.json.x1.tmp", ".hidden.json", "notes.txt", "vllm.json.bad"):
        (folder / other).write_text("{}")
    assert state.History.services(str(tmp_path)) == ["agent_service", "vllm"]


def test_the_current_deployment_is_never_dropped(tmp_path):
    history = state.History(str(tmp_path), "svc", keep=3)
    deploy(history, "good")
    for i in range(5):
        deploy(history, "bad%d" % i, ok=False)
    again = state.History(str(tmp_path), "svc", keep=3)
    assert again.current["image"] == "good" and len(again.deployments) == 4


def test_corrupt_history_says_how_to_recover(tmp_path):
    path = tmp_path / "deployments" / "svc.json"
    path.parent.mkdir()
    path.write_text('{"format": 2, "deployments": [{"seq": ')
    with pytest.raises(state.StateError) as err:
        state.History(str(tmp_path), "svc")
    assert str(path) in str(err.value) and "mv %s %s.bad" % (path, path) in str(err.value)
    path.write_text(json.dumps({"format": 2, "current": 1, "deployments": [{"seq": "x"}]}))
    with pytest.raises(state.StateError, match="damaged entries"):
        state.History(str(tmp_path), "svc")


def test_format_1_history_is_read(tmp_path):
    path = tmp_path / "deployments" / "svc.json"
    path.parent.mkdir()
    old = [{"image": "v2", "image_id": "i2"}, {"image": "v1", "image_id": "i1"}]
    path.write_text(json.dumps({"service": "svc", "current": old[0], "previous": old[1], "deployments": old}))
    history = state.History(str(tmp_path), "svc")
    assert history.current["image"] == "v2" and history.rollback_target()[0]["image"] == "v1"


def test_unwritable_state_dir_is_a_message(tmp_path):
    with pytest.raises(state.StateError, match="cannot create /proc/llmstack"):
        state.ensure_dir("/proc/llmstack/deployments")


def make_key(folder, queue):
    queue.put(state.host_key(folder))


def test_host_key_created_once_even_by_racing_processes(tmp_path):
    assert state.host_key(str(tmp_path / "fresh"), create=False) is None
    assert not (tmp_path / "fresh").exists(), "check mode must not create the folder"
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=make_key, args=(str(tmp_path / "race"), queue)) for _i in range(6)]
    for p in procs:
        p.start()
    keys = set(queue.get(timeout=20) for _p in procs)
    for p in procs:
        p.join()
    assert len(keys) == 1
    assert oct(os.stat(str(tmp_path / "race" / "host.key")).st_mode)[-3:] == "600"
    assert os.listdir(str(tmp_path / "race")) == ["host.key"], "no temp file is left behind"


def test_lock_names_holder_after_timeout(tmp_path):
    lock_path = tmp_path / "locks" / "svc.lock"
    lock_path.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, time\n"
        "fd = os.open(%r, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, b'pid 4242 on elsewhere')\n"
        "print('ok', flush=True)\n"
        "time.sleep(30)\n") % str(lock_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(state.StateError, match="pid 4242 on elsewhere"):
            with state.Lock(str(tmp_path), "svc", timeout=0.3):
                pass
        with pytest.raises(state.StateError, match="pid 4242"):
            with state.Lock(str(tmp_path), "svc", timeout=0.3, shared=True):
                pass  # check mode waits for a rollout in progress too, but never writes
    finally:
        holder.kill()
        holder.wait()
    with state.Lock(str(tmp_path), "svc", timeout=1):
        assert "pid %d" % os.getpid() in lock_path.read_text()


def test_lock_dies_with_its_holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", (
        "import sys; sys.path[:0] = %r\n"
        "from ansible_collections.llmstack.deploy.plugins.module_utils import state\n"
        "import time\n"
        "with state.Lock(%r, 'svc'):\n"
        "    print('held', flush=True); time.sleep(60)\n") % (sys.path, str(tmp_path))], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    proc.kill()
    proc.wait()
    with state.Lock(str(tmp_path), "svc", timeout=1):
        pass


def test_shared_lock_on_a_fresh_host_creates_nothing(tmp_path):
    with state.Lock(str(tmp_path / "none"), "svc", shared=True):
        pass
    assert not (tmp_path / "none").exists()


def test_deploy_log_rotates(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "LOG_MAX_BYTES", 100)
    log = state.DeployLog(str(tmp_path), "svc")
    for i in range(10):
        log("line %d with some words" % i)
    assert os.path.exists(log.path + ".1") and os.path.getsize(log.path) < 200
    quiet = state.DeployLog(str(tmp_path / "check"), "svc", enabled=False)
    quiet("nothing written")
    assert quiet.lines and not (tmp_path / "check").exists()
