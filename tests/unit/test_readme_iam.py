"""README.md's `### IAM` section: its policies give each host only what its roles read.

Every ```json block of the section is an IAM policy. The checks evaluate them against the stack's real parameter
names, taken from the SSM tree of `### SSM parameters` (placeholders such as `<client>` become sample names), with
IAM's own matching: in a Resource, `*` matches any run of characters, `/` included, and `?` one character.
SSM authorizes GetParameter(s) on each parameter's ARN, and GetParametersByPath on the ARN of the *path* asked:
a grant on a path (or on a pattern that matches it) reads every parameter below that path.

Which role a policy belongs to comes from the paragraph just above its block: it names the role in backticks
(`llmstack-gpu`, `llmstack-app`, `llmstack-app-gpu`: both, `llmstack-deploy`); a trust policy is the block
with a Principal.

Rules:
- no statement that reads, writes or decrypts parameters has a wildcard over the secrets: a `*` in a parameter
  ARN is allowed only as `<prefix>/<service>/*`, one service's own subtree; kms:Decrypt names a key ARN;
- no instance policy reaches `<prefix>/ghcr_token` (the controller looks it up, as the deploy role or an operator);
- a GPU host's policies reach nothing outside `<prefix>/vllm/` (so neither the client keys under
  `nginx_gateway/api_keys` nor the TLS key nor the Postgres password);
- ssm:PutParameter, and the deploy role's reads, name exact ARNs: `<prefix>/*/image_tag` would also match
  `<prefix>/nginx_gateway/api_keys/image_tag`, a client key named IMAGE_TAG to the gateway;
- each host can still read what its roles read (the list below, from the roles' defaults and tasks);
- the section says how to require IMDSv2 with a hop limit of 1 and names every container on the host's network.
Each rule is also shown to fail on the README's former single instance role and wildcard image_tag grants.
"""
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")

ROLE_NAME = re.compile(r"`(llmstack-(?:gpu|app-gpu|app|deploy))`")
# What a `<placeholder>` of the SSM tree stands for: real names an operator would pick.
SAMPLES = {"<client>": ["alice", "ci"], "<setting>": ["session_max_age_days"],
           "<host>": ["app-i-0123456789abcdef0", "gpu-i-0fedcba9876543210"]}
# The hosts' readiness records (status/<host>, one per instance, named after it): the one subtree a host writes, by a
# wildcard (no policy can list the instances in advance). It holds no secret and nothing reads it by path.
STATUS = "status"

# Actions authorized against each parameter's ARN, against the path asked, and those that change parameters.
READ_BY_NAME = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory")
READ_BY_PATH = ("ssm:GetParametersByPath",)
WRITE = ("ssm:PutParameter", "ssm:DeleteParameter", "ssm:DeleteParameters", "ssm:LabelParameterVersion")
PARAMETER_ACTIONS = READ_BY_NAME + READ_BY_PATH + WRITE
DECRYPT = "kms:Decrypt"

# What each kind of host reads from SSM, and with which call (relative to llmstack_ssm_prefix):
#   vllm: roles/vllm/tasks/prepare.yml, ssm_env_file `named` (vllm_api_key_parameter, vllm_hf_token_parameter
#     in roles/vllm/defaults/main.yml; `paths` is vllm_ssm_paths, empty by default);
#   postgres: roles/postgres/tasks/main.yml, ssm_env_file `paths` [postgres_ssm_path], and ssm_file on
#     postgres_password_parameter (the POSTGRES_PASSWORD_FILE file);
#   agent_service: roles/app/tasks/main.yml, `paths` and `named` from the app's entry: its ssm_paths and
#     ssm_named (the default llmstack_apps in roles/llmstack/defaults/main.yml);
#   nginx_gateway: roles/nginx_gateway/tasks/main.yml, `paths` nginx_gateway_api_keys_ssm_paths and `named`
#     nginx_gateway_llm_api_key_parameter; tasks/tls.yml, ssm_file (GetParameters) on the TLS parameters.
# ssm_env_file: `paths` -> GetParametersByPath, `named`/`names` -> GetParameters; ssm_file -> GetParameters
# (plugins/module_utils/ssm.py). split.yml runs vllm on llmstack_gpu and the other three on llmstack_app;
# single_host.yml runs all four on llmstack_app (an app+gpu host is in both groups).
NEEDS = {
    "gpu": {
        "ssm:GetParameters": ["vllm/vllm_api_key", "vllm/hf_token"],
        "ssm:GetParametersByPath": [],
        # The readiness module (plugins/module_utils/readiness.py): GetParameter, then PutParameter on a change.
        "ssm:GetParameter": ["status/gpu-i-0fedcba9876543210"],
        "ssm:PutParameter": ["status/gpu-i-0fedcba9876543210"],
    },
    "app": {
        "ssm:GetParameters": ["postgres/postgres_password", "postgres/postgres_user", "postgres/postgres_db",
                              "vllm/vllm_api_key", "nginx_gateway/tls_cert", "nginx_gateway/tls_key"],
        "ssm:GetParametersByPath": ["postgres", "agent_service", "nginx_gateway/api_keys"],
        "ssm:GetParameter": ["status/app-i-0123456789abcdef0"],
        "ssm:PutParameter": ["status/app-i-0123456789abcdef0"],
    },
}


