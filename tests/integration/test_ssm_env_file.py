"""ssm_env_file through Ansible against the lab's moto server."""
import hashlib
import hmac
import os
import pwd
import stat
import subprocess
import uuid

import boto3
import pytest

import labenv

MODULE = "llmstack.deploy.ssm_env_file"

# Values a Docker env file must carry unchanged.
TRICKY = {
    "equals": "a=b==c",
    "hash": "# not a comment #",
    "quotes": "'single' \"double\" `back`",
    "dollar": "$HOME ${PATH} $(id) \\$",
    "spaces": "  padded value  ",
    "unicode": "héllo ✓ 日本語 🚀",
}  # SSM refuses empty values; an empty one comes through `extra` below.


def read_env(path):
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if line and not line.startswith("#"):
                key, value = line.split("=", 1)
                out[key] = value
    return out


def task(**args):
    register = args.pop("register", "r")
    return {MODULE: args, "register": register}


class StatePlay:
    """The conftest Play, with ssm_env_file's state_dir (its host key) in the test's own folder so
    tests never share a key, nor leave one in /var/lib/llmstack on this machine."""

    def __init__(self, play, state_dir):
        self.raw, self.state_dir = play, state_dir

    def run(self, tasks, module_defaults=None, **kwargs):
        defaults = {MODULE: {"state_dir": self.state_dir}}
        defaults.update(module_defaults or {})
        return self.raw.run(tasks, module_defaults=defaults, **kwargs)


@pytest.fixture
def play(play, tmp_path):
    return StatePlay(play, str(tmp_path / "state"))


def keyed(key, path):
    with open(str(path), "rb") as f:
        return hmac.new(key, f.read(), hashlib.sha256).hexdigest()


def test_thousand_nested_parameters_string_and_securestring(play, put, prefix, tmp_path):
    params = {}
    for i in range(1000):
        name = "%s/g%d/sub%d/k%04d" % (prefix, i % 7, i % 3, i)
        params[name] = ("secret-%d" % i, "SecureString") if i % 2 else "plain-%d" % i
    put(params)
    dest = tmp_path / "big.env"
    res = play.run([task(path=str(dest), paths=[prefix])])
    assert res.rc == 0, res.output
    result = res.task()
    assert result["changed"] is True
    assert result["parameter_count"] == 1000
    # 1,000 parameters at 10 a page: 100 pages, plus moto's trailing page with a NextToken.
    assert result["api_calls"] <= 101
    values = read_env(str(dest))
    assert len(values) == 1000
    assert values["K0001"] == "secret-1" and values["K0002"] == "plain-2"
    assert list(values) == sorted(values)
    assert result["keys"] == sorted(values)


def test_paths_precedence_names_and_extra(play, put, prefix, tmp_path):
    put({
        prefix + "/common/db_host": "common-host",
        prefix + "/common/log_level": "info",
        prefix + "/svc/db_host": "svc-host",
        prefix + "/other/image_tag": "from-ssm",
        prefix + "/other/token": ("tok", "SecureString"),
    })
    dest = tmp_path / "svc.env"
    res = play.run([task(path=str(dest), paths=[prefix + "/common", prefix + "/svc"],
                         names=[prefix + "/other/image_tag", prefix + "/other/token"],
                         extra={"IMAGE_TAG": "v2"})])
    assert res.rc == 0, res.output
    assert read_env(str(dest)) == {"DB_HOST": "svc-host", "LOG_LEVEL": "info", "IMAGE_TAG": "v2", "TOKEN": "tok"}


def test_many_explicit_names_and_an_unknown_one(play, put, prefix, tmp_path):
    names = ["%s/n/k%02d" % (prefix, i) for i in range(23)]
    put(dict((n, "v%d" % i) for i, n in enumerate(names)))
    dest = tmp_path / "names.env"
    res = play.run([task(path=str(dest), names=names)])
    assert res.rc == 0, res.output
    assert len(read_env(str(dest))) == 23
    assert res.task()["api_calls"] == 3  # ceil(23 / 10)

    dest.write_text("KEEP=me\n")
    res = play.run([task(path=str(dest), names=names + [prefix + "/n/missing"])])
    assert res.rc != 0
    assert "not found in region us-east-1: %s/n/missing" % prefix in res.task()["msg"]
    assert dest.read_text() == "KEEP=me\n"


