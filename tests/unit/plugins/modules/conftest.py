"""Fixtures of the module tests (the harness is module_harness.py)."""
import pytest

from module_harness import MODULES, argument_spec


@pytest.fixture(scope="session")
def module_specs():
    """{module: (argument_spec, other AnsibleModule kwargs)} for every module in plugins/modules/."""
    return dict((m, argument_spec(m)) for m in MODULES)
