"""The recipes under examples/: each has its inventory, group_vars and README, sets only variables the collection
knows, and its apps and routes pass the checks the plays run before touching a host (app validate, the gateway's
route check). Converging them in the lab is the recipes scenario's part."""
import glob
import os
import re
import subprocess

import pytest
import yaml

from ansible_collections.llmstack.deploy.plugins.module_utils import apps, routes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(ROOT, "examples", "*", "README.md")))
# Variables a recipe may set besides the roles' defaults: Ansible's connection variables, the ones the playbooks
# read, and the recipes' own helpers.
OWN = {"builds_dir"}


def inventory(recipe):
    """The recipe's inventory, as its README names it."""
    for name in ("inventory_aws_ec2.yml", "hosts.yml"):
        if os.path.exists(os.path.join(ROOT, "examples", recipe, name)):
            return "examples/%s/%s" % (recipe, name)
    return None


def group_vars_path(recipe):
    """group_vars/all.yml, or group_vars/all/main.yml in a recipe whose vault file goes beside it."""
    folder = os.path.join(ROOT, "examples", recipe, "group_vars")
    return os.path.join(folder, "all", "main.yml") if os.path.isdir(os.path.join(folder, "all")) \
        else os.path.join(folder, "all.yml")


def group_vars(recipe):
    with open(group_vars_path(recipe), encoding="utf-8") as f:
        return yaml.safe_load(f)


def known_variables():
    names = set(OWN)
    for path in glob.glob(os.path.join(ROOT, "roles", "*", "defaults", "main.yml")):
        with open(path, encoding="utf-8") as f:
            names |= set(yaml.safe_load(f) or {})
    for path in glob.glob(os.path.join(ROOT, "playbooks", "**", "*.yml"), recursive=True):
        with open(path, encoding="utf-8") as f:
            names |= set(re.findall(r"\b(llmstack_[a-z0-9_]+)", f.read()))
    return names


def test_every_system_of_the_operators_has_a_recipe():
    assert RECIPES == ["ai-studio-cpu", "backend-frontends-mcp", "gpu-box-agent", "gpu-hosts-alb-rds", "ml-api-alb",
                       "sse-app-vps"]
    with open(os.path.join(ROOT, "examples", "README.md"), encoding="utf-8") as f:
        index = f.read()
    assert all("(%s/)" % r in index for r in RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_recipe_has_an_inventory_and_its_readme_runs_with_it(recipe):
    folder = os.path.join(ROOT, "examples", recipe)
    ec2 = os.path.join(folder, "inventory_aws_ec2.yml")
    static = os.path.join(folder, "hosts.yml")
    assert os.path.exists(ec2) != os.path.exists(static), "one inventory: the EC2 one or a static one"
    if os.path.exists(ec2):
        # The repo's own, linked (one copy of the plugin's settings).
        assert os.path.realpath(ec2) == os.path.join(ROOT, "inventory_aws_ec2.yml")
        inventory = "examples/%s/inventory_aws_ec2.yml" % recipe
    else:
        with open(static, encoding="utf-8") as f:
            hosts = yaml.safe_load(f)["all"]["children"]
        assert set(hosts) <= {"llmstack_app", "llmstack_gpu"} and hosts["llmstack_app"]["hosts"]
        inventory = "examples/%s/hosts.yml" % recipe
    with open(os.path.join(folder, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert "ansible-playbook -i %s playbooks/site.yml" % inventory in readme


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_recipe_sets_only_variables_the_collection_knows(recipe):
    unknown = sorted(k for k in group_vars(recipe) if k not in known_variables() and not k.startswith("ansible_"))
    assert unknown == []


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_recipes_apps_and_routes_pass_the_plays_checks(recipe):
    gv = group_vars(recipe)
    listed = apps.normalize(gv["llmstack_apps"])
    assert listed, "a recipe deploys at least one app"
    engine = gv.get("llmstack_llm_engine", "vllm")
    own = gv.get("nginx_gateway_routes", [{"path": "/llm_api/", "upstream": "llm", "allow": ["models"]}]
                 if engine != "none" else [])
    upstreams = [{"name": "llm", "servers": ["127.0.0.1:8000"]}] + apps.upstreams(gv["llmstack_apps"])
    checked = routes.normalize(own + apps.routes(gv["llmstack_apps"]), upstreams)
    assert checked, "the gateway serves something"
    if engine == "none":
        assert not any(r.get("upstream") == "llm" for r in checked), "no LLM server, no route to it"


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("play", ["site.yml", "rollout.yml", "rollback.yml", "status.yml"])
def test_the_plays_pass_syntax_check_with_the_recipe(recipe, play):
    """ansible-playbook --syntax-check with the recipe's inventory, as its README runs it (--check against lab hosts
    is the recipes scenario's part)."""
    proc = subprocess.run(["ansible-playbook", "-i", inventory(recipe), "playbooks/" + play, "--syntax-check"],
                          cwd=ROOT, capture_output=True, text=True, check=False,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def lab_recipes():
    with open(os.path.join(ROOT, "tests", "lab", "recipes.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_the_lab_knows_how_to_run_every_recipe():
    assert sorted(lab_recipes()) == RECIPES


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_lab_stands_in_for_each_app_and_seeds_what_the_readme_lists(recipe):
    """tests/lab/recipes.yml: a lab image for every app of the recipe, and every SSM parameter it seeds named in the
    recipe's README (so the README lists what a converge needs: the lab's converges prove it)."""
    lab = lab_recipes()[recipe]
    assert sorted(lab["apps"]) == sorted(app["name"] for app in group_vars(recipe)["llmstack_apps"])
    with open(os.path.join(ROOT, "examples", recipe, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    # "backend/*" in a README covers backend/<anything>; "nginx_gateway/api_keys/<client>" any client.
    listed = re.findall(r"`([a-z0-9_/<>*]+)`", readme)
    for name in lab.get("ssm") or lab["vault"]:
        covered = [n for n in listed if n == name or (n.endswith("/*") and name.startswith(n[:-1]))
                   or (n.endswith("/<client>") and name.startswith(n[:-len("<client>")]))]
        assert covered, "%s: the README names no SSM parameter %s" % (recipe, name)


@pytest.mark.parametrize("recipe", [r for r in RECIPES if "vault" in lab_recipes()[r]])
def test_a_vault_recipe_reads_no_aws_and_its_example_vault_holds_what_the_lab_seeds(recipe):
    """A recipe without SSM: llmstack_secrets_source vault, no AWS setting or lookup, and vault.example.yml (what its
    README copies to group_vars/all/vault.yml) with every parameter the lab puts in the lab's vault file."""
    with open(group_vars_path(recipe), encoding="utf-8") as f:
        text = f.read()
    assert yaml.safe_load(text)["llmstack_secrets_source"] == "vault"
    assert not re.search(r"amazon\.aws|llmstack_aws_", text), "a vault recipe reaches for AWS"
    with open(os.path.join(ROOT, "examples", recipe, "vault.example.yml"), encoding="utf-8") as f:
        example = yaml.safe_load(f)["llmstack_vault_parameters"]
    assert sorted(example) == sorted(lab_recipes()[recipe]["vault"])
