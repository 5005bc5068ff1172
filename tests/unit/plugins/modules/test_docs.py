"""Documentation that users read through tools: every module and role renders with ansible-doc (from the
repo root, where ansible.cfg resolves llmstack.deploy to the checkout), each module's documented options are the
ones its main() hands AnsibleModule, and CHANGELOG.md is exactly what antsibull-changelog generates from
changelogs/."""
import copy
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from module_harness import MODULES, ROOT

BIN = os.path.dirname(sys.executable)
# Roles with an argument spec (roles/llmstack has none: a dependency's spec would add a validation task to every
# role; its README table is checked by tests/unit/test_llmstack_role_readme.py).
ROLES = sorted(r for r in os.listdir(os.path.join(ROOT, "roles"))
               if os.path.isfile(os.path.join(ROOT, "roles", r, "meta", "argument_specs.yml")))
# ansible-doc bolds names (ANSI on a terminal, *name* otherwise) even with ANSIBLE_NOCOLOR.
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ansible_doc(args, cwd=ROOT, env=None):
    full_env = dict((k, v) for k, v in os.environ.items() if not k.startswith("ANSIBLE_"))
    full_env.update(ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    full_env.update(env or {})
    res = subprocess.run([os.path.join(BIN, "ansible-doc")] + list(args), cwd=cwd, env=full_env,
                         capture_output=True, text=True, timeout=120, check=False)
    res.stdout = ANSI.sub("", res.stdout)
    return res


def module_problems(fqcn, entry):
    """What is missing from one module's `ansible-doc --json` entry (empty when DOCUMENTATION, EXAMPLES and
    RETURN are all there and every option and return value is described)."""
    if not entry:
        return ["%s: ansible-doc found nothing" % fqcn]
    found = []
    doc, examples, returns = entry.get("doc") or {}, entry.get("examples"), entry.get("return")
    if not doc.get("short_description") or not doc.get("description"):
        found.append("%s: DOCUMENTATION has no short_description or description" % fqcn)
    if not doc.get("options"):
        found.append("%s: DOCUMENTATION lists no options" % fqcn)
    for name, option in (doc.get("options") or {}).items():
        if not option.get("description"):
            found.append("%s: option %s has no description" % (fqcn, name))
    if not (examples or "").strip():
        found.append("%s: EXAMPLES is empty" % fqcn)
    else:
        tasks = yaml.safe_load(examples)
        if not isinstance(tasks, list) or not any(fqcn in task for task in tasks if isinstance(task, dict)):
            found.append("%s: EXAMPLES has no task calling %s" % (fqcn, fqcn))
    if not returns:
        found.append("%s: RETURN is empty" % fqcn)
    for name, value in (returns or {}).items():
        if not value.get("description"):
            found.append("%s: return value %s has no description" % (fqcn, name))
    return found


def role_problems(fqcn, entry, spec_file):
    """What differs between one role's `ansible-doc --json -t role` entry and its meta/argument_specs.yml."""
    if not entry:
        return ["%s: ansible-doc found nothing" % fqcn]
    with open(spec_file, encoding="utf-8") as f:
        specs = yaml.safe_load(f)["argument_specs"]
    found = []
    points = entry.get("entry_points") or {}
    if set(points) != set(specs):
        found.append("%s: entry points %s, argument_specs.yml has %s" % (fqcn, sorted(points), sorted(specs)))
    for point, spec in points.items():
        if not spec.get("short_description"):
            found.append("%s: entry point %s has no short_description" % (fqcn, point))
        for name, option in (spec.get("options") or {}).items():
            if not option.get("description"):
                found.append("%s: entry point %s, option %s has no description" % (fqcn, point, name))
        wanted = set((specs.get(point) or {}).get("options") or {})
        if set(spec.get("options") or {}) != wanted:
            found.append("%s: entry point %s shows other options than argument_specs.yml" % (fqcn, point))
    return found


def choice_names(choices):
    """Choices as a list of values (a documented dict of choices is value: description)."""
    return list(choices) if choices is not None else []


def spec_problems(where, documented, spec):
    """How the documented options (ansible-doc's, doc fragments merged) differ from the argument spec: names,
    then each option's type, elements, required, default, choices and aliases, then sub-options the same way."""
    found = []
    for name in sorted(set(spec) - set(documented)):
        found.append("%s: option %s is in the argument spec but not documented" % (where, name))
    for name in sorted(set(documented) - set(spec)):
        found.append("%s: option %s is documented but not in the argument spec" % (where, name))
    for name in sorted(set(documented) & set(spec)):
        doc, arg, label = documented[name] or {}, spec[name], "%s: option %s" % (where, name)
        pairs = [("required", bool(doc.get("required")), bool(arg.get("required"))),
                 ("default", doc.get("default"), arg.get("default")),
                 ("choices", choice_names(doc.get("choices")), choice_names(arg.get("choices"))),
                 ("aliases", sorted(doc.get("aliases") or []), sorted(arg.get("aliases") or []))]
        if not callable(arg.get("type")):  # a converter function has no documented name to compare with
            pairs[:0] = [("type", doc.get("type", "str"), arg.get("type", "str")),
                         ("elements", doc.get("elements"), arg.get("elements"))]
        found += ["%s: documented %s %r, argument spec %r" % (label, key, in_doc, in_spec)
                  for key, in_doc, in_spec in pairs if in_doc != in_spec]
        if doc.get("suboptions") or arg.get("options"):
            found += spec_problems("%s.%s" % (where, name), doc.get("suboptions") or {}, arg.get("options") or {})
    return found


@pytest.fixture(scope="module")
def module_docs():
    res = ansible_doc(["--json", "-t", "module"] + ["llmstack.deploy." + m for m in MODULES])
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def role_docs():
    res = ansible_doc(["--json", "-t", "role"] + ["llmstack.deploy." + r for r in ROLES])
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)