# ------------------------------------------------------------------------------------------ reading README

def sections(text):
    """{heading line: [lines]} for `##`/`###` headings outside code blocks (a `#` comment in a block is none)."""
    found, current, fenced = {}, None, False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,3} ", line):
            current = line.strip()
            found[current] = []
            continue
        if current is not None:
            found[current].append(line)
    return found


def fenced_blocks(lines, lang):
    """[(intro, body)] for each ```lang block: intro is the paragraph just above the fence."""
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```" + lang:
            start = i
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            intro = []
            k = start - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            while k >= 0 and lines[k].strip() and not lines[k].startswith("```"):
                intro.insert(0, lines[k])
                k -= 1
            blocks.append((" ".join(intro), "\n".join(lines[start + 1:j])))
            i = j + 1
        elif lines[i].startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            i = j + 1
        else:
            i += 1
    return blocks


def ssm_tree(lines):
    """(prefix, [parameter names]) from the ```text tree of `### SSM parameters`."""
    body = fenced_blocks(lines, "text")[0][1].split("\n")
    prefix = body[0].split()[0].rstrip("/")
    names, parents = [], []
    for line in body[1:]:
        m = re.match(r"^((?:\|   |    )*)(?:\|--|`--) (\S+)", line)
        if not m:
            continue
        depth, token = len(m.group(1)) // 4, m.group(2)
        parents = parents[:depth]
        if token == "...":
            continue
        if token.endswith("/"):
            parents.append(token[:-1])
            continue
        for leaf in SAMPLES.get(token, [token]):
            names.append("/".join([prefix] + parents + [leaf]))
    return prefix, names


class Policy:
    def __init__(self, index, intro, body):
        self.index, self.intro, self.body = index, intro, body
        self.error, self.doc = None, None
        try:
            self.doc = json.loads(body)
        except ValueError as e:
            self.error = str(e)
        statements = (self.doc or {}).get("Statement") if isinstance(self.doc, dict) else None
        self.statements = [s for s in statements if isinstance(s, dict)] if isinstance(statements, list) else []
        self.trust = any("Principal" in s for s in self.statements)
        named = set(ROLE_NAME.findall(intro))
        self.roles = set()
        for name in named:
            self.roles |= {"llmstack-app-gpu": {"gpu", "app"}, "llmstack-gpu": {"gpu"}, "llmstack-app": {"app"},
                           "llmstack-deploy": {"deploy"}}[name]
        self.named = bool(named)
        if not named:
            # An unnamed policy is judged by what its paragraph calls it; "the instance role" is on every host.
            lowered = intro.lower()
            if "deploy role" in lowered:
                self.roles = {"deploy"}
            elif "instance role" in lowered or "instance profile" in lowered:
                self.roles = {"gpu", "app"}

    def label(self):
        sids = ", ".join(str(s.get("Sid", "?")) for s in self.statements)
        return "policy %d (%s; roles %s; statements %s)" % (self.index, self.intro[:60], sorted(self.roles), sids)


