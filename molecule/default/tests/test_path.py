"""The user's path on one GPU box: inventory_aws_ec2.yml against moto's EC2 (the instance tagged app+gpu, a stopped
one and one of another environment beside it), SSH with host keys checked, and site.yml, which picks the single
host, puts the NVIDIA Container Toolkit before vLLM, keeps vLLM on 127.0.0.1 although the inventory sets a
private address, and ends by proving every route through the gateway."""
import json
import os
import re
import subprocess
import sys

import boto3

import stack
# tests/lab, which stack puts on the path.
import labenv  # noqa: E402  pylint: disable=wrong-import-order
from stack import INVENTORY, INVENTORY_NAME, LAB, ROOT, docker_json, host_ip, json_playbook, leaked, request, secret
from stack import result, tasks, wait_serving

BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")


def test_the_inventory_is_the_gpu_box_in_both_groups_and_nothing_else():
    listing = labenv.plain(json.loads(subprocess.run(
        [os.path.join(BIN, "ansible-inventory"), "-i", INVENTORY, "--list"], env=ENV, cwd=ROOT, check=True,
        capture_output=True, text=True).stdout))
    assert listing["llmstack_app"]["hosts"] == [INVENTORY_NAME] == listing["llmstack_gpu"]["hosts"]
    assert listing["_meta"]["hostvars"][INVENTORY_NAME]["llmstack_private_address"] == host_ip()
    # The scenario's stopped instance and its instance of another environment are in EC2, and not deployed.
    ec2 = boto3.client("ec2", endpoint_url=LAB["LAB_MOTO_URL"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    decoys = [i for r in ec2.describe_instances(Filters=[
        {"Name": "tag:Name", "Values": ["%s-stopped" % stack.SCENARIO, "%s-staging" % stack.SCENARIO]}])["Reservations"]
        for i in r["Instances"]]
    assert sorted(i["State"]["Name"] for i in decoys) == ["running", "stopped"], decoys
    everywhere = set(listing["_meta"]["hostvars"])
    assert not [i["InstanceId"] for i in decoys if any(i["InstanceId"] in name for name in everywhere)]


def ping(*args, env=None):
    """`ansible <the host> -m ping -vvv`: (rc, stdout and stderr without colours)."""
    proc = subprocess.run([os.path.join(BIN, "ansible"), "-i", INVENTORY, INVENTORY_NAME, "-m", "ansible.builtin.ping",
                           "-vvv"] + list(args), env=dict(ENV, **(env or {})), cwd=ROOT, capture_output=True,
                          text=True, check=False)
    return proc.returncode, re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)


def test_ssh_is_as_in_production_pipelined_persistent_and_host_keys_checked(tmp_path):
    rc, out = ping(env={"ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp")})
    assert rc == 0 and "%s | SUCCESS" % INVENTORY_NAME in out, out[-3000:]
    exec_lines = [line for line in out.splitlines() if "SSH: EXEC ssh" in line]
    assert exec_lines, out[-3000:]
    exec_line = exec_lines[0]
    assert "ControlPersist=300s" in exec_line and "StrictHostKeyChecking=yes" in exec_line
    assert "StrictHostKeyChecking=no" not in exec_line
    assert "ubuntu" in exec_line and "PUT " not in out  # pipelined: no module file copied over
    # Another key for the host's address: the connection is refused, not trusted on first use.
    with open(os.path.join(LAB["LAB_DIR"], "ssh", "known_hosts")) as f:
        real = f.read()
    assert host_ip() in real
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()
    (tmp_path / "known_hosts").write_text("%s %s %s\n" % (host_ip(), other[0], other[1]))
    args = "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes" % (tmp_path / "known_hosts")
    rc, out = ping("-e", "ansible_ssh_common_args='%s'" % args, env={"ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / "cp2")})
    assert rc != 0 and "Host key verification failed" in out, out[-3000:]


def test_one_gpu_box_gets_the_toolkit_before_vllm_and_vllm_its_gpus(host):
    held = host.check_output("dpkg --get-selections nvidia-container-toolkit | sed 's/:amd64//'").split()
    assert held == ["nvidia-container-toolkit", "hold"], held
    assert json.loads(host.check_output("cat /etc/docker/daemon.json"))["runtimes"]["nvidia"]["path"] \
        == "nvidia-container-runtime"
    config = docker_json(host, "inspect", "vllm")[0]
    assert config["HostConfig"]["DeviceRequests"][0]["Count"] == -1  # gpus: all
    assert str(config["State"]["Pid"]) in host.check_output("nvidia-smi --query-compute-apps=pid --format=csv,noheader")
    # In the first converge (its -vvv log), the toolkit's tasks come before vLLM's rollout.
    with open(os.environ.get("LLMSTACK_CONVERGE_LOG", os.path.join(LAB["LAB_DIR"], "converge-vvv.log"))) as f:
        converge = f.read()
    assert -1 < converge.find("TASK [llmstack.deploy.nvidia_container_toolkit") \
        < converge.find("TASK [llmstack.deploy.vllm : Drain, recreate")


def toolkit_tasks(data):
    return [(name, r) for name, r in tasks(data) if name in TOOLKIT_TASKS]


TOOLKIT_TASKS = ("Check that the host runs Debian or Ubuntu", "Ask the NVIDIA driver for its GPUs", "Hold the toolkit's packages at that version")


def test_a_host_whose_vllm_gets_no_gpus_gets_no_toolkit():
    rc, data, out = json_playbook("site.yml", "--check", "--tags", "nvidia_container_toolkit")
    assert rc == 0, out[-3000:]
    ran = dict(toolkit_tasks(data))
    assert ran and not any(r.get("skipped") for r in ran.values()), ran
    rc, data, out = json_playbook("site.yml", "--check", "--tags", "nvidia_container_toolkit",
                                  "-e", json.dumps({"vllm_gpus": ""}))
    assert rc == 0, out[-3000:]
    ran = dict(toolkit_tasks(data))
    assert ran and all(r.get("skipped") for r in ran.values()), ran


def test_vllm_stays_on_loopback_although_the_inventory_sets_a_private_address(host):
    config = docker_json(host, "inspect", "vllm")[0]
    assert config["HostConfig"]["PortBindings"]["8000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "8000"}]
    _c, resp = request(host_ip(), "GET", "/llm_api/models", key=secret("api_key_ci"))
    assert resp.status == 200 and [m["id"] for m in json.loads(resp.read())["data"]] == ["lab/echo"]


def test_from_another_lab_host_vllm_is_refused_and_the_gateway_answers():
    """Another machine on the lab's network (a container of the lab host image on the same bridge)."""
    probe = ("curl -s -o /dev/null -m 3 -w '%%{http_code} ' http://%s:8000/health; "
             "curl -sk -o /dev/null -m 3 -w '%%{http_code}' https://%s/healthz; true" % (host_ip(), host_ip()))
    out = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", LAB["LAB_HOST_IMAGE"], "-c", probe],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["000", "200"], out  # vLLM's port: no connection at all; the gateway's /healthz: 200


def test_a_route_left_unreachable_fails_the_converge_naming_route_and_upstream(host):
    """vLLM published on the host's private address (the old default): its health check passes there, but the
    gateway's upstream is 127.0.0.1:8000, so /llm_api/ answers 503. The converge must fail and say where."""
    try:
        rc, data, out = json_playbook("site.yml", "--tags", "vllm", "-e", "vllm_bind_address=" + host_ip(),
                                      "-e", "nginx_gateway_check_timeout=5")
        assert rc != 0, out[-3000:]
        message = result(data, "Prove the gateway serves every route, through every upstream server")["msg"]
        assert "route /llm_api/ (upstream llm) answered HTTP 503" in message, message
        assert "route /llm_api/ (upstream llm, server 127.0.0.1:8000) answered HTTP 502" in message, message
        assert "/agent/" not in message  # the agent service still answers
        assert leaked(out) == []
    finally:
        rc, data, out = json_playbook("site.yml", "--tags", "vllm")
        assert rc == 0, out[-3000:]
    wait_serving(host_ip(), 60)


def test_check_mode_skips_the_gateway_check():
    rc, data, out = json_playbook("site.yml", "--check", "--tags", "gateway")
    assert rc == 0, out[-3000:]
    assert result(data, "Prove the gateway serves every route, through every upstream server").get("skipped")
