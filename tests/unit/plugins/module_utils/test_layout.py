"""module_utils stays in parts that can be read and tested alone: no class of 200 lines or more."""
import ast
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
LIMIT = 200


def classes():
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "plugins", "module_utils", "*.py"))):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        found += [(node.end_lineno - node.lineno + 1, os.path.basename(path), node.name)
                  for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    return found


def test_every_class_in_module_utils_is_under_200_lines():
    found = classes()
    assert any(name == "Rollout" for _n, _f, name in found), "no classes found"
    assert [c for c in found if c[0] >= LIMIT] == [], sorted(found, reverse=True)[:3]
