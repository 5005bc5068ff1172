"""container_rollout through Ansible against this machine's Docker engine and the lab registry."""
import json
import os
import socket
import subprocess
import time
import uuid

import pytest

import labenv
from helpers import ROLLOUT, Service, http_get, inspect, running_lab_host


def test_first_deploy_then_noop(service, app_images):
    res = service.run(image=app_images["v1"])
    assert res.rc == 0, res.output
    first = res.task()
    assert first["changed"] is True
    assert service.version() == "v1"
    container = inspect(first["container"])
    assert container["Config"]["Labels"]["llmstack.spec-hash"] == first["spec_hash"]
    assert "no-new-privileges" in container["HostConfig"]["SecurityOpt"]
    assert container["HostConfig"]["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
    # The phases are in the result and in the service's deploy log, to follow a long wait.
    assert any("is healthy" in line for line in first["phases"])
    with open(os.path.join(service.state_dir, "deployments", service.name + ".log")) as f:
        assert "is healthy" in f.read()
    # The history says it passed its health check, with the container it saw healthy.
    assert service.current()["status"] == "succeeded" and service.current()["container_id"] == container["Id"]
    assert oct(os.stat(os.path.join(service.state_dir, "deployments", service.name + ".json")).st_mode)[-3:] == "600"

    again = service.run(image=app_images["v1"])
    assert again.rc == 0, again.output
    assert again.task()["changed"] is False
    assert inspect(first["container"])["Id"] == container["Id"], "a no-op must not touch the container"
    assert len(service.history()["deployments"]) == 1, "a no-op records nothing"


def test_env_file_change_and_removed_key_roll_out(service, app_images):
    assert service.run(image=app_images["v1"]).rc == 0
    service.env_file.write_text(service.env_file.read_text().replace("hello", "bonjour"))
    changed = service.run(image=app_images["v1"])
    assert changed.rc == 0, changed.output
    assert changed.task()["changed"] is True
    assert changed.task()["changes"]["env"]["changed"] == ["GREETING"]
    env = inspect(changed.task()["container"])["Config"]["Env"]
    assert "GREETING=bonjour" in env

    # Removing a key is a change too (docker_container misses this without comparisons: strict).
    service.env_file.write_text("GREETING=bonjour\n")
    removed = service.run(image=app_images["v1"])
    assert removed.task()["changed"] is True
    assert removed.task()["changes"]["env"]["removed"] == ["SECRET_TOKEN"]
    assert not any(e.startswith("SECRET_TOKEN=") for e in inspect(removed.task()["container"])["Config"]["Env"])


def test_health_settings_change_restarts_nothing(recreate_service, app_images):
    svc = recreate_service
    first = svc.run(image=app_images["v1"])
    cid = inspect(first.task()["container"])["Id"]
    again = svc.run(image=app_images["v1"], health_timeout=45,
                    healthcheck={"kind": "http", "url": "http://127.0.0.1:{port}/health"})
    assert again.rc == 0 and again.task()["changed"] is False, again.output
    assert inspect(svc.name)["Id"] == cid


def test_failed_versions_keep_the_previous_one_serving(service, app_images):
    assert service.run(image=app_images["v1"]).rc == 0
    v2 = service.run(image=app_images["v2"])
    assert v2.rc == 0, v2.output
    assert service.version() == "v2"

    v3 = service.run(image=app_images["v3"])
    assert v3.rc != 0
    msg = v3.task()["msg"]
    assert "unhealthy" in msg or "not healthy" in msg
    assert "last lines of" in msg and "app v3 config:" in msg, "the new container's log lines belong in the message"
    # The app printed its environment; every env value is redacted before it leaves the host.
    assert service.secret not in v3.output and "SECRET_TOKEN=<redacted>" in msg
    assert service.version() == "v2", "the previous version must be serving after a failed rollout"

    v4 = service.run(image=app_images["v4"])
    assert v4.rc != 0
    assert "exited with code 3" in v4.task()["msg"]
    assert "refusing to start" in v4.task()["msg"]
    assert service.version() == "v2"
    history = service.history()
    assert service.current()["image"].endswith(":v2")
    assert [e["status"] for e in history["deployments"]] == ["failed", "failed", "succeeded", "succeeded"]


def test_rollback_recreates_the_recorded_spec(service, app_images, tmp_path):
    """The rollback task names only the service: digest, env files, env, options and probe come from the record."""
    v1_env = tmp_path / "v1.env"
    v1_env.write_text("GREETING=from-v1\nV1_ONLY=yes\n")
    deploy_v1 = service.run(image=app_images["v1"], env_files=[str(v1_env)], env={"EXTRA": "one"}, memory="256m",
                            labels={"release": "one"}, healthcheck={"kind": "http", "url": "http://127.0.0.1:{port}/health"})
    assert deploy_v1.rc == 0, deploy_v1.output
    deploy_v2 = service.run(image=app_images["v2"], env={"EXTRA": "two"}, memory="128m")
    assert deploy_v2.rc == 0, deploy_v2.output
    assert service.version() == "v2"

    back = service.rollback()
    assert back.rc == 0, back.output
    result = back.task()
    assert result["changed"] is True and result["rollback"]["to"] == 1 and result["rollback"]["from"] == 2
    assert service.version() == "v1"
    container = inspect(service.serving_name())
    env = container["Config"]["Env"]
    assert "GREETING=from-v1" in env and "V1_ONLY=yes" in env and "EXTRA=one" in env
    assert container["HostConfig"]["Memory"] == 256 * 1024 * 1024
    assert container["Config"]["Labels"]["release"] == "one"
    statuses = dict((e["seq"], e["status"]) for e in service.history()["deployments"])
    assert statuses == {3: "succeeded", 2: "rolled_back", 1: "succeeded"}

    again = service.rollback()
    assert again.rc == 0, again.output
    assert again.task()["changed"] is False, "repeating a rollback must not flip back to the bad version"
    assert service.version() == "v1"

    # The values of an env file are never recorded: a changed file is used as it is now, and said so.
    v1_env.write_text("GREETING=edited\nV1_ONLY=yes\n")
    edited = service.rollback(play_args=["-v"])
    assert edited.rc == 0, edited.output
    # The current deployment (#3, the rollback) is what stays; its recorded checksum no longer matches.
    assert "changed since deployment #3" in edited.output and str(v1_env) in edited.output
    assert "GREETING=edited" in inspect(service.serving_name())["Config"]["Env"]
    assert service.version() == "v1"


def test_rollback_after_a_failed_rollout_stays(recreate_service, app_images):
    svc = recreate_service
    assert svc.run(image=app_images["v1"]).rc == 0
    assert svc.run(image=app_images["v2"]).rc == 0
    assert svc.run(image=app_images["v3"]).rc != 0
    # v2 serves (the failed v3 was rolled back automatically); a rollback now keeps v2.
    res = svc.rollback()
    assert res.rc == 0, res.output
    assert res.task()["changed"] is False and "failed; staying on #2" in res.task()["rollback"]["note"]
    assert svc.version() == "v2"


def test_rollback_without_a_previous_good_one(recreate_service, app_images):
    svc = recreate_service
    none = svc.rollback()
    assert none.rc != 0 and "nothing to roll back to" in none.task()["msg"]
    assert svc.run(image=app_images["v1"]).rc == 0
    only = svc.rollback()
    assert only.rc != 0 and "no earlier successful deployment" in only.task()["msg"]
    assert svc.version() == "v1"


@pytest.fixture
def registry_stopped(lab):
    """Stop the lab registry for the test, and bring it back after."""
    pid_file = os.path.join(lab["LAB_DIR"], "registry.pid")
    with open(pid_file) as f:
        os.kill(int(f.read()), 15)
    for _attempt in range(50):
        if subprocess.run(["curl", "-s", "-o", "/dev/null", "https://%s/v2/" % lab["LAB_REGISTRY"]],
                          check=False).returncode != 0:
            break
        time.sleep(0.1)
    yield
    subprocess.run([os.path.join(labenv.ROOT, "tests", "lab", "up")], check=True, capture_output=True)


def test_registry_outage(service, app_images, request):
    assert service.run(image=app_images["v1"]).rc == 0
    assert service.run(image=app_images["v2"]).rc == 0
    before = service.snapshot()
    request.getfixturevalue("registry_stopped")
    # Same tag, nothing else changed: a no-op with a warning, not a failure.
    same = service.run(image=app_images["v2"])
    assert same.rc == 0, same.output
    assert same.task()["changed"] is False
    warnings = " ".join(same.task()["warnings"])
    assert "registry unreachable" in warnings and "can't be reached" in warnings
    # A new tag, or the same tag with a changed env file, needs the registry: refused, nothing touched.
    newer = service.run(image=app_images["v5"])
    assert newer.rc != 0 and "can't be reached" in newer.task()["msg"]
    service.env_file.write_text("GREETING=changed\n")
    changed = service.run(image=app_images["v2"])
    assert changed.rc != 0 and "only a run that changes nothing" in changed.task()["msg"]
    assert service.snapshot() == before
    # A rollback never calls the registry.
    back = service.rollback()
    assert back.rc == 0, back.output
    assert service.version() == "v1"


def test_wrong_password_and_missing_tag_leave_service_alone(recreate_service, app_images):
    svc = recreate_service
    assert svc.run(image=app_images["v1"]).rc == 0
    before = svc.snapshot()
    bad = svc.run(image=app_images["v2"], registry_password="wrong-" + uuid.uuid4().hex)
    assert bad.rc != 0
    assert "login to registry" in bad.task()["msg"] and "unauthorized" in bad.task()["msg"]
    assert svc.lab["LAB_REGISTRY_PASSWORD"] not in bad.output
    missing = svc.run(image="lab/rollout-app:no-such-tag")
    assert missing.rc != 0 and "no-such-tag" in missing.task()["msg"] and "no such image or tag" in missing.task()["msg"]
    assert svc.snapshot() == before


def test_full_image_reference_and_docker_host_and_action_group(recreate_service, app_images, lab, tmp_path):
    svc = recreate_service
    full = "%s/%s" % (lab["LAB_REGISTRY"], app_images["v1"])
    res = svc.run(image=full, registry=None)
    assert res.rc == 0, res.output
    assert res.task()["image"] == full, "a full reference must not get the registry twice"
    before = svc.snapshot()
    clash = svc.run(image="ghcr.io/" + app_images["v2"])
    assert clash.rc != 0 and "names registry ghcr.io but registry is %s" % lab["LAB_REGISTRY"] in clash.task()["msg"]
    assert svc.snapshot() == before, "a registry clash must not touch the running container"

    # DOCKER_HOST is honoured when docker_host is not set.
    nowhere = svc.run(image=full, registry=None, proc_env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert nowhere.rc != 0 and "/nonexistent/docker.sock" in nowhere.task()["msg"]
    assert svc.snapshot() == before

    # group/llmstack.deploy.docker sets state_dir (and the registry) for every Docker-facing module.
    grouped_dir = str(tmp_path / "grouped")
    args = svc.args(image=app_images["v1"])
    del args["state_dir"], args["registry"]
    res = svc.play.run([{ROLLOUT: args, "register": "r"}], module_defaults={
        "group/llmstack.deploy.docker": {"state_dir": grouped_dir, "registry": lab["LAB_REGISTRY"]}})
    assert res.rc == 0, res.output
    assert os.path.exists(os.path.join(grouped_dir, "deployments", svc.name + ".json"))


def test_absent_removes_containers_and_history_keeps_images(service, app_images):
    first = service.run(image=app_images["v1"])
    assert service.run(image=app_images["v2"]).rc == 0
    image_id = first.task()["image_id"]
    check = service.play.run([{ROLLOUT: service.base(state="absent"), "register": "r"}], args=["--check"])
    assert check.rc == 0 and check.task()["changed"] is True and service.containers()
    gone = service.play.run([{ROLLOUT: service.base(state="absent"), "register": "r"}])
    assert gone.rc == 0, gone.output
    assert gone.task()["changed"] is True and service.containers() == []
    assert not os.path.exists(os.path.join(service.state_dir, "deployments", service.name + ".json"))
    assert subprocess.run(["docker", "image", "inspect", image_id], capture_output=True, check=False).returncode == 0
    again = service.play.run([{ROLLOUT: service.base(state="absent"), "register": "r"}])
    assert again.rc == 0 and again.task()["changed"] is False


def test_lock_held_by_another_process(recreate_service, app_images):
    svc = recreate_service
    lock = os.path.join(svc.state_dir, "locks", svc.name + ".lock")
    os.makedirs(os.path.dirname(lock))
    holder = subprocess.Popen(["python3", "-c", (
        "import fcntl, os, sys, time\n"
        "fd = os.open(%r, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, b'pid %%d on test-holder' %% os.getpid())\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n") % lock], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = svc.run(image=app_images["v1"], lock_timeout=2)
        assert res.rc != 0
        assert "pid %d on test-holder" % holder.pid in res.task()["msg"]
        assert inspect(svc.name) is None, "nothing may start while another rollout holds the lock"
    finally:
        holder.kill()
        holder.wait()
    assert svc.run(image=app_images["v1"]).rc == 0


def test_check_mode_and_diff(service, app_images):
    first = service.run(image=app_images["v1"])
    cid = inspect(first.task()["container"])["Id"]
    service.env_file.write_text("GREETING=hi\nSECRET_TOKEN=%s-rotated\n" % service.secret)
    res = service.play.run([{ROLLOUT: service.args(image=app_images["v2"]), "register": "r"}],
                           args=["--check", "--diff", "-v"], callback="default")
    assert res.rc == 0, res.output
    assert "changed:" in res.output
    assert "GREETING" in res.output and "SECRET_TOKEN" in res.output
    assert service.secret not in res.output and "hi" + "\n" not in res.output
    assert inspect(first.task()["container"])["Id"] == cid
    assert service.version() == "v1"
    assert len(service.history()["deployments"]) == 1, "check mode records nothing"


def test_check_mode_with_inputs_changed_reads_no_env_file(service, app_images, tmp_path):
    """A role's env file task changed in check mode, so it wrote nothing: the file on the host is missing (a new
    host) or the old one. With inputs_changed the rollout reads neither and says what the real run would do."""
    missing = str(tmp_path / "not-written-yet.env")
    check = ["--check", "--diff"]
    fresh = service.run(image=app_images["v1"], env_files=[missing], inputs_changed=True, play_args=check)
    assert fresh.rc == 0, fresh.output
    assert fresh.task()["changed"] is True and "would be deployed" in fresh.task()["msg"], fresh.output
    assert not os.path.exists(service.state_dir) and service.containers() == []
    # Such a host may not even have Docker yet (the run would install it): the module does not ask it.
    nowhere = service.run(image=app_images["v1"], env_files=[missing], inputs_changed=True, play_args=check,
                          docker_host="unix:///nonexistent/docker.sock")
    assert nowhere.rc == 0 and nowhere.task()["changed"] is True, nowhere.output

    first = service.run(image=app_images["v1"])
    assert first.rc == 0, first.output
    before = service.snapshot()
    # The env file as it is (the old one): by itself a no-op, but the caller says an input changed.
    assert service.run(image=app_images["v1"], play_args=check).task()["changed"] is False
    for env_files in ([str(service.env_file)], [missing]):
        res = service.run(image=app_images["v1"], env_files=env_files, inputs_changed=True, play_args=check)
        assert res.rc == 0, res.output
        task = res.task()
        assert task["changed"] is True and "would be rolled out again: its inputs changed" in task["msg"]
        assert "would be rolled out again" in task["diff"]["after"] and task["spec_hash"] is None
        assert any("would be rolled out again" in line for line in task["phases"])
        assert service.secret not in res.output
    assert service.snapshot() == before and len(service.history()["deployments"]) == 1, "check mode changes nothing"
    # Outside check mode the spec hash decides: the env file did not change, so neither does the container.
    real = service.run(image=app_images["v1"], inputs_changed=True)
    assert real.rc == 0 and real.task()["changed"] is False and "msg" not in real.task(), real.output


def present(image_id):
    return subprocess.run(["docker", "image", "inspect", image_id], capture_output=True, check=False).returncode == 0


def test_prune_keeps_last_good_and_what_others_need(play, lab, tmp_path, app_images):
    """keep_images=2 prunes the third-newest good image and a failed rollout's image, but never one another
    service's history needs for its rollback. Both services share one state_dir, as on a host."""
    a = Service(play, lab, tmp_path, "recreate")
    b = Service(play, lab, tmp_path, "recreate")
    try:
        ids = {}
        for version in ("v1", "v2"):
            res = b.run(image=app_images[version])
            assert res.rc == 0, res.output
        for version in ("v1", "v2", "v3", "v5"):
            res = a.run(image=app_images[version], keep_images=2)
            assert (res.rc != 0) == (version == "v3"), res.output
            ids[version] = res.task().get("image_id") or next(
                e["image_id"] for e in a.history()["deployments"] if e["image"].endswith(":" + version))
        assert present(ids["v5"]) and present(ids["v2"]), "the last 2 good deployments' images stay"
        assert not present(ids["v3"]), "a failed rollout's image is pruned"
        assert present(ids["v1"]), "service b can still roll back to v1: its image stays"
    finally:
        a.cleanup()
        b.cleanup()


@pytest.fixture(scope="module")
def dind_host(lab):
    """An EC2 stand-in with its own Docker engine and Debian's python3-docker 5.x."""
    with running_lab_host(lab, "llmstack-it-host") as name:
        yield name


def test_on_a_host_with_distro_docker_sdk(play, lab, tmp_path, app_images, dind_host):
    sdk = subprocess.run(["docker", "exec", dind_host, "python3", "-c", "import docker; print(docker.__version__)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert sdk.startswith("5."), "the lab host should carry Debian's python3-docker 5.x, has %s" % sdk
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n"
                         % dind_host)
    port = 8100

    def rollout(version, **over):
        args = {"name": "agent_service", "image": app_images[version], "registry": lab["LAB_REGISTRY_FROM_HOSTS"],
                "registry_username": lab["LAB_REGISTRY_USER"], "registry_password": lab["LAB_REGISTRY_PASSWORD"],
                "ports": ["127.0.0.1:%d:8000" % port], "health_timeout": 20, "stop_timeout": 5,
                "healthcheck": {"kind": "http", "url": "http://127.0.0.1:%d/health" % port, "interval": 0.5}}
        args.update(over)
        return play.run([{ROLLOUT: args, "register": "r"}], hosts="all", inventory=str(inventory))

    def serving():
        out = subprocess.run(["docker", "exec", dind_host, "python3", "-c",
                              "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:%d/').read().decode())"
                              % port], capture_output=True, text=True, check=True).stdout
        return json.loads(out)["version"]

    first = rollout("v1")
    assert first.rc == 0, first.output
    assert serving() == "v1"
    assert rollout("v1").task()["changed"] is False
    assert rollout("v2").rc == 0 and serving() == "v2"
    failed = rollout("v3")
    assert failed.rc != 0 and "HTTP 500" in failed.task()["msg"]
    assert serving() == "v2"
    assert lab["LAB_REGISTRY_PASSWORD"] not in failed.output + first.output
    # Check mode on this fresh host creates nothing, not even the state folder.
    fresh = play.run([{ROLLOUT: dict(name="other", image=app_images["v1"], registry=lab["LAB_REGISTRY_FROM_HOSTS"],
                                     registry_username=lab["LAB_REGISTRY_USER"],
                                     registry_password=lab["LAB_REGISTRY_PASSWORD"], state_dir="/srv/llmstack-fresh"),
                       "register": "r"}], hosts="all", inventory=str(inventory), args=["--check"])
    assert fresh.rc == 0 and fresh.task()["changed"] is True, fresh.output
    assert subprocess.run(["docker", "exec", dind_host, "test", "-e", "/srv/llmstack-fresh"], check=False).returncode == 1


def test_clear_errors_daemon_port_and_name_conflicts(recreate_service, app_images):
    svc = recreate_service
    res = svc.run(image=app_images["v1"], docker_host="unix:///nonexistent/docker.sock")
    assert res.rc != 0 and "cannot reach the Docker daemon" in res.task()["msg"]

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", svc.ports["single"]))
        busy.listen()
        res = svc.run(image=app_images["v1"])
        assert res.rc != 0 and "already in use" in res.task()["msg"], res.task()["msg"]
    assert inspect(svc.name) is None, "a failed start leaves no half-made container"

    stranger = subprocess.run(["docker", "run", "-d", "--name", svc.name, "--label", "llmstack-lab=1",
                               "llmstack-lab/debian:bookworm", "sleep", "300"],
                              capture_output=True, text=True, check=True).stdout.strip()
    try:
        res = svc.run(image=app_images["v1"])
        assert res.rc != 0 and "not managed as service" in res.task()["msg"]
        assert inspect(svc.name)["Id"] == stranger and inspect(svc.name)["State"]["Running"]
    finally:
        subprocess.run(["docker", "rm", "-f", stranger], capture_output=True, check=False)


def test_run_options_reach_the_container(recreate_service, app_images, tmp_path):
    svc = recreate_service
    network = "llmstack-it-net-%s" % uuid.uuid4().hex[:6]
    subprocess.run(["docker", "network", "create", "--label", "llmstack-lab=1", network], check=True, capture_output=True)
    data = tmp_path / "data"
    data.mkdir()
    try:
        res = svc.run(image=app_images["v1"], networks=[{"name": network, "aliases": ["agent", "agent-v1"]}],
                      volumes=["%s:/data:ro" % data], memory="256m", cpus=0.5, shm_size="64m", user="65534:65534",
                      read_only=True, ipc_mode="private", labels={"team": "llm"}, env={"EXTRA": "1"},
                      command=["python3", "/app/app.py"])
        assert res.rc == 0, res.output
        c = inspect(res.task()["container"])
        host = c["HostConfig"]
        assert host["Memory"] == 256 * 1024 * 1024 and host["NanoCpus"] == 500000000
        assert host["ShmSize"] == 64 * 1024 * 1024 and host["ReadonlyRootfs"] is True and host["IpcMode"] == "private"
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert c["Config"]["User"] == "65534:65534" and c["Config"]["Labels"]["team"] == "llm"
        assert "EXTRA=1" in c["Config"]["Env"]
        assert any(m["Destination"] == "/data" and m["RW"] is False for m in c["Mounts"])
        aliases = c["NetworkSettings"]["Networks"][network]["Aliases"]
        assert "agent" in aliases and "agent-v1" in aliases
        assert svc.version() == "v1"
        assert http_get(svc.ports["single"], "/health")["status"] == "ok"
    finally:
        svc.cleanup()
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)
