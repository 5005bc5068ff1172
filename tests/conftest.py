"""Make `ansible_collections.llmstack.deploy` importable from the checkout; the lab fixtures."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, ".collections")
for extra in (COLLECTIONS, os.path.join(ROOT, "tests", "lab")):
    if extra not in sys.path:
        sys.path.insert(0, extra)

import pytest  # noqa: E402  pylint: disable=wrong-import-position

import labenv  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def lab():
    """The running lab's facts (tests/lab/up). A missing lab is a failure, not a skip."""
    try:
        return labenv.read()
    except labenv.LabNotUp as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def ssm_client(lab):
    return labenv.ssm_client(lab)