def test_the_collection_has_modules_and_roles():
    assert "ssm_env_file" in MODULES and "container_rollout" in MODULES
    assert "postgres" in ROLES and "vllm" in ROLES


@pytest.mark.parametrize("module", MODULES)
def test_module_docs_are_complete(module, module_docs):
    fqcn = "llmstack.deploy." + module
    assert module_problems(fqcn, module_docs.get(fqcn)) == []


@pytest.mark.parametrize("module", MODULES)
def test_module_options_match_the_argument_spec(module, module_docs, module_specs):
    """What ansible-doc shows for the module's options is what its main() gives AnsibleModule (with
    add_file_common_args, the file options AnsibleModule adds)."""
    fqcn = "llmstack.deploy." + module
    spec, _rules = module_specs[module]
    assert spec_problems(fqcn, module_docs[fqcn]["doc"].get("options") or {}, spec) == []


def test_an_option_that_differs_from_the_argument_spec_is_caught(module_docs, module_specs):
    """The comparison above, against an altered copy of ssm_file's argument spec: an undocumented option, a
    documented one missing, and a changed type, default, required flag, choice list and alias are all named."""
    documented = module_docs["llmstack.deploy.ssm_file"]["doc"]["options"]
    spec = copy.deepcopy(module_specs["ssm_file"][0])
    spec["extra_option"] = dict(type="str")
    del spec["owner"]
    spec["max_attempts"].update(type="str", default=9)
    spec["path"]["required"] = False
    spec["mode"]["choices"] = ["0600"]
    spec["region"]["aliases"] = []
    assert spec_problems("ssm_file", documented, spec) == [
        "ssm_file: option extra_option is in the argument spec but not documented",
        "ssm_file: option owner is documented but not in the argument spec",
        "ssm_file: option max_attempts: documented type 'int', argument spec 'str'",
        "ssm_file: option max_attempts: documented default 8, argument spec 9",
        "ssm_file: option mode: documented choices [], argument spec ['0600']",
        "ssm_file: option path: documented required True, argument spec False",
        "ssm_file: option region: documented aliases ['aws_region'], argument spec []"]


