"""What the verify tests of the single-host stack share: the lab host (an EC2 instance of the lab, reached over SSH),
its secrets, requests from outside the host, the operator's playbooks against the EC2 inventory, and a snapshot of
what must stay untouched."""
import http.client
import json
import os
import ssl
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
import fleet  # noqa: E402  pylint: disable=wrong-import-position
import labenv  # noqa: E402  pylint: disable=wrong-import-position

LAB = labenv.read()
LAB_DIR = LAB["LAB_DIR"]
SECRETS = os.path.join(LAB_DIR, "stack")
# The scenario's one host (LLMSTACK_TEST_SCENARIO=demo: the demo's): its container, instance and inventory name.
SCENARIO = os.environ.get("LLMSTACK_TEST_SCENARIO", "default")
_HOSTS = fleet.Fleet(LAB, SCENARIO).hosts()
assert len(_HOSTS) == 1, "lab scenario %s: want one running instance, found %s" % (SCENARIO, _HOSTS)
HOST_CONTAINER = _HOSTS[0]["container"]
INVENTORY_NAME = _HOSTS[0]["inventory_name"]
# The operators' inventory: inventory_aws_ec2.yml (a link) and the lab's group_vars.
INVENTORY = os.environ.get("LLMSTACK_TEST_INVENTORY", os.path.join(ROOT, "tests", "lab", "inventory"))


def ssh():
    """The host as testinfra sees it: over SSH as the plays reach it."""
    return fleet.ssh_host(LAB, host_ip())


def secret(name):
    with open(os.path.join(SECRETS, name)) as f:
        return f.read().strip()


def seeded_secrets():
    """{name: value} of every secret the lab seeded: SSM SecureStrings, API keys, the registry password.
    The TLS key is matched by each line of its base64 body (a PEM's first and last lines are public)."""
    values = dict((name, secret(name)) for name in sorted(os.listdir(SECRETS)) if not name.startswith("tls."))
    for number, line in enumerate(secret("tls.key").splitlines()):
        if not line.startswith("-----"):
            values["tls.key line %d" % number] = line
    values["registry password"] = LAB["LAB_REGISTRY_PASSWORD"]
    return values


def leaked(text):
    """The names of the seeded secrets that appear in text."""
    return [name for name, value in seeded_secrets().items() if value in text]


def host_ip():
    """The host's address: its instance's private IP (what inventory_aws_ec2.yml connects to)."""
    return _HOSTS[0]["address"]


