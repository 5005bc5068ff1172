"""The lab's EC2 instances: lab hosts (containers with systemd, sshd and their own Docker engine) launched the
way an operator launches instances (README, "Deploying to AWS"): registered in moto's EC2 with the three
llmstack:* tags, their private IP the lab host's address, and their SSH host key recorded in the tag
llmstack:ssh-host-key once they have booted. inventory_aws_ec2.yml then finds them as it finds real ones.

  python tests/lab/fleet.py launch <scenario> <container>=<role> ... [--decoys]
  python tests/lab/fleet.py terminate <scenario>
  python tests/lab/fleet.py hosts <scenario>          (JSON: container, instance, inventory name, address)

<role> is the tag's value: app, gpu or app+gpu. Every scenario also gets a client host (llmstack-<scenario>-client):
a machine on the network that is no instance of the stack, for requests from outside. --decoys adds two instances that must never be deployed: a
stopped one and one of another environment (their addresses are in the subnet, but nothing answers there).
Launching again is a no-op for a host that runs and whose instance matches it (address, host key).
"""
import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import labenv  # noqa: E402  pylint: disable=wrong-import-position

TAGS = {"llmstack:project": "llmstack", "llmstack:environment": "production"}  # inventory_aws_ec2.yml's filters
HOST_KEY_TAG = "llmstack:ssh-host-key"
SCENARIO_TAG = "llmstack-lab:scenario"
KEY_PAIR = "llmstack-lab"
# Docker-in-Docker without --privileged (this kernel's bounding set lacks CAP_SYS_RESOURCE).
RUN_OPTIONS = ["--cap-add=ALL", "--cap-drop=SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
               "--security-opt", "apparmor=unconfined", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
               "--tmpfs", "/run", "--tmpfs", "/run/lock"]


def docker(*args, check=True, stdin=None):
    return subprocess.run(["docker"] + list(args), input=stdin, capture_output=True, text=True,
                          check=check).stdout.strip()


