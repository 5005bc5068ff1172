"""The recipes scenario's lab host (one EC2 instance of the lab, tag app), reached over SSH as the plays reach it,
and the recipes (tests/lab/recipes.py)."""
import pytest

from recipe_host import LAB, fleet, recipes


@pytest.fixture(scope="session")
def lab_host():
    """The scenario's one instance: container, inventory name, address."""
    hosts = fleet.Fleet(LAB, "recipes").hosts()
    assert len(hosts) == 1, "lab scenario recipes: want one running instance, found %s" % hosts
    return hosts[0]


@pytest.fixture(scope="session")
def host(lab_host):
    return fleet.ssh_host(LAB, lab_host["address"])


@pytest.fixture(scope="session")
def recipe_of():
    return lambda name: recipes.Recipe(LAB, name)