class Stack:
    """The README's IAM policies and the parameter names they are judged against."""

    def __init__(self, text):
        found = sections(text)
        assert "### IAM" in found, "README.md has no `### IAM` section"
        assert "### SSM parameters" in found, "README.md has no `### SSM parameters` section"
        self.iam_lines = found["### IAM"]
        self.iam_text = "\n".join(self.iam_lines)
        self.prefix, self.names = ssm_tree(found["### SSM parameters"])
        blocks = fenced_blocks(self.iam_lines, "json")
        self.policies = [Policy(i + 1, intro, body) for i, (intro, body) in enumerate(blocks)]
        arns = set(re.findall(r"arn:aws:ssm:([^:\"]+):([^:\"]+):parameter/", self.iam_text))
        # The README's placeholders (us-east-1, 123456789012); every parameter ARN must use the same.
        self.region, self.account = sorted(arns)[0] if arns else ("us-east-1", "123456789012")
        self.arn_accounts = arns

    def arn(self, name):
        return "arn:aws:ssm:%s:%s:parameter%s" % (self.region, self.account, name)

    def full(self, relative):
        return "%s/%s" % (self.prefix, relative)

    def service_dirs(self):
        """The prefix's top-level folders (postgres, vllm, nginx_gateway, agent_service): one service each."""
        return sorted(set(n[len(self.prefix) + 1:].split("/")[0] for n in self.names
                          if "/" in n[len(self.prefix) + 1:]))


@pytest.fixture(scope="module")
def stack():
    with open(README, encoding="utf-8") as f:
        return Stack(f.read())


# ------------------------------------------------------------------------------------------ IAM semantics

def iam_match(pattern, value, case_sensitive=True):
    """IAM's wildcard matching: `*` any run of characters (`/` included), `?` one character, nothing else."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.S if case_sensitive else re.S | re.I
    return re.fullmatch(regex, value, flags) is not None


def as_list(value):
    return value if isinstance(value, list) else [value]


def grants(statement, action):
    """The Allow statement's Action covers action (action names are case-insensitive)."""
    if statement.get("Effect") != "Allow":
        return False
    return any(iam_match(str(a), action, case_sensitive=False) for a in as_list(statement.get("Action", [])))


def ancestors(name):
    """The paths whose (recursive) GetParametersByPath returns name: /a/b/c -> /, /a, /a/b."""
    parts = name.strip("/").split("/")
    return ["/"] + ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def reach(stack, policies):
    """{parameter name: [how]} for every stack parameter the policies let a principal read."""
    found = {}
    for policy in policies:
        for s in policy.statements:
            resources = [str(r) for r in as_list(s.get("Resource", []))]
            by_name = [a for a in READ_BY_NAME if grants(s, a)]
            by_path = [a for a in READ_BY_PATH if grants(s, a)]
            for name in stack.names:
                if by_name and any(iam_match(r, stack.arn(name)) for r in resources):
                    found.setdefault(name, []).append("%s %s" % (s.get("Sid"), "/".join(by_name)))
                if by_path:
                    for path in ancestors(name):
                        hit = [r for r in resources if iam_match(r, stack.arn(path))]
                        if hit:
                            found.setdefault(name, []).append(
                                "%s GetParametersByPath on path %s (%s)" % (s.get("Sid"), path, hit[0]))
                            break
    return found


def allowed_wildcard(stack, resource):
    """A wildcard parameter ARN that is exactly one service's own subtree: <prefix>/<service>/*."""
    return any(resource == stack.arn("%s/%s/*" % (stack.prefix, d)) for d in stack.service_dirs())


# ------------------------------------------------------------------------------------------ the rules

def shape_problems(policy):
    if policy.error:
        return ["%s: not JSON: %s" % (policy.label(), policy.error)]
    found = []
    doc = policy.doc
    if not isinstance(doc, dict) or doc.get("Version") != "2012-10-17":
        found.append("%s: Version is not 2012-10-17" % policy.label())
    if not isinstance(doc, dict) or not isinstance(doc.get("Statement"), list) or not doc.get("Statement"):
        found.append("%s: Statement is not a non-empty list" % policy.label())
        return found
    sids = []
    for s in doc["Statement"]:
        if not isinstance(s, dict):
            found.append("%s: a statement is not an object" % policy.label())
            continue
        what = "%s, statement %s" % (policy.label(), s.get("Sid", "without Sid"))
        if s.get("Effect") not in ("Allow", "Deny"):
            found.append("%s: Effect is %r" % (what, s.get("Effect")))
        if "Action" not in s:
            found.append("%s: no Action" % what)
        if "Resource" not in s and "Principal" not in s:
            found.append("%s: neither Resource nor Principal" % what)
        if "NotAction" in s or "NotResource" in s or "NotPrincipal" in s:
            found.append("%s: NotAction/NotResource/NotPrincipal grant more than they name" % what)
        sid = s.get("Sid")
        if not isinstance(sid, str) or not re.fullmatch(r"[A-Za-z0-9]+", sid):
            found.append("%s: every statement needs a Sid of letters and digits" % what)
        sids.append(sid)
    if len(sids) != len(set(sids)):
        found.append("%s: Sids repeat" % policy.label())
    return found