def request(ip, method, path, body=None, key=None, tls=True, port=None, timeout=30):
    """One request from this machine (outside the host), as a client on the network would make it."""
    if tls:
        # The lab's gateway has a self-signed certificate; the point here is the gateway, not the CA.
        conn = http.client.HTTPSConnection(ip, port or 443, timeout=timeout, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(ip, port or 80, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = "Bearer " + key
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    return conn, conn.getresponse()


def serving(ip):
    """None when the gateway, the LLM behind it and the agent service (with postgres) all answer, else why not."""
    try:
        _c, resp = request(ip, "POST", "/llm_api/chat/completions", key=secret("api_key_ci"), timeout=10,
                           body={"model": "lab/echo", "messages": [{"role": "user", "content": "still there?"}]})
        if resp.status != 200:
            return "/llm_api answered %d" % resp.status
        _c, resp = request(ip, "POST", "/agent/chat", key=secret("api_key_alice"), body={"message": "hi"}, timeout=10)
        if resp.status != 200:
            return "/agent/chat answered %d" % resp.status
    except OSError as e:
        return "no answer: %s" % e
    return None


def wait_serving(ip, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        why = serving(ip)
        if why is None:
            return
        assert time.monotonic() < deadline, "the stack did not serve within %ds: %s" % (timeout, why)
        time.sleep(1)


def docker_json(host, *args):
    return json.loads(host.check_output("docker " + " ".join(args)))


def live_agent(host):
    """The running agent_service slot container (the switch file names its upstream, <service>_<slot>)."""
    slot = host.file("/var/lib/llmstack/switch/agent_service.live").content_string.strip().rsplit("_", 1)[1]
    names = host.check_output("docker ps --filter label=llmstack.service=agent_service "
                              "--filter label=llmstack.slot=%s --format '{{.Names}}'" % slot).split()
    assert len(names) == 1, names
    return names[0]


def history(host, service="agent_service"):
    """A service's deployment history as container_rollout keeps it on the host."""
    return json.loads(host.check_output("cat /var/lib/llmstack/deployments/%s.json" % service))


def snapshot(host):
    """What a refused run must leave as it was: every running container (id, start time, image), the env files,
    the gateway's current config release and the blue/green switch files."""
    ids = host.check_output("docker ps -q").split()
    containers = dict((c["Name"], (c["Id"], c["State"]["StartedAt"], c["Image"]))
                      for c in docker_json(host, "inspect", *ids))
    files = host.check_output("sha256sum /etc/llmstack/*.env /var/lib/llmstack/switch/*.live; "
                              "readlink /etc/llmstack/nginx_gateway/current || true")
    return {"containers": containers, "files": files}


def with_app(name="agent_service", **keys):
    """-e llmstack_apps as the lab's group_vars have it, with `keys` set on the app `name` (added if missing)."""
    import yaml  # pylint: disable=import-outside-toplevel
    with open(os.path.join(ROOT, "tests", "lab", "inventory", "group_vars", "all.yml"), encoding="utf-8") as f:
        apps = yaml.safe_load(f)["llmstack_apps"]
    found = [a for a in apps if a["name"] == name]
    if found:
        found[0].update(keys)
    else:
        apps.append(dict(keys, name=name))
    return ["-e", json.dumps({"llmstack_apps": apps})]


def playbook(name, *args, check=False, env=None):
    """ansible-playbook playbooks/<name> -i <the EC2 inventory> as an operator runs it (over SSH, the repo's
    ansible.cfg, AWS reached through the environment lab.env exports); env adds to the environment."""
    binary = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    full_env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                    ANSIBLE_FORCE_COLOR="0")
    full_env.update(env or {})
    proc = subprocess.run([binary if os.path.exists(binary) else "ansible-playbook", "-i", INVENTORY,
                           os.path.join(ROOT, "playbooks", name)] + list(args),
                          env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc


def json_playbook(name, *args, env=None):
    """(rc, JSON result or None, stdout + stderr) of playbook(), with the JSON callback."""
    proc = playbook(name, *args, env=dict(env or {}, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"))
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = None
    return proc.returncode, data, proc.stdout + proc.stderr


def tasks(data, host=INVENTORY_NAME):
    """[(task name, result)] of one host, in the order they ran; a role's tasks without the `role : ` prefix."""
    return [(t["task"]["name"].split(" : ", 1)[-1], t["hosts"][host])
            for p in data["plays"] for t in p["tasks"] if host in t["hosts"]]


def result(data, name, host=INVENTORY_NAME):
    """The result of the task called name; of a task that ran more than once (a role's entry point included by two
    loops, e.g. rollback.yml's dry-run pass and its rollback pass), the one run that was not skipped."""
    found = [r for n, r in tasks(data, host) if n == name]
    if len(found) > 1:
        found = [r for r in found if not r.get("skipped")]
    assert len(found) == 1, "%s: %s" % (name, [n for n, _r in tasks(data, host)])
    return found[0]


def failure(data, host=INVENTORY_NAME):
    """The message of the task that failed on host."""
    failed = [r for _n, r in tasks(data, host) if r.get("failed")]
    assert failed, "nothing failed on %s" % host
    return failed[0].get("msg", "")


def changed_tasks(data, host=INVENTORY_NAME):
    return [n for n, r in tasks(data, host) if r.get("changed")]


def sql(host, query):
    """One query as the agent service's database user, in the postgres container."""
    return host.check_output('docker exec postgres psql -v ON_ERROR_STOP=1 -U agent -d agent -tAc "%s"' % query)
