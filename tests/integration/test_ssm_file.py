"""llmstack.deploy.ssm_file against moto: one parameter, a multi-line value, written as it is."""
import os
import stat
import uuid

import pytest

MODULE = "llmstack.deploy.ssm_file"

# A PEM-like value: several lines, a trailing newline, nothing an env file could hold.
KEY_PEM = "-----BEGIN PRIVATE KEY-----\n%s\n%s\n-----END PRIVATE KEY-----\n"


def task(**args):
    return {MODULE: args, "register": "r"}


@pytest.fixture
def run(play, tmp_path):
    state_dir = str(tmp_path / "state")  # its own host key, never /var/lib/llmstack of this machine

    def run(module_args, **kwargs):
        return play.run([task(**module_args)], module_defaults={MODULE: {"state_dir": state_dir}}, **kwargs)
    return run


def test_multiline_securestring_written_byte_for_byte_then_a_no_op(run, put, prefix, tmp_path):
    value = KEY_PEM % (uuid.uuid4().hex, uuid.uuid4().hex)
    put({prefix + "/tls_key": (value, "SecureString")})
    dest = tmp_path / "server.key"
    args = dict(path=str(dest), name=prefix + "/tls_key")

    res = run(args, args=["--check"])
    assert res.rc == 0, res.output
    assert res.task()["changed"] is True and not dest.exists(), "check mode wrote the file"

    first = run(args)
    assert first.rc == 0, first.output
    assert dest.read_text() == value
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o600
    mtime = dest.stat().st_mtime_ns
    second = run(args)
    assert second.task()["changed"] is False
    assert second.task()["checksum"] == first.task()["checksum"]
    assert dest.stat().st_mtime_ns == mtime


def test_diff_and_output_never_hold_the_value(run, put, prefix, tmp_path):
    secret_lines = [uuid.uuid4().hex for _i in range(4)]
    old, new = KEY_PEM % tuple(secret_lines[:2]), KEY_PEM % tuple(secret_lines[2:])
    put({prefix + "/tls_key": (old, "SecureString")})
    args = dict(path=str(tmp_path / "server.key"), name=prefix + "/tls_key", mode="0640")
    assert run(args).rc == 0
    put({prefix + "/tls_key": (new, "SecureString")})
    res = run(args, args=["--check", "--diff", "-vvv"], callback="default")
    assert res.rc == 0, res.output
    assert "checksum" in res.output and "mode 0640" in res.output
    assert not [n for n, line in enumerate(secret_lines) if line in res.output]  # which line, never the line
    assert (tmp_path / "server.key").read_text() == old, "check mode changed the file"


def test_missing_parameter_is_named_and_nothing_is_written(run, prefix, tmp_path):
    dest = tmp_path / "server.crt"
    res = run(dict(path=str(dest), name=prefix + "/no_such_cert"))
    assert res.rc != 0
    assert prefix + "/no_such_cert" in res.task()["msg"] and str(dest) in res.task()["msg"]
    assert not dest.exists()


def test_missing_folder_is_created_and_not_in_check_mode(run, put, prefix, tmp_path):
    put({prefix + "/password": ("pw-" + uuid.uuid4().hex, "SecureString")})
    dest = tmp_path / "postgres" / "password"
    args = dict(path=str(dest), name=prefix + "/password", folder_mode="0700")

    check = run(args, args=["--check"])
    assert check.rc == 0, check.output
    assert check.task()["changed"] is True and not dest.parent.exists(), "check mode created the folder"

    res = run(args)
    assert res.rc == 0, res.output
    assert stat.S_IMODE(dest.parent.stat().st_mode) == 0o700 and stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert run(args).task()["changed"] is False


def test_a_pem_from_the_controllers_parameters_with_no_aws_call(run, tmp_path):
    """A VPS without SSM: the key from Ansible Vault (the parameters option), byte for byte, never shown."""
    lines = [uuid.uuid4().hex, uuid.uuid4().hex]
    name = "/vps/production/nginx_gateway/tls_key"
    dest = tmp_path / "server.key"
    # Nothing listens on port 9: a module that reached for SSM could not pass.
    args = dict(path=str(dest), name=name, parameters={name: KEY_PEM % tuple(lines)},
                endpoint_url="http://127.0.0.1:9", max_attempts=1)
    res = run(args, args=["--diff", "-vvv"], callback="default")
    assert res.rc == 0, res.output
    assert dest.read_text() == KEY_PEM % tuple(lines)
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o600
    assert not [line for line in lines if line in res.output]
    again = run(args)
    assert (again.task()["changed"], again.task()["api_calls"], again.task()["region"]) == (False, 0, None)
    missing = run({**args, "name": name + "_old"})
    assert missing.rc != 0 and name + "_old" in missing.task()["msg"]
