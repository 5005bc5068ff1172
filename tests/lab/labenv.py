"""Read the lab's connection facts (written by tests/lab/up) for tests and benchmarks."""
import os
import shlex
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB_ENV = os.path.join(os.environ.get("LLMSTACK_LAB_DIR", "/var/lib/llmstack-lab"), "lab.env")
# moto accepts any credentials; real AWS takes them from boto3's normal chain.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
# The same, as boto3 client arguments.
AWS_CLIENT = {"region_name": AWS_ENV["AWS_DEFAULT_REGION"], "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
              "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"]}


class LabNotUp(Exception):
    pass


def read(path=LAB_ENV):
    """The LAB_* variables of lab.env, as the shell would see them."""
    if not os.path.exists(path):
        raise LabNotUp("the lab is not up (%s missing): run tests/lab/up" % path)
    out = subprocess.run(["bash", "-c", "set -a; . %s; env -0" % shlex.quote(path)],
                         check=True, capture_output=True, text=True, env={"PATH": os.environ["PATH"]}).stdout
    env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
    return dict((k, v) for k, v in env.items() if k.startswith("LAB_"))


def plain(value):
    """ansible-inventory --list marks inventory values unsafe ({"__ansible_unsafe": "..."}): unwrap them."""
    if isinstance(value, dict):
        if list(value) == ["__ansible_unsafe"]:
            return value["__ansible_unsafe"]
        return dict((k, plain(v)) for k, v in value.items())
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def playbook_command(path, args=(), env=None, callback="ansible.posix.json"):
    """(argv, environment) to run a playbook with this venv's ansible-playbook and the repo's ansible.cfg,
    as tests and benchmarks do. env adds to the environment (moto's credentials are always there)."""
    full_env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK=callback,
                    ANSIBLE_NOCOLOR="1", **AWS_ENV)
    full_env.update(env or {})
    return [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), str(path)] + list(args), full_env


def free_port():
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssm_client(lab):
    import boto3
    return boto3.client("ssm", endpoint_url=lab["LAB_MOTO_URL"], **AWS_CLIENT)


APP_VERSIONS = {"v1": "ok", "v2": "ok", "v3": "unhealthy", "v4": "crash", "v5": "ok"}


def push_app_images(lab, versions=tuple(APP_VERSIONS)):
    """Build the rollout test app (tests/images/rollout-app) and push it to the lab registry as
    lab/rollout-app:<version>. Docker's build cache makes repeat builds instant. Returns {version: image}."""
    import shutil
    import tempfile
    context = os.path.join(ROOT, "tests", "images", "rollout-app")
    config = tempfile.mkdtemp()  # the login stays out of ~/.docker
    env = dict(os.environ, DOCKER_CONFIG=config)
    try:
        subprocess.run(["docker", "login", "-u", lab["LAB_REGISTRY_USER"], "--password-stdin", lab["LAB_REGISTRY"]],
                       input=lab["LAB_REGISTRY_PASSWORD"], text=True, env=env, check=True, capture_output=True)
        for version in versions:
            tag = "%s/lab/rollout-app:%s" % (lab["LAB_REGISTRY"], version)
            subprocess.run(["docker", "build", "-q", "--build-arg", "APP_VERSION=" + version, "--build-arg",
                            "APP_MODE=" + APP_VERSIONS[version], "-t", tag, context], check=True, capture_output=True)
            subprocess.run(["docker", "push", "-q", tag], env=env, check=True, capture_output=True)
    finally:
        shutil.rmtree(config, ignore_errors=True)
    return dict((v, "lab/rollout-app:%s" % v) for v in versions)
