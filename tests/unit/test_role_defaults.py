"""One source for every default: a role's defaults/main.yml, the stack-wide ones in the llmstack role's. Playbooks
and other roles use a role's variables without an inline default of their own, and no playbook reads a role's
files (a role's operations are its entry points: include_role tasks_from)."""
import glob
import os
import re

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLES = sorted(os.path.basename(os.path.dirname(os.path.dirname(p)))
               for p in glob.glob(os.path.join(ROOT, "roles", "*", "defaults", "main.yml")))


def defaults(role):
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def files(*patterns):
    found = []
    for pattern in patterns:
        found += glob.glob(os.path.join(ROOT, pattern), recursive=True)
    return sorted(p for p in found if os.path.isfile(p))


ROLE_VARS = {name: role for role in ROLES for name in defaults(role)}
# Every place a role variable is used: the plays, the roles, the lab's inventory and the molecule scenarios.
USERS = files("playbooks/**/*.yml", "roles/*/tasks/*.yml", "roles/*/vars/*.yml", "roles/*/defaults/*.yml",
              "roles/*/handlers/*.yml", "roles/*/templates/*.j2", "tests/lab/inventory/**/*.yml", "molecule/**/*.yml")
INLINE_DEFAULT = re.compile(r"\b([a-z][a-z0-9_]*)\s*\|\s*default\(\s*(?!omit\s*\))")


def test_the_roles_and_their_variables_are_found():
    assert {"llmstack", "vllm", "app", "nginx_gateway", "postgres"} <= set(ROLES)
    assert ROLE_VARS["llmstack_state_dir"] == "llmstack" and ROLE_VARS["vllm_stop_timeout"] == "vllm"
    assert any(p.endswith(os.path.join("playbooks", "rollback.yml")) for p in USERS)


def test_stack_wide_settings_have_one_default_in_the_llmstack_role():
    for role in ROLES:
        if role != "llmstack":
            shared = [name for name in defaults(role) if name.startswith("llmstack_")]
            assert shared == [], "%s sets %s: the llmstack role holds the stack-wide settings" % (role, shared)


@pytest.mark.parametrize("path", USERS, ids=lambda p: os.path.relpath(p, ROOT))
def test_no_role_variable_gets_a_second_default(path):
    """`vllm_stop_timeout | default(90)` in a play was a second default that drifted from the role's own
    (vllm_shutdown_timeout + 30). `| default(omit)` is fine: it leaves the value to the module."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    second = sorted({"%s (the default of role %s)" % (m.group(1), ROLE_VARS[m.group(1)])
                     for m in INLINE_DEFAULT.finditer(text) if m.group(1) in ROLE_VARS})
    assert second == [], "%s gives role variables a default of its own: %s" % (os.path.relpath(path, ROOT), second)


@pytest.mark.parametrize("path", files("playbooks/**/*.yml"), ids=lambda p: os.path.relpath(p, ROOT))
def test_no_playbook_reads_a_roles_files(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert not re.search(r"roles/[a-z_]+/(defaults|vars|tasks|templates|files)", text), path


def test_the_check_catches_a_second_default(tmp_path):
    play = tmp_path / "play.yml"
    play.write_text("x: \"{{ vllm_drain_timeout | default(600) }}\"\ny: \"{{ postgres_backup_dir | default(omit) }}\"\n")
    found = [m.group(1) for m in INLINE_DEFAULT.finditer(play.read_text()) if m.group(1) in ROLE_VARS]
    assert found == ["vllm_drain_timeout"]
