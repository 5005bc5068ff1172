"""Helpers for the container_rollout tests: a service under test, and how to look at containers."""
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid

import labenv

ROOT = labenv.ROOT


@contextlib.contextmanager
def running_lab_host(lab, prefix):
    """An EC2 stand-in (systemd + its own Docker engine, Debian's python3-docker), up until the block ends.

    Run without --privileged (this kernel lacks CAP_SYS_RESOURCE): every capability but that one."""
    name = "%s-%s" % (prefix, uuid.uuid4().hex[:6])
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
            raise AssertionError("docker did not start inside %s" % name)
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, check=False)


class Play:
    """Runs a one-play playbook with ansible-playbook, the way an operator would."""

    def __init__(self, tmp_path, lab):
        self.tmp_path = tmp_path
        self.lab = lab

    def command(self, tasks, hosts="localhost", inventory=None, args=(), callback="ansible.posix.json", env=None,
                module_defaults=None):
        defaults = {"group/llmstack.deploy.aws": {"region": "us-east-1", "endpoint_url": self.lab["LAB_MOTO_URL"]}}
        defaults.update(module_defaults or {})
        play = [{"hosts": hosts, "gather_facts": False, "tasks": tasks, "module_defaults": defaults}]
        if hosts == "localhost":
            play[0]["vars"] = {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}
        path = self.tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:6])
        path.write_text(json.dumps(play))
        return labenv.playbook_command(path, list(args) + (["-i", inventory] if inventory else []), env, callback)

    def run(self, tasks, callback="ansible.posix.json", **kwargs):
        cmd, env = self.command(tasks, callback=callback, **kwargs)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600, check=False)
        return Result(proc, callback)

    def start(self, tasks, callback="ansible.posix.json", **kwargs):
        """Start a play in the background (to kill its module, or to race another run)."""
        cmd, env = self.command(tasks, callback=callback, **kwargs)
        return Background(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                           env=env), callback)


class Background:
    def __init__(self, popen, callback):
        self.popen, self.callback = popen, callback

    def wait(self, timeout=600):
        stdout, stderr = self.popen.communicate(timeout=timeout)
        return Result(subprocess.CompletedProcess(self.popen.args, self.popen.returncode, stdout, stderr),
                      self.callback)


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


ROLLOUT = "llmstack.deploy.container_rollout"


def http_get(port, path="/"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as resp:
        return json.loads(resp.read())


def inspect(name):
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=False)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


class Service:
    """One service under test: a unique name, its own state dir, env file and ports, cleaned up after."""

    def __init__(self, play, lab, tmp_path, strategy):
        self.play, self.lab, self.strategy, self.tmp_path = play, lab, strategy, tmp_path
        self.name = "it_%s" % uuid.uuid4().hex[:8]
        self.state_dir = str(tmp_path / "state")
        self.env_file = tmp_path / "app.env"
        self.secret = "tok-%s" % uuid.uuid4().hex
        self.env_file.write_text("GREETING=hello\nSECRET_TOKEN=%s\n" % self.secret)
        self.ports = {"blue": labenv.free_port(), "green": labenv.free_port(), "single": labenv.free_port()}
        # nginx workers (nobody) read the switch file, as on a host: its folder must be world-readable,
        # which pytest's own temp folders are not.
        self.switch_dir = tempfile.mkdtemp(prefix="llmstack-switch-")
        os.chmod(self.switch_dir, 0o755)
        self.switch_file = os.path.join(self.switch_dir, "%s.live" % self.name)

    def base(self, **over):
        """What every task needs, also a rollback: name, strategy, where state lives."""
        args = {"name": self.name, "strategy": self.strategy, "state_dir": self.state_dir,
                "health_timeout": 30, "stop_timeout": 5, "drain_seconds": 5, "switch_settle": 0.2}
        if self.strategy == "blue_green":
            args["switch_file"] = self.switch_file
        args.update(over)
        return dict((k, v) for k, v in args.items() if v is not None)

    def args(self, **over):
        args = {"registry": self.lab["LAB_REGISTRY"], "registry_username": self.lab["LAB_REGISTRY_USER"],
                "registry_password": self.lab["LAB_REGISTRY_PASSWORD"], "env_files": [str(self.env_file)]}
        if self.strategy == "blue_green":
            args["slots"] = dict((s, {"ports": ["127.0.0.1:%d:8000" % self.ports[s]]}) for s in ("blue", "green"))
        else:
            args["ports"] = ["127.0.0.1:%d:8000" % self.ports["single"]]
        args.update(over)
        return self.base(**args)

    def run(self, play_args=(), proc_env=None, **over):
        """Run the module with these arguments; proc_env goes to ansible-playbook's environment."""
        return self.play.run([{ROLLOUT: self.args(**over), "register": "r"}], args=play_args, env=proc_env)

    def start(self, proc_env=None, **over):
        return self.play.start([{ROLLOUT: self.args(**over), "register": "r"}], env=proc_env)

    def rollback(self, play_args=(), **over):
        return self.play.run([{ROLLOUT: self.base(state="rolled_back", **over), "register": "r"}], args=play_args,
                             callback="ansible.posix.json" if not play_args else "default")

    def live_slot(self):
        with open(self.switch_file) as f:
            return f.read().strip().rsplit("_", 1)[1]

    def serving_name(self):
        return self.name if self.strategy == "recreate" else "%s-%s" % (self.name, self.live_slot())

    def serving_port(self):
        return self.ports["single"] if self.strategy == "recreate" else self.ports[self.live_slot()]

    def version(self):
        return http_get(self.serving_port())["version"]

    def snapshot(self):
        """What must not change when a run fails on bad input: the serving container, its start, its answer."""
        container = inspect(self.serving_name())
        return {"id": container["Id"], "started": container["State"]["StartedAt"], "version": self.version()}

    def history(self):
        with open(os.path.join(self.state_dir, "deployments", self.name + ".json")) as f:
            return json.load(f)

    def current(self):
        data = self.history()
        return next(e for e in data["deployments"] if e["seq"] == data["current"])

    def containers(self):
        return subprocess.run(["docker", "ps", "-aq", "--filter", "label=llmstack.service=" + self.name],
                              capture_output=True, text=True, check=False).stdout.split()

    def cleanup(self):
        ids = self.containers()
        if ids:
            subprocess.run(["docker", "rm", "-f"] + ids, capture_output=True, check=False)
        shutil.rmtree(self.switch_dir, ignore_errors=True)


def copy_checkout(dest):
    """The checked-in and new (not ignored) files of the work tree, as a fresh clone would have them."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in files:
        if f and not f.startswith(".collections/") and os.path.isfile(os.path.join(ROOT, f)):
            os.makedirs(str(dest / os.path.dirname(f)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, f), str(dest / f))
    return dest
