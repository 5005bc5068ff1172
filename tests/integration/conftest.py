"""Integration fixtures: the running lab (tests/lab/up) and a way to run plays through Ansible."""
import json
import os
import subprocess
import sys
import uuid

import pytest

import labenv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def lab():
    try:
        return labenv.read()
    except labenv.LabNotUp as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def ssm_client(lab):
    return labenv.ssm_client(lab)


@pytest.fixture
def prefix():
    """A fresh SSM path per test, so tests never see each other's parameters."""
    return "/it/%s" % uuid.uuid4().hex[:10]


@pytest.fixture
def put(ssm_client):
    """put({name: value}) as String, or {name: (value, 'SecureString')}."""
    def put(params):
        for name, value in params.items():
            kind = "String"
            if isinstance(value, tuple):
                value, kind = value
            ssm_client.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)
    return put


class Play:
    """Runs a one-play playbook with ansible-playbook, the way an operator would."""

    def __init__(self, tmp_path, lab):
        self.tmp_path = tmp_path
        self.lab = lab

    def run(self, tasks, hosts="localhost", inventory=None, args=(), callback="ansible.posix.json", env=None):
        play = [{"hosts": hosts, "gather_facts": False, "tasks": tasks,
                 "module_defaults": {"group/llmstack.deploy.aws": {
                     "region": "us-east-1", "endpoint_url": self.lab["LAB_MOTO_URL"]}}}]
        if hosts == "localhost":
            play[0]["vars"] = {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}
        path = self.tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:6])
        path.write_text(json.dumps(play))
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(path)] + list(args)
        if inventory:
            cmd += ["-i", inventory]
        full_env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                        ANSIBLE_STDOUT_CALLBACK=callback, ANSIBLE_NOCOLOR="1", **labenv.AWS_ENV)
        full_env.update(env or {})
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=600, check=False)
        return Result(proc, callback)


class Result:
    def __init__(self, proc, callback):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = json.loads(proc.stdout) if callback.endswith("json") and proc.stdout.strip() else None

    @property
    def output(self):
        return self.stdout + self.stderr

    def task(self, index=0, host=None):
        hosts = self.data["plays"][0]["tasks"][index]["hosts"]
        return hosts[host] if host else next(iter(hosts.values()))


@pytest.fixture
def play(tmp_path, lab):
    return Play(tmp_path, lab)


@pytest.fixture(scope="session")
def app_images(lab):
    """The rollout test app in the lab registry as lab/rollout-app:v1..v5: v3's health check fails,
    v4 exits at start."""
    return labenv.push_app_images(lab)
