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
        readme = f.read()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| `([^`]*)` \|", readme, re.M))
    assert set(rows) == set(defaults)
    for name, value in defaults.items():
        written = rows[name]
        if isinstance(value, list):
            # A list is written out whole in a yaml block below the table; the row names its entries.
            blocks = [yaml.safe_load(b) for b in re.findall(r"^```yaml\n(.*?)^```", readme, re.M | re.S)]
            assert {name: value} in blocks, name
            assert written == "[%s]" % ", ".join(e["name"] for e in value), name
            continue
        assert written == (('""' if value == "" else str(value).lower() if isinstance(value, bool) else str(value))), name
