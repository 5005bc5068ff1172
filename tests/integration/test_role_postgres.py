"""The postgres role on a lab host (systemd + its own Docker), with SSM on moto and the lab's postgres image.

One host for the whole module: the tests run in order and build on each other (converge, the password
in a file only, backup, restore, retention, a new password, an upgrade from a password in the env file,
image change, a published port, a data/major mismatch)."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

import labenv
from helpers import running_lab_host

ROOT = labenv.ROOT
ENV_FILE = "/etc/llmstack/postgres.env"
PASSWORD_FILE = "/etc/llmstack/postgres/password"
PASSWORD_MOUNT = "/run/secrets/postgres_password"
BACKUP_DIR = "/var/backups/llmstack/postgres"
DB_USER, DB_NAME = "llm", "agent"


class Host:
    """A lab host container and the plays run against it."""

    def __init__(self, name, lab, workdir, prefix):
        self.name, self.lab, self.workdir, self.prefix = name, lab, workdir, prefix
        self.inventory = os.path.join(workdir, "hosts.ini")
        with open(self.inventory, "w") as f:
            # No sudo on the lab host: the docker connection is root already.
            f.write("[llmstack_app]\n%s ansible_connection=community.docker.docker "
                    "ansible_python_interpreter=/usr/bin/python3 ansible_become=false\n" % name)
        self.converge_play = os.path.join(workdir, "converge.yml")
        with open(self.converge_play, "w") as f:
            json.dump([{
                "name": "Converge postgres", "hosts": "llmstack_app", "gather_facts": False,
                "environment": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
                "module_defaults": {"group/llmstack.deploy.aws": {
                    "region": "us-east-1", "endpoint_url": lab["LAB_MOTO_URL_FROM_HOSTS"]}},
                "roles": ["llmstack.deploy.postgres"],
            }], f)
        self.vars = {"llmstack_ssm_prefix": prefix, "postgres_image": lab["LAB_IMAGE_POSTGRES"],
                     "postgres_registry_username": lab["LAB_REGISTRY_USER"],
                     "postgres_registry_password": lab["LAB_REGISTRY_PASSWORD"]}

    def playbook(self, path, extra=None, args=()):
        varfile = os.path.join(self.workdir, "vars-%s.json" % uuid.uuid4().hex[:6])
        with open(varfile, "w") as f:
            json.dump(dict(self.vars, **(extra or {})), f)
        cmd, env = labenv.playbook_command(path, ["-i", self.inventory, "-e", "@" + varfile] + list(args))
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600, check=False)
        return Run(proc, self.name)

    def converge(self, args=(), **extra):
        return self.playbook(self.converge_play, extra, args)

    def backup(self):
        return self.playbook(os.path.join(ROOT, "playbooks", "backup.yml"))

    def restore(self, **extra):
        return self.playbook(os.path.join(ROOT, "playbooks", "restore.yml"), extra)

    def sh(self, script, check=True):
        proc = subprocess.run(["docker", "exec", self.name, "sh", "-c", script], capture_output=True, text=True,
                              check=False)
        if check and proc.returncode != 0:
            raise AssertionError("%s: rc %d\n%s%s" % (script, proc.returncode, proc.stdout, proc.stderr))
        return proc

    def sql(self, query):
        return self.sh("docker exec postgres psql -v ON_ERROR_STOP=1 -U %s -d %s -tAc \"%s\"" % (DB_USER, DB_NAME, query)
                       ).stdout.strip()

    def container(self, name="postgres"):
        out = self.sh("docker inspect %s" % name, check=False)
        return json.loads(out.stdout)[0] if out.returncode == 0 else None

    def psql_tcp(self, password, query="select current_user"):
        """psql from another container on the stack's network, over TCP to the alias postgres, as the agent
        service connects: a password is checked there (scram-sha-256), unlike on the local socket."""
        image = self.container()["Image"]
        return subprocess.run(["docker", "exec", "-e", "PGPASSWORD=" + password, self.name, "docker", "run", "--rm",
                               "--network", "llmstack", "-e", "PGPASSWORD", "--entrypoint", "psql", image,
                               "-h", "postgres", "-U", DB_USER, "-d", DB_NAME, "-tAc", query],
                              capture_output=True, text=True, check=False)

    def ssm_password(self):
        return labenv.ssm_client(self.lab).get_parameter(
            Name="%s/postgres/postgres_password" % self.prefix, WithDecryption=True)["Parameter"]["Value"]

    def backups(self):
        return sorted(self.sh("ls -1 %s" % BACKUP_DIR).stdout.split())

    def ip(self):
        out = subprocess.run(["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", self.name],
                             capture_output=True, text=True, check=True)
        return out.stdout.strip()


class Run:
    def __init__(self, proc, host):
        self.rc, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None
        self.host = host

    @property
    def output(self):
        return self.stdout + self.stderr

    @property
    def changed(self):
        return self.data["stats"][self.host]["changed"]

    def changed_tasks(self):
        return [task["task"]["name"] for play in self.data["plays"] for task in play["tasks"]
                if task["hosts"].get(self.host, {}).get("changed")]

    def failure(self):
        """The message of the task that failed."""
        for play in self.data["plays"]:
            for task in play["tasks"]:
                result = task["hosts"].get(self.host, {})
                if result.get("failed"):
                    return task["task"]["name"], result.get("msg", "")
        return None, ""


def connect(ip, port=5432):
    """'open', or the error a client from outside the host gets."""
    try:
        with socket.create_connection((ip, port), timeout=3):
            return "open"
    except OSError as e:
        return e.__class__.__name__


@pytest.fixture(scope="module")
def ssm_prefix(lab):
    """SSM as Terraform would have seeded it, under a prefix of this module's own."""
    prefix = "/it/pg%s" % uuid.uuid4().hex[:8]
    password = "pw-%s" % uuid.uuid4().hex
    client = labenv.ssm_client(lab)
    for name, value, kind in (("postgres_password", password, "SecureString"), ("postgres_user", DB_USER, "String"),
                              ("postgres_db", DB_NAME, "String")):
        client.put_parameter(Name="%s/postgres/%s" % (prefix, name), Value=value, Type=kind, Overwrite=True)
    return prefix, password