def test_relative_key_mode_and_collision(play, put, prefix, tmp_path):
    put({prefix + "/db/host": "h", prefix + "/cache/host": "c"})
    dest = tmp_path / "rel.env"
    res = play.run([task(path=str(dest), paths=[prefix])])
    assert res.rc != 0
    msg = res.task()["msg"]
    assert prefix + "/db/host" in msg and prefix + "/cache/host" in msg and "HOST" in msg
    assert not dest.exists()

    res = play.run([task(path=str(dest), paths=[prefix], key_mode="relative")])
    assert res.rc == 0, res.output
    assert read_env(str(dest)) == {"DB_HOST": "h", "CACHE_HOST": "c"}


def test_idempotent_second_run_and_check_mode(play, put, prefix, tmp_path):
    put({prefix + "/a": "1", prefix + "/b": ("2", "SecureString")})
    dest = tmp_path / "idem.env"
    args = dict(path=str(dest), paths=[prefix])

    res = play.run([task(**args)], args=["--check"])
    assert res.rc == 0, res.output
    assert res.task()["changed"] is True
    assert not dest.exists(), "check mode wrote the file"

    first = play.run([task(**args)])
    assert first.task()["changed"] is True
    mtime = dest.stat().st_mtime_ns
    second = play.run([task(**args)])
    assert second.rc == 0
    assert second.task()["changed"] is False
    assert second.task()["checksum"] == first.task()["checksum"]
    assert dest.stat().st_mtime_ns == mtime

    put({prefix + "/b": ("3", "SecureString")})
    res = play.run([task(**args)], args=["--check"])
    assert res.task()["changed"] is True
    assert res.task()["key_changes"] == {"added": [], "removed": [], "changed": ["B"]}
    assert read_env(str(dest))["B"] == "2", "check mode changed the file"

    third = play.run([task(**args)])
    assert third.task()["changed"] is True
    assert third.task()["checksum"] != first.task()["checksum"]


def test_diff_shows_keys_never_values(play, put, ssm_client, prefix, tmp_path):
    secret_old = "old-" + uuid.uuid4().hex
    secret_new = "new-" + uuid.uuid4().hex
    put({prefix + "/keep": ("keep-" + secret_old, "SecureString"),
         prefix + "/rotate": (secret_old, "SecureString"),
         prefix + "/gone": ("gone-" + secret_old, "SecureString")})
    dest = tmp_path / "diff.env"
    assert play.run([task(path=str(dest), paths=[prefix])]).rc == 0
    ssm_client.delete_parameter(Name=prefix + "/gone")
    put({prefix + "/rotate": (secret_new, "SecureString"), prefix + "/added": ("x" + secret_new, "SecureString")})

    res = play.run([task(path=str(dest), paths=[prefix])], args=["--check", "--diff"], callback="default")
    assert res.rc == 0, res.output
    out = res.output
    assert "-GONE=<redacted>" in out
    assert "+ADDED=<redacted>" in out
    assert "-ROTATE=<redacted>" in out and "+ROTATE=<redacted> (changed)" in out
    assert " KEEP=<redacted>" in out
    assert secret_old not in out and secret_new not in out


