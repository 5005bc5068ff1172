"""What the verify tests of the single-host stack share: the lab host, its secrets, requests from outside the
host, the operator's playbooks against molecule's inventory, and a snapshot of what must stay untouched."""
import http.client
import json
import os
import ssl
import subprocess
import sys
import time

HOST_CONTAINER = os.environ.get("LLMSTACK_TEST_HOST", "llmstack-molecule-app")
LAB_DIR = os.environ.get("LAB_DIR", "/var/lib/llmstack-lab")
SECRETS = os.path.join(LAB_DIR, "stack")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


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
    values["registry password"] = os.environ["LAB_REGISTRY_PASSWORD"]
    return values


def leaked(text):
    """The names of the seeded secrets that appear in text."""
    return [name for name, value in seeded_secrets().items() if value in text]


def host_ip():
    out = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                          HOST_CONTAINER], check=True, capture_output=True, text=True).stdout
    return out.split()[0]


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


def playbook(name, *args, check=False, env=None):
    """ansible-playbook <name> against the inventory molecule wrote (or LLMSTACK_TEST_INVENTORY), as an operator
    runs it; env adds to the environment."""
    inventory = os.environ.get("LLMSTACK_TEST_INVENTORY") or os.environ.get("MOLECULE_INVENTORY_FILE")
    assert inventory, "no inventory: molecule sets MOLECULE_INVENTORY_FILE; elsewhere set LLMSTACK_TEST_INVENTORY"
    binary = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    full_env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                    ANSIBLE_FORCE_COLOR="0")
    full_env.update(env or {})
    proc = subprocess.run([binary if os.path.exists(binary) else "ansible-playbook", "-i", os.path.abspath(inventory),
                           os.path.join(ROOT, "playbooks", name)] + list(args),
                          env=full_env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc


def sql(host, query):
    """One query as the agent service's database user, in the postgres container."""
    return host.check_output('docker exec postgres psql -v ON_ERROR_STOP=1 -U agent -d agent -tAc "%s"' % query)
