"""The operator plays against the converged single-host stack: playbooks/rollout.yml, rollback.yml and status.yml,
run with ansible-playbook as an operator would, against the real host (its Docker engine, the lab registry, moto).

The stack is left at the agent service tag the converge deployed (other verify tests run after these).
Against the demo's host instead: LLMSTACK_TEST_SCENARIO=demo python -m pytest molecule/default/tests/test_ops.py
(from the repo root, with lab.env loaded)."""
import contextlib
import http.client
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid

import boto3
import pytest

import stack
from stack import changed_tasks, failure, history, json_playbook as playbook, leaked, result, secret, tasks

STATE = "/var/lib/llmstack"
# The lab pushes the agent service as 1.0.0 and 1.0.1: the same code under two version labels, so two digests
# (a second tag of one image would have the same digest, and rolling out to it changes nothing).
LAB_TAGS = ("1.0.0", "1.0.1")
# moto takes any credentials; the plays read SSM (image tags, the target group's ARN) from the controller too.
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def lab(name):
    value = os.environ.get(name)
    assert value, "%s is not set: load the lab's lab.env (tests/lab/up prints its path)" % name
    return value


# --------------------------------------------------------------------------- the host

def current(host):
    """The agent service's current deployment (image with its tag, digest) as recorded on the host."""
    data = history(host)
    return next(e for e in data["deployments"] if e["seq"] == data["current"])


def live_container(host):
    """(name, id) of the agent service slot the gateway sends traffic to."""
    slot = host.file("%s/switch/agent_service.live" % STATE).content_string.strip().rsplit("_", 1)[1]
    name = "agent_service-" + slot
    return name, host.check_output("docker inspect -f '{{.Id}}' %s" % name).strip()


@pytest.fixture(scope="module")
def host_ip():
    return stack.host_ip()


def agent_version(host_ip):
    conn = http.client.HTTPSConnection(host_ip, 443, timeout=10, context=ssl._create_unverified_context())
    try:
        conn.request("GET", "/agent/health", headers={"Authorization": "Bearer " + secret("api_key_ci")})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def served_version(host_ip):
    status, body = agent_version(host_ip)
    assert status == 200, (status, body)
    return json.loads(body)["version"]


class Poller(threading.Thread):
    """A client asking the gateway for the agent service's version 4 times a second (below the rate limit)."""

    def __init__(self, host_ip):
        super().__init__(daemon=True)
        self.host_ip, self.answers, self.done = host_ip, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.answers.append(agent_version(self.host_ip))
            except OSError as e:
                self.answers.append((None, str(e).encode()))
            time.sleep(0.25)

    def stop(self):
        self.done.set()
        self.join(15)
        return self.answers


def registry_digest(tag):
    """The digest of llmstack/agent-service:<tag> in the lab registry, asked from this machine."""
    registry = lab("LAB_REGISTRY")
    request = urllib.request.Request("https://%s/v2/llmstack/agent-service/manifests/%s" % (registry, tag), method="HEAD",
                                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                                                        "application/vnd.oci.image.manifest.v1+json"})
    auth = urllib.request.HTTPBasicAuthHandler(urllib.request.HTTPPasswordMgrWithDefaultRealm())
    auth.add_password(None, "https://%s/" % registry, lab("LAB_REGISTRY_USER"), lab("LAB_REGISTRY_PASSWORD"))
    opener = urllib.request.build_opener(auth, urllib.request.HTTPSHandler(
        context=ssl.create_default_context(cafile=lab("LAB_CA_CERT"))))
    try:
        with opener.open(request, timeout=10) as resp:
            return resp.headers["Docker-Content-Digest"]
    except urllib.error.HTTPError as e:
        pytest.fail("the lab registry has no llmstack/agent-service:%s (HTTP %s): run tests/lab/up" % (tag, e.code))


@pytest.fixture(scope="module")
def tags(host):
    """(the tag the converge deployed, another lab tag with its own digest)."""
    deployed = current(host)["image"].rsplit(":", 1)[1]
    other = LAB_TAGS[1] if deployed != LAB_TAGS[1] else LAB_TAGS[0]
    return deployed, other


@contextlib.contextmanager
def registry_unreachable(host):
    """The host's connections to the lab registry are refused (its Docker engine's pulls included)."""
    address, port = lab("LAB_REGISTRY_FROM_HOSTS").rsplit(":", 1)
    rule = "OUTPUT -p tcp -d %s --dport %s -j REJECT --reject-with tcp-reset" % (address, port)
    host.run_expect([0], "iptables -I " + rule)
    try:
        yield
    finally:
        host.run("iptables -D " + rule)


