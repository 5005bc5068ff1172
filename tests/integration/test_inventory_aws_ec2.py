"""inventory_aws_ec2.yml, the file operators use, against moto's EC2; and the amazon.aws dependency.

`ansible-inventory -i inventory_aws_ec2.yml` runs on the real file. The plugin reaches moto through the
environment variables it reads itself: AWS_URL (its endpoint_url) and the AWS_* credentials. Each module
run works in an AWS account of its own (STS AssumeRole into a random account id: moto keeps one EC2
per account), so the file's own tag values (project llmstack, environment production) are used as they
are and runs never see each other's instances, although moto keeps them between runs.

Every ansible-inventory call gets a HOME of its own: the file's cache (jsonfile under
~/.cache/llmstack-deploy/inventory, 60 s) then starts empty, so no test sees another call's answer, and
neither this machine's ~/.aws nor its inventory cache is touched. test_cache_* checks the cache itself.
"""
import json
import os
import re
import subprocess
import sys
import tarfile
import uuid

import boto3
import pytest

import labenv
from helpers import copy_checkout

ROOT = labenv.ROOT
INVENTORY = os.path.join(ROOT, "inventory_aws_ec2.yml")
BIN = os.path.dirname(sys.executable)
REGION = "us-east-1"  # the file's `regions`
STACK = {"llmstack:project": "llmstack", "llmstack:environment": "production"}  # the file's filter values
# Deprecations the bundled amazon.aws 10.1.2 prints on ansible-core 2.19 (its inventory base passes
# `disable_lookups` when it templates `regions`; amazon.aws#2863, fixed upstream by #2864). Any other
# warning fails the test.
KNOWN_WARNINGS = (
    "[WARNING]: Deprecation warnings can be disabled by setting `deprecation_warnings=False` in ansible.cfg.",
    "[DEPRECATION WARNING]: Passing `disable_lookups` to `template` is deprecated.",
)


