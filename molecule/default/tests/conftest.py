"""The lab host under test, reached the way the plays reach it: over SSH (see tests/lab/fleet.py)."""
import pytest

import stack


@pytest.fixture(scope="session")
def host():
    return stack.ssh()
