"""The one GPU box's public surface, tried by an attacker with one client key from the scenario's client host:
the shared tests of tests/lab/surface.py against this host's gateway."""
import pytest

import stack
from surface import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import
from surface import Surface


@pytest.fixture(scope="module")
def surface(host):
    return Surface(stack.SCENARIO, stack.host_ip(), host.check_output)