def key_pair(lab):
    """The lab key pair (ed25519, made once under <lab dir>/ssh): (private key path, public key line)."""
    folder = os.path.join(lab["LAB_DIR"], "ssh")
    private = os.path.join(folder, "id_ed25519")
    if not os.path.exists(private):
        os.makedirs(folder, mode=0o700, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", KEY_PAIR, "-f", private], check=True)
    with open(private + ".pub") as f:
        return private, f.read().strip()


def ec2_client(lab):
    return boto3.client("ec2", endpoint_url=lab["LAB_MOTO_URL"], **labenv.AWS_CLIENT)


class Fleet:
    def __init__(self, lab, scenario):
        self.lab, self.scenario = lab, scenario
        self.ec2 = ec2_client(lab)

    # ------------------------------------------------------------------ the AWS side
    def cidr(self):
        """The lab bridge's range: instances' private IPs are their hosts' addresses on it."""
        return docker("network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Subnet}}")

    def subnet_for(self, address):
        """A lab subnet (the bridge's range) where no instance ever had this address. moto keeps a terminated
        instance's address in use, so a host relaunched on the address of an earlier one gets a VPC of its own."""
        subnets = self.ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": ["llmstack-lab"]},
                                                     {"Name": "cidr-block", "Values": [self.cidr()]}])["Subnets"]
        for subnet in subnets:
            used = self.ec2.describe_instances(Filters=[{"Name": "subnet-id", "Values": [subnet["SubnetId"]]},
                                                        {"Name": "private-ip-address", "Values": [address]}])
            if not used["Reservations"]:
                return subnet["SubnetId"]
        tags = [{"Key": "Name", "Value": "llmstack-lab"}]
        vpc = self.ec2.create_vpc(CidrBlock=self.cidr(), TagSpecifications=[
            {"ResourceType": "vpc", "Tags": tags}])["Vpc"]["VpcId"]
        return self.ec2.create_subnet(VpcId=vpc, CidrBlock=self.cidr(), TagSpecifications=[
            {"ResourceType": "subnet", "Tags": tags}])["Subnet"]["SubnetId"]

    def import_key(self, public):
        if not self.ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [KEY_PAIR]}])["KeyPairs"]:
            self.ec2.import_key_pair(KeyName=KEY_PAIR, PublicKeyMaterial=public.encode())

    def instances(self, states=("pending", "running", "stopping", "stopped")):
        pages = self.ec2.get_paginator("describe_instances").paginate(Filters=[
            {"Name": "tag:" + SCENARIO_TAG, "Values": [self.scenario]},
            {"Name": "instance-state-name", "Values": list(states)}])
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def run_instance(self, name, role, address, tags=None, instance_type=None):
        """One instance, as `aws ec2 run-instances` with the stack's tags launches it."""
        image = self.ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
        all_tags = dict(TAGS, **{"llmstack:role": role, "Name": name, SCENARIO_TAG: self.scenario})
        all_tags.update(tags or {})
        return self.ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, KeyName=KEY_PAIR, SubnetId=self.subnet_for(address),
            PrivateIpAddress=address,
            InstanceType=instance_type or ("g5.xlarge" if "gpu" in role else "m6i.large"),
            TagSpecifications=[{"ResourceType": "instance",
                                "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}])["Instances"][0]

    # ------------------------------------------------------------------ the hosts
    def start(self, name):
        """Start the lab host container (kept if it runs already): systemd, sshd, Docker."""
        state = docker("inspect", "-f", "{{.State.Status}}", name, check=False)
        if not state:
            docker("run", "-d", "--name", name, "--hostname", name, "--label", "llmstack-lab=1",
                   "--label", "%s=%s" % (SCENARIO_TAG, self.scenario), *RUN_OPTIONS,
                   "-v", "%s-docker:/var/lib/docker" % name, self.lab["LAB_HOST_IMAGE"])
        elif state != "running":
            docker("start", name)

    def driver(self, name):
        """A GPU instance's AMI has the NVIDIA driver: here, its stand-in nvidia-smi (over simulated GPUs)."""
        docker("cp", self.lab["LAB_NVIDIA_SMI_STANDIN"], "%s:/usr/bin/nvidia-smi" % name)

    @staticmethod
    def boot(name, public_key, timeout=120):
        """Wait for the host's systemd; then what cloud-init does on EC2: the key pair's public key into the
        login user's authorized_keys. Returns the host's ed25519 host key (`ssh-ed25519 AAAA...`), read from
        the host itself as an operator reads it from the instance's console output."""
        deadline = time.monotonic() + timeout
        while True:
            state = docker("exec", name, "systemctl", "is-system-running", "--wait", check=False)
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise SystemExit("lab host %s did not boot (systemd: %s)" % (name, state))
            time.sleep(1)
        docker("exec", "-i", name, "sh", "-c",
               "install -d -m 0700 -o ubuntu -g ubuntu /home/ubuntu/.ssh && "
               "cat > /home/ubuntu/.ssh/authorized_keys && "
               "chown ubuntu:ubuntu /home/ubuntu/.ssh/authorized_keys && chmod 0600 /home/ubuntu/.ssh/authorized_keys",
               stdin=public_key + "\n")
        while True:
            line = docker("exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub", check=False)
            if line.startswith("ssh-ed25519 ") and docker("exec", name, "systemctl", "is-active", "ssh",
                                                          check=False) == "active":
                return " ".join(line.split()[:2])
            if time.monotonic() > deadline:
                raise SystemExit("lab host %s has no SSH host key or sshd" % name)
            time.sleep(0.5)

    def client(self):
        """The scenario's client host: a machine on the lab network outside the stack (no instance, nothing deployed),
        where the verify tests reach the gateway from as an outsider would. The host image, without its systemd."""
        name = "llmstack-%s-client" % self.scenario
        if docker("inspect", "-f", "{{.State.Running}}", name, check=False) != "true":
            docker("rm", "-f", name, check=False)
            docker("run", "-d", "--name", name, "--hostname", name, "--label", "llmstack-lab=1",
                   "--label", "%s=%s" % (SCENARIO_TAG, self.scenario), "--entrypoint", "sleep",
                   self.lab["LAB_HOST_IMAGE"], "infinity")
        return name

    @staticmethod
    def address(name):
        return docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name)

    def launch(self, hosts, decoys=False):
        """hosts: [(container name, role)]. Starts them all first (they boot in parallel), then registers each."""
        _private, public = key_pair(self.lab)
        self.import_key(public)
        for name, role in hosts:
            self.start(name)
            if "gpu" in role.split("+"):
                self.driver(name)
        existing = dict((tag(i, "Name"), i) for i in self.instances())
        for name, role in hosts:
            host_key = self.boot(name, public)
            address = self.address(name)
            old = existing.pop(name, None)
            if old and (old["State"]["Name"], old.get("PrivateIpAddress"), tag(old, HOST_KEY_TAG), tag(old, "llmstack:role")) \
                    == ("running", address, host_key, role):
                continue
            if old:
                self.ec2.terminate_instances(InstanceIds=[old["InstanceId"]])
            instance = self.run_instance(name, role, address)
            # The operator's step after the first boot: record the host key the console output shows.
            self.ec2.create_tags(Resources=[instance["InstanceId"]], Tags=[{"Key": HOST_KEY_TAG, "Value": host_key}])
        if decoys:
            network = ipaddress.ip_network(self.cidr())
            for number, (name, tags, stop) in enumerate((
                    ("%s-stopped" % self.scenario, {}, True),
                    ("%s-staging" % self.scenario, {"llmstack:environment": "staging"}, False))):
                if name in existing:
                    existing.pop(name)
                    continue
                instance = self.run_instance(name, "app", str(network.broadcast_address - 2 - number), tags)
                if stop:
                    self.ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
        self.client()
        gone = [i["InstanceId"] for i in existing.values()]
        if gone:  # instances of this scenario whose host is no longer asked for
            self.ec2.terminate_instances(InstanceIds=gone)
        forget_inventory_cache()

    def terminate(self):
        ids = [i["InstanceId"] for i in self.instances()]
        if ids:
            self.ec2.terminate_instances(InstanceIds=ids)
        names = docker("ps", "-aq", "--filter", "label=%s=%s" % (SCENARIO_TAG, self.scenario)).split()
        volumes = [docker("inspect", "-f", "{{.Name}}", c).lstrip("/") + "-docker" for c in names]
        if names:
            docker("rm", "-f", *names)
        if volumes:
            docker("volume", "rm", "-f", *volumes)
        forget_inventory_cache()

    def hosts(self):
        """The scenario's running instances of the stack's environment: container, instance id, role, the name
        inventory_aws_ec2.yml gives it, address."""
        return [{"container": tag(i, "Name"), "instance": i["InstanceId"], "role": tag(i, "llmstack:role"),
                 "inventory_name": "%s-%s" % (tag(i, "llmstack:role"), i["InstanceId"]),
                 "address": i.get("PrivateIpAddress")}
                for i in self.instances(states=("running",)) if tag(i, "llmstack:environment") == "production"]


def forget_inventory_cache():
    """What README asks after launching or terminating instances (--flush-cache), for every inventory path the
    lab uses at once: inventory_aws_ec2.yml's jsonfile cache (60 s) would list the old instances."""
    shutil.rmtree(os.path.expanduser("~/.cache/llmstack-deploy/inventory"), ignore_errors=True)


def ssh_options(lab):
    """SSH as Ansible uses it in the lab (group_vars/all.yml): the lab key, host keys checked against the
    known_hosts that playbooks/known_hosts.yml wrote."""
    folder = os.path.join(lab["LAB_DIR"], "ssh")
    return {"identity": os.path.join(folder, "id_ed25519"),
            "args": "-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes" % os.path.join(folder, "known_hosts")}


def ssh_host(lab, address, user="ubuntu"):
    """A testinfra host for a lab host, reached the way the plays reach it: SSH as `ubuntu`, then sudo."""
    import testinfra  # pylint: disable=import-outside-toplevel
    options = ssh_options(lab)
    return testinfra.get_host("ssh://%s@%s" % (user, address), ssh_identity_file=options["identity"],
                              ssh_extra_args=options["args"], sudo=True)


def tag(instance, key):
    return dict((t["Key"], t["Value"]) for t in instance.get("Tags", [])).get(key)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    launch = sub.add_parser("launch")
    launch.add_argument("scenario")
    launch.add_argument("hosts", nargs="+", metavar="container=role")
    launch.add_argument("--decoys", action="store_true")
    for name in ("terminate", "hosts"):
        sub.add_parser(name).add_argument("scenario")
    args = parser.parse_args(argv)
    fleet = Fleet(labenv.read(), args.scenario)
    if args.command == "launch":
        fleet.launch([tuple(h.split("=", 1)) for h in args.hosts], decoys=args.decoys)
    elif args.command == "terminate":
        fleet.terminate()
    else:
        print(json.dumps(fleet.hosts(), indent=1))


if __name__ == "__main__":
    main()
