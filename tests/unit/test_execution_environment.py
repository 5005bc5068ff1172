"""meta/execution-environment.yml, which ansible-builder reads when an execution environment installs the
collection: the dependency files it names exist, pip and bindep parse them, and the Python requirements are the
third-party libraries plugins/ imports, no more and no fewer. (tests/integration/test_packaging.py runs
ansible-builder itself on the built collection.)"""
import ast
import importlib.metadata
import os
import sys

import pytest
import yaml
from bindep.depends import Depends
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Always there wherever the collection runs: Python's own modules and Ansible (the EE's base image has it).
PROVIDED = set(sys.stdlib_module_names) | {"__future__", "ansible", "ansible_collections"}


def ee_metadata():
    with open(os.path.join(ROOT, "meta", "execution-environment.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def dependency_file(kind):
    """The file meta/execution-environment.yml names for `kind` (python, system), as an absolute path."""
    return os.path.join(ROOT, ee_metadata()["dependencies"][kind])


def requirement_names(path):
    """Canonical distribution names of a pip requirements file (ansible-builder drops '#' lines itself)."""
    with open(path, encoding="utf-8") as f:
        return set(canonicalize_name(Requirement(line.split(" #")[0].strip()).name) for line in f
                   if line.strip() and not line.lstrip().startswith("#"))


def third_party_imports(folder):
    """{top-level import name: [files importing it]} for what the Python files under `folder` import besides
    PROVIDED (relative imports are the collection's own, and so is a bare import of a module_utils file: the
    host-side scripts import it so when it is installed beside them)."""
    own = set(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "module_utils")) if name.endswith(".py"))
    found = {}
    for base, _dirs, files in os.walk(folder):
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(base, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    tops = [alias.name.split(".")[0] for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    tops = [node.module.split(".")[0]]
                else:
                    continue
                for top in tops:
                    if top not in PROVIDED and top not in own:
                        found.setdefault(top, []).append(os.path.relpath(path, ROOT))
    return found


def distributions(import_names):
    """The distributions (canonical names) that provide these import names in this venv, else the name itself."""
    provided_by = importlib.metadata.packages_distributions()
    return set(canonicalize_name(dist) for name in import_names for dist in provided_by.get(name, [name]))


def test_the_metadata_names_dependency_files_inside_the_collection():
    """ansible-builder refuses absolute paths and reads them from the collection root; both files exist."""
    deps = ee_metadata()["dependencies"]
    assert set(deps) == {"python", "system"}, deps
    for kind, path in deps.items():
        assert not os.path.isabs(path) and not os.path.normpath(path).startswith(".."), (kind, path)
        assert os.path.isfile(os.path.join(ROOT, path)), (kind, path)


def test_the_python_requirements_are_what_plugins_import():
    imports = third_party_imports(os.path.join(ROOT, "plugins"))
    assert {"boto3", "docker"} <= set(imports), sorted(imports)
    wanted = distributions(imports)
    declared = requirement_names(dependency_file("python"))
    assert wanted - declared == set(), "imported but not in %s: %s" % (
        ee_metadata()["dependencies"]["python"], dict((n, imports[n]) for n in imports if n in wanted - declared))
    assert declared - wanted == set(), "declared but imported nowhere in plugins/"


def test_the_import_scan_finds_a_new_library(tmp_path):
    (tmp_path / "mod.py").write_text("import os\nfrom . import sibling\nfrom jmespath import search\n"
                                     "def f():\n    import docker.errors\n")
    assert sorted(third_party_imports(str(tmp_path))) == ["docker", "jmespath"]


def test_the_system_requirements_parse_with_bindep():
    with open(dependency_file("system"), encoding="utf-8") as f:
        depends = Depends(f.read())
    # ansible-builder hands bindep's answer for the image's platform to dnf: the EE base images are RPM-based.
    assert depends.active_rules(["platform:rpm"]), "nothing for an RPM-based execution environment"


def test_bindep_refuses_a_broken_line():
    with pytest.raises(Exception, match="Parse error"):
        Depends("openssh-clients [platform:rpm\n")
