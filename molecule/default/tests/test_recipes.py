"""The recipes for this topology, checked against the converged GPU box: `site.yml --check --diff` through each
recipe's own inventory_aws_ec2.yml and group_vars (examples/gpu-box-agent: the whole stack on one GPU box;
examples/ml-api-alb: one app behind an ALB, no LLM server, RDS), the lab's stand-ins as extra vars
(tests/lab/recipes.py). Each succeeds, shows what it would change and changes nothing; no secret shows."""
import pytest

import recipes
from stack import INVENTORY_NAME, LAB, leaked, snapshot


@pytest.mark.parametrize("name", ["gpu-box-agent", "ml-api-alb"])
def test_the_recipe_passes_check_mode_against_the_lab_host_and_changes_nothing(host, name):
    recipe = recipes.Recipe(LAB, name)
    recipe.seed()
    before = snapshot(host)
    proc = recipe.playbook("site.yml", "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert recipes.recap(proc, INVENTORY_NAME)["changed"] > 0, "the recipe's settings differ from the lab's: shown"
    assert snapshot(host) == before
    text = proc.stdout + proc.stderr
    assert leaked(text) == [] and recipe.leaked(text) == []
