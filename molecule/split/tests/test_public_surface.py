"""The split stack's public surface (the app host's gateway in front of two GPU hosts), tried by an attacker with
one client key from the scenario's client host: the shared tests of tests/lab/surface.py."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
import fleet  # noqa: E402  pylint: disable=wrong-import-position
import labenv  # noqa: E402  pylint: disable=wrong-import-position
from surface import *  # noqa: E402,F401,F403  pylint: disable=wildcard-import,unused-wildcard-import,wrong-import-position
from surface import Surface  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="module")
def surface():
    lab = labenv.read()
    app = [h for h in fleet.Fleet(lab, "split").hosts() if h["role"] == "app"][0]
    ssh = fleet.ssh_host(lab, app["address"])
    return Surface("split", app["address"], ssh.check_output)