@pytest.fixture(scope="module")
def restore_tag(host, tags):
    """Whatever a test did, the agent service ends at the tag the converge deployed."""
    yield
    if current(host)["image"].rsplit(":", 1)[1] != tags[0]:
        rc, _data, out = playbook("rollout.yml", "-e", "service=agent_service", "-e", "image_tag=" + tags[0])
        assert rc == 0, out[-3000:]


# ------------------------------------------------------------------------- the tests

@pytest.mark.parametrize("play", ["rollout.yml", "rollback.yml"])
def test_a_missing_or_unknown_service_fails_before_anything_is_touched(host, play):
    before = live_container(host)
    rc, data, out = playbook(play, "-e", "image_tag=1.0.1")
    assert rc != 0
    message = failure(data)
    assert message.startswith("service is not set: name what to roll ") and "-e service=<name>" in message
    assert "known services: postgres, vllm, agent_service, nginx_gateway" in message
    assert changed_tasks(data) == [] and len(tasks(data)) == 1  # the check is the first task
    rc, data, out = playbook(play, "-e", "service=agent_service,frontend")
    assert rc != 0 and failure(data).startswith("unknown service(s) frontend: ")
    assert live_container(host) == before, out[-2000:]


def test_a_missing_tag_names_the_ssm_parameter(host):
    ssm = boto3.client("ssm", endpoint_url=lab("LAB_MOTO_URL"), region_name=AWS["AWS_DEFAULT_REGION"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    name = "/llmstack/lab/agent_service/image_tag"
    seeded = ssm.get_parameter(Name=name)["Parameter"]["Value"]
    ssm.delete_parameter(Name=name)  # as before CI's first release
    try:
        rc, data, _out = playbook("rollout.yml", "-e", "service=agent_service",
                                  "-e", "llmstack_controller_endpoint_url=" + lab("LAB_MOTO_URL"))
    finally:
        ssm.put_parameter(Name=name, Value=seeded, Type="String")
    assert rc != 0
    assert failure(data) == ("no image tag for agent_service: image_tag is not set and SSM has no "
                             "/llmstack/lab/agent_service/image_tag (the CI deploy job writes it); pass -e image_tag=<tag>")
    assert changed_tasks(data) == []


def test_limit_to_a_host_outside_the_play_does_nothing(host, tmp_path, tags):
    elsewhere = tmp_path / "elsewhere.yml"
    elsewhere.write_text("all:\n  hosts:\n    llmstack-ops-elsewhere:\n      ansible_connection: local\n")
    before = live_container(host)
    for play in ("rollout.yml", "rollback.yml", "status.yml"):
        rc, data, out = playbook(play, "-i", str(elsewhere), "-e", "service=agent_service", "-e", "image_tag=" + tags[1],
                                 "--limit", "llmstack-ops-elsewhere")
        assert rc == 0, out[-3000:]
        assert all(not p["tasks"] for p in data["plays"]) and data["stats"] == {}, play
    assert live_container(host) == before


def test_check_diff_rollout_changes_nothing(host, tags):
    before, seqs = live_container(host), [e["seq"] for e in history(host)["deployments"]]
    rc, data, out = playbook("rollout.yml", "-e", "service=agent_service", "-e", "image_tag=" + tags[1], "--check", "--diff")
    assert rc == 0, out[-3000:]
    rollout = result(data, "Roll out the container")
    assert rollout["changed"] and rollout["digest_ref"].endswith(registry_digest(tags[1]))
    assert registry_digest(tags[1]).split(":")[1][:12] in json.dumps(rollout["diff"])
    assert changed_tasks(data) == ["Roll out the container"]
    assert live_container(host) == before
    assert [e["seq"] for e in history(host)["deployments"]] == seqs


def test_rollout_status_and_rollback(host, host_ip, tags, restore_tag):  # pylint: disable=unused-argument
    deployed, other = tags
    old_digest, new_digest = registry_digest(deployed), registry_digest(other)
    assert old_digest != new_digest
    before = live_container(host)

    # Roll out another tag while a client keeps asking the gateway: blue_green, no failed request.
    poller = Poller(host_ip)
    poller.start()
    try:
        rc, data, out = playbook("rollout.yml", "-e", "service=agent_service", "-e", "image_tag=" + other)
    finally:
        answers = poller.stop()
    assert rc == 0, out[-3000:]
    assert result(data, "Say what is rolled out")["msg"] == {"agent_service": other}
    assert result(data, "Roll out the container")["image"] == lab("LAB_IMAGE_AGENT_SERVICE").rsplit(":", 1)[0] + ":" + other
    assert [a for a in answers if a[0] != 200] == [] and len(answers) >= 4, answers
    assert served_version(host_ip) == other
    now = current(host)
    assert now["image"].endswith(":" + other) and now["digest_ref"].endswith(new_digest)
    assert live_container(host)[0] != before[0]  # the other slot

    # status.yml: tag, digest, health and the last deploy record; changed=0 (also in check mode); no secret.
    rc, data, out = playbook("status.yml", "--check")
    assert rc == 0, out[-3000:]
    assert data["stats"][stack.INVENTORY_NAME]["changed"] == 0
    lines = result(data, "Show it")["msg"]
    short_new, short_old = new_digest[:19], old_digest[:19]
    assert ("agent_service: tag %s, digest %s, deployed %s (#%d, blue_green, slot %s)"
            % (other, short_new, now["finished"], now["seq"], now["slot"])) in lines
    assert ("agent_service: health: %s running, seen healthy by its rollout; last recorded status succeeded"
            % live_container(host)[0]) in lines
    assert ("agent_service: last deploy #%d succeeded %s, %s %s, previous %s"
            % (now["seq"], now["finished"], other, short_new, short_old)) in lines
    assert "agent_service: a rollback would return to #" in "\n".join(lines)
    for service in ("postgres", "vllm", "nginx_gateway"):
        assert any(line.startswith(service + ": health: %s running" % service) for line in lines), lines
    assert any(line.startswith("volume postgres_data (postgres): ") for line in lines), lines
    assert any(line.startswith("backups /var/backups/llmstack/postgres: ") for line in lines), lines
    assert leaked(out) == []

    # rollback.yml with the registry out of reach: the previous deployment comes back from the host's own image.
    with registry_unreachable(host):
        pull = host.run("docker pull %s" % lab("LAB_IMAGE_AGENT_SERVICE"))
        assert pull.rc != 0 and "connection refused" in pull.stderr, pull.stderr
        rc, data, out = playbook("rollback.yml", "-e", "service=agent_service")
    assert rc == 0, out[-3000:]
    rolled = result(data, "Roll the app back to its previous deployment")
    assert rolled["changed"] and rolled["rollback"]["from"] == now["seq"]
    assert rolled["digest_ref"].endswith(old_digest) and rolled["image"].endswith(":" + deployed)
    assert not any("resolving" in phase for phase in rolled["phases"]), rolled["phases"]
    assert served_version(host_ip) == deployed
    back = current(host)
    assert back["rollback_of"] == now["seq"] and back["digest_ref"].endswith(old_digest)

    # Repeating it changes nothing: a rollback is never rolled back by another.
    rc, data, out = playbook("rollback.yml", "-e", "service=agent_service")
    assert rc == 0 and changed_tasks(data) == [], out[-3000:]
    assert current(host)["seq"] == back["seq"]


def test_a_vllm_rollback_is_drained_in_the_gateway_as_its_update_is(host):
    # A second vLLM deployment of the same image with another memory limit, then back: the rollback writes the
    # gateway's drain file first, waits for requests in flight (vLLM's gauges), and removes the file after.
    def memory():
        return int(host.check_output("docker inspect -f '{{.HostConfig.Memory}}' vllm"))
    tag = history(host, "vllm")["deployments"][0]["image"].rsplit(":", 1)[1]
    before = memory()
    try:
        rc, _data, out = playbook("rollout.yml", "-e", "service=vllm", "-e", "image_tag=" + tag, "-e", "vllm_memory=600m")
        assert rc == 0, out[-3000:]
        assert memory() == 600 * 1024 ** 2
        rc, data, out = playbook("rollback.yml", "-e", "service=vllm")
        assert rc == 0, out[-3000:]
    finally:
        if memory() != before:
            playbook("rollout.yml", "-e", "service=vllm", "-e", "image_tag=" + tag)
    assert memory() == before
    names = [n for n, _r in tasks(data)]
    drain_out = "Take this host out of the gateway before its vLLM goes down (no new requests; in-flight ones finish)"
    assert names.index(drain_out) < names.index("Roll vLLM back and wait until it answers a completion") < names.index(
        "Put this host back into the gateway")
    assert result(data, drain_out)["changed"] and result(data, "Put this host back into the gateway")["changed"]
    assert not host.file("%s/switch/llm.drain" % STATE).exists
    phases = result(data, "Roll vLLM back and wait until it answers a completion")["phases"]
    assert any("drained vllm: no request in flight" in p for p in phases), phases


@pytest.fixture()
def target_group():
    """In moto: a VPC, a running instance (the host's stand-in) registered in a target group, and the group's
    ARN in an SSM parameter, as the operators keep it (/humansa/production/ml_tg_arn)."""
    clients = dict((name, boto3.client(name, endpoint_url=lab("LAB_MOTO_URL"), region_name=AWS["AWS_DEFAULT_REGION"],
                                       aws_access_key_id="testing", aws_secret_access_key="testing"))
                   for name in ("ec2", "elbv2", "ssm"))
    ec2, elb, ssm = clients["ec2"], clients["elbv2"], clients["ssm"]
    name = "llmstack-ops-%s" % uuid.uuid4().hex[:8]
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 SubnetId=subnet)["Instances"][0]["InstanceId"]
    arn = elb.create_target_group(Name=name, Protocol="HTTPS", Port=443, VpcId=vpc,
                                  TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": instance}])
    parameter = "/%s/production/ml_tg_arn" % name
    ssm.put_parameter(Name=parameter, Value=arn, Type="String")

    def health():
        found = elb.describe_target_health(TargetGroupArn=arn, Targets=[{"Id": instance}])["TargetHealthDescriptions"]
        return found[0]["TargetHealth"]["State"]
    try:
        yield {"arn": arn, "instance": instance, "parameter": parameter, "health": health}
    finally:
        ssm.delete_parameter(Name=parameter)
        elb.delete_target_group(TargetGroupArn=arn)
        ec2.terminate_instances(InstanceIds=[instance])
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


def test_behind_an_alb_the_host_is_drained_rolled_and_put_back_even_when_the_rollout_fails(host, tags, target_group):
    # moto reports target health without checking anything: a registered instance is `healthy` at once and a
    # deregistered one `unused` (Target.NotRegistered) at once, with no `initial` or `draining` state and no
    # deregistration delay. So elb_target's waits (target_status unused, then healthy) return on their first
    # poll here; on AWS the first one takes the target group's deregistration delay. What is tested: the order
    # (out, roll, back in), the ARN read from SSM on the controller, and the always: after a failure.
    def alb(parameter=target_group["parameter"]):
        return ["-e", "service=agent_service", "-e", "llmstack_alb_target_group_parameter=" + parameter,
                "-e", "llmstack_alb_target_id=" + target_group["instance"],
                "-e", "llmstack_controller_endpoint_url=" + lab("LAB_MOTO_URL")]
    out_of, back_in = ("Take this host out of the ALB target group and wait until it is drained",
                       "Put this host back into the ALB target group and wait until it is healthy")
    assert target_group["health"]() == "healthy"

    # --check touches neither the host nor the target group.
    rc, data, out = playbook("rollout.yml", "--check", "-e", "image_tag=" + tags[1], *alb())
    assert rc == 0, out[-3000:]
    assert result(data, out_of).get("skipped") and result(data, back_in).get("skipped")

    rc, data, out = playbook("rollout.yml", "-e", "image_tag=" + tags[0], *alb())
    assert rc == 0, out[-3000:]
    names = [n for n, _r in tasks(data)]
    assert names.index(out_of) < names.index("Roll out the container") < names.index(back_in)
    assert result(data, out_of)["changed"] and result(data, back_in)["changed"]
    assert result(data, back_in)["target_health_descriptions"]["target_health"]["state"] == "healthy"
    assert target_group["health"]() == "healthy"

    # A tag the registry does not have: the rollout fails (the old version serves) and the host goes back in.
    before = live_container(host)
    rc, data, out = playbook("rollout.yml", "-e", "image_tag=0.0.0-missing", *alb())
    assert rc != 0
    assert "no such image or tag" in result(data, "Roll out the container")["msg"]
    assert result(data, out_of)["changed"] and result(data, back_in)["changed"], out[-3000:]
    assert target_group["health"]() == "healthy" and live_container(host) == before

    # A target group parameter SSM does not have: a clear failure before the host leaves the group.
    missing = target_group["parameter"].rsplit("/", 1)[0] + "/missing"
    rc, data, out = playbook("rollout.yml", "-e", "image_tag=" + tags[0], *alb(missing))
    assert rc != 0
    assert failure(data).startswith("SSM has no parameter %s (llmstack_alb_target_group_parameter" % missing), failure(data)
    assert out_of not in [n for n, _r in tasks(data)] and changed_tasks(data) == []


def test_no_leftover_iptables_rule(host):
    # registry_unreachable() removes its rule; a rule left behind would break every later pull.
    assert lab("LAB_REGISTRY_FROM_HOSTS").split(":")[0] not in host.check_output("iptables -S OUTPUT")
