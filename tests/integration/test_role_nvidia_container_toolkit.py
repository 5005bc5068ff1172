"""The nvidia_container_toolkit role on a lab host (systemd + its own Docker engine), over the docker connection.

The host has no GPU: the lab serves a stand-in of NVIDIA's apt repository (tests/lab/nvidia-repo: the four
packages in 1.17.7-1, 1.18.0-1 and 1.18.1-1, signed with a lab key) and the test copies the driver stand-in
(tests/images/nvidia-standin/nvidia_smi.py) to /usr/bin/nvidia-smi. Repository, key, pin, hold, nvidia-ctk,
handler and Docker's --gpus path all run for real. One host, in this order (each step a fixture of the next):
no driver, a failing driver, check mode, the first run, a second run, a version change."""
import json
import subprocess

import pytest

from helpers import Play, running_lab_host

ROLE_TASKS = [{"name": "Apply the nvidia_container_toolkit role",
               "ansible.builtin.import_role": {"name": "llmstack.deploy.nvidia_container_toolkit"}}]
PACKAGES = ["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools", "libnvidia-container1"]
DAEMON_JSON = "/etc/docker/daemon.json"
SOURCES = "/etc/apt/sources.list.d/nvidia-container-toolkit.sources"
KEYRING = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
# An operator's own daemon.json key, there before the role runs.
SEED = {"max-concurrent-downloads": 3}
NVIDIA_RUNTIME = {"args": [], "path": "nvidia-container-runtime"}
NO_DRIVER = "this host has no working NVIDIA driver"


def sh(host, script, check=True):
    proc = subprocess.run(["docker", "exec", host, "sh", "-c", script], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (script, proc.returncode, proc.stdout, proc.stderr))
    return proc


def out(host, script):
    return sh(host, script).stdout


def docker_pid(host):
    return out(host, "systemctl show docker -p MainPID --value").strip()


def fill_start_limit(host):
    """Leave Docker running with systemd's start counter full, so one more plain restart would be refused."""
    burst = int(out(host, "systemctl show docker -p StartLimitBurst --value"))

    def fill():
        sh(host, "systemctl reset-failed docker")
        for _attempt in range(burst):
            sh(host, "systemctl restart docker")
    fill()
    refused = sh(host, "systemctl restart docker", check=False)
    assert "too often" in refused.stderr, "the start limit is full (%s)" % refused.stderr
    fill()


def installed(host):
    """{package: version} of what dpkg has installed (the four packages and python3-debian)."""
    proc = sh(host, "dpkg-query -W -f '${db:Status-Status} ${Package} ${Version}\\n' %s python3-debian"
              % " ".join(PACKAGES), check=False)
    rows = [line.split() for line in proc.stdout.splitlines()]
    return dict((r[1].split(":")[0], r[2]) for r in rows if len(r) == 3 and r[0] == "installed")


def selections(host):
    rows = [line.split() for line in out(host, "dpkg --get-selections").splitlines()]
    return dict((r[0].split(":")[0], r[1]) for r in rows if r[0].split(":")[0] in PACKAGES)


def host_state(host):
    """What a run that must change nothing leaves as it was."""
    return {"packages": installed(host), "selections": selections(host),
            "apt sources": out(host, "ls /etc/apt/sources.list.d"), "keyrings": out(host, "ls /etc/apt/keyrings"),
            "daemon.json": out(host, "cat %s" % DAEMON_JSON), "dockerd": docker_pid(host)}


def changed_tasks(result, host):
    return sorted(t["task"]["name"].split(" : ", 1)[-1] for t in result.data["plays"][0]["tasks"]
                  if t["hosts"].get(host, {}).get("changed"))


def task_result(result, name, host):
    return next(t["hosts"][host] for t in result.data["plays"][0]["tasks"] if name in t["task"]["name"])


@pytest.fixture(scope="module")
def lab_host(lab):
    """A fresh EC2 stand-in: no driver, no toolkit, daemon.json with one operator key, logged in to the
    lab registry (the verify step runs the vLLM stand-in image, which has python3 for nvidia-smi)."""
    with running_lab_host(lab, "llmstack-it-nvidia") as name:
        subprocess.run(["docker", "exec", "-i", name, "sh", "-c", "cat > " + DAEMON_JSON],
                       input=json.dumps(SEED, indent=4) + "\n", text=True, check=True)
        sh(name, "systemctl restart docker && docker info >/dev/null"
                 " && tar -cf - -T /dev/null | docker import - llmstack-it/empty >/dev/null")
        subprocess.run(["docker", "exec", "-i", name, "docker", "login", "-u", lab["LAB_REGISTRY_USER"],
                        "--password-stdin", lab["LAB_REGISTRY_FROM_HOSTS"]],
                       input=lab["LAB_REGISTRY_PASSWORD"], text=True, check=True, capture_output=True)
        yield name