def test_mode_owner_group(play, put, prefix, tmp_path):
    put({prefix + "/a": "1"})
    os.chmod(str(tmp_path), 0o755)
    dest = tmp_path / "perm.env"
    res = play.run([task(path=str(dest), paths=[prefix])])
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600

    nobody = pwd.getpwnam("nobody")
    res = play.run([task(path=str(dest), paths=[prefix], mode="0640", owner="nobody", group=str(nobody.pw_gid))])
    assert res.rc == 0, res.output
    assert res.task()["changed"] is True, "a permission change alone must report changed"
    st = dest.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == nobody.pw_uid and st.st_gid == nobody.pw_gid
    again = play.run([task(path=str(dest), paths=[prefix], mode="0640", owner="nobody", group=str(nobody.pw_gid))])
    assert again.task()["changed"] is False

    res = play.run([task(path=str(dest), paths=[prefix], owner="no-such-user-xyz")])
    assert res.rc != 0 and "no-such-user-xyz" in res.task()["msg"]


def test_missing_folders_are_created_0750_but_not_in_check_mode(play, put, prefix, tmp_path):
    secret = "pw-" + uuid.uuid4().hex
    put({prefix + "/a": (secret, "SecureString")})
    dest = tmp_path / "etc" / "llmstack" / "app.env"
    args = dict(path=str(dest), paths=[prefix])

    check = play.run([task(**args)], args=["--check", "--diff"], callback="default")
    assert check.rc == 0, check.output
    assert "changed: [" in check.output
    assert not (tmp_path / "etc").exists(), "check mode created the folder"
    # One diff entry for each folder it would create, as ansible.builtin.file shows one.
    assert check.output.count("+    state: directory") == 2 and str(tmp_path / "etc" / "llmstack") in check.output

    res = play.run([task(**args)])
    assert res.rc == 0, res.output
    assert read_env(str(dest)) == {"A": secret} and stat.S_IMODE(dest.stat().st_mode) == 0o600
    for folder in (tmp_path / "etc", tmp_path / "etc" / "llmstack"):
        st = folder.stat()
        assert stat.S_IMODE(st.st_mode) == 0o750 and (st.st_uid, st.st_gid) == (0, 0), folder
    assert play.run([task(**args)]).task()["changed"] is False

    other = tmp_path / "switch" / "svc.env"
    assert play.run([task(path=str(other), paths=[prefix], folder_mode="0755")]).rc == 0
    assert stat.S_IMODE((tmp_path / "switch").stat().st_mode) == 0o755


def test_required_keys_missing_leaves_file(play, put, prefix, tmp_path):
    put({prefix + "/db_host": "h"})
    dest = tmp_path / "req.env"
    dest.write_text("OLD=content\n")
    res = play.run([task(path=str(dest), paths=[prefix], required_keys=["DB_HOST", "DB_PASSWORD", "API_KEY"])])
    assert res.rc != 0
    msg = res.task()["msg"]
    assert "API_KEY, DB_PASSWORD" in msg and str(dest) in msg
    assert dest.read_text() == "OLD=content\n"


def test_empty_path_fails_unless_allowed(play, prefix, tmp_path):
    dest = tmp_path / "empty.env"
    res = play.run([task(path=str(dest), paths=[prefix + "/nothing"])])
    assert res.rc != 0 and prefix + "/nothing holds no parameters" in res.task()["msg"]
    res = play.run([task(path=str(dest), paths=[prefix + "/nothing"], allow_empty=True)])
    assert res.rc == 0 and res.task()["keys"] == []


def test_unwritable_value_names_key_not_value(play, put, prefix, tmp_path):
    secret = "line1-%s\nline2" % uuid.uuid4().hex
    put({prefix + "/multi": (secret, "SecureString")})
    dest = tmp_path / "bad.env"
    res = play.run([task(path=str(dest), paths=[prefix])], args=["-vvv"], callback="default")
    assert res.rc != 0
    assert "MULTI contains a newline" in res.output
    assert secret.split("\n", maxsplit=1)[0] not in res.output
    assert not dest.exists()


