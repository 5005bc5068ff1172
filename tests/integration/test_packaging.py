"""The collection as users get it: `ansible-galaxy collection build` on the repo, the tarball installed into an
empty collections path, and plays run from there, never from the checkout.

Each ansible command here gets a HOME, an ansible.cfg and a working folder of its own under a temporary
folder: collections_path names only the folder the tarball was installed into, so neither the checkout's
.collections link nor ~/.ansible can supply llmstack.deploy. amazon.aws and community.docker come from the
venv's `ansible` package (Galaxy is out of reach; --no-deps).

The execution environment (meta/execution-environment.yml): `ansible-builder create` makes the build context of an
EE that installs the built tarball, and the two stages of its Containerfile that matter here run on this machine
as the file has them (the galaxy install, then the builder's introspect.py over the installed collections): what
they write for pip and bindep is what the collection declares. No image is pulled or built."""
import os
import re
import stat
import subprocess
import sys
import tarfile
import uuid

import pytest
import yaml

import labenv
from helpers import copy_checkout

ROOT = labenv.ROOT
BIN = os.path.dirname(sys.executable)
MODULES = sorted(f for f in os.listdir(os.path.join(ROOT, "plugins", "modules")) if f.endswith(".py"))
ROLES = sorted(r for r in os.listdir(os.path.join(ROOT, "roles"))
               if os.path.isfile(os.path.join(ROOT, "roles", r, "meta", "argument_specs.yml")))
PLAYBOOKS = sorted(f for f in os.listdir(os.path.join(ROOT, "playbooks")) if f.endswith(".yml"))
with open(os.path.join(ROOT, "meta", "execution-environment.yml"), encoding="utf-8") as _f:
    EE_DEPENDENCIES = yaml.safe_load(_f)["dependencies"]
NOT_SHIPPED = ("tests/", "molecule/", ".github/", ".ci/", ".collections/", ".ansible/", ".pytest_cache/")


class Sandbox:
    """A folder with home/, collections/ (empty), work/ and an ansible.cfg whose collections_path is collections/
    alone; run() runs a venv command there with that config and nothing else of this machine's Ansible setup."""

    def __init__(self, base):
        self.base = base
        for sub in ("home", "collections", "work", "dist"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.cfg = base / "ansible.cfg"
        self.cfg.write_text("[defaults]\ncollections_path = %s\ninterpreter_python = auto_silent\n"
                            "retry_files_enabled = False\n" % (base / "collections"))

    def env(self):
        env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYTHONPATH")))
        env.update(labenv.AWS_ENV, HOME=str(self.base / "home"), ANSIBLE_CONFIG=str(self.cfg), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_STDOUT_CALLBACK="default")
        return env

    def run(self, argv, cwd=None, timeout=300):
        return subprocess.run([os.path.join(BIN, argv[0])] + list(argv[1:]), cwd=str(cwd or self.base / "work"),
                              env=self.env(), capture_output=True, text=True, timeout=timeout, check=False)

    def build(self, source):
        res = self.run(["ansible-galaxy", "collection", "build", "--output-path", str(self.base / "dist"), str(source)])
        assert res.returncode == 0, res.stdout + res.stderr
        tarballs = os.listdir(str(self.base / "dist"))
        assert len(tarballs) == 1 and tarballs[0].startswith("llmstack-deploy-"), tarballs
        return str(self.base / "dist" / tarballs[0])

    def install(self, tarball):
        res = self.run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", str(self.base / "collections"),
                        tarball])
        assert res.returncode == 0, res.stdout + res.stderr
        return self.base / "collections" / "ansible_collections" / "llmstack" / "deploy"


def members(tarball):
    with tarfile.open(tarball) as tar:
        return set(m.name for m in tar.getmembers() if m.isfile())


def content_problems(names):
    """What the built collection lacks or should not hold, as messages naming the path."""
    found = []
    wanted = (["plugins/modules/" + m for m in MODULES] + ["roles/%s/meta/argument_specs.yml" % r for r in ROLES]
              + ["playbooks/" + p for p in PLAYBOOKS] + ["meta/runtime.yml", "MANIFEST.json"]
              + ["meta/execution-environment.yml"] + sorted(EE_DEPENDENCIES.values()))
    found += ["missing: %s" % name for name in wanted if name not in names]
    found += ["shipped: %s" % name for name in sorted(names)
              if name.startswith(NOT_SHIPPED) or "/__pycache__/" in name or name.endswith(".pyc")]
    return found