@pytest.fixture(scope="module")
def role(lab, lab_host, tmp_path_factory):
    """role(*args, **vars): one run of the role on the lab host, pointed at the lab's repository."""
    inventory = tmp_path_factory.mktemp("nvidia_inventory") / "hosts.ini"
    inventory.write_text("%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n"
                         % lab_host)
    play = Play(tmp_path_factory.mktemp("nvidia_play"), lab)

    def run(*args, **extra):
        variables = {"nvidia_container_toolkit_repo_url": lab["LAB_NVIDIA_REPO_URL_FROM_HOSTS"],
                     "nvidia_container_toolkit_repo_key_url": lab["LAB_NVIDIA_KEY_URL_FROM_HOSTS"],
                     "nvidia_container_toolkit_verify": True,
                     "nvidia_container_toolkit_verify_image": lab["LAB_IMAGE_VLLM"]}
        variables.update(extra)
        return play.run(ROLE_TASKS, hosts="all", inventory=str(inventory),
                        args=list(args) + ["-e", json.dumps(variables)])
    return run


@pytest.fixture(scope="module")
def refused(lab, lab_host, role):
    """(a) no nvidia-smi, then (b) the driver stand-in failing: two runs that must stop early."""
    before = host_state(lab_host)
    missing = role()
    after_missing = host_state(lab_host)
    subprocess.run(["docker", "cp", lab["LAB_NVIDIA_SMI_STANDIN"], lab_host + ":/usr/bin/nvidia-smi"], check=True)
    sh(lab_host, "mkdir -p /etc/nvidia-standin && echo 2 > /etc/nvidia-standin/gpus && touch /etc/nvidia-standin/fail")
    failing = role()
    after_failing = host_state(lab_host)
    sh(lab_host, "rm /etc/nvidia-standin/fail")
    return before, (missing, after_missing), (failing, after_failing)


@pytest.fixture(scope="module")
def check_run(lab_host, role, refused):
    """(c) the driver works, nothing else is there yet: --check --diff."""
    before = host_state(lab_host)
    gpus_before = sh(lab_host, "docker run --rm --gpus all llmstack-it/empty /none", check=False)
    result = role("--check", "--diff")
    return before, gpus_before, result, host_state(lab_host)


@pytest.fixture(scope="module")
def first_run(lab_host, role, check_run):
    """(d) the real run."""
    before = docker_pid(lab_host)
    result = role()
    assert result.rc == 0, result.output
    return before, result


@pytest.fixture(scope="module")
def second_run(lab_host, role, first_run):
    """(e) the same run again."""
    before = host_state(lab_host)
    return before, role(), host_state(lab_host)


@pytest.fixture(scope="module")
def upgrade_run(lab_host, role, second_run):
    """(f) the operator moves the pin to 1.18.1-1, right after Docker was restarted as often as systemd's start
    limit allows (docker.service: StartLimitBurst=3 in 60 s), as when docker_host restarted it just before: the
    role's own restart must still happen (CI's first failure of this test, when the runs came fast enough)."""
    fill_start_limit(lab_host)
    before = docker_pid(lab_host)
    return before, role(nvidia_container_toolkit_version="1.18.1-1")


def test_a_without_driver_the_role_fails_early_and_installs_nothing(lab_host, refused):
    before, (missing, after), _failing = refused
    assert missing.rc != 0
    failed = task_result(missing, "Fail early when the host has no working NVIDIA driver", lab_host)
    assert failed.get("failed") is True
    assert NO_DRIVER in failed["msg"] and "nvidia-smi is not installed" in failed["msg"], failed["msg"]
    assert "nvidia_container_toolkit_check_driver" in failed["msg"], "the message names the way out"
    assert after == before, "nothing installed, no repository, daemon.json and Docker untouched"
    assert not installed(lab_host).get("python3-debian") and not selections(lab_host)


def test_b_with_a_failing_driver_the_role_fails_the_same_way(lab_host, refused):
    before, _missing, (failing, after) = refused
    assert failing.rc != 0
    msg = task_result(failing, "Fail early when the host has no working NVIDIA driver", lab_host)["msg"]
    assert NO_DRIVER in msg and "exited 9" in msg, msg
    assert "couldn't communicate with the NVIDIA driver" in msg, "the driver's own words reach the operator"
    assert after == before