@pytest.fixture(scope="module")
def host(lab, ssm_prefix):
    if "LAB_IMAGE_POSTGRES" not in lab:
        pytest.fail("lab.env has no LAB_IMAGE_POSTGRES: run tests/lab/up", pytrace=False)
    workdir = tempfile.mkdtemp(prefix="llmstack-it-pg-")
    with running_lab_host(lab, "llmstack-it-pg") as name:
        # The stack's network comes from the docker_host role; here, by hand.
        subprocess.run(["docker", "exec", name, "docker", "network", "create", "llmstack"], check=True,
                       capture_output=True)
        yield Host(name, lab, workdir, ssm_prefix[0])


@pytest.fixture(scope="module")
def converged(host):
    # Check mode on the new host first: it runs through and creates nothing.
    check = host.converge(args=["--check", "--diff"])
    assert check.rc == 0, check.output
    assert check.changed > 0
    assert host.sh("ls /etc/llmstack /usr/local/sbin/llmstack-postgres-backup %s 2>&1" % BACKUP_DIR,
                   check=False).stdout.count("No such file") == 3
    assert host.container() is None and not host.sh("docker volume ls -q").stdout.strip()
    started = time.monotonic()
    first = host.converge()
    assert first.rc == 0, first.output
    return first, time.monotonic() - started


