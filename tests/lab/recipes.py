"""Run a recipe of examples/ in the lab as its README runs it: `ansible-playbook -i examples/<recipe>/<inventory>
playbooks/<play>`, the recipe's own group_vars read beside its inventory, plus extra vars for what the lab can't
have (tests/lab/recipes.yml): lab images standing in for the recipe's apps, the lab-only settings of the lab's
inventory (SSH, moto, the lab registry), and files the recipe names on the controller (certificates, builds).

Recipe(lab, name).seed() puts the SSM parameters its README lists into moto (values kept under
<lab dir>/recipes/, 0600), and .playbook(play, *args, host=...) runs a play; for a static inventory (a VPS), host
(a lab host of tests/lab/fleet.py) is where its one host's address points.
"""
import json
import os
import secrets
import shutil
import subprocess
import sys

import yaml

import frontend_build
import labenv

ROOT = labenv.ROOT
with open(os.path.join(ROOT, "tests", "lab", "recipes.yml"), encoding="utf-8") as _f:
    RECIPES = yaml.safe_load(_f)
LAB_ONLY_MARK = "# --- the lab only ---"


def lab_only_vars():
    """The lab-only part of tests/lab/inventory/group_vars/all.yml, as written (templates unrendered)."""
    with open(os.path.join(ROOT, "tests", "lab", "inventory", "group_vars", "all.yml"), encoding="utf-8") as f:
        text = f.read()
    return yaml.safe_load(text[text.index(LAB_ONLY_MARK):])


def lab_image(lab, variable, image):
    """The recipe's image with the lab image's repository: the recipe's tag stays when it is computed (a
    template, e.g. an SSM lookup), else the lab image's tag is used."""
    repository, lab_tag = lab[variable].rsplit(":", 1)
    tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
    return "%s:%s" % (repository, tag if "{{" in tag else lab_tag)


def recap(proc, name):
    """A host's PLAY RECAP counts ({"ok": 12, "changed": 0, ...}) in an ansible-playbook run's output."""
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(name + " ") and " : ok=" in ln]
    assert lines, "no PLAY RECAP line for %s: %s" % (name, proc.stdout[-3000:] + proc.stderr[-2000:])
    return dict((k, int(v)) for k, v in (kv.split("=") for kv in lines[-1].split(":", 1)[1].split()))


