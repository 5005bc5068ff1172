"""container_rollout through Ansible against this machine's Docker engine and the lab registry."""
import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

import labenv

MODULE = "llmstack.deploy.container_rollout"


def get(port, path="/"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as resp:
        return json.loads(resp.read())


def inspect(name):
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=False)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


class Service:
    """One service under test: a unique name, its own state dir and ports, cleaned up after."""

    def __init__(self, play, lab, tmp_path, strategy):
        self.play, self.lab, self.strategy = play, lab, strategy
        self.name = "it_%s" % uuid.uuid4().hex[:8]
        self.state_dir = str(tmp_path / "state")
        self.env_file = tmp_path / "app.env"
        self.env_file.write_text("GREETING=hello\nSECRET_TOKEN=tok-%s\n" % uuid.uuid4().hex)
        self.ports = {"blue": labenv.free_port(), "green": labenv.free_port(), "single": labenv.free_port()}
        self.switch_file = str(tmp_path / "live")

    def args(self, **over):
        args = {"name": self.name, "strategy": self.strategy, "registry": self.lab["LAB_REGISTRY"],
                "registry_username": self.lab["LAB_REGISTRY_USER"],
                "registry_password": self.lab["LAB_REGISTRY_PASSWORD"],
                "env_files": [str(self.env_file)], "state_dir": self.state_dir,
                "health_timeout": 30, "stop_timeout": 5, "drain_seconds": 5, "switch_settle": 0.2}
        if self.strategy == "blue_green":
            args["slots"] = dict((s, {"ports": ["127.0.0.1:%d:8000" % self.ports[s]]}) for s in ("blue", "green"))
            args["switch_file"] = self.switch_file
        else:
            args["ports"] = ["127.0.0.1:%d:8000" % self.ports["single"]]
        args.update(over)
        return args

    def run(self, play_args=(), **over):
        return self.play.run([{MODULE: self.args(**over), "register": "r"}], args=play_args)

    def serving_port(self):
        if self.strategy == "recreate":
            return self.ports["single"]
        with open(self.switch_file) as f:
            return self.ports[f.read().strip().rsplit("_", 1)[1]]

    def version(self):
        return get(self.serving_port())["version"]

    def cleanup(self):
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", "label=llmstack.service=" + self.name],
                             capture_output=True, text=True, check=False).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f"] + ids, capture_output=True, check=False)


@pytest.fixture(params=["recreate", "blue_green"])
def service(request, play, lab, tmp_path, app_images):
    svc = Service(play, lab, tmp_path, request.param)
    yield svc
    svc.cleanup()


@pytest.fixture
def recreate_service(play, lab, tmp_path, app_images):
    svc = Service(play, lab, tmp_path, "recreate")
    yield svc
    svc.cleanup()


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

    start = time.monotonic()
    again = service.run(image=app_images["v1"])
    elapsed = time.monotonic() - start
    assert again.rc == 0, again.output
    assert again.task()["changed"] is False
    assert inspect(first["container"])["Id"] == container["Id"], "a no-op must not touch the container"
    assert elapsed < 30


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


def test_v2_rollout_then_v3_and_v4_roll_back(service, app_images):
    assert service.run(image=app_images["v1"]).rc == 0
    v2 = service.run(image=app_images["v2"])
    assert v2.rc == 0, v2.output
    assert service.version() == "v2"

    v3 = service.run(image=app_images["v3"])
    assert v3.rc != 0
    msg = v3.task()["msg"]
    assert "unhealthy" in msg or "not healthy" in msg
    assert "last lines of" in msg
    assert service.version() == "v2", "the previous version must be serving after a failed rollout"

    v4 = service.run(image=app_images["v4"])
    assert v4.rc != 0
    assert "exited with code 3" in v4.task()["msg"]
    assert "refusing to start" in v4.task()["msg"], "the new container's log lines belong in the message"
    assert service.version() == "v2"
    # The record still names v2 as current.
    record = json.load(open(os.path.join(service.state_dir, "deployments", service.name + ".json")))
    assert record["current"]["image"].endswith(":v2") and record["previous"]["image"].endswith(":v1")


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


def test_rollback_with_registry_stopped(service, app_images, request):
    assert service.run(image=app_images["v1"]).rc == 0
    assert service.run(image=app_images["v2"]).rc == 0
    request.getfixturevalue("registry_stopped")
    # Same arguments as a normal run (credentials included): a rollback never calls the registry.
    res = service.run(state="rolled_back", image=None)
    assert res.rc == 0, res.output
    assert res.task()["changed"] is True
    assert service.version() == "v1"
    again = service.run(state="rolled_back", image=None)
    assert again.rc == 0, again.output
    assert service.version() == "v2", "a second rollback returns to the version rolled back from"
    pulled = service.run(image=app_images["v5"])
    assert pulled.rc != 0 and "login to registry" in pulled.task()["msg"], "a new version does need the registry"
    assert service.version() == "v2"