def test_converge_then_nothing_changes(host, converged, ssm_prefix):
    first, seconds = converged
    print("first converge: changed=%d in %.1f s" % (first.changed, seconds))
    assert first.changed > 0
    container = host.container()
    assert container["State"]["Running"]
    assert container["Config"]["Image"].startswith(host.lab["LAB_IMAGE_POSTGRES"].rsplit(":", 1)[0] + "@sha256:")
    assert "postgres" in container["NetworkSettings"]["Networks"]["llmstack"]["Aliases"]
    mounts = dict((m["Destination"], m) for m in container["Mounts"])
    assert mounts["/var/lib/postgresql/data"]["Type"] == "volume"
    assert mounts["/var/lib/postgresql/data"]["Name"] == "postgres_data"
    assert not container["HostConfig"]["PortBindings"], "nothing is published unless asked"

    started = time.monotonic()
    again = host.converge()
    print("second converge: changed=%d in %.1f s" % (again.changed if again.data else -1, time.monotonic() - started))
    assert again.rc == 0, again.output
    assert again.changed == 0, again.changed_tasks()
    assert host.container()["Id"] == container["Id"]

    check = host.converge(args=["--check", "--diff"])
    assert check.rc == 0, check.output
    assert check.changed == 0, check.changed_tasks()

    stat = host.sh("stat -c '%a %U %G' " + ENV_FILE).stdout.split()
    assert stat == ["600", "root", "root"]
    assert host.sh("grep -v '^#' %s | cut -d= -f1" % ENV_FILE).stdout.split() == [
        "POSTGRES_DB", "POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE", "POSTGRES_USER"]
    assert host.sh("grep '^POSTGRES_PASSWORD' %s" % ENV_FILE).stdout.split() == [
        "POSTGRES_PASSWORD=", "POSTGRES_PASSWORD_FILE=" + PASSWORD_MOUNT], "the env file holds no password"
    assert ssm_prefix[1] not in first.output + again.output + check.output
    assert host.sh("stat -c '%a %U' " + BACKUP_DIR).stdout.split() == ["700", "root"]
    assert host.sh("systemctl is-active llmstack-postgres-backup.timer").stdout.strip() == "active"
    assert "OnCalendar=*-*-* 02:00:00" in host.sh("systemctl cat llmstack-postgres-backup.timer").stdout

    # From outside the host (this machine) nothing listens on 5432; inside, the stack's network reaches it.
    assert connect(host.ip()) == "ConnectionRefusedError"
    assert host.sql("select 1") == "1"


def test_password_only_in_a_file(host, converged, ssm_prefix):
    password = ssm_prefix[1]
    container = host.container()
    env = dict(e.split("=", 1) for e in container["Config"]["Env"])
    assert env.get("POSTGRES_PASSWORD") == "", "the container's env has no password"
    assert env["POSTGRES_PASSWORD_FILE"] == PASSWORD_MOUNT
    assert password not in json.dumps(container), "docker inspect shows no password anywhere"
    # Nor does a shell that docker exec opens in the container (it gets Config.Env).
    assert host.sh("docker exec postgres sh -c 'printf %s \"$POSTGRES_PASSWORD\"'").stdout == ""

    # The file on the host: 0600 root in a 0700 folder, the value from SSM as it is.
    assert host.sh("stat -c '%a %U %G' " + PASSWORD_FILE).stdout.split() == ["600", "root", "root"]
    assert host.sh("stat -c '%a %U %G' " + os.path.dirname(PASSWORD_FILE)).stdout.split() == ["700", "root", "root"]
    assert host.sh("cat " + PASSWORD_FILE).stdout == password
    # Mounted read-only, a file the container's root can read and its postgres user can't.
    mount = dict((m["Destination"], m) for m in container["Mounts"])[PASSWORD_MOUNT]
    assert (mount["Type"], mount["Source"], mount["RW"]) == ("bind", PASSWORD_FILE, False), mount
    assert host.sh("docker exec postgres sh -c 'echo x > %s' 2>&1" % PASSWORD_MOUNT, check=False).returncode != 0
    assert host.sh("docker exec -u postgres postgres cat %s" % PASSWORD_MOUNT, check=False).returncode != 0
    # Its keyed checksum, not the password, is what makes a new password a new container.
    checksum = container["Config"]["Labels"]["postgres.password-checksum"]
    assert len(checksum) == 64 and password not in checksum

    # The database took the password from the file: over TCP it is checked, and only it gets in.
    ok = host.psql_tcp(password)
    assert ok.returncode == 0 and ok.stdout.strip() == DB_USER, ok.stderr
    wrong = host.psql_tcp(password + "x")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr, wrong.stderr