def ssm_env_file_play(sandbox, lab, prefix, out):
    """A localhost play calling llmstack.deploy.ssm_env_file against the lab's moto; its path in work/."""
    play = sandbox.base / "work" / "ssm.yml"
    play.write_text("""---
- name: Env file from the installed collection
  hosts: localhost
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Write the env file from SSM
      llmstack.deploy.ssm_env_file:
        path: %s
        paths: [%s]
        region: us-east-1
        endpoint_url: %s
        state_dir: %s
""" % (out, prefix, lab["LAB_MOTO_URL"], sandbox.base / "state"))
    return play


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The repo built as it is and installed into an empty collections path: (sandbox, tarball, install dir)."""
    sandbox = Sandbox(tmp_path_factory.mktemp("packaging"))
    tarball = sandbox.build(ROOT)
    return sandbox, tarball, sandbox.install(tarball)


def test_the_tarball_holds_the_collection_and_none_of_the_repo_tooling(installed):
    _sandbox, tarball, _dest = installed
    names = members(tarball)
    assert content_problems(names) == []
    assert {"README.md", "CHANGELOG.md", "changelogs/changelog.yaml"} <= names


def test_only_the_installed_copy_is_visible(installed):
    """From the sandbox, llmstack.deploy resolves to the install folder and nowhere else (not the checkout)."""
    sandbox, _tarball, dest = installed
    res = sandbox.run(["ansible-galaxy", "collection", "list", "llmstack.deploy"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert str(sandbox.base / "collections" / "ansible_collections") in res.stdout, res.stdout
    assert ROOT not in res.stdout + res.stderr, res.stdout + res.stderr
    res = sandbox.run(["ansible-doc", "-t", "module", "llmstack.deploy.ssm_env_file", "--json"])
    assert res.returncode == 0 and str(dest / "plugins" / "modules" / "ssm_env_file.py") in res.stdout, res.stdout


def test_a_play_of_the_installed_collection_writes_an_env_file_from_ssm(installed, lab, prefix, put, tmp_path):
    sandbox, _tarball, _dest = installed
    secret = "pkg-%s" % uuid.uuid4().hex
    put({prefix + "/db_password": (secret, "SecureString")})
    out = tmp_path / "app.env"
    res = sandbox.run(["ansible-playbook", str(ssm_env_file_play(sandbox, lab, prefix, out))])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "changed=1" in res.stdout, res.stdout
    lines = [ln for ln in out.read_text().splitlines() if not ln.startswith("#")]
    assert lines == ["DB_PASSWORD=%s" % secret], lines
    assert stat.S_IMODE(os.stat(str(out)).st_mode) == 0o600
    assert secret not in res.stdout + res.stderr


@pytest.mark.parametrize("playbook", [p[:-4] for p in PLAYBOOKS])
def test_every_shipped_playbook_passes_a_syntax_check_by_fqcn(installed, playbook):
    sandbox, _tarball, dest = installed
    assert (dest / "playbooks" / (playbook + ".yml")).is_file()
    res = sandbox.run(["ansible-playbook", "--syntax-check", "llmstack.deploy." + playbook], timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    # ansible-playbook names the file it resolved the FQCN to: the installed copy's.
    assert "playbook: %s" % (dest / "playbooks" / (playbook + ".yml")) in res.stdout, res.stdout


def test_a_broken_build_is_caught(tmp_path, lab, prefix, put):
    """A copy of the repo with the ssm_env_file module removed and `tests` no longer in build_ignore: the
    content check names both, and the same play fails against the installed build."""
    source = copy_checkout(tmp_path / "src")
    os.remove(str(source / "plugins" / "modules" / "ssm_env_file.py"))
    galaxy = source / "galaxy.yml"
    text = galaxy.read_text()
    galaxy.write_text(text.replace("\n  - tests\n", "\n"))
    assert galaxy.read_text() != text
    sandbox = Sandbox(tmp_path / "sandbox")
    tarball = sandbox.build(source)
    problems = content_problems(members(tarball))
    assert "missing: plugins/modules/ssm_env_file.py" in problems, problems
    assert any(p.startswith("shipped: tests/") for p in problems), problems

    sandbox.install(tarball)
    put({prefix + "/db_password": ("pkg-%s" % uuid.uuid4().hex, "SecureString")})
    out = tmp_path / "app.env"
    res = sandbox.run(["ansible-playbook", str(ssm_env_file_play(sandbox, lab, prefix, out))])
    assert res.returncode != 0, res.stdout + res.stderr
    assert "couldn't resolve module/action 'llmstack.deploy.ssm_env_file'" in res.stderr, res.stdout + res.stderr
    assert not out.exists()


# The execution environment.

EE_DEFINITION = """---
version: 3
images:
  base_image:
    name: ee-base.invalid/ee-minimal:latest
dependencies:
  galaxy:
    collections:
      - name: collections/%(tarball)s
        type: file
additional_build_files:
  - src: %(src)s
    dest: collections