@pytest.mark.parametrize("module", MODULES)
def test_module_renders_as_text(module, module_docs):
    fqcn = "llmstack.deploy." + module
    res = ansible_doc(["-t", "module", fqcn])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "[WARNING]" not in res.stderr, res.stderr
    assert "OPTIONS" in res.stdout and "EXAMPLES" in res.stdout and "RETURN VALUES" in res.stdout, res.stdout
    for option in module_docs[fqcn]["doc"]["options"]:
        assert option in res.stdout, "%s: option %s not shown" % (fqcn, option)


@pytest.mark.parametrize("role", ROLES)
def test_role_docs_match_the_argument_specs(role, role_docs):
    fqcn = "llmstack.deploy." + role
    assert role_problems(fqcn, role_docs.get(fqcn), os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml")) == []


@pytest.mark.parametrize("role", ROLES)
def test_role_renders_as_text(role, role_docs):
    fqcn = "llmstack.deploy." + role
    res = ansible_doc(["-t", "role", fqcn])
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"ENTRY POINT: \W*main\W", res.stdout), res.stdout
    for option in role_docs[fqcn]["entry_points"]["main"].get("options") or {}:
        assert option in res.stdout, "%s: option %s not shown" % (fqcn, option)


@pytest.fixture
def doctored_collection(tmp_path):
    """A copy of the collection (plugins, roles, meta) under tmp_path/ansible_collections/llmstack/deploy, and
    the environment that makes ansible-doc read it instead of the checkout."""
    dest = tmp_path / "ansible_collections" / "llmstack" / "deploy"
    for part in ("plugins", "roles", "meta"):
        shutil.copytree(os.path.join(ROOT, part), str(dest / part),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(os.path.join(ROOT, "galaxy.yml"), str(dest / "galaxy.yml"))
    (tmp_path / "ansible.cfg").write_text("[defaults]\ncollections_path = %s\n" % tmp_path)
    return dest, {"ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg")}