def test_restore_refuses_without_a_backup(host, converged):
    res = host.restore()
    assert res.rc != 0
    task, msg = res.failure()
    assert "No backup to restore in %s" % BACKUP_DIR in msg and "playbooks/backup.yml" in msg, (task, msg)


def test_backup_then_restore_brings_rows_back(host, converged):
    host.sql("create table notes (id int primary key, body text); "
             "insert into notes select g, 'note ' || g from generate_series(1, 500) g")
    res = host.backup()
    assert res.rc == 0, res.output
    files = host.backups()
    assert len(files) == 1 and files[0].startswith("postgres-") and files[0].endswith("Z.dump"), files
    assert host.sh("stat -c %a " + BACKUP_DIR + "/" + files[0]).stdout.strip() == "600"
    assert not host.sh("ls -A %s | grep partial || true" % BACKUP_DIR).stdout.strip(), "no temp file stays"

    host.sql("drop table notes")
    missing = host.restore(postgres_restore_file="postgres-19990101T000000Z.dump")
    assert missing.rc != 0 and "is not a backup in" in missing.failure()[1] and files[0] in missing.failure()[1]

    restored = host.restore()
    assert restored.rc == 0, restored.output
    assert host.sql("select count(*), max(body) from notes") == "500|note 99"
    # Named explicitly, after more writes: --clean replaces the table with the backup's.
    host.sql("insert into notes values (501, 'after the backup')")
    again = host.restore(postgres_restore_file=files[0])
    assert again.rc == 0, again.output
    assert host.sql("select count(*) from notes") == "500"


def test_timer_service_backs_up_and_prunes_old_backups(host, converged):
    before = host.backups()
    host.sh("touch -d '8 days ago' %s/postgres-20000101T000000Z.dump && touch -d '6 days ago' %s/postgres-20000102T000000Z.dump"
            % (BACKUP_DIR, BACKUP_DIR))
    # What the timer starts, through systemd.
    host.sh("systemctl start llmstack-postgres-backup.service")
    after = host.backups()
    assert "postgres-20000101T000000Z.dump" not in after, "older than 7 days: deleted"
    assert "postgres-20000102T000000Z.dump" in after, "6 days old: kept"
    assert len([f for f in after if f not in before]) == 2  # the new backup and the 6-day-old one
    assert host.sh("systemctl show -p Result llmstack-postgres-backup.service").stdout.strip() == "Result=success"
    log = host.sh("journalctl -u llmstack-postgres-backup.service --no-pager").stdout
    assert "deleted (older than 7 days): %s/postgres-20000101T000000Z.dump" % BACKUP_DIR in log, log
    host.sh("rm -f %s/postgres-20000102T000000Z.dump" % BACKUP_DIR)


def test_a_new_password_recreates_the_container(host, converged, ssm_prefix):
    """Rotation as the README says: ALTER ROLE, then SSM, then converge."""
    old_password, new_password = ssm_prefix[1], "pw-%s" % uuid.uuid4().hex
    before = host.container()
    host.sql("alter role %s password '%s'" % (DB_USER, new_password))
    labenv.ssm_client(host.lab).put_parameter(Name="%s/postgres/postgres_password" % host.prefix, Value=new_password,
                                              Type="SecureString", Overwrite=True)

    check = host.converge(args=["--check", "--diff"])
    assert check.rc == 0, check.output
    assert set(check.changed_tasks()) == {"llmstack.deploy.postgres : Write the postgres password from SSM to its file",
                                          "llmstack.deploy.postgres : Roll out the postgres container"}
    assert host.container()["Id"] == before["Id"] and host.sh("cat " + PASSWORD_FILE).stdout == old_password
    assert old_password not in check.output and new_password not in check.output

    res = host.converge()
    assert res.rc == 0, res.output
    assert set(res.changed_tasks()) == {"llmstack.deploy.postgres : Write the postgres password from SSM to its file",
                                        "llmstack.deploy.postgres : Roll out the postgres container"}
    assert new_password not in res.output
    after = host.container()
    assert after["Id"] != before["Id"], "a new password file is a new container"
    assert (after["Config"]["Labels"]["postgres.password-checksum"]
            != before["Config"]["Labels"]["postgres.password-checksum"])
    assert host.sh("cat " + PASSWORD_FILE).stdout == new_password
    assert host.psql_tcp(new_password).returncode == 0
    assert host.psql_tcp(old_password).returncode != 0
    assert host.sql("select count(*) from notes") == "500"

    again = host.converge()
    assert again.rc == 0, again.output
    assert again.changed == 0, again.changed_tasks()
    assert host.container()["Id"] == after["Id"]
    # The backup reads the new container's password file.
    res = host.backup()
    assert res.rc == 0, res.output


