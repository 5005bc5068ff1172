"""examples/backend-frontends-mcp on the lab host: inventory_aws_ec2.yml (the lab host is an instance tagged app in
moto), its group_vars, the README's commands. What it promises: three static frontends at `/`, `/chat/` and
`/voice/` shipped from the controller (a new build with `--tags gateway` switches, the one before kept), the
backend under `/api/` without keys (its voice WebSocket included), MCP servers the backend reaches by name on
the stack network, never published, and the backend's data folder backed up and restored (a drill)."""
import json
import ssl
import time
import uuid

import pytest

import wsclient
from recipe_host import certificate, deploy, recap, request

NAME = "backend-frontends-mcp"
MCP = ("mcp_weather", "mcp_calendar", "mcp_home")


@pytest.fixture(scope="module")
def recipe(recipe_of, host, lab_host):
    r = recipe_of(NAME)
    r.builds("1")   # what an earlier run left there may be a later build
    deploy(r, host)
    r.address = lab_host["address"]
    r.inventory_name = lab_host["inventory_name"]
    r.server_name = r.group_vars["nginx_gateway_server_name"]
    return r


def ask(r, path, **kwargs):
    return request(r.address, path, r.server_name, **kwargs)


def test_check_mode_on_a_fresh_host_succeeds_and_changes_nothing(recipe):
    assert recipe.check.returncode == 0, recipe.check.stdout[-4000:] + recipe.check.stderr[-2000:]
    assert recap(recipe.check, recipe.inventory_name)["changed"] > 0, "check mode shows what would change"
    assert recipe.untouched_by_check


def test_the_recipe_converges_and_a_second_converge_changes_nothing(recipe):
    assert recap(recipe.again, recipe.inventory_name)["changed"] == 0, recipe.again.stdout[-4000:]
    outputs = [p.stdout + p.stderr for p in (recipe.check, recipe.first, recipe.again)]
    assert recipe.leaked(*outputs) == []


@pytest.mark.parametrize("path,build", [("/", "kiosk"), ("/chat/", "chat"), ("/voice/", "voice")])
def test_each_frontend_is_served_from_its_own_build(recipe, path, build):
    status, headers, body, der = ask(recipe, path)
    assert status == 200 and ("frontend-version: %s-1" % build).encode() in body, body[:300]
    assert headers["cache-control"] == "no-cache"
    assert der == certificate(recipe.tls()[0]), "the certificate from SSM (nginx_gateway_tls_cert_parameter)"


def test_the_backend_answers_under_api_without_a_key(recipe):
    status, _h, body, _d = ask(recipe, "/api/health")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_the_backend_reaches_each_mcp_server_by_name(recipe):
    status, _h, body, _d = ask(recipe, "/api/upstreams")
    assert status == 200, body
    answers = json.loads(body)
    names = dict((url.split("//", 1)[1].split(":", 1)[0], answer) for url, answer in answers.items())
    assert sorted(names) == ["mcp-calendar", "mcp-home", "mcp-weather"]
    for name, answer in names.items():
        assert answer.get("status") == 200 and answer["body"]["mcp"] == "ok", (name, answer)


def test_the_mcp_servers_publish_no_port(recipe, host):
    for name in MCP:
        ports = json.loads(host.check_output("docker inspect -f '{{json .NetworkSettings.Ports}}' %s" % name))
        assert all(not bindings for bindings in (ports or {}).values()), (name, ports)
    assert host.run("curl -s -o /dev/null --max-time 3 http://127.0.0.1:9000/").rc != 0


def test_the_voice_websocket_echoes_through_the_gateway(recipe):
    ws = wsclient.connect(recipe.address, 443, "/api/voice/ws", tls_context=ssl._create_unverified_context(),
                          server_hostname=recipe.server_name, headers={"Host": recipe.server_name})
    try:
        ws.send_text("hello")
        assert json.loads(ws.recv_text(timeout=10))["echo"] == "hello"
    finally:
        ws.close()


def test_a_new_build_ships_with_tags_gateway_and_the_one_before_is_kept(recipe, host):
    apps = host.check_output("docker ps -q --no-trunc | sort")
    recipe.builds("2")
    proc = recipe.playbook("site.yml", "--tags", "gateway")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for path, build in (("/", "kiosk"), ("/chat/", "chat"), ("/voice/", "voice")):
        assert ("frontend-version: %s-2" % build).encode() in ask(recipe, path)[2]
    assert host.check_output("docker ps -q --no-trunc | sort") == apps, "the apps were not touched"
    root = "/etc/llmstack/nginx_gateway/static/root"
    assert host.check_output("readlink %s/previous" % root) != host.check_output("readlink %s/current" % root)
    assert len(host.check_output("ls %s/releases" % root).split()) == 2


def backend(host, method, path, body=None):
    """(status, body) of a request to the backend's live slot on the host, as the gateway sends one."""
    live = host.file("/var/lib/llmstack/switch/backend.live").content_string.strip().rsplit("_", 1)[1]
    port = {"blue": 8201, "green": 8202}[live]
    data = "--data-binary %s" % body if body is not None else ""
    out = host.run("curl -s -o /tmp/drill.out -w '%%{http_code}' -X %s %s http://127.0.0.1:%d%s; echo; cat /tmp/drill.out"
                   % (method, data, port, path)).stdout.split("\n", 1)
    return int(out[0] or 0), out[1] if len(out) > 1 else ""


def test_the_backends_data_folder_is_backed_up_and_restored_after_it_is_lost(recipe, host):
    """The drill: a note written through the app, backup.yml, the data folder destroyed, restore.yml, the note read
    back through the app; the archive is root's and 0600, the folder keeps the app user's ownership."""
    assert host.service("llmstack-app-backup@backend.timer").is_enabled
    assert host.file("/srv/backend/data").uid == 10001, "created for the app's user"
    text = "drill-%s" % uuid.uuid4().hex
    assert backend(host, "PUT", "/notes/drill", text)[0] == 200
    proc = recipe.playbook("backup.yml", "-e", "service=backend")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    archives = host.check_output("ls /var/backups/llmstack/apps/backend").split()
    assert archives and all(a.startswith("backend-") and a.endswith(".tar.gz") for a in archives), archives
    archive = host.file("/var/backups/llmstack/apps/backend/" + sorted(archives)[-1])
    assert (archive.user, archive.mode) == ("root", 0o600)

    host.run("rm -rf /srv/backend/data")
    assert backend(host, "GET", "/notes/drill")[0] != 200, "the data is gone"
    checked = recipe.playbook("restore.yml", "-e", "service=backend", "--check")
    assert checked.returncode == 0 and "would restore %s" % sorted(archives)[-1] in checked.stdout, checked.stdout[-3000:]
    assert not host.file("/srv/backend/data").exists, "check mode restored"
    for bad, named in (("app_restore_file=backend-1.tar.gz", "no backup backend-1.tar.gz"),
                       ("service=mcp_weather", "mcp_weather names no backup folder")):
        refused = recipe.playbook("restore.yml", "-e", "service=backend", "-e", bad)
        assert refused.returncode != 0 and named in refused.stdout, refused.stdout[-3000:]

    proc = recipe.playbook("restore.yml", "-e", "service=backend")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    deadline = time.monotonic() + 60
    while backend(host, "GET", "/notes/drill")[0] != 200 and time.monotonic() < deadline:
        time.sleep(1)
    status, body = backend(host, "GET", "/notes/drill")
    assert status == 200 and json.loads(body)["text"] == text, body
    assert host.file("/srv/backend/data").uid == 10001
    assert recipe.leaked(proc.stdout, checked.stdout) == []