def wildcard_problems(stack, policy):
    """Statements that read, write or decrypt parameters, with a wildcard over the secrets."""
    found = []
    for s in policy.statements:
        resources = [str(r) for r in as_list(s.get("Resource", []))]
        what = "%s, statement %s" % (policy.label(), s.get("Sid"))
        if any(grants(s, a) for a in PARAMETER_ACTIONS):
            for r in resources:
                if "*" not in r and "?" not in r:
                    continue
                covers = [n for n in stack.names if iam_match(r, stack.arn(n))]
                covers += [p for p in set(sum((ancestors(n) for n in stack.names), []))
                           if iam_match(r, stack.arn(p))]
                if covers and not allowed_wildcard(stack, r):
                    found.append("%s: %s matches %s; name exact ARNs or one service's own <prefix>/<service>/*"
                                 % (what, r, ", ".join(sorted(set(covers))[:4]) + (", ..." if len(covers) > 4 else "")))
        if grants(s, DECRYPT):
            for r in resources:
                if "*" in r or "?" in r:
                    found.append("%s: kms:Decrypt on %s: name the stack's key ARN" % (what, r))
    return found


def ghcr_problems(stack, policies):
    token = stack.full("ghcr_token")
    how = reach(stack, policies).get(token)
    return ["%s reads %s: %s" % (", ".join(p.label() for p in policies), token, "; ".join(how))] if how else []


def gpu_problems(stack, policies):
    own = (stack.full("vllm") + "/", stack.full(STATUS) + "/")
    found = []
    for name, how in sorted(reach(stack, policies).items()):
        if not name.startswith(own):
            found.append("a GPU host reads %s: %s" % (name, "; ".join(how)))
    return found


def exact_arn_problems(stack, policies, actions, why):
    found = []
    probe = stack.arn(stack.full("nginx_gateway/api_keys/image_tag"))
    for policy in policies:
        for s in policy.statements:
            if not any(grants(s, a) for a in actions):
                continue
            for r in as_list(s.get("Resource", [])):
                r = str(r)
                if r == stack.arn(stack.full(STATUS) + "/*") and not any(grants(s, a) for a in READ_BY_PATH):
                    continue
                if "*" in r or "?" in r:
                    extra = ""
                    if iam_match(r, probe):
                        extra = " (it matches %s, a client key IMAGE_TAG to the gateway)" % probe
                    found.append("%s, statement %s: %s on %s: %s%s"
                                 % (policy.label(), s.get("Sid"), "/".join(a for a in actions if grants(s, a)), r,
                                    why, extra))
    return found


def need_problems(stack, policies, kind):
    """What a host of this kind reads (NEEDS) and its policies do not grant."""
    found = []
    statements = [s for p in policies for s in p.statements]
    for action, items in NEEDS[kind].items():
        for item in items:
            name = stack.full(item)
            if not any(grants(s, action) and any(iam_match(str(r), stack.arn(name))
                                                 for r in as_list(s.get("Resource", [])))
                       for s in statements):
                found.append("%s hosts call %s on %s, and no %s policy allows it" % (kind, action, name, kind))
    key_reads = [s for s in statements if grants(s, DECRYPT)]
    if not key_reads:
        found.append("%s hosts decrypt SecureStrings, and no %s policy allows kms:Decrypt" % (kind, kind))
    return found