def test_upgrade_from_a_password_in_the_env_file(host, converged):
    """A host the role set up before it had a password file: the password in postgres.env and in the
    container's env. One converge moves it to the file and recreates the container once; data and
    password stay."""
    password = host.ssm_password()
    old_play = os.path.join(host.workdir, "old_role.yml")
    with open(old_play, "w") as f:
        json.dump([{
            "name": "What the postgres role did before", "hosts": "llmstack_app", "gather_facts": False,
            "environment": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
            "module_defaults": {"group/llmstack.deploy.aws": {
                "region": "us-east-1", "endpoint_url": host.lab["LAB_MOTO_URL_FROM_HOSTS"]}},
            "tasks": [
                {"name": "No password file yet",
                 "ansible.builtin.file": {"path": os.path.dirname(PASSWORD_FILE), "state": "absent"}},
                {"name": "The env file with the password", "llmstack.deploy.ssm_env_file": {
                    "path": ENV_FILE, "paths": ["{{ llmstack_ssm_prefix }}/postgres"],
                    "required_keys": ["POSTGRES_PASSWORD"], "owner": "root", "group": "root", "mode": "0600"}},
                {"name": "The container with the password in its env", "llmstack.deploy.container_rollout": {
                    "name": "postgres", "image": "{{ postgres_image }}",
                    "registry_username": "{{ postgres_registry_username }}",
                    "registry_password": "{{ postgres_registry_password }}",
                    "strategy": "recreate", "env_files": [ENV_FILE],
                    "networks": [{"name": "llmstack", "aliases": ["postgres"]}],
                    "volumes": ["postgres_data:/var/lib/postgresql/data"], "shm_size": "256m",
                    "stop_timeout": 60, "health_timeout": 120,
                    "healthcheck": {"kind": "exec", "command": ["pg_isready", "-h", "127.0.0.1"], "interval": 1}}},
            ],
        }], f)
    res = host.playbook(old_play)
    assert res.rc == 0, res.output
    old = host.container()
    assert "POSTGRES_PASSWORD=" + password in old["Config"]["Env"], "the old way, as the issue says"
    rows = host.sql("select count(*) from notes")

    check = host.converge(args=["--check", "--diff"])
    assert check.rc == 0, check.output
    # The rollout reads no env file check mode did not write (inputs_changed) and says it would recreate.
    assert "llmstack.deploy.postgres : Roll out the postgres container" in check.changed_tasks()
    assert password not in check.output
    assert host.container()["Id"] == old["Id"], "check mode changes nothing"
    assert host.sh("grep -c '^POSTGRES_PASSWORD=.' " + ENV_FILE).stdout.strip() == "1"
    assert host.sh("test -e " + PASSWORD_FILE, check=False).returncode != 0

    res = host.converge()
    assert res.rc == 0, res.output
    assert password not in res.output
    new = host.container()
    assert new["Id"] != old["Id"]
    assert password not in json.dumps(new)
    assert dict(e.split("=", 1) for e in new["Config"]["Env"])["POSTGRES_PASSWORD_FILE"] == PASSWORD_MOUNT
    assert host.sh("grep '^POSTGRES_PASSWORD=' " + ENV_FILE).stdout.strip() == "POSTGRES_PASSWORD="
    assert host.sh("stat -c '%a %U %G' " + PASSWORD_FILE).stdout.split() == ["600", "root", "root"]
    # The cluster was there: no new init, same rows, same password.
    assert "Skipping initialization" in host.sh("docker logs postgres 2>&1").stdout
    assert host.sql("select count(*) from notes") == rows
    assert host.psql_tcp(password).returncode == 0

    again = host.converge()
    assert again.rc == 0, again.output
    assert again.changed == 0, again.changed_tasks()
    assert host.container()["Id"] == new["Id"], "recreated once"


