"""What the recipes scenario's verify tests share: the lab, a wiped host for each recipe, requests from outside
with the recipe's server name."""
import http.client
import os
import socket
import ssl
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests", "lab"))
import fleet  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
import labenv  # noqa: E402  pylint: disable=wrong-import-position
import recipes  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from recipes import recap  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

LAB = labenv.read()
# Every folder a recipe's converge writes on the host: the stack's config and state, the backend's bind mounts.
STACK_PATHS = ("/etc/llmstack", "/var/lib/llmstack", "/srv/backend", "/srv/ai-studio")
# certbot's account, certificates and renewal settings (a recipe with nginx_gateway_letsencrypt).
CERTBOT_PATHS = ("/etc/letsencrypt/accounts", "/etc/letsencrypt/archive", "/etc/letsencrypt/live",
                 "/etc/letsencrypt/renewal")


def wipe(host):
    """The host as a fresh instance would be, but for Docker itself: no containers, none of the stack's files (a
    recipe before this one ran here)."""
    host.run("docker ps -aq | xargs -r docker rm -f")
    host.run("rm -rf " + " ".join(STACK_PATHS + CERTBOT_PATHS))
    # The firewall role's table and boot unit (a recipe with llmstack_firewall: true).
    host.run("nft delete table inet llmstack; systemctl disable llmstack-firewall.service; "
             "rm -f /etc/systemd/system/llmstack-firewall.service; systemctl daemon-reload")
    assert host.check_output("docker ps -aq") == ""


def untouched(host):
    """Check mode left the host as it was: no container, none of the stack's folders, no firewall table."""
    return (host.check_output("docker ps -aq") == ""
            and not any(host.file(p).exists for p in STACK_PATHS + CERTBOT_PATHS)
            and host.run("nft list table inet llmstack").rc != 0)


def deploy(recipe, host, target=None):
    """The recipe as its README runs it, on the wiped host: its SSM parameters seeded, site.yml --check --diff
    (kept as recipe.check, with recipe.untouched_by_check), site.yml (recipe.first, which must pass), and site.yml
    again (recipe.again). target: the lab host a static inventory's host points at."""
    recipe.seed()
    wipe(host)
    recipe.check = recipe.playbook("site.yml", "--check", "--diff", host=target)
    recipe.untouched_by_check = untouched(host)
    recipe.first = recipe.playbook("site.yml", host=target)
    assert recipe.first.returncode == 0, recipe.first.stdout[-4000:] + recipe.first.stderr[-2000:]
    recipe.again = recipe.playbook("site.yml", host=target)
    # Where the tests send requests: the lab host, by the recipe's server name.
    recipe.target = target
    recipe.address = target["address"] if target else None
    recipe.server_name = recipe.group_vars.get("nginx_gateway_server_name")
    return recipe


def ask(recipe, path, **kwargs):
    """request() to the recipe's host (deploy's target) by its server name."""
    return request(recipe.address, path, recipe.server_name, **kwargs)


def request(address, path, server_name, method="GET", headers=None, body=None, tls=True, timeout=30):
    """(status, lower-case headers, body, the server's certificate in DER or None) of one request from this
    machine, with the recipe's server name in SNI and Host."""
    if tls:
        conn = http.client.HTTPSConnection(address, 443, timeout=timeout)
        raw = socket.create_connection((address, 443), timeout=timeout)
        # The lab's certificates are self-signed: the test compares the one served with the recipe's instead.
        conn.sock = ssl._create_unverified_context().wrap_socket(raw, server_hostname=server_name)
    else:
        conn = http.client.HTTPConnection(address, 80, timeout=timeout)
    conn.request(method, path, body=body, headers=dict({"Host": server_name}, **(headers or {})))
    resp = conn.getresponse()
    data = resp.read()
    der = conn.sock.getpeercert(binary_form=True) if tls else None
    conn.close()
    return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data, der


def certificate(path):
    """A PEM certificate file's DER bytes."""
    with open(path, encoding="utf-8") as f:
        return ssl.PEM_cert_to_DER_cert(f.read())