def test_docker_env_file_round_trip(play, put, prefix, tmp_path, lab):
    put(dict((prefix + "/" + k, (v, "SecureString")) for k, v in TRICKY.items()))
    dest = tmp_path / "docker.env"
    res = play.run([task(path=str(dest), paths=[prefix], extra={"IMAGE_TAG": "v1 = $x", "EMPTY": ""})])
    assert res.rc == 0, res.output
    proc = subprocess.run(["docker", "run", "--rm", "--env-file", str(dest), lab["LAB_BASE_IMAGE"], "env", "-0"],
                          capture_output=True, check=True)
    seen = dict(item.split("=", 1) for item in proc.stdout.decode("utf-8").split("\0") if "=" in item)
    for k, v in TRICKY.items():
        assert seen[k.upper()] == v, k
    assert seen["IMAGE_TAG"] == "v1 = $x"
    assert seen["EMPTY"] == ""


def test_no_securestring_value_at_vvvv(play, put, prefix, tmp_path):
    secrets = dict(("s%d" % i, "TopSecret-%s" % uuid.uuid4().hex) for i in range(12))
    put(dict((prefix + "/" + k, (v, "SecureString")) for k, v in secrets.items()))
    dest = tmp_path / "verbose.env"
    tasks = [task(path=str(dest), paths=[prefix], register="first"),
             {"ansible.builtin.debug": {"var": "first"}}]
    res = play.run(tasks, args=["-vvvv", "--diff"], callback="default")
    assert res.rc == 0, res.output
    assert "S11" in res.output  # the keys are shown...
    for value in secrets.values():
        assert value not in res.output  # ...never the values
    assert read_env(str(dest))["S3"] == secrets["s3"]


