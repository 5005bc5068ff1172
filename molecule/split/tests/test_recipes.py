"""examples/gpu-hosts-alb-rds (GPU hosts, an app host behind an ALB, RDS) checked against the converged split
hosts: `site.yml --check --diff` through the recipe's own inventory_aws_ec2.yml and group_vars, the lab's
stand-ins as extra vars (tests/lab/recipes.py). It succeeds, shows what it would change on the app host and the
GPU hosts, and changes nothing on any of them; no secret shows."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
import fleet  # noqa: E402  pylint: disable=wrong-import-position
import labenv  # noqa: E402  pylint: disable=wrong-import-position
import recipes  # noqa: E402  pylint: disable=wrong-import-position

LAB = labenv.read()
INSPECT = "docker ps -q | xargs -r docker inspect -f '{{.Name}} {{.Id}} {{.State.StartedAt}} {{.Image}}' | sort"


def test_the_recipe_passes_check_mode_against_the_split_hosts_and_changes_nothing():
    hosts = fleet.Fleet(LAB, "split").hosts()
    ssh = dict((h["inventory_name"], fleet.ssh_host(LAB, h["address"])) for h in hosts)
    recipe = recipes.Recipe(LAB, "gpu-hosts-alb-rds")
    recipe.seed()
    before = dict((name, host.check_output(INSPECT)) for name, host in ssh.items())
    proc = recipe.playbook("site.yml", "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for h in hosts:
        assert recipes.recap(proc, h["inventory_name"])["changed"] > 0, "%s: check mode shows changes" % h["role"]
    assert dict((name, host.check_output(INSPECT)) for name, host in ssh.items()) == before
    assert recipe.leaked(proc.stdout + proc.stderr) == []