def host_network_files():
    """Files under roles/ and plugins/modules/ that start a container on the host's network."""
    pattern = re.compile(r"network_mode[\"']?\s*[:=]\s*[\"']?host\b")
    found = []
    for top in ("roles", os.path.join("plugins", "modules")):
        for folder, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith((".yml", ".yaml", ".py", ".j2")):
                    path = os.path.join(folder, f)
                    with open(path, encoding="utf-8") as fh:
                        if pattern.search(fh.read()):
                            found.append(os.path.relpath(path, ROOT).replace(os.sep, "/"))
    return sorted(found)


def of_role(stack, role):
    return [p for p in stack.policies if role in p.roles and not p.trust]


def assert_none(found):
    """Fail listing every problem, one a line."""
    assert not found, "\n" + "\n".join(found)


# ------------------------------------------------------------------------------------------ tests

def test_the_ssm_tree_is_read(stack):
    assert stack.prefix == "/llmstack/production"
    for item in ("ghcr_token", "nginx_gateway/api_keys/alice", "nginx_gateway/tls_key", "vllm/vllm_api_key",
                 "postgres/postgres_password", "agent_service/image_tag"):
        assert stack.full(item) in stack.names, (item, stack.names)
    assert stack.service_dirs() == ["agent_service", "nginx_gateway", "postgres", "status", "vllm"]


def test_every_json_block_is_an_iam_policy(stack):
    assert stack.policies, "the IAM section has no ```json block"
    assert_none([problem for p in stack.policies for problem in shape_problems(p)])


def test_every_policy_names_its_role(stack):
    """The paragraph above each permissions policy names its role, and each role has one."""
    found = ["%s: the paragraph above it names none of `llmstack-gpu`, `llmstack-app`, `llmstack-app-gpu`, "
             "`llmstack-deploy`" % p.label() for p in stack.policies if not p.trust and not p.named]
    for role in ("gpu", "app", "deploy"):
        if not of_role(stack, role):
            found.append("no policy for the %s role" % role)
    if not any(p.trust for p in stack.policies):
        found.append("no trust policy for the deploy role")
    assert_none(found)


def test_parameter_arns_use_one_region_and_account(stack):
    assert len(stack.arn_accounts) == 1, stack.arn_accounts


def test_no_wildcard_over_the_secrets(stack):
    assert_none([problem for p in stack.policies for problem in wildcard_problems(stack, p)])


def test_no_instance_role_reads_the_ghcr_token(stack):
    assert_none(ghcr_problems(stack, [p for p in stack.policies if p.roles & {"gpu", "app"} and not p.trust]))


def test_gpu_hosts_read_only_vllm_parameters(stack):
    assert_none(gpu_problems(stack, of_role(stack, "gpu")))


def test_put_parameter_names_exact_arns(stack):
    assert_none(exact_arn_problems(stack, stack.policies, ("ssm:PutParameter",),
                                   "CI writes one parameter per service, by its exact ARN"))


def test_the_deploy_role_reads_exact_arns(stack):
    assert_none(exact_arn_problems(stack, of_role(stack, "deploy"), READ_BY_NAME + READ_BY_PATH,
                                   "the deploy role reads named parameters only"))


@pytest.mark.parametrize("kind", sorted(NEEDS))
def test_each_host_can_read_what_its_roles_read(stack, kind):
    assert_none(need_problems(stack, of_role(stack, kind), kind))


def test_imds_advice(stack):
    text = " ".join(stack.iam_text.split()).replace("\\ ", "")
    assert_none(["the IAM section does not say %s" % needed
                 for needed in ("--http-tokens required", "--http-put-response-hop-limit 1",
                                '"HttpTokens": "required"', '"HttpPutResponseHopLimit": 1', "network_mode: host")
                 if needed not in text])


def test_every_host_network_container_is_named(stack):
    """Containers on the host's network reach IMDS despite the hop limit: the section names each file."""
    files = host_network_files()
    assert "roles/nginx_gateway/tasks/main.yml" in files, files
    assert_none(["%s starts a container with network_mode host; the IAM section does not name it" % f
                 for f in files if f not in stack.iam_text])


# ------------------------------------------------------------------------------------------ the rules bite