def test_wrong_password_and_missing_tag_leave_service_alone(recreate_service, app_images):
    svc = recreate_service
    first = svc.run(image=app_images["v1"])
    before = inspect(first.task()["container"])["Id"]
    bad = svc.run(image=app_images["v2"], registry_password="wrong-" + uuid.uuid4().hex)
    assert bad.rc != 0
    assert "login to registry" in bad.task()["msg"] and "unauthorized" in bad.task()["msg"]
    assert svc.lab["LAB_REGISTRY_PASSWORD"] not in bad.output
    missing = svc.run(image="lab/rollout-app:no-such-tag")
    assert missing.rc != 0 and "no-such-tag" in missing.task()["msg"]
    assert inspect(first.task()["container"])["Id"] == before
    assert svc.version() == "v1"


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
    secret = service.env_file.read_text().split("SECRET_TOKEN=")[1].strip()
    service.env_file.write_text("GREETING=hi\nSECRET_TOKEN=%s-rotated\n" % secret)
    res = service.play.run([{MODULE: service.args(image=app_images["v2"]), "register": "r"}],
                           args=["--check", "--diff", "-v"], callback="default")
    assert res.rc == 0, res.output
    assert "changed:" in res.output
    assert "GREETING" in res.output and "SECRET_TOKEN" in res.output
    assert secret not in res.output and "hi" + "\n" not in res.output
    assert inspect(first.task()["container"])["Id"] == cid
    assert service.version() == "v1"


def test_prune_keeps_last_n_images(recreate_service, app_images):
    svc = recreate_service
    ids = {}
    for version in ("v1", "v2", "v5"):
        res = svc.run(image=app_images[version], keep_images=2)
        assert res.rc == 0, res.output
        ids[version] = res.task()["image_id"]
    assert len(set(ids.values())) == 3

    def present(image_id):
        return subprocess.run(["docker", "image", "inspect", image_id], capture_output=True, check=False).returncode == 0
    assert present(ids["v5"]) and present(ids["v2"]), "the last 2 deployments' images stay for rollbacks"
    assert not present(ids["v1"]), "the image of the third-newest deployment must be pruned"


@pytest.fixture(scope="module")
def dind_host(lab):
    """An EC2 stand-in with its own Docker engine and Debian's python3-docker 5.x."""
    name = "llmstack-it-host-%s" % uuid.uuid4().hex[:6]
    subprocess.run(["docker", "run", "-d", "--name", name, "--hostname", name, "--label", "llmstack-lab=1",
                    "--cap-add=ALL", "--cap-drop=SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
                    "--security-opt", "apparmor=unconfined", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                    "--tmpfs", "/run", "--tmpfs", "/run/lock", "-v", name + ":/var/lib/docker",
                    lab["LAB_HOST_IMAGE"]], check=True, capture_output=True)
    try:
        for _attempt in range(120):
            if subprocess.run(["docker", "exec", name, "docker", "info"], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.5)
        else:
            pytest.fail("docker did not start inside %s" % name)
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, check=False)


def test_on_a_host_with_distro_docker_sdk(play, lab, tmp_path, app_images, dind_host):
    sdk = subprocess.run(["docker", "exec", dind_host, "python3", "-c", "import docker; print(docker.__version__)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert sdk.startswith("5."), "the lab host should carry Debian's python3-docker 5.x, has %s" % sdk
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n"
                         % dind_host)
    port = 8100

    def rollout(version):
        args = {"name": "agent_service", "image": app_images[version], "registry": lab["LAB_REGISTRY_FROM_HOSTS"],
                "registry_username": lab["LAB_REGISTRY_USER"], "registry_password": lab["LAB_REGISTRY_PASSWORD"],
                "ports": ["127.0.0.1:%d:8000" % port], "health_timeout": 60, "stop_timeout": 5,
                "healthcheck": {"kind": "http", "url": "http://127.0.0.1:%d/health" % port, "interval": 0.5}}
        return play.run([{"llmstack.deploy.container_rollout": args, "register": "r"}], hosts="all",
                        inventory=str(inventory))

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
    finally:
        svc.cleanup()
        subprocess.run(["docker", "network", "rm", network], capture_output=True, check=False)