def test_c_check_mode_passes_and_changes_nothing(lab_host, check_run):
    before, gpus_before, result, after = check_run
    assert "could not select device driver" in gpus_before.stderr, "no --gpus before the toolkit"
    assert result.rc == 0, result.output
    assert after == before, "check mode installed, wrote or restarted nothing"
    # A fresh host has no python3-debian (deb822_repository needs it) and no package lists: the role says
    # what it would do instead of trying.
    assert changed_tasks(result, lab_host) == [
        "Tell what check mode cannot try yet (python3-debian, then NVIDIA's repository and the toolkit)"]
    assert task_result(result, "Ask the NVIDIA driver", lab_host)["rc"] == 0, "the driver check runs in check mode too"


def test_d_first_run_installs_pins_holds_configures_and_restarts_docker_once(lab, lab_host, first_run):
    docker_before, result = first_run
    versions = installed(lab_host)
    assert dict((p, versions.get(p)) for p in PACKAGES) == dict((p, "1.18.0-1") for p in PACKAGES)
    assert "1.18.1-1" in out(lab_host, "apt-cache madison nvidia-container-toolkit"), "a newer version is there"
    assert selections(lab_host) == dict((p, "hold") for p in PACKAGES)

    assert out(lab_host, "head -1 " + KEYRING).strip() == "-----BEGIN PGP PUBLIC KEY BLOCK-----"
    sources = out(lab_host, "cat " + SOURCES)
    assert "Signed-By: %s\n" % KEYRING in sources
    assert "URIs: %s\n" % lab["LAB_NVIDIA_REPO_URL_FROM_HOSTS"] in sources and "Suites: /\n" in sources
    assert "/deb/amd64" in out(lab_host, "apt-get indextargets --format '$(URI)' | grep 5580"), "apt filled in $(ARCH)"

    config = json.loads(out(lab_host, "cat " + DAEMON_JSON))
    assert config == dict(SEED, runtimes={"nvidia": NVIDIA_RUNTIME}), "nvidia-ctk added the runtime, kept the rest"

    assert docker_pid(lab_host) != docker_before, "Docker was restarted"
    assert changed_tasks(result, lab_host).count("Restart Docker for the NVIDIA runtime") == 1
    verify = task_result(result, "Run nvidia-smi in a CUDA container", lab_host)
    assert verify["rc"] == 0 and "NVIDIA A10G" in verify["stdout"], verify


def test_d_gpus_reach_containers_and_nvidia_smi_sees_their_processes(lab, lab_host, first_run):
    image = lab["LAB_IMAGE_VLLM"]
    host_gpus = out(lab_host, "nvidia-smi --query-gpu=index,uuid --format=csv,noheader").splitlines()
    assert len(host_gpus) == 2
    seen = out(lab_host, "docker run --rm --gpus all --entrypoint nvidia-smi %s --query-gpu=uuid --format=csv,noheader"
               % image).split()
    assert seen == [line.split(", ")[1] for line in host_gpus], "the container sees the host's GPUs"
    sh(lab_host, "docker run -d --name gpu1-holder --gpus device=1 --entrypoint sleep %s 300" % image)
    try:
        pid = out(lab_host, "docker inspect -f '{{.State.Pid}}' gpu1-holder").strip()
        apps = out(lab_host, "nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits")
        assert apps.splitlines() == ["%s, %s, 20480" % (pid, host_gpus[1].split(", ")[1])]
    finally:
        sh(lab_host, "docker rm -f gpu1-holder", check=False)
    assert out(lab_host, "nvidia-smi --query-compute-apps=pid --format=csv,noheader") == "", "freed with the container"


def test_e_second_run_changes_nothing_and_does_not_restart_docker(lab_host, second_run):
    before, again, after = second_run
    assert again.rc == 0, again.output
    assert again.data["stats"][lab_host]["changed"] == 0, changed_tasks(again, lab_host)
    assert after == before, "same packages, holds, sources, daemon.json and dockerd"
    assert task_result(again, "Add the nvidia runtime with nvidia-ctk", lab_host).get("skipped") is True


def test_f_a_new_pin_upgrades_the_held_packages_and_keeps_them_held(lab_host, upgrade_run):
    _before, result = upgrade_run
    assert result.rc == 0, result.output
    versions = installed(lab_host)
    assert dict((p, versions.get(p)) for p in PACKAGES) == dict((p, "1.18.1-1") for p in PACKAGES)
    assert selections(lab_host) == dict((p, "hold") for p in PACKAGES)
    assert "version 1.18.1" in out(lab_host, "nvidia-ctk --version")
    assert json.loads(out(lab_host, "cat " + DAEMON_JSON)) == dict(SEED, runtimes={"nvidia": NVIDIA_RUNTIME})