def test_a_module_without_return_or_examples_is_caught(doctored_collection, tmp_path):
    dest, env = doctored_collection
    path = dest / "plugins" / "modules" / "ssm_file.py"
    text = path.read_text()
    for block in ("EXAMPLES", "RETURN"):
        start = text.index("%s = r\"\"\"" % block)
        end = text.index('"""', start + len(block) + 6) + 3
        text = text[:start] + '%s = r""""""' % block + text[end:]
    path.write_text(text)
    res = ansible_doc(["--json", "-t", "module", "llmstack.deploy.ssm_file"], cwd=str(tmp_path), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    entry = json.loads(res.stdout)["llmstack.deploy.ssm_file"]
    assert entry["doc"]["filename"].startswith(str(dest)), entry["doc"]["filename"]
    assert module_problems("llmstack.deploy.ssm_file", entry) == [
        "llmstack.deploy.ssm_file: EXAMPLES is empty", "llmstack.deploy.ssm_file: RETURN is empty"]


def test_a_module_with_broken_documentation_fails_ansible_doc(doctored_collection, tmp_path):
    dest, env = doctored_collection
    path = dest / "plugins" / "modules" / "ssm_file.py"
    path.write_text(path.read_text().replace("short_description:", "short_description: [unclosed", 1))
    res = ansible_doc(["-t", "module", "llmstack.deploy.ssm_file"], cwd=str(tmp_path), env=env)
    assert res.returncode != 0, res.stdout + res.stderr
    assert "could not parse documentation" in res.stderr and str(path) in res.stderr, res.stderr


def test_a_role_option_without_description_is_caught(doctored_collection, tmp_path):
    dest, env = doctored_collection
    spec = dest / "roles" / "docker_host" / "meta" / "argument_specs.yml"
    text = spec.read_text()
    spec.write_text(text.replace("        description: Docker's daemon config file.\n", "", 1))
    res = ansible_doc(["--json", "-t", "role", "llmstack.deploy.docker_host"], cwd=str(tmp_path), env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    entry = json.loads(res.stdout)["llmstack.deploy.docker_host"]
    assert entry["path"] == str(dest), entry["path"]
    assert role_problems("llmstack.deploy.docker_host", entry, str(spec)) == [
        "llmstack.deploy.docker_host: entry point main, option docker_host_daemon_config_path has no description"]


# The changelog: changelogs/ is the source, CHANGELOG.md is generated from it.

def antsibull_changelog(args, cwd):
    return subprocess.run([os.path.join(BIN, "antsibull-changelog")] + list(args), cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def changelog_copy(tmp_path):
    """The files antsibull-changelog reads and writes, copied to tmp_path (no git there)."""
    dest = tmp_path / "repo"
    dest.mkdir()
    shutil.copytree(os.path.join(ROOT, "changelogs"), str(dest / "changelogs"))
    for name in ("galaxy.yml", "CHANGELOG.md"):
        shutil.copy(os.path.join(ROOT, name), str(dest / name))
    return dest


def test_changelog_lint_passes():
    res = antsibull_changelog(["lint"], ROOT)
    assert res.returncode == 0 and res.stdout.strip() == "", res.stdout + res.stderr


def test_changelog_lint_catches_a_bad_fragment(changelog_copy):
    (changelog_copy / "changelogs" / "fragments" / "bad.yml").write_text("new_stuff:\n  - not a known section\n")
    res = antsibull_changelog(["lint"], str(changelog_copy))
    assert res.returncode != 0 and "new_stuff" in res.stdout + res.stderr, res.stdout + res.stderr


def test_changelog_md_is_generated(changelog_copy):
    """Regenerating CHANGELOG.md from changelogs/ leaves it byte for byte as committed."""
    res = antsibull_changelog(["generate"], str(changelog_copy))
    assert res.returncode == 0, res.stdout + res.stderr
    assert filecmp.cmp(str(changelog_copy / "CHANGELOG.md"), os.path.join(ROOT, "CHANGELOG.md"), shallow=False)
    assert not (changelog_copy / "CHANGELOG.rst").exists()
    text = (changelog_copy / "CHANGELOG.md").read_text()
    assert text.startswith("# llmstack\\.deploy Release Notes")
    assert "## v0\\.1\\.0" in text and "### New Modules" in text and "### New Roles" in text


def test_a_hand_edit_of_the_changelog_is_caught(changelog_copy):
    """The same comparison fails when changelog.yaml says something CHANGELOG.md does not."""
    data = changelog_copy / "changelogs" / "changelog.yaml"
    text = data.read_text()
    data.write_text(text.replace("postgres_data_check - refuses a silent major upgrade.",
                                 "postgres_data_check - refuses a silent major upgrade (and a downgrade).", 1))
    assert data.read_text() != text
    res = antsibull_changelog(["generate"], str(changelog_copy))
    assert res.returncode == 0, res.stdout + res.stderr
    assert not filecmp.cmp(str(changelog_copy / "CHANGELOG.md"), os.path.join(ROOT, "CHANGELOG.md"), shallow=False)


def test_unreleased_fragments_are_for_this_work():
    """The next release's fragments exist and none has been released yet (changelog.yaml's newest is 0.1.0)."""
    fragments = sorted(os.listdir(os.path.join(ROOT, "changelogs", "fragments")))
    assert fragments, "no changelog fragments"
    with open(os.path.join(ROOT, "changelogs", "changelog.yaml"), encoding="utf-8") as f:
        releases = yaml.safe_load(f)["releases"]
    assert sorted(releases) == ["0.1.0"]
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as f:
        assert yaml.safe_load(f)["version"] in releases
