"""Apps are first-class, on the converged single host, through its real gateway (TLS, the lab's client keys):
two more apps next to the agent service (the lab's SSE + WebSocket app, the lab's frontend image) and a static
frontend shipped from the controller at `/`, all from llmstack_apps and nginx_gateway_routes as an operator writes
them, deployed by site.yml over SSH. The module's teardown removes the extra apps and converges back to the
inventory's settings."""
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time

import pytest
import yaml

from stack import INVENTORY_NAME, ROOT, host_ip, leaked, playbook, secret, wait_serving
import frontend_build
import sse
import wsclient

EXTRA = ("stream_app", "frontend")
PROXY_HEADER = "X-Streaming-Proxy-Key"


def image(variable, tag="1.0.0"):
    return os.environ[variable].rsplit(":", 1)[0] + ":" + tag


def inventory_apps():
    with open(os.path.join(ROOT, "tests", "lab", "inventory", "group_vars", "all.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["llmstack_apps"]


def build(folder, version, big_seed):
    """The lab frontend's build folder with its version filled in, plus a big file to download while a release
    switches (its bytes depend on big_seed)."""
    frontend_build.build(folder, version)
    block = hashlib.sha256(big_seed.encode()).digest() * 4096   # 128 KiB
    with open(os.path.join(folder, "big.bin"), "wb") as f:
        for _block in range(160):                                 # 20 MiB
            f.write(block)
    with open(os.path.join(folder, "big.bin"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def extra_vars(static_dir, absent=False, **tags):
    """-e for the lab's apps plus the two extra ones (state absent with absent=True) and the static frontend."""
    apps = inventory_apps() + [
        {"name": "stream_app", "image": image("LAB_IMAGE_STREAM_APP", tags.get("stream_app", "1.0.0")),
         "slots": {"blue": 8201, "green": 8202}, "memory": "256m", "cpus": 0.5, "drain_seconds": 5,
         "routes": [
             {"path": "/api/", "allow": ["stream", "headers", "health"], "auth": "header",
              "auth_header": PROXY_HEADER, "streaming": True},
             {"path": "/ws/", "upstream_path": "/ws", "allow": ["*"], "auth": "bearer", "streaming": True,
              "websocket": True}]},
        {"name": "frontend", "image": image("LAB_IMAGE_FRONTEND"), "container_port": 8080,
         "slots": {"blue": 8301, "green": 8302}, "memory": "128m", "cpus": 0.5, "drain_seconds": 5,
         "routes": [{"path": "/chat/", "upstream_path": "/chat/", "allow": ["*"], "auth": "none", "check": ""}]},
    ]
    if absent:
        apps = [{"name": a["name"], "state": "absent"} if a["name"] in EXTRA else a for a in apps]
    routes = "{{ [nginx_gateway_llm_route, %s] }}" % json.dumps(
        {"path": "/", "static": static_dir, "allow": ["*"], "auth": "none"})
    return ["-e", json.dumps({"llmstack_apps": apps, "nginx_gateway_routes": routes})]


def recap(proc):
    """The lab host's PLAY RECAP counts."""
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(INVENTORY_NAME + " ") and " : ok=" in ln][-1]
    return dict(kv.split("=") for kv in line.split(":", 1)[1].split())


@pytest.fixture(scope="module")
def stack(host):
    """The host with the extra apps and the static frontend; yields what the tests need."""
    work = tempfile.mkdtemp(prefix="llmstack-apps-")
    site = os.path.join(work, "site")
    digest = build(site, "static-1", "release one")
    first = playbook("site.yml", *extra_vars(site), check=True)
    again = playbook("site.yml", *extra_vars(site), check=True)
    yield {"site": site, "work": work, "digest": digest, "first": first, "again": again}
    # The extra apps went in the last test (state absent); the inventory's settings come back.
    playbook("site.yml", check=True)
    shutil.rmtree(work, ignore_errors=True)


def get(path, headers=None, timeout=30):
    conn = http.client.HTTPSConnection(host_ip(), 443, timeout=timeout, context=ssl._create_unverified_context())
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()


def test_the_apps_converge_and_a_second_converge_changes_nothing(stack):
    assert int(recap(stack["first"])["changed"]) > 0
    changed = [ln for ln in stack["again"].stdout.split("\n\n") if "changed: [" in ln]
    assert recap(stack["again"])["changed"] == "0", changed
    assert leaked(stack["first"].stdout + stack["again"].stdout) == []


def test_the_longest_prefix_wins(stack):
    status, headers, body = get("/")
    assert status == 200 and b"frontend-version: static-1" in body, body[:300]
    status, _h, body = get("/chat/")
    assert status == 200 and b"frontend-version: 1.0.0" in body, "/chat/ is the frontend app's, not the static /"
    status, _h, body = get("/api/health", headers={PROXY_HEADER: secret("api_key_ci")})
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _h, body = get("/llm_api/models", headers={"Authorization": "Bearer " + secret("api_key_ci")})
    assert status == 200 and json.loads(body)["data"][0]["id"] == "lab/echo"
    status, _h, body = get("/agent/health", headers={"Authorization": "Bearer " + secret("api_key_ci")})
    assert status == 200 and json.loads(body)["status"] == "ok"
    # /healthz stays the gateway's; a path no route allows is still the 404 JSON (here: below /api/).
    assert get("/healthz")[0] == 200
    status, _h, body = get("/api/admin", headers={PROXY_HEADER: secret("api_key_ci")})
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"


def test_static_files_have_cache_headers(stack):
    _s, headers, body = get("/")
    assert headers["cache-control"] == "no-cache"
    assert headers["x-content-type-options"] == "nosniff", "the security headers stay on static files"
    asset = [name for name in os.listdir(os.path.join(stack["site"], "assets")) if name.endswith(".js")][0]
    status, headers, _b = get("/assets/" + asset)
    assert status == 200 and "immutable" in headers["cache-control"] and "max-age=31536000" in headers["cache-control"]


def test_the_header_key_is_checked_and_never_reaches_the_app(stack):
    for headers in ({}, {PROXY_HEADER: "not-a-key-0123456789"}, {"Authorization": "Bearer " + secret("api_key_ci")}):
        status, _h, body = get("/api/headers", headers=headers)
        assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key", (headers.keys(), body)
    status, _h, body = get("/api/headers", headers={PROXY_HEADER: secret("api_key_alice"),
                                                    "Authorization": "Bearer x"})
    seen = json.loads(body)
    assert status == 200, body
    assert PROXY_HEADER.lower() not in seen and "authorization" not in seen, seen
    assert seen["x-llmstack-client"] == "ALICE"


def test_an_sse_stream_under_api_arrives_in_pieces(stack):
    conn = http.client.HTTPSConnection(host_ip(), 443, timeout=30, context=ssl._create_unverified_context())
    conn.request("GET", "/api/stream?tokens=8&interval_ms=250", headers={PROXY_HEADER: secret("api_key_ci")})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    # The raw socket (chunk sizes and all), read until the last event: each event's arrival time.
    arrivals = sse.arrivals(resp)
    assert len(arrivals) == 9 and arrivals[-1][0] - arrivals[0][0] > 1.5, "events came as they were sent"


def test_a_websocket_over_tls_survives_a_blue_green_switch_of_another_app(stack, host):
    context = ssl._create_unverified_context()
    ws = wsclient.connect(host_ip(), 443, "/ws/", headers={"Authorization": "Bearer " + secret("api_key_ci")},
                          tls_context=context, server_hostname="llmstack-lab")
    try:
        assert json.loads(_echo(ws, "before"))["echo"] == "before"
        live = host.file("/var/lib/llmstack/switch/frontend.live").content_string.strip()
        proc = playbook("rollout.yml", "-e", "service=frontend", "-e", "image_tag=1.0.1",
                        *extra_vars(stack["site"]), check=True)
        assert host.file("/var/lib/llmstack/switch/frontend.live").content_string.strip() != live, proc.stdout[-2000:]
        assert b"frontend-version: 1.0.1" in get("/chat/")[2]
        assert json.loads(_echo(ws, "after"))["echo"] == "after", "the WebSocket still echoes"
    finally:
        ws.close()


def _echo(ws, text):
    ws.send_text(text)
    return ws.recv_text(timeout=10)


def test_rollout_rollback_and_status_take_an_app_by_name(stack, host):
    playbook("rollout.yml", "-e", "service=stream_app", "-e", "image_tag=1.0.1", *extra_vars(stack["site"]),
             check=True)
    _s, _h, body = get("/api/health", headers={PROXY_HEADER: secret("api_key_ci")})
    assert json.loads(body)["version"] == "1.0.1"
    status = playbook("status.yml", "-e", "service=stream_app", *extra_vars(stack["site"]), check=True)
    assert "stream_app: tag 1.0.1" in status.stdout, status.stdout[-2000:]
    playbook("rollback.yml", "-e", "service=stream_app", *extra_vars(stack["site"]), check=True)
    _s, _h, body = get("/api/health", headers={PROXY_HEADER: secret("api_key_ci")})
    assert json.loads(body)["version"] == "1.0.0"


def _slow_download(path, out):
    """GET path into out['body'], reading 64 KiB every 100 ms (a slow client: 20 MiB would take minutes) until
    out['switched'] is set, then the rest at full speed."""
    raw = socket.create_connection((host_ip(), 443), timeout=60)
    sock = ssl._create_unverified_context().wrap_socket(raw, server_hostname="llmstack-lab")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.sendall(("GET %s HTTP/1.1\r\nHost: llmstack-lab\r\nConnection: close\r\n\r\n" % path).encode())
    data = bytearray()
    out["started"].set()
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if not out["switched"].is_set():
            time.sleep(0.1)
    out["body"] = bytes(data).split(b"\r\n\r\n", 1)[1]


def test_a_static_release_switch_gives_a_downloading_client_one_release_whole(stack, host):
    out = {"started": threading.Event(), "switched": threading.Event()}
    reader = threading.Thread(target=_slow_download, args=("/big.bin", out), daemon=True)
    reader.start()
    assert out["started"].wait(30)
    time.sleep(1)
    second = build(stack["site"], "static-2", "release two")
    proc = playbook("site.yml", "--tags", "gateway", *extra_vars(stack["site"]), check=True)
    assert reader.is_alive(), "the download was still going when the release switched (a slower client is needed)"
    out["switched"].set()
    assert b"frontend-version: static-2" in get("/")[2], proc.stdout[-2000:]
    reader.join(300)
    assert hashlib.sha256(out["body"]).hexdigest() == stack["digest"], "the old release, whole"
    assert hashlib.sha256(get("/big.bin", timeout=120)[2]).hexdigest() == second, "a new download: the new one"
    # The release it replaced is kept as previous; nothing older.
    releases = host.check_output("ls /etc/llmstack/nginx_gateway/static/root/releases").split()
    previous = host.check_output("readlink /etc/llmstack/nginx_gateway/static/root/previous")
    assert len(releases) == 2 and previous.split("/")[-1] in releases, (releases, previous)


def test_the_stack_still_serves(stack):
    wait_serving(host_ip())


def test_an_app_set_absent_is_removed_and_its_routes_dropped(stack, host):
    proc = playbook("site.yml", *extra_vars(stack["site"], absent=True), check=True)
    for name in EXTRA:
        assert host.check_output("docker ps -aq --filter label=llmstack.service=%s" % name) == "", proc.stdout[-3000:]
        for path in ("/etc/llmstack/%s.env" % name, "/var/lib/llmstack/switch/%s.live" % name,
                     "/var/lib/llmstack/deployments/%s.json" % name):
            assert not host.file(path).exists, path
    # /api/ is gone: the static / takes the path now, and has no such file.
    assert get("/api/health", headers={PROXY_HEADER: secret("api_key_ci")})[0] == 404, "the app's route is gone"
    assert get("/")[0] == 200 and get("/agent/health", headers={"Authorization": "Bearer " + secret("api_key_ci")})[0] == 200
    again = playbook("site.yml", *extra_vars(stack["site"], absent=True), check=True)
    assert recap(again)["changed"] == "0", "removing what is gone changes nothing"
