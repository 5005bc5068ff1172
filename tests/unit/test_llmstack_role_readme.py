"""The llmstack role has no argument spec (a dependency's spec would add a validation task to every role), so its
README's table is checked against its defaults here."""
import os
import re

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROLE = os.path.join(ROOT, "roles", "llmstack")


def test_every_default_is_in_the_readme_with_its_value():
    with open(os.path.join(ROLE, "defaults", "main.yml"), encoding="utf-8") as f:
        defaults = yaml.safe_load(f)
    with open(os.path.join(ROLE, "README.md"), encoding="utf-8") as f:
        rows = dict(re.findall(r"^\| `([a-z_]+)` \| `([^`]*)` \|", f.read(), re.M))
    assert set(rows) == set(defaults)
    for name, value in defaults.items():
        written = rows[name]
        assert written == (('""' if value == "" else str(value).lower() if isinstance(value, bool) else str(value))), name