@pytest.fixture
def lab_host(lab):
    """A lab host container (Debian 12, its python3-boto3 1.26) reached with the docker connection."""
    name = "llmstack-it-%s" % uuid.uuid4().hex[:6]
    subprocess.run(["docker", "run", "-d", "--name", name, "--label", "llmstack-lab=1",
                    lab["LAB_HOST_IMAGE"], "sleep", "infinity"], check=True, capture_output=True)
    yield name
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def test_runs_on_target_host_with_distro_boto3(play, put, prefix, tmp_path, lab, lab_host):
    put({prefix + "/db_password": ("pw-" + uuid.uuid4().hex, "SecureString"), prefix + "/db_host": "h"})
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("%s ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3\n" % lab_host)
    local_state = tmp_path / "controller-state"
    tasks = [{MODULE: {"path": "/opt/app.env", "paths": [prefix], "owner": "root", "mode": "0600",
                       "endpoint_url": lab["LAB_MOTO_URL_FROM_HOSTS"]},
              "environment": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
              "register": "r"},
             # The same read done on the controller instead (module_defaults give the local endpoint).
             {MODULE: {"path": str(tmp_path / "delegated.env"), "paths": [prefix], "state_dir": str(local_state)},
              "delegate_to": "localhost", "register": "d"}]
    # The host keeps its default state_dir (/var/lib/llmstack), so no state_dir default here.
    res = play.raw.run(tasks, hosts="all", inventory=str(inventory))
    assert res.rc == 0, res.output
    on_host, on_controller = res.task(0), res.task(1)
    assert on_host["keys"] == ["DB_HOST", "DB_PASSWORD"] and on_host["region"] == "us-east-1"

    def host_file(path):
        return subprocess.run(["docker", "exec", lab_host, "cat", path], capture_output=True, check=True).stdout

    # Same content, different per-host keys: the checksums differ by design, and each is the
    # HMAC of the file under its own host's key.
    assert host_file("/opt/app.env") == (tmp_path / "delegated.env").read_bytes()
    host_key = host_file("/var/lib/llmstack/host.key").strip()
    assert on_host["checksum"] == hmac.new(host_key, host_file("/opt/app.env"), hashlib.sha256).hexdigest()
    assert on_controller["checksum"] == keyed((local_state / "host.key").read_bytes().strip(), tmp_path / "delegated.env")
    assert on_host["checksum"] != on_controller["checksum"]

    again = play.raw.run(tasks, hosts="all", inventory=str(inventory))
    assert again.task(0)["changed"] is False and again.task(1)["changed"] is False
    assert again.task(0)["checksum"] == on_host["checksum"]
    assert again.task(1)["checksum"] == on_controller["checksum"]
    out = subprocess.run(["docker", "exec", lab_host, "stat", "-c", "%a", "/opt/app.env", "/var/lib/llmstack/host.key"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["600", "600"]

    put({prefix + "/db_host": "h2"})
    changed = play.raw.run(tasks[:1], hosts="all", inventory=str(inventory))
    assert changed.task()["changed"] is True and changed.task()["key_changes"]["changed"] == ["DB_HOST"]
    assert changed.task()["checksum"] != on_host["checksum"]


# ------------------------------------------------------------------------- keyed checksum

def test_checksum_is_keyed_with_the_host_key(play, put, prefix, tmp_path):
    secret = "pw-" + uuid.uuid4().hex
    put({prefix + "/db_password": (secret, "SecureString"), prefix + "/db_host": "h"})
    dest = tmp_path / "keyed.env"
    res = play.run([task(path=str(dest), paths=[prefix])])
    assert res.rc == 0, res.output
    checksum = res.task()["checksum"]
    key_file = tmp_path / "state" / "host.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    # Not a plain hash of the file (which could be brute-forced offline for a short secret)...
    assert checksum != hashlib.sha256(dest.read_bytes()).hexdigest()
    # ...but the HMAC of it under the host key.
    assert checksum == keyed(key_file.read_bytes().strip(), dest)

    # Another host (another state_dir, another key): same file, another checksum.
    other = play.run([task(path=str(dest), paths=[prefix])],
                     module_defaults={MODULE: {"state_dir": str(tmp_path / "other-host")}})
    assert other.rc == 0, other.output
    assert other.task()["changed"] is False
    assert other.task()["checksum"] != checksum
    assert secret not in res.output + other.output


def test_check_mode_without_host_key_creates_nothing(play, put, prefix, tmp_path):
    put({prefix + "/a": "1"})
    dest = tmp_path / "check.env"
    state_dir = tmp_path / "fresh" / "state"
    res = play.run([task(path=str(dest), paths=[prefix], state_dir=str(state_dir))], args=["--check"])
    assert res.rc == 0, res.output
    assert res.task()["changed"] is True
    assert res.task()["checksum"] is None
    assert not (tmp_path / "fresh").exists(), "check mode created the state_dir"
    assert not dest.exists()

    real = play.run([task(path=str(dest), paths=[prefix], state_dir=str(state_dir))])
    assert real.rc == 0 and real.task()["checksum"]
    check = play.run([task(path=str(dest), paths=[prefix], state_dir=str(state_dir))], args=["--check"])
    assert check.task()["changed"] is False and check.task()["checksum"] == real.task()["checksum"]


def test_unusable_state_dir_is_a_message(play, put, prefix, tmp_path):
    put({prefix + "/a": "1"})
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    dest = tmp_path / "state-fail.env"
    res = play.run([task(path=str(dest), paths=[prefix], state_dir=str(blocker / "state"))], callback="default")
    assert res.rc != 0
    assert str(blocker / "state") in res.output and "state_dir" in res.output
    assert "Traceback" not in res.output
    assert not dest.exists()


def test_hand_edited_file_still_diffs(play, put, prefix, tmp_path):
    """The old file may hold lines Docker would refuse: the 'before' side skips them."""
    put({prefix + "/a": "1"})
    dest = tmp_path / "edited.env"
    dest.write_bytes(b"OLD=1\nbare line without equals\nBAD\xff=x\n  # comment\nA=0\n")
    res = play.run([task(path=str(dest), paths=[prefix])])
    assert res.rc == 0, res.output
    assert res.task()["key_changes"] == {"added": [], "removed": ["OLD"], "changed": ["A"]}
    assert read_env(str(dest)) == {"A": "1"}


# --------------------------------------------------------------------------------- region

def no_region_env(tmp_path, **extra):
    """No region in the environment or a config file; whatever else the test adds."""
    env = {"AWS_DEFAULT_REGION": "", "AWS_REGION": "", "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
           "AWS_EC2_METADATA_DISABLED": "true"}
    env.update(extra)
    return env


def test_region_from_instance_metadata(play, put, prefix, tmp_path, lab):
    """No region anywhere but IMDSv2 (moto serves /latest/api/token and placement/region: us-east-1)."""
    put({prefix + "/a": "1"})
    dest = tmp_path / "imds.env"
    env = no_region_env(tmp_path, AWS_EC2_METADATA_DISABLED="false", AWS_EC2_METADATA_SERVICE_ENDPOINT=lab["LAB_MOTO_URL"])
    res = play.run([task(path=str(dest), paths=[prefix])], env=env,
                   module_defaults={"group/llmstack.deploy.aws": {"endpoint_url": lab["LAB_MOTO_URL"]}})
    assert res.rc == 0, res.output
    assert res.task()["region"] == "us-east-1"
    assert read_env(str(dest)) == {"A": "1"}


def test_region_from_aws_region_alone(play, prefix, tmp_path, lab):
    """botocore reads only AWS_DEFAULT_REGION; AWS_REGION alone used to give NoRegionError."""
    client = boto3.client("ssm", endpoint_url=lab["LAB_MOTO_URL"], region_name="eu-west-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.put_parameter(Name=prefix + "/where", Value="eu-west-1", Type="String")
    dest = tmp_path / "aws-region.env"
    res = play.run([task(path=str(dest), paths=[prefix])], env=no_region_env(tmp_path, AWS_REGION="eu-west-1"),
                   module_defaults={"group/llmstack.deploy.aws": {"endpoint_url": lab["LAB_MOTO_URL"]}})
    assert res.rc == 0, res.output
    assert res.task()["region"] == "eu-west-1"
    assert read_env(str(dest)) == {"WHERE": "eu-west-1"}


def test_no_region_anywhere_names_every_source(play, prefix, tmp_path, lab):
    dest = tmp_path / "no-region.env"
    res = play.run([task(path=str(dest), paths=[prefix])], env=no_region_env(tmp_path),
                   module_defaults={"group/llmstack.deploy.aws": {"endpoint_url": lab["LAB_MOTO_URL"]}})
    assert res.rc != 0
    msg = res.task()["msg"]
    for source in ("region option", "AWS_REGION", "AWS_DEFAULT_REGION", "profile", "EC2 instance metadata"):
        assert source in msg, source
    assert not dest.exists()


# ------------------------------------------------------------------------------ selectors

def test_version_and_label_selectors(play, ssm_client, prefix, tmp_path):
    ssm_client.put_parameter(Name=prefix + "/db", Value="first", Type="SecureString")
    ssm_client.put_parameter(Name=prefix + "/db", Value="second", Type="SecureString", Overwrite=True)
    ssm_client.put_parameter(Name=prefix + "/tok", Value="t-one", Type="SecureString")
    ssm_client.put_parameter(Name=prefix + "/tok", Value="t-two", Type="SecureString", Overwrite=True)
    ssm_client.label_parameter_version(Name=prefix + "/tok", ParameterVersion=1, Labels=["prod"])
    dest = tmp_path / "selectors.env"
    res = play.run([task(path=str(dest), names=[prefix + "/db:1", prefix + "/tok:prod"])])
    assert res.rc == 0, res.output
    assert res.task()["keys"] == ["DB", "TOK"] and res.task()["parameter_count"] == 2
    assert read_env(str(dest)) == {"DB": "first", "TOK": "t-one"}

    res = play.run([task(path=str(dest), names=[prefix + "/db:7"])])
    assert res.rc != 0 and "not found in region us-east-1: %s/db:7" % prefix in res.task()["msg"]
    assert read_env(str(dest)) == {"DB": "first", "TOK": "t-one"}


# --------------------------------------------------------------------------------- errors

def test_too_long_path_is_a_message(play, prefix, tmp_path):
    dest = tmp_path / "long.env"
    res = play.run([task(path=str(dest), paths=[prefix + "/" + "x" * 2100])], callback="default")
    assert res.rc != 0
    assert "GetParametersByPath" in res.output and "2048" in res.output
    assert "Traceback" not in res.output


def test_unreachable_endpoint_is_a_message(play, prefix, tmp_path):
    dest = tmp_path / "unreachable.env"
    res = play.run([task(path=str(dest), paths=[prefix], max_attempts=1,
                         endpoint_url="http://127.0.0.1:%d" % labenv.free_port())])
    assert res.rc != 0
    msg = res.task()["msg"]
    assert "GetParametersByPath on path %s" % prefix in msg and "cannot reach" in msg


def no_aws(play):
    """Module defaults under which any AWS call fails (nothing listens on port 9): a module that reached for SSM
    could not pass."""
    return {MODULE: {"state_dir": play.state_dir, "endpoint_url": "http://127.0.0.1:9", "max_attempts": 1}}


def test_parameters_from_the_controller_make_no_aws_call_and_keep_ssms_guarantees(play, tmp_path):
    """A VPS without SSM: the parameters from Ansible Vault, read by the same paths and names as in SSM, give the
    same file, diff and checksum."""
    prefix = "/vps/production"
    secret = {prefix + "/app/db_password": "vault-" + uuid.uuid4().hex,
              prefix + "/app/nested/api_key": "vault-" + uuid.uuid4().hex,
              prefix + "/shared/llm_api_key": "vault-" + uuid.uuid4().hex}
    dest = tmp_path / "vps" / "app.env"
    args = dict(path=str(dest), paths=[prefix + "/app"], named={"LLM_KEY": prefix + "/shared/llm_api_key"},
                extra={"IMAGE_TAG": "1.0.0"}, required_keys=["DB_PASSWORD"], parameters=secret)
    want = {"DB_PASSWORD": secret[prefix + "/app/db_password"], "API_KEY": secret[prefix + "/app/nested/api_key"],
            "LLM_KEY": secret[prefix + "/shared/llm_api_key"], "IMAGE_TAG": "1.0.0"}
    aws_down = no_aws(play)

    checked = play.run([task(**args)], args=["--check"], module_defaults=aws_down)
    assert checked.rc == 0, checked.output
    assert checked.task()["changed"] is True and not dest.exists(), "check mode wrote the file"

    shown = play.run([task(**args)], args=["-vvvv", "--diff"], callback="default", module_defaults=aws_down)
    assert shown.rc == 0, shown.output
    assert "API_KEY" in shown.output, "the diff names the keys"
    for value in secret.values():
        assert value not in shown.output, "a secret from the controller was shown"
    assert read_env(str(dest)) == want
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600

    again = play.run([task(**args)], module_defaults=aws_down)
    assert again.rc == 0, again.output
    result = again.task()
    assert (result["changed"], result["api_calls"], result["region"]) == (False, 0, None)
    assert result["checksum"] == keyed((tmp_path / "state" / "host.key").read_bytes().strip(), dest)

    # Refused, naming the key or the parameter and never a value; the file stays as it was.
    refused = {
        "REDIS_URL": {**args, "required_keys": ["DB_PASSWORD", "REDIS_URL"]},
        prefix + "/shared/missing": {**args, "named": {"LLM_KEY": prefix + "/shared/missing"}},
        prefix + "/empty": {**args, "paths": [prefix + "/empty"]},
        "relative/name": {**args, "parameters": {**secret, "relative/name": "x"}},
    }
    for name, bad in refused.items():
        res = play.run([task(**bad)], module_defaults=aws_down, args=["-vvv"], callback="default")
        assert res.rc != 0 and name in res.output, (name, res.output[-2000:])
        assert not [v for v in secret.values() if v in res.output], name
    assert read_env(str(dest)) == want, "a refused run left the file as it was"