class Recipe:
    def __init__(self, lab, name):
        self.lab, self.name = lab, name
        self.spec = RECIPES[name]
        self.folder = os.path.join(ROOT, "examples", name)
        # group_vars/all.yml, or all/main.yml where the vault file goes beside it (Ansible reads one or the other).
        folder = os.path.join(self.folder, "group_vars", "all")
        with open(os.path.join(folder, "main.yml") if os.path.isdir(folder) else folder + ".yml", encoding="utf-8") as f:
            self.group_vars = yaml.safe_load(f)
        self.prefix = self.group_vars["llmstack_ssm_prefix"]
        self.lab_dir = os.path.join(lab["LAB_DIR"], "recipes", name)
        os.makedirs(self.lab_dir, mode=0o700, exist_ok=True)
        static = os.path.join(self.folder, "hosts.yml")
        self.inventory = static if os.path.exists(static) else os.path.join(self.folder, "inventory_aws_ec2.yml")
        # Where its parameters go: SSM (moto), or its Ansible Vault file (group_vars/all/vault.yml).
        self.source = "vault" if "vault" in self.spec else "ssm"
        self.parameters = self.spec.get(self.source, {})
        if self.source == "vault":
            # The recipe's folder copied, as a user copies it, to hold the vault file beside its inventory.
            self.copy = os.path.join(self.lab_dir, "recipe")
            shutil.copytree(self.folder, self.copy, dirs_exist_ok=True)
            self.inventory = os.path.join(self.copy, os.path.basename(self.inventory))

    # --- the lab's files for the recipe -----------------------------------------------------------------
    def secret(self, name):
        """A value kept for the recipe (made once): a random secret or an API key."""
        path = os.path.join(self.lab_dir, name.replace("/", "__"))
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(24))
        with open(path, encoding="utf-8") as f:
            return f.read().strip()

    def tls(self):
        """(certificate, key) paths: self-signed for the recipe's nginx_gateway_server_name, made once."""
        cert, key = os.path.join(self.lab_dir, "tls.crt"), os.path.join(self.lab_dir, "tls.key")
        if not os.path.exists(cert):
            name = self.group_vars["nginx_gateway_server_name"]
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj",
                            "/CN=" + name, "-addext", "subjectAltName=DNS:" + name, "-keyout", key, "-out", cert],
                           check=True, capture_output=True)
            os.chmod(key, 0o600)
        return cert, key

    def builds(self, version):
        """A folder of frontend builds, one per static route's folder name under builds_dir, each the lab frontend's
        site with its version set to <name>-<version>. Returns the folder."""
        folder = os.path.join(self.lab_dir, "builds")
        for route in self.group_vars.get("nginx_gateway_routes", []):
            if "static" not in route:
                continue
            name = os.path.basename(route["static"].rstrip("/"))
            frontend_build.build(os.path.join(folder, name), "%s-%s" % (name, version))
        return folder

    def value(self, name, kind):
        kind = str(kind)
        if kind in ("secret", "key"):
            return self.secret(name)
        if kind == "registry":
            return self.lab["LAB_REGISTRY_PASSWORD"]
        if kind in ("tls_cert", "tls_key"):
            with open(self.tls()[0 if kind == "tls_cert" else 1], encoding="utf-8") as f:
                return f.read()
        if kind.startswith("image_tag:"):
            return self.lab[kind.split(":", 1)[1]].rsplit(":", 1)[1]
        return kind

    def seed(self, leave_out=()):
        """The recipe's parameters where it reads them: in moto (SecureString for secrets, keys and the TLS key,
        else String), or in its vault file, encrypted with ansible-vault (leave_out: names the file then lacks)."""
        if self.source == "vault":
            self.write_vault(dict((name, self.value(name, kind)) for name, kind in self.parameters.items()
                                  if name not in leave_out))
            return
        client = labenv.ssm_client(self.lab)
        for name, kind in self.parameters.items():
            secure = str(kind) in ("secret", "key", "registry", "tls_key")
            client.put_parameter(Name="%s/%s" % (self.prefix, name), Value=self.value(name, kind), Overwrite=True,
                                 Type="SecureString" if secure else "String")

    def vault_password_file(self):
        return os.path.join(self.lab_dir, "vault-password")

    def write_vault(self, parameters):
        """group_vars/all/vault.yml of the recipe's copy: llmstack_vault_parameters, encrypted as its README says."""
        self.secret("vault-password")  # made once, at vault_password_file()
        folder = os.path.join(self.copy, "group_vars", "all")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "vault.yml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump({"llmstack_vault_parameters": parameters}, f)
        binary = os.path.join(os.path.dirname(sys.executable), "ansible-vault")
        subprocess.run([binary if os.path.exists(binary) else "ansible-vault", "encrypt", path,
                        "--vault-password-file", self.vault_password_file()], check=True, capture_output=True)

    def leaked(self, *texts):
        """The names of the recipe's secrets that appear in any of texts."""
        return [name for name, value in self.seeded_secrets().items() if any(value in t for t in texts)]

    def seeded_secrets(self):
        """{name: value} of what the lab made for the recipe that must never show in output: its secrets, keys,
        the registry password and each line of its TLS key's body (a PEM's first and last lines are public)."""
        found = dict((name, self.value(name, kind)) for name, kind in self.parameters.items()
                     if str(kind) in ("secret", "key", "registry"))
        key = os.path.join(self.lab_dir, "tls.key")
        if os.path.exists(key):
            with open(key, encoding="utf-8") as f:
                for number, line in enumerate(f.read().splitlines()):
                    if not line.startswith("-----"):
                        found["tls key line %d" % number] = line
        return found

    # --- the run ----------------------------------------------------------------------------------------
    def apps(self):
        """The recipe's llmstack_apps, each on its lab stand-in image with the env it needs."""
        apps = json.loads(json.dumps(self.group_vars["llmstack_apps"]))
        for app in apps:
            stand_in = self.spec["apps"][app["name"]]
            app["image"] = lab_image(self.lab, stand_in["image"], app["image"])
            if stand_in.get("env"):
                app["env"] = dict(app.get("env") or {}, **stand_in["env"])
        return apps

    def extra_vars(self, host=None):
        values = dict((k, v) for k, v in lab_only_vars().items() if k not in self.spec.get("keep", []))
        values["llmstack_registry_username"] = self.lab["LAB_REGISTRY_USER"]
        values["llmstack_apps"] = self.apps()
        values.update(self.spec.get("vars", {}))
        values.update((variable, self.lab[fact]) for variable, fact in self.spec.get("lab_vars", {}).items())
        for variable, kind in self.spec.get("files", {}).items():
            if kind == "builds":
                # The builds as they are (a test ships a new one with builds()); version 1 if there are none yet.
                folder = os.path.join(self.lab_dir, "builds")
                values[variable] = folder if os.path.isdir(folder) else self.builds("1")
            else:
                values[variable] = self.tls()[0 if kind == "tls_cert" else 1]
        if host is not None:
            # A static inventory's host, pointed at the lab host, reached as the lab reaches its hosts.
            values.update(ansible_host=host["address"], llmstack_private_address=host["address"], ansible_user="ubuntu")
        return values

    def playbook(self, play, *args, host=None, timeout=900):
        """ansible-playbook -i <the recipe's inventory> playbooks/<play> [args], from the repo root, with the
        recipe's lab overlay as extra vars (a file, 0600: it names no secret, but the registry user)."""
        overlay = os.path.join(self.lab_dir, "overlay.json")
        fd = os.open(overlay, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.extra_vars(host), f)
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", **labenv.AWS_ENV)
        env.update(self.spec.get("env", {}))
        binary = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
        argv = [binary if os.path.exists(binary) else "ansible-playbook", "-i", os.path.relpath(self.inventory, ROOT),
                os.path.join("playbooks", play), "-e", "@" + overlay] + list(args)
        if self.source == "vault":
            argv += ["--vault-password-file", self.vault_password_file()]  # the README's --ask-vault-pass
        return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
