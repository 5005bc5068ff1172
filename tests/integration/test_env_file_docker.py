"""container_rollout gives a container exactly the environment `docker run --env-file` gives it.

The same file goes through the real Docker CLI and through the module; the environment read inside
each container must be the same. Files Docker refuses, the module refuses too, naming file and line.
"""
import json
import subprocess

import pytest

from helpers import inspect

# Every quirk of Docker's reader (cli opts/file.go) in one file.
TRICKY = (b"\xef\xbb\xbfFIRST=a BOM before it is dropped\r\n"
          b"# a comment\r\n"
          b"   # an indented comment\n"
          b"\n"
          b"  \tLEADING=spaces and a tab before the key are dropped\n"
          b"\xc2\xa0NBSP=a no-break space counts as white space (Go's unicode.IsSpace)\n"
          b"\x0bVTAB=so does a vertical tab\n"
          b"TRAILING=kept as is   \n"
          b"EQUALS=a=b==c\n"
          b"QUOTES='single' \"double\" `back`\n"
          b"DOLLAR=$HOME ${PATH} $(id)\n"
          b"EMPTY=\n"
          b"DUP=first\n"
          b"DUP=the last one wins\n"
          b"dotted.key-name=odd names pass\n"
          b"UNICODE=h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac\n"
          b"CR_INSIDE=a\rb\r\n"
          b"HASH=#not a comment\n"
          b"LAST=no newline at the end")

READ_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def docker_run_env(image, env_file):
    proc = subprocess.run(["docker", "run", "--rm", "--env-file", env_file, image, "python3", "-c", READ_ENV],
                          capture_output=True, text=True, check=False)
    return proc


def without_hostname(env):
    return dict((k, v) for k, v in env.items() if k != "HOSTNAME")


def test_same_environment_as_docker_run_env_file(recreate_service, app_images, lab, tmp_path):
    svc = recreate_service
    env_file = tmp_path / "tricky.env"
    env_file.write_bytes(TRICKY)
    res = svc.run(image=app_images["v1"], env_files=[str(env_file)])
    assert res.rc == 0, res.output
    image = "%s/%s" % (lab["LAB_REGISTRY"], app_images["v1"])
    reference = docker_run_env(image, str(env_file))
    assert reference.returncode == 0, reference.stderr
    ours = subprocess.run(["docker", "exec", svc.name, "python3", "-c", READ_ENV],
                          capture_output=True, text=True, check=True)
    expected, got = without_hostname(json.loads(reference.stdout)), without_hostname(json.loads(ours.stdout))
    assert got == expected
    # A few of them spelled out, so a reader sees what "the same" covers.
    assert got["FIRST"] == "a BOM before it is dropped" and got["TRAILING"] == "kept as is   "
    assert got["DUP"] == "the last one wins" and got["CR_INSIDE"] == "a\rb" and got["LAST"] == "no newline at the end"


REFUSED = [
    ("space-in-name", b"OK=1\nBAD KEY=1\n", "line 2: variable name 'BAD KEY' contains white space"),
    ("empty-name", b"OK=1\n=value\n", "line 2: no variable name"),
    ("invalid-utf8", b"OK=1\nX=\xff\xfe\n", "line 2: not valid UTF-8"),
    ("line-too-long", b"BIG=" + b"x" * 70000 + b"\n", "line 1: the line is 64 KiB or longer"),
]


@pytest.mark.parametrize("content,expected", [pytest.param(c, e, id=i) for i, c, e in REFUSED])
def test_what_docker_refuses_is_refused(recreate_service, app_images, lab, tmp_path, content, expected):
    svc = recreate_service
    env_file = tmp_path / "bad.env"
    env_file.write_bytes(content)
    reference = docker_run_env("%s/%s" % (lab["LAB_REGISTRY"], app_images["v1"]), str(env_file))
    assert reference.returncode != 0, "Docker accepted it"
    assert "invalid env file" in reference.stderr or "token too long" in reference.stderr, reference.stderr
    res = svc.run(image=app_images["v1"], env_files=[str(env_file)])
    assert res.rc != 0
    assert "%s %s" % (env_file, expected) in res.task()["msg"]
    assert inspect(svc.name) is None


def test_a_bare_key_is_refused_not_taken_from_the_module_environment(recreate_service, app_images, tmp_path):
    """Docker copies a bare KEY from the CLI's own environment; on a managed host that is an accident."""
    svc = recreate_service
    env_file = tmp_path / "bare.env"
    env_file.write_text("OK=1\nHOME\n")
    res = svc.run(image=app_images["v1"], env_files=[str(env_file)])
    assert res.rc != 0 and "%s line 2: HOME has no '='" % env_file in res.task()["msg"]