"""
# The Containerfile lines replayed below (ansible-builder 3.x), so a builder that changes them fails here first.
GALAXY_STAGE = ("COPY _build /build", "WORKDIR /build")
GALAXY_INSTALL = re.compile(r'^RUN .*ansible-galaxy collection install \S* ?-r requirements\.yml '
                            r'--collections-path "(?P<path>[^"]+)"$', re.M)
INTROSPECT = re.compile(r"^RUN \$PYCMD /output/scripts/introspect\.py introspect "
                        r"--write-bindep=(?P<bindep>\S+) --write-pip=(?P<pip>\S+)$", re.M)


def declared(kind):
    """The requirement lines of the collection's python or system file, as ansible-builder reads them."""
    with open(os.path.join(ROOT, EE_DEPENDENCIES[kind]), encoding="utf-8") as f:
        return [re.sub(r"\s+#.*$", "", ln.strip()) for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


def ee_context(tarball, where):
    """`ansible-builder create` for an EE holding `tarball`, in a sandbox of its own at `where` (no collection
    installed anywhere it looks, as in the image): (the sandbox, the context folder, its Containerfile)."""
    sandbox = Sandbox(where)
    definition = where / "execution-environment.yml"
    definition.write_text(EE_DEFINITION % {"tarball": os.path.basename(tarball), "src": tarball})
    context = where / "context"
    res = sandbox.run(["ansible-builder", "create", "--context", str(context), "--output-filename", "Containerfile",
                       "-f", str(definition)])
    assert res.returncode == 0, res.stdout + res.stderr
    return sandbox, context, (context / "Containerfile").read_text()


def ee_stages(sandbox, context, containerfile):
    """The Containerfile's galaxy stage (the collection installed from the context's requirements.yml, --no-deps:
    Galaxy is out of reach) and its builder stage's introspection, under the sandbox's image/ instead of the
    image's root: (introspect's result, the collections folder, the pip file, the bindep file)."""
    where = sandbox.base / "image"
    for line in GALAXY_STAGE:
        assert line in containerfile.splitlines(), containerfile
    install, introspect = GALAXY_INSTALL.search(containerfile), INTROSPECT.search(containerfile)
    assert install and introspect, containerfile
    collections = where / install.group("path").lstrip("/")
    res = sandbox.run(["ansible-galaxy", "collection", "install", "--no-deps", "-r", "requirements.yml",
                       "--collections-path", str(collections)], cwd=context / "_build")
    assert res.returncode == 0, res.stdout + res.stderr
    pip, bindep = where / introspect.group("pip").lstrip("/"), where / introspect.group("bindep").lstrip("/")
    res = sandbox.run(["python", str(context / "_build" / "scripts" / "introspect.py"), "introspect", str(collections),
                       "--write-bindep=%s" % bindep, "--write-pip=%s" % pip])
    return res, collections, pip, bindep


def test_an_execution_environment_gets_the_collection_s_dependencies(installed, tmp_path):
    """ansible-builder finds meta/execution-environment.yml in the installed tarball and the files it names: the
    pip and bindep files of the EE's builder stage hold exactly the collection's lines."""
    _sandbox, tarball, _dest = installed
    sandbox, context, containerfile = ee_context(tarball, tmp_path / "ee")
    copied = context / "_build" / "collections" / os.path.basename(tarball)
    assert copied.is_file() and copied.read_bytes() == open(tarball, "rb").read()
    with open(str(context / "_build" / "requirements.yml"), encoding="utf-8") as f:
        assert yaml.safe_load(f) == {"collections": [{"name": "collections/" + os.path.basename(tarball),
                                                      "type": "file"}]}

    res, collections, pip, bindep = ee_stages(sandbox, context, containerfile)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (collections / "ansible_collections" / "llmstack" / "deploy" / "meta" / "execution-environment.yml").is_file()
    python, system = declared("python"), declared("system")
    assert {"boto3", "botocore", "docker"} <= set(re.split(r"[<>=!~ \[;]", line)[0] for line in python), python
    assert system, "no system requirement declared"
    assert pip.read_text().splitlines() == ["%s  # from collection llmstack.deploy" % line for line in python]
    assert bindep.read_text().splitlines() == ["%s  # from collection llmstack.deploy" % line for line in system]


def test_dependency_files_left_out_of_the_build_are_caught(tmp_path):
    """A copy of the repo whose build_ignore drops meta/ee-*.txt: the content check names them, and the EE's
    introspection stops on the missing file instead of building an image without the libraries."""
    source = copy_checkout(tmp_path / "src")
    galaxy = source / "galaxy.yml"
    text = galaxy.read_text()
    galaxy.write_text(text.replace("build_ignore:\n", "build_ignore:\n  - meta/ee-*.txt\n", 1))
    assert galaxy.read_text() != text
    sandbox = Sandbox(tmp_path / "sandbox")
    tarball = sandbox.build(source)
    problems = content_problems(members(tarball))
    assert problems == ["missing: %s" % path for path in sorted(EE_DEPENDENCIES.values())], problems

    sandbox, context, containerfile = ee_context(tarball, tmp_path / "ee")
    res, _collections, pip, _bindep = ee_stages(sandbox, context, containerfile)
    assert res.returncode != 0, res.stdout + res.stderr
    assert "Expected requirements file not present" in res.stdout + res.stderr, res.stdout + res.stderr
    assert not pip.exists()