@pytest.fixture(scope="module")
def second_image(lab):
    """The lab's postgres image under another tag with another digest (same major): an image change."""
    here = lab["LAB_IMAGE_POSTGRES"].replace(lab["LAB_REGISTRY_FROM_HOSTS"], lab["LAB_REGISTRY"])
    tag = here.rsplit(":", 1)[0] + ":15-it"
    config = tempfile.mkdtemp()
    env = dict(os.environ, DOCKER_CONFIG=config)
    try:
        subprocess.run(["docker", "login", "-u", lab["LAB_REGISTRY_USER"], "--password-stdin", lab["LAB_REGISTRY"]],
                       input=lab["LAB_REGISTRY_PASSWORD"], text=True, env=env, check=True, capture_output=True)
        subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input="FROM %s\nLABEL llmstack.it=second\n" % here,
                       text=True, env=env, check=True, capture_output=True)
        subprocess.run(["docker", "push", "-q", tag], env=env, check=True, capture_output=True)
    finally:
        shutil.rmtree(config, ignore_errors=True)
    return tag.replace(lab["LAB_REGISTRY"], lab["LAB_REGISTRY_FROM_HOSTS"])


def test_image_change_takes_a_backup_first(host, converged, second_image):
    before, old = host.backups(), host.container()["Id"]
    check = host.converge(args=["--check"], postgres_image=second_image)
    assert check.rc == 0, check.output
    assert "llmstack.deploy.postgres : Roll out the postgres container" in check.changed_tasks()
    assert host.backups() == before and host.container()["Id"] == old, "check mode backs up and changes nothing"
    res = host.converge(postgres_image=second_image)
    assert res.rc == 0, res.output
    new_files = [f for f in host.backups() if f not in before]
    assert len(new_files) == 1, "one backup before the image changed"
    assert host.container()["Id"] != old and host.container()["Config"]["Labels"].get("llmstack.it") == "second"
    assert host.sql("select count(*) from notes") == "500", "the data survives the rollout"
    # Same image again: no backup, nothing changes.
    again = host.converge(postgres_image=second_image)
    assert again.rc == 0, again.output
    assert again.changed == 0, again.changed_tasks()
    assert host.backups() == sorted(before + new_files)


def test_published_only_when_asked(host, converged, second_image):
    res = host.converge(postgres_image=second_image, postgres_publish="5432:5432")
    assert res.rc == 0, res.output
    assert connect(host.ip()) == "open"
    assert host.sql("select count(*) from notes") == "500"


def test_major_version_mismatch_fails_and_touches_nothing(host, converged, second_image):
    serving = host.container()
    # A volume that holds PostgreSQL 14 data (its PG_VERSION is what counts), the image runs 15.
    host.sh("docker volume create pg_old >/dev/null && echo 14 > \"$(docker volume inspect -f '{{.Mountpoint}}' pg_old)/PG_VERSION\"")
    res = host.converge(postgres_image=second_image, postgres_publish="5432:5432", postgres_data="pg_old")
    assert res.rc != 0
    task, msg = res.failure()
    assert "major version" in task and res.changed == 0, "the check comes first: nothing on the host changes"
    assert "volume pg_old" in msg and "is PostgreSQL 14" in msg and "runs PostgreSQL 15" in msg, msg
    assert "pg_upgrade" in msg and "playbooks/restore.yml" in msg, msg
    now = host.container()
    assert now["Id"] == serving["Id"] and now["State"]["StartedAt"] == serving["State"]["StartedAt"]
    assert now["State"]["Running"] and host.sql("select count(*) from notes") == "500"
    # Check mode says the same, and changes nothing either.
    check = host.converge(args=["--check"], postgres_image=second_image, postgres_publish="5432:5432",
                          postgres_data="pg_old")
    assert check.rc != 0 and "is PostgreSQL 14" in check.failure()[1]