OLD_INSTANCE_ROLE = """{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "ReadStackParameters", "Effect": "Allow", "Action": ["ssm:GetParametersByPath", "ssm:GetParameters"],
     "Resource": ["arn:aws:ssm:us-east-1:123456789012:parameter/llmstack/production",
                  "arn:aws:ssm:us-east-1:123456789012:parameter/llmstack/production/*"]},
    {"Sid": "DecryptSecureStrings", "Effect": "Allow", "Action": "kms:Decrypt",
     "Resource": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}
  ]
}"""
OLD_DEPLOY_WRITE = """{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "WriteImageTags", "Effect": "Allow", "Action": "ssm:PutParameter",
     "Resource": "arn:aws:ssm:us-east-1:123456789012:parameter/llmstack/production/*/image_tag"}
  ]
}"""
WIDE_PATH = """{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "ReadGateway", "Effect": "Allow", "Action": "ssm:GetParametersByPath",
     "Resource": "arn:aws:ssm:us-east-1:123456789012:parameter/llmstack/production/nginx_gateway"}
  ]
}"""


def test_iam_match_is_iams():
    arn = "arn:aws:ssm:us-east-1:123456789012:parameter/llmstack/production/"
    assert iam_match(arn + "*/image_tag", arn + "nginx_gateway/api_keys/image_tag")  # `*` crosses `/`
    assert iam_match(arn + "vllm/*", arn + "vllm/hf_token")
    assert not iam_match(arn + "vllm/*", arn + "vllm")
    assert not iam_match(arn + "vllm/[a-z]*", arn + "vllm/hf_token")  # no character classes in IAM
    assert iam_match("ssm:GetParameter*", "ssm:getparametersbypath", case_sensitive=False)
    assert ancestors("/a/b/c") == ["/", "/a", "/a/b"]


def test_the_rules_catch_the_former_grants(stack):
    old = Policy(1, "Instance role: read the stack's parameters", OLD_INSTANCE_ROLE)
    assert old.roles == {"gpu", "app"}
    assert len(wildcard_problems(stack, old)) == 1
    assert "GetParametersByPath on path /llmstack/production" in ghcr_problems(stack, [old])[0]
    leaks = gpu_problems(stack, [old])
    assert any("nginx_gateway/api_keys/alice" in p for p in leaks) and any("ghcr_token" in p for p in leaks), leaks

    deploy = Policy(2, "Permissions of `llmstack-deploy`:", OLD_DEPLOY_WRITE)
    problems = exact_arn_problems(stack, [deploy], ("ssm:PutParameter",), "exact ARNs only")
    assert len(problems) == 1 and "client key IMAGE_TAG" in problems[0], problems

    # A path grant reads the whole subtree: nginx_gateway's path holds the TLS key and every client key.
    wide = Policy(3, "`llmstack-gpu`:", WIDE_PATH)
    leaks = gpu_problems(stack, [wide])
    assert any("api_keys/ci" in p for p in leaks) and any("tls_key" in p for p in leaks), leaks
    assert need_problems(stack, [wide], "gpu")[0].startswith("gpu hosts call ssm:GetParameters on")


STATUS_WRITES = """{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "RecordReadiness", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:PutParameter"],
     "Resource": "arn:aws:ssm:us-east-1:123456789012:parameter/llmstack/production/status/*"},
    {"Sid": "WriteAnything", "Effect": "Allow", "Action": "ssm:PutParameter",
     "Resource": "arn:aws:ssm:us-east-1:123456789012:parameter/llmstack/production/stat*"},
    {"Sid": "ReadStatusPaths", "Effect": "Allow", "Action": "ssm:GetParametersByPath",
     "Resource": "arn:aws:ssm:us-east-1:123456789012:parameter/llmstack/production/status/*"}
  ]
}"""


def test_only_the_readiness_subtree_is_written_by_a_wildcard(stack):
    """status/* for GetParameter/PutParameter passes; a wider write wildcard, or a path read there, does not."""
    policy = Policy(4, "`llmstack-gpu`:", STATUS_WRITES)
    problems = exact_arn_problems(stack, [policy], ("ssm:PutParameter", "ssm:GetParametersByPath"), "exact ARNs only")
    assert [p.split("), statement ")[1].split(":")[0] for p in problems] == ["WriteAnything", "ReadStatusPaths"], \
        problems
    # A GPU host may reach its readiness record and nothing else of the tree.
    assert gpu_problems(stack, [Policy(5, "`llmstack-gpu`:", STATUS_WRITES.replace("stat*", "status/x"))]) == []