class Account:
    """A fresh moto account: an EC2 client for it, and the environment ansible-inventory reads."""

    def __init__(self, lab):
        self.url = lab["LAB_MOTO_URL"]
        sts = boto3.client("sts", endpoint_url=self.url, region_name=REGION,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        self.account_id = "%012d" % (uuid.uuid4().int % 10 ** 12)
        creds = sts.assume_role(RoleArn="arn:aws:iam::%s:role/llmstack-inventory-test" % self.account_id,
                                RoleSessionName="inventory-test")["Credentials"]
        self.creds = {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                      "AWS_SESSION_TOKEN": creds["SessionToken"]}
        self.ec2 = boto3.client("ec2", endpoint_url=self.url, region_name=REGION, aws_access_key_id=creds["AccessKeyId"],
                                aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
        who = boto3.client("sts", endpoint_url=self.url, region_name=REGION, aws_access_key_id=creds["AccessKeyId"],
                           aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
        assert who.get_caller_identity()["Account"] == self.account_id, "moto did not switch accounts"
        self.image = self.ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]

    def launch(self, tags, stopped=False):
        """One instance with these tags; returns describe_instances' view of it."""
        instance = self.ec2.run_instances(
            ImageId=self.image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
            TagSpecifications=[{"ResourceType": "instance",
                                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])["Instances"][0]
        if stopped:
            self.ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
        return self.ec2.describe_instances(InstanceIds=[instance["InstanceId"]])["Reservations"][0]["Instances"][0]

    def terminate_all(self):
        """moto keeps instances until it restarts: leave none running."""
        ids = [i["InstanceId"] for r in self.ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        if ids:
            self.ec2.terminate_instances(InstanceIds=ids)

    def inventory(self, home, path=INVENTORY, args=()):
        """ansible-inventory --list on `path`, with HOME=home: (parsed output, stderr)."""
        env = dict((k, v) for k, v in os.environ.items() if not k.startswith("AWS_"))
        env.update(self.creds, AWS_URL=self.url, HOME=str(home), ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                   ANSIBLE_NOCOLOR="1")
        res = subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", str(path), "--list"] + list(args),
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert res.returncode == 0, res.stderr
        return labenv.plain(json.loads(res.stdout)), res.stderr


def hosts(listing, group):
    return set(listing.get(group, {}).get("hosts", []))


def hostvars(listing):
    return listing["_meta"]["hostvars"]


def role(name):
    return dict(STACK, **{"llmstack:role": name})


@pytest.fixture(scope="module")
def account(lab):
    acct = Account(lab)
    yield acct
    acct.terminate_all()


@pytest.fixture(scope="module")
def fleet(account):
    """Two GPU instances (one Name, as an auto-scaling group gives them) and one app instance of the stack,
    plus instances the file must leave out."""
    asg = dict(role("gpu"), Name="llmstack-gpu")
    return {
        "gpu": [account.launch(asg), account.launch(asg)],
        "app": [account.launch(role("app"))],
        # One GPU box with the whole stack.
        "box": [account.launch(role("app+gpu"))],
        "left_out": {
            "a role value the file does not list": account.launch(role("gpu+app")),
            "stopped": account.launch(role("gpu"), stopped=True),
            "other project": account.launch(dict(role("gpu"), **{"llmstack:project": "other"})),
            "other environment": account.launch(dict(role("app"), **{"llmstack:environment": "staging"})),
            "another role": account.launch(role("bastion")),
            "no stack tags": account.launch({"Name": "unrelated"}),
        },
    }


@pytest.fixture(scope="module")
def listing(account, fleet, tmp_path_factory):
    return account.inventory(tmp_path_factory.mktemp("home"))


def test_roles_land_in_their_groups(fleet, listing):
    out, _stderr = listing
    box = set("app+gpu-" + i["InstanceId"] for i in fleet["box"])
    assert hosts(out, "llmstack_gpu") == set("gpu-" + i["InstanceId"] for i in fleet["gpu"]) | box
    assert hosts(out, "llmstack_app") == set("app-" + i["InstanceId"] for i in fleet["app"]) | box


def test_one_gpu_box_is_in_both_groups_and_no_other(fleet, listing):
    out, _stderr = listing
    name = "app+gpu-" + fleet["box"][0]["InstanceId"]
    member_of = sorted(g for g, v in out.items() if g != "_meta" and name in v.get("hosts", []))
    assert member_of == ["aws_ec2", "llmstack_app", "llmstack_gpu"]  # no group of its own (llmstack_app_gpu)


def test_ansible_host_is_the_private_ip(fleet, listing):
    out, _stderr = listing
    for instance in fleet["gpu"] + fleet["app"] + fleet["box"]:
        name = "%s-%s" % (_role_of(instance), instance["InstanceId"])
        assert instance["PrivateIpAddress"] != instance.get("PublicIpAddress")
        assert hostvars(out)[name]["ansible_host"] == instance["PrivateIpAddress"]
        assert hostvars(out)[name]["ec2_private_ip_address"] == instance["PrivateIpAddress"]
        # What vLLM binds to and the gateway's upstream lists, whatever address Ansible connects to.
        assert hostvars(out)[name]["llmstack_private_address"] == instance["PrivateIpAddress"]


def _role_of(instance):
    return dict((t["Key"], t["Value"]) for t in instance["Tags"])["llmstack:role"]


def test_only_running_instances_of_this_project_and_environment(fleet, listing):
    out, _stderr = listing
    listed = set(hostvars(out))
    assert len(listed) == 4
    for why, instance in fleet["left_out"].items():
        assert not [h for h in listed if instance["InstanceId"] in h], "%s instance listed" % why
    assert fleet["left_out"]["stopped"]["State"]["Name"] in ("stopping", "stopped")


def test_hostnames_unique_for_the_same_role(fleet, listing):
    out, _stderr = listing
    gpu = sorted(h for h in hosts(out, "llmstack_gpu") if not h.startswith("app+gpu-"))
    assert len(gpu) == 2 and gpu[0] != gpu[1]
    assert all(re.match(r"^gpu-i-[0-9a-f]+$", h) for h in gpu), gpu


def test_no_reserved_name_warning_and_no_unknown_warning(listing):
    out, stderr = listing
    assert "reserved name" not in stderr
    assert not [h for h, v in hostvars(out).items() if "tags" in v], "unprefixed `tags` host variable"
    unknown = [line for line in stderr.splitlines()
               if "WARNING" in line and not line.startswith(KNOWN_WARNINGS)]
    assert not unknown, stderr


def test_public_ip_switch(account, fleet, tmp_path):
    out, _stderr = account.inventory(tmp_path, args=["-e", "llmstack_inventory_address=public"])
    for instance in fleet["gpu"] + fleet["app"]:
        name = "%s-%s" % (_role_of(instance), instance["InstanceId"])
        assert instance.get("PublicIpAddress"), "moto gave no public IP"
        assert hostvars(out)[name]["ansible_host"] == instance["PublicIpAddress"]
        assert hostvars(out)[name]["llmstack_private_address"] == instance["PrivateIpAddress"]


def test_documented_ssm_lines_give_an_ssm_connection(account, fleet, tmp_path):
    """The file's commented SSM option, uncommented in a copy, names the instance for amazon.aws.aws_ssm."""
    with open(INVENTORY, encoding="utf-8") as f:
        text = f.read()
    copy, count = re.subn(r"(?m)^  # (ansible_\w+: .*)$", r"  \1", text)
    assert count == 4, "expected the 4 commented SSM lines under compose"
    path = tmp_path / "ssm.aws_ec2.yml"
    path.write_text(copy)
    out, _stderr = account.inventory(tmp_path / "home", path=path)
    instance = fleet["gpu"][0]
    got = hostvars(out)["gpu-" + instance["InstanceId"]]
    assert got["ansible_connection"] == "amazon.aws.aws_ssm"
    assert got["ansible_aws_ssm_instance_id"] == instance["InstanceId"]
    assert got["ansible_aws_ssm_region"] == REGION
    assert got["ansible_aws_ssm_bucket_name"] == "your-ssm-transfer-bucket"
    doc = subprocess.run([os.path.join(BIN, "ansible-doc"), "-t", "connection", "--json", "amazon.aws.aws_ssm"],
                         capture_output=True, text=True, check=False, env=dict(os.environ, HOME=str(tmp_path)))
    assert doc.returncode == 0 and "bucket_name" in doc.stdout, doc.stderr


def test_cache_serves_within_its_timeout_and_flush_cache_refreshes(lab, tmp_path, request):
    """The file's cache is on: a second run within 60 s answers from ~/.cache/llmstack-deploy/inventory
    without asking EC2 (a new instance is not seen yet); --flush-cache asks again."""
    account = Account(lab)  # its own account: the instance it adds stays out of the other tests
    request.addfinalizer(account.terminate_all)
    first = account.launch(role("app"))
    out, _stderr = account.inventory(tmp_path)
    assert set(hostvars(out)) == {"app-" + first["InstanceId"]}
    files = os.listdir(str(tmp_path / ".cache" / "llmstack-deploy" / "inventory"))
    assert len(files) == 1 and files[0].startswith("ansible_inventory_"), files

    second = account.launch(role("gpu"))
    cached, _stderr = account.inventory(tmp_path)
    assert set(hostvars(cached)) == {"app-" + first["InstanceId"]}, "second run did not come from the cache"
    fresh, _stderr = account.inventory(tmp_path, args=["--flush-cache"])
    assert set(hostvars(fresh)) == {"app-" + first["InstanceId"], "gpu-" + second["InstanceId"]}
    again, _stderr = account.inventory(tmp_path)
    assert set(hostvars(again)) == set(hostvars(fresh)), "--flush-cache did not rewrite the cache"


def _galaxy(args, base, cwd):
    """ansible-galaxy collection <args> with HOME, config and collections path of its own under `base`:
    only the collections bundled with the venv's `ansible` package count as installed (nothing from
    ~/.ansible), and no ansible.cfg applies."""
    for sub in ("home", "collections"):
        (base / sub).mkdir(exist_ok=True)
    (base / "empty.cfg").write_text("")
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith("ANSIBLE_"))
    env.update(HOME=str(base / "home"), ANSIBLE_COLLECTIONS_PATH=str(base / "collections"),
               ANSIBLE_CONFIG=str(base / "empty.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection"] + args, cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _build_and_install(base, galaxy_yml=None):
    """Build the collection from the checked-in files (as `ansible-galaxy collection build` would from a
    clean clone), then install it with --offline into an empty collections path. Returns (tarball, result)."""
    src = copy_checkout(base / "src")
    if galaxy_yml:
        (src / "galaxy.yml").write_text(galaxy_yml((src / "galaxy.yml").read_text()))
    res = _galaxy(["build", "--output-path", str(base / "dist"), "."], base, src)
    assert res.returncode == 0, res.stdout + res.stderr
    tarball = str(base / "dist" / "llmstack-deploy-0.1.0.tar.gz")
    return tarball, _galaxy(["install", "--offline", "-p", str(base / "collections"), tarball], base, base)


def _bundled_version(name):
    """The version of `name` bundled with this venv's `ansible` package."""
    res = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", name, "--format", "json"],
                         capture_output=True, text=True, check=True, env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    found = [c[name]["version"] for path, c in json.loads(res.stdout).items() if name in c and "site-packages" in path]
    assert len(found) == 1, res.stdout
    return found[0]


def test_amazon_aws_dependency_declared_and_satisfied_offline(tmp_path):
    """galaxy.yml declares amazon.aws, and the venv the README commands build (tests/lab/venv: the pinned
    `ansible` package, which bundles amazon.aws) satisfies it: an offline install of the built collection
    into an empty path resolves the dependency against the bundled copy, and the same check fails when
    the requirement can't be met (so the check is not vacuous). Galaxy itself is not reachable here."""
    tarball, res = _build_and_install(tmp_path / "declared")
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    minimum = manifest["collection_info"]["dependencies"].get("amazon.aws")
    assert minimum and minimum.startswith(">="), manifest["collection_info"]["dependencies"]
    assert res.returncode == 0, res.stdout + res.stderr
    assert "'amazon.aws:%s' is already installed" % _bundled_version("amazon.aws") in res.stdout, res.stdout
    assert (tmp_path / "declared" / "collections" / "ansible_collections" / "llmstack" / "deploy" / "MANIFEST.json").is_file()

    _tarball, res = _build_and_install(
        tmp_path / "impossible", lambda text: re.sub(r'amazon\.aws: ".*"', 'amazon.aws: ">=99.0.0"', text))
    assert res.returncode != 0 and "amazon.aws:>=99.0.0" in res.stdout + res.stderr, res.stdout + res.stderr
