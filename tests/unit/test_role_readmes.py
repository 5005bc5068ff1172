"""Each role's README "## Variables" table is what tests/tools/role_readme.py renders from the role's
meta/argument_specs.yml and defaults/main.yml, and the tool fails on every kind of drift."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tests", "tools", "role_readme.py")
ROLES = sorted(r for r in os.listdir(os.path.join(ROOT, "roles"))
               if os.path.isfile(os.path.join(ROOT, "roles", r, "meta", "argument_specs.yml")))


def run(*args):
    return subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.fixture
def role_copy(tmp_path):
    """A copy of the docker_host role in a roles folder of its own: (roles dir, role dir)."""
    roles = tmp_path / "roles"
    shutil.copytree(os.path.join(ROOT, "roles", "docker_host"), str(roles / "docker_host"))
    return roles, roles / "docker_host"


def edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_every_role_has_a_generated_table():
    assert ROLES, "no roles found"
    for role in ROLES:
        text = open(os.path.join(ROOT, "roles", role, "README.md"), encoding="utf-8").read()
        assert "\n## Variables\n" in text, role
        assert "<!-- BEGIN role variables" in text and "<!-- END role variables -->" in text, role


def test_readmes_match_specs_and_defaults():
    res = run("--check")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout == "", res.stdout


def test_a_changed_description_is_drift(role_copy):
    roles, role = role_copy
    edit(role / "meta" / "argument_specs.yml", "description: Docker's daemon config file.",
         "description: Where Docker's daemon config lives.")
    res = run("--check", "--roles-dir", str(roles))
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.startswith("docker_host: README.md's variables table differs"), res.stdout
    assert ("-| `docker_host_daemon_config_path` | path | `/etc/docker/daemon.json` | Docker's daemon config file. |"
            in res.stdout), res.stdout
    assert ("+| `docker_host_daemon_config_path` | path | `/etc/docker/daemon.json` | Where Docker's daemon config "
            "lives. |" in res.stdout), res.stdout
    # --write repairs it, and then --check passes.
    assert run("--write", "--roles-dir", str(roles)).returncode == 0
    res = run("--check", "--roles-dir", str(roles))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Where Docker's daemon config lives." in (role / "README.md").read_text()


def test_a_changed_default_is_drift(role_copy):
    """The default column is defaults/main.yml's text: a new value there makes the README stale."""
    roles, role = role_copy
    edit(role / "defaults" / "main.yml", "docker_host_log_max_file: 3", "docker_host_log_max_file: 5")
    res = run("--check", "--roles-dir", str(roles))
    assert res.returncode == 1
    assert "+| `docker_host_log_max_file` | int | `5` |" in res.stdout, res.stdout


def test_a_hand_edited_table_is_drift(role_copy):
    roles, role = role_copy
    edit(role / "README.md", "| `docker_host_live_restore` | bool | `true` |", "| `docker_host_live_restore` | bool | `false` |")
    res = run("--check", "--roles-dir", str(roles))
    assert res.returncode == 1 and "docker_host_live_restore" in res.stdout, res.stdout


def test_a_variable_missing_from_the_spec_is_an_error(role_copy):
    roles, role = role_copy
    with open(str(role / "defaults" / "main.yml"), "a") as f:
        f.write("# docker_host_undocumented: a variable nobody described\ndocker_host_undocumented: 1\n")
    res = run("--check", "--roles-dir", str(roles))
    assert res.returncode == 1
    assert ("docker_host: docker_host_undocumented is set in defaults/main.yml but missing from "
            "meta/argument_specs.yml") in res.stderr, res.stderr
    # --write can't fix that: it still fails.
    assert run("--write", "--roles-dir", str(roles)).returncode == 1


def test_a_variable_missing_from_the_defaults_is_an_error(role_copy):
    roles, role = role_copy
    edit(role / "defaults" / "main.yml", "docker_host_log_driver: json-file\n", "")
    res = run("--check", "--roles-dir", str(roles))
    assert res.returncode == 1
    assert ("docker_host: docker_host_log_driver is in meta/argument_specs.yml but not set in defaults/main.yml"
            in res.stderr), res.stderr


def test_a_default_in_the_spec_is_an_error(role_copy):
    """defaults/main.yml is the only source of a role's defaults: a copy in the spec is refused, even an equal one."""
    roles, role = role_copy
    edit(role / "meta" / "argument_specs.yml", "        description: Docker's daemon config file.\n",
         "        description: Docker's daemon config file.\n        default: /etc/docker/daemon.json\n")
    res = run("--check", "--roles-dir", str(roles))
    assert res.returncode == 1
    assert ("docker_host_daemon_config_path: the spec has a default ('/etc/docker/daemon.json'): defaults/main.yml "
            "is the only source of defaults") in res.stderr, res.stderr


def test_a_missing_description_is_an_error(role_copy):
    roles, role = role_copy
    edit(role / "meta" / "argument_specs.yml", "        description: Docker's daemon config file.\n", "")
    res = run("--check", "--roles-dir", str(roles))
    assert res.returncode == 1
    assert "docker_host_daemon_config_path (entry point main) has no description" in res.stderr, res.stderr


def test_one_description_for_two_variables_is_an_error(role_copy):
    roles, role = role_copy
    edit(role / "meta" / "argument_specs.yml", "description: Rotated log files kept per container.",
         "description: Size at which a container's log file is rotated.")
    res = run("--check", "--roles-dir", str(roles))
    assert res.returncode == 1
    assert ("docker_host_log_max_size and docker_host_log_max_file (entry point main) share one description"
            in res.stderr), res.stderr


def test_markers_without_end_are_an_error(role_copy):
    roles, role = role_copy
    edit(role / "README.md", "<!-- END role variables -->\n", "")
    res = run("--check", "--roles-dir", str(roles))
    assert res.returncode == 1 and "begin marker but no end marker" in res.stderr, res.stderr


def test_first_write_replaces_a_hand_written_table(role_copy):
    """A README with a plain table under `## Variables` (as they were before the tool) gets the generated
    table between markers; the prose after the table stays."""
    roles, role = role_copy
    text = (role / "README.md").read_text()
    start, end = text.index("<!-- BEGIN role variables"), text.index("<!-- END role variables -->")
    end += len("<!-- END role variables -->")
    (role / "README.md").write_text(text[:start] + "| name | default |\n| --- | --- |\n| `x` | `1` |" + text[end:])
    assert run("--check", "--roles-dir", str(roles)).returncode == 1
    assert run("--write", "--roles-dir", str(roles)).returncode == 0
    assert (role / "README.md").read_text() == text


def test_special_characters_are_escaped(role_copy):
    """A `|` in a default or a description is escaped (it would split the cell); a backtick in a default gets a
    longer code fence."""
    roles, role = role_copy
    edit(role / "defaults" / "main.yml", "docker_host_log_driver: json-file", "docker_host_log_driver: a`b|c")
    edit(role / "meta" / "argument_specs.yml", "description: The default log driver of containers.",
         "description: The default log driver of containers (C(json-file) | C(local)).")
    run("--write", "--roles-dir", str(roles))
    line = [ln for ln in (role / "README.md").read_text().split("\n") if ln.startswith("| `docker_host_log_driver`")]
    assert line == ["| `docker_host_log_driver` | str | ``a`b\\|c`` | The default log driver of containers "
                    "(`json-file` \\| `local`). |"], line
