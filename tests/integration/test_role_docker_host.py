"""The docker_host role on a lab host (systemd + its own Docker engine), over the docker connection.

The host starts with a daemon.json as nvidia-ctk leaves it plus a key of the operator's; the role must
merge into it, restart Docker once through its handler, then leave everything alone."""
import json
import subprocess

import pytest

from helpers import Play, running_lab_host

ROLE_TASKS = [{"name": "Apply the docker_host role", "ansible.builtin.import_role": {"name": "llmstack.deploy.docker_host"}}]
DAEMON_JSON = "/etc/docker/daemon.json"
# What `nvidia-ctk runtime configure --runtime=docker` writes (4-space indent), plus an operator's own key.
SEED = {"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}, "max-concurrent-downloads": 5}
SUBNET = "172.25.0.0/16"
EXTRA_VARS = {"docker_host_network_subnet": SUBNET}


def sh(host, script, check=True):
    return subprocess.run(["docker", "exec", host, "sh", "-c", script], capture_output=True, text=True,
                          check=check).stdout


def daemon(host):
    """Which dockerd runs: its pid and the monotonic time systemd started it."""
    out = sh(host, "systemctl show docker -p MainPID -p ExecMainStartTimestampMonotonic")
    return dict(line.split("=", 1) for line in out.split())


def daemon_json(host):
    return sh(host, "cat " + DAEMON_JSON)


def backups(host):
    return sh(host, "ls /etc/docker | grep '^daemon.json\\..*~$' || true").split()


def changed_tasks(result, host):
    """Names (without the role prefix) of the tasks and handlers that reported a change."""
    return sorted(t["task"]["name"].split(" : ", 1)[-1] for t in result.data["plays"][0]["tasks"]
                  if t["hosts"].get(host, {}).get("changed"))


def find_task(result, name):
    tasks = result.data["plays"][0]["tasks"]
    return next(t["hosts"] for t in tasks if name in t["task"]["name"])


@pytest.fixture(scope="module")
def lab_host(lab):
    """A fresh EC2 stand-in, its daemon.json seeded as nvidia-ctk leaves it and Docker running on it."""
    with running_lab_host(lab, "llmstack-it-dockerhost") as name:
        subprocess.run(["docker", "exec", "-i", name, "sh", "-c", "cat > " + DAEMON_JSON],
                       input=json.dumps(SEED, indent=4) + "\n", text=True, check=True)
        sh(name, "systemctl restart docker && docker info >/dev/null")
        yield name


@pytest.fixture(scope="module")
def inventory(lab_host, tmp_path_factory):
    path = tmp_path_factory.mktemp("docker_host") / "hosts.ini"
    path.write_text("%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n"
                    % lab_host)
    return str(path)


@pytest.fixture(scope="module")
def first_run(lab_host, inventory, tmp_path_factory, lab):
    play = Play(tmp_path_factory.mktemp("docker_host_play"), lab)
    before = daemon(lab_host)
    result = play.run(ROLE_TASKS, hosts="all", inventory=inventory, args=["-e", json.dumps(EXTRA_VARS)])
    assert result.rc == 0, result.output
    return play, before, result


def test_first_run_merges_daemon_json_and_restarts_docker_once(lab_host, first_run):
    _play, before, result = first_run
    config = json.loads(daemon_json(lab_host))
    assert config["runtimes"] == SEED["runtimes"], "nvidia-ctk's runtime entry survives"
    assert config["max-concurrent-downloads"] == 5, "a key the role does not manage survives"
    assert config["log-driver"] == "json-file"
    assert config["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert config["live-restore"] is True
    assert len(backups(lab_host)) == 1, "the seeded file was backed up"

    assert daemon(lab_host)["MainPID"] != before["MainPID"], "the handler restarted docker"
    info = json.loads(sh(lab_host, "docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True
    assert info["LoggingDriver"] == "json-file"
    assert "nvidia" in info["Runtimes"]
    # The log options are daemon defaults: a container created now carries them.
    sh(lab_host, "tar -cf - -T /dev/null | docker import - llmstack-it/empty >/dev/null"
                 " && docker create --name logprobe llmstack-it/empty /none >/dev/null")
    log_config = json.loads(sh(lab_host, "docker inspect -f '{{json .HostConfig.LogConfig}}' logprobe"))
    assert log_config == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}

    network = json.loads(sh(lab_host, "docker network inspect llmstack"))[0]
    assert network["Driver"] == "bridge"
    assert [c["Subnet"] for c in network["IPAM"]["Config"]] == [SUBNET]
    assert changed_tasks(result, lab_host) == sorted([
        "Create the stack's Docker network", "Merge the role's settings into daemon.json (keys it does not set are kept)",
        "Restart the Docker daemon", "Create the folder of the self-healing script",
        "Install the self-healing script and its logic", "Install the self-healing service and timer",
        "Enable and start the self-healing timer"])
    # The timer's command runs on the host (tests/integration/test_self_healing.py restarts with it).
    assert sh(lab_host, "systemctl is-enabled llmstack-heal.timer").strip() == "enabled"
    assert sh(lab_host, "systemctl start llmstack-heal.service && journalctl -u llmstack-heal.service -n 3 "
                        "--no-pager | grep -c 'container(s) restarted'").strip() != "0"


def test_second_run_changes_nothing_and_does_not_restart_docker(lab_host, inventory, first_run):
    play, _before, _result = first_run
    running, content = daemon(lab_host), daemon_json(lab_host)
    again = play.run(ROLE_TASKS, hosts="all", inventory=inventory, args=["-e", json.dumps(EXTRA_VARS)])
    assert again.rc == 0, again.output
    assert again.data["stats"][lab_host]["changed"] == 0, again.output
    assert daemon(lab_host) == running, "docker was not restarted"
    assert daemon_json(lab_host) == content
    assert len(backups(lab_host)) == 1


def test_check_diff_shows_the_change_and_changes_nothing(lab_host, inventory, first_run):
    play, _before, _result = first_run
    running, content = daemon(lab_host), daemon_json(lab_host)
    check = play.run(ROLE_TASKS, hosts="all", inventory=inventory,
                     args=["--check", "--diff", "-e", json.dumps(dict(EXTRA_VARS, docker_host_log_max_file=5))])
    assert check.rc == 0, check.output
    merged = find_task(check, "Merge the role's settings")[lab_host]
    assert merged["changed"] is True
    assert changed_tasks(check, lab_host) == [
        "Merge the role's settings into daemon.json (keys it does not set are kept)", "Restart the Docker daemon"]
    assert merged["changed_keys"] == ["log-opts.max-file"]
    assert '"max-file": "3"' in merged["diff"]["before"]
    assert '"max-file": "5"' in merged["diff"]["after"]
    assert daemon_json(lab_host) == content, "check mode wrote nothing"
    assert daemon(lab_host) == running, "check mode restarted nothing"
    assert len(backups(lab_host)) == 1
