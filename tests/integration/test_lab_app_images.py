"""The lab's app images, as pulled from the lab registry: frontend (tests/images/frontend) and stream-app
(tests/images/stream-app), both tags of each, run on this machine's engine on loopback ports.

A missing image is a failure: `tests/lab/images frontend stream-app` (or tests/lab/up) builds and pushes them.
"""
import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import uuid

import pytest

import labenv
import wsclient

SITE = os.path.join(labenv.ROOT, "tests", "images", "frontend", "site")
TAGS = ("1.0.0", "1.0.1")
HASHED = re.compile(r"\.([0-9a-f]{8,})\.[A-Za-z0-9]+$")
IMMUTABLE = "public, max-age=31536000, immutable"


def local_ref(lab, var, tag):
    """lab.env names images as lab hosts see the registry; this machine reaches it at LAB_REGISTRY."""
    if var not in lab:
        pytest.fail("lab.env has no %s: run tests/lab/up" % var, pytrace=False)
    repo = lab[var].rsplit(":", 1)[0].replace(lab["LAB_REGISTRY_FROM_HOSTS"], lab["LAB_REGISTRY"], 1)
    return "%s:%s" % (repo, tag)


@pytest.fixture(scope="module")
def images(lab):
    """{(name, tag): reference}: pulled, so the tests run what the registry holds, not a local build."""
    config = tempfile.mkdtemp()  # the login stays out of ~/.docker
    env = dict(os.environ, DOCKER_CONFIG=config)
    refs = {}
    try:
        subprocess.run(["docker", "login", "-u", lab["LAB_REGISTRY_USER"], "--password-stdin", lab["LAB_REGISTRY"]],
                       input=lab["LAB_REGISTRY_PASSWORD"], text=True, env=env, check=True, capture_output=True)
        for name, var in (("frontend", "LAB_IMAGE_FRONTEND"), ("stream-app", "LAB_IMAGE_STREAM_APP")):
            for tag in TAGS:
                ref = local_ref(lab, var, tag)
                pull = subprocess.run(["docker", "pull", "-q", ref], env=env, capture_output=True, text=True, check=False)
                if pull.returncode:
                    pytest.fail("cannot pull %s (%s): run tests/lab/images frontend stream-app" % (ref, pull.stderr.strip()),
                                pytrace=False)
                refs[(name, tag)] = ref
    finally:
        shutil.rmtree(config, ignore_errors=True)
    return refs


class Container:
    """A container of a lab image with its port published on a free loopback port; up once /health answers."""

    def __init__(self, image, container_port, env=None):
        self.name = "it-app-%s" % uuid.uuid4().hex[:8]
        args = ["docker", "run", "-d", "--name", self.name, "--label", "llmstack-lab=1",
                "-p", "127.0.0.1::%d" % container_port]
        for key, value in (env or {}).items():
            args += ["-e", "%s=%s" % (key, value)]
        subprocess.run(args + [image], check=True, capture_output=True)
        try:
            out = subprocess.run(["docker", "port", self.name, "%d/tcp" % container_port], check=True,
                                 capture_output=True, text=True).stdout
            self.port = int(out.split()[0].rsplit(":", 1)[1])
            self.wait_healthy()
        except BaseException:
            self.remove()  # the fixture never gets this object to clean up
            raise

    def wait_healthy(self, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if request(self.port, "/health")[0] == 200:
                    return
            except OSError:
                pass
            if self.inspect()["State"]["Status"] != "running":
                break
            time.sleep(0.2)
        raise AssertionError("%s did not answer /health; logs:\n%s" % (self.name, "".join(self.logs())))

    def inspect(self):
        out = subprocess.run(["docker", "inspect", self.name], check=True, capture_output=True, text=True).stdout
        return json.loads(out)[0]

    def logs(self):
        """(stdout, stderr) of the container: Docker keeps the two streams apart."""
        proc = subprocess.run(["docker", "logs", self.name], check=True, capture_output=True, text=True)
        return proc.stdout, proc.stderr

    def wait_logs(self, pattern, timeout=10):
        """Both streams once pattern shows in one of them (log lines reach Docker a moment later)."""
        end = time.monotonic() + timeout
        while True:
            out, err = self.logs()
            if re.search(pattern, out + err) or time.monotonic() > end:
                return out, err
            time.sleep(0.1)

    def process_uids(self):
        # docker top needs the pid column to map processes to the container.
        out = subprocess.run(["docker", "top", self.name, "-eo", "pid,uid,comm"], check=True, capture_output=True,
                             text=True).stdout
        return set(line.split()[1] for line in out.splitlines()[1:] if line.strip())

    def signal_and_wait(self, sig="TERM", timeout=30):
        """Send sig to the container's PID 1 and wait until it exits; returns its exit code."""
        subprocess.run(["docker", "kill", "-s", sig, self.name], check=True, capture_output=True)
        out = subprocess.run(["timeout", str(timeout), "docker", "wait", self.name], check=True, capture_output=True,
                             text=True).stdout
        return int(out.strip())

    def remove(self):
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True, check=False)


def _starter():
    """start(image, port, env) -> Container, and the containers it started (for the fixture to remove)."""
    started = []

    def start(image, container_port, env=None):
        started.append(Container(image, container_port, env))
        return started[-1]
    return start, started


@pytest.fixture(scope="module")
def containers():
    """start(image, port, env) -> Container; every one is removed after the module."""
    start, started = _starter()
    yield start
    for c in started:
        c.remove()


@pytest.fixture
def own_container():
    """A container for one test (one that stops it, or reads its whole log)."""
    start, started = _starter()
    yield start
    for c in started:
        c.remove()


@pytest.fixture(scope="module")
def frontends(images, containers):
    return dict((tag, containers(images[("frontend", tag)], 8080)) for tag in TAGS)


@pytest.fixture(scope="module")
def stream_apps(images, containers):
    return dict((tag, containers(images[("stream-app", tag)], 8000)) for tag in TAGS)


def request(port, path, method="GET", body=None, headers=None, timeout=10):
    """(status, headers with lower-case names, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
    finally:
        conn.close()


def get_json(port, path, **kwargs):
    status, headers, body = request(port, path, **kwargs)
    assert status == 200, (path, status, body)
    assert headers["content-type"].startswith("application/json"), headers
    return json.loads(body)


def site_file(relpath, version=None):
    with open(os.path.join(SITE, relpath), "rb") as f:
        data = f.read()
    return data.replace(b"@VERSION@", version.encode()) if version else data


def asset_refs(html):
    return re.findall(r'(?:src|href)="(/assets/[^"]+)"', html.decode())


# --- frontend ---------------------------------------------------------------------------


def test_frontend_site_is_a_build_folder_with_content_hashed_assets():
    """The names carry their content's hash, so serving them as immutable is safe; the pages name them."""
    assets = os.listdir(os.path.join(SITE, "assets"))
    hashed = [a for a in assets if HASHED.search(a)]
    assert set(os.path.splitext(a)[1] for a in hashed) >= {".js", ".css"}, assets
    for name in hashed:
        digest = HASHED.search(name).group(1)
        assert hashlib.sha256(site_file("assets/" + name)).hexdigest().startswith(digest), name
    for page in ("index.html", "chat/index.html"):
        html = site_file(page)
        assert b"frontend-version: @VERSION@" in html, page
        refs = asset_refs(html)
        assert len(refs) >= 2 and all(HASHED.search(r) for r in refs), (page, refs)
        assert all(os.path.isfile(os.path.join(SITE, r.lstrip("/"))) for r in refs), (page, refs)


@pytest.mark.parametrize("tag", TAGS)
def test_frontend_pages_are_no_cache_and_carry_the_build_version(frontends, tag):
    for path, page in (("/", "index.html"), ("/index.html", "index.html"), ("/chat/", "chat/index.html")):
        status, headers, body = request(frontends[tag].port, path)
        assert status == 200, path
        assert headers["content-type"].startswith("text/html"), (path, headers)
        assert headers.get("cache-control") == "no-cache", (path, headers)
        assert ("frontend-version: %s" % tag).encode() in body, path
        assert body == site_file(page, tag), path  # the build folder as it is, version filled in


def test_frontend_hashed_assets_are_immutable(frontends):
    port = frontends[TAGS[0]].port
    refs = asset_refs(site_file("index.html"))
    for ref in refs:
        status, headers, body = request(port, ref)
        assert status == 200, ref
        assert headers.get("cache-control") == IMMUTABLE, (ref, headers)
        assert body == site_file(ref.lstrip("/")), ref
    types = dict((os.path.splitext(r)[1], request(port, r)[1]["content-type"]) for r in refs)
    assert types[".css"] == "text/css" and "javascript" in types[".js"], types
    # An unhashed file must be revalidated: only a name that changes with its content may be immutable.
    status, headers, _body = request(port, "/favicon.svg")
    assert status == 200 and headers.get("cache-control") == "no-cache", headers


def test_frontend_unknown_paths_are_404(frontends):
    port = frontends[TAGS[0]].port
    # The last one looks like a hashed asset: a missing one is a 404 too, and not cached as immutable.
    for path in ("/no-such-page", "/chat/missing.html", "/assets/app.0123456789.js"):
        status, headers, _body = request(port, path)
        assert status == 404, path
        assert "immutable" not in headers.get("cache-control", ""), (path, headers)


@pytest.mark.parametrize("tag", TAGS)
def test_frontend_health(frontends, tag):
    assert get_json(frontends[tag].port, "/health") == {"status": "ok", "version": tag}


def test_frontend_runs_as_non_root_and_logs_to_stdout(frontends):
    c = frontends[TAGS[0]]
    assert c.inspect()["Config"]["User"] == "10001"
    assert c.process_uids() == {"10001"}  # the entrypoint, nginx's master and its worker
    marker = "/no-such-page-%s" % uuid.uuid4().hex[:8]
    request(c.port, marker)
    out, err = c.wait_logs(re.escape(marker))
    assert '"GET %s HTTP/1.1" 404' % marker in out  # the access log
    assert "start worker process" in err  # the error log (notice level)


def test_frontend_listens_on_port_from_env(images, own_container):
    c = own_container(images[("frontend", TAGS[0])], 9090, env={"PORT": "9090"})
    assert get_json(c.port, "/health")["status"] == "ok"


def test_frontend_sigterm_is_a_graceful_quit(images, own_container):
    c = own_container(images[("frontend", TAGS[0])], 8080)
    assert c.signal_and_wait("TERM") == 0
    _out, err = c.logs()
    # nginx's own reaction to SIGTERM is a fast stop; the entrypoint turns it into SIGQUIT.
    assert "signal 3 (SIGQUIT) received" in err, err
    assert "gracefully shutting down" in err, err


# --- stream-app -------------------------------------------------------------------------


@pytest.mark.parametrize("tag", TAGS)
def test_stream_app_root_health_version(stream_apps, tag):
    port = stream_apps[tag].port
    assert get_json(port, "/") == {"app": "stream-app", "version": tag}
    assert get_json(port, "/health") == {"status": "ok", "version": tag}
    assert get_json(port, "/version") == {"version": tag}


def read_events(port, path, method="GET", body=None, headers=None):
    """(response headers, [(seconds since the request, data)]) for each SSE data line, as it arrives."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        start = time.monotonic()
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        events = []
        while True:
            line = resp.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                events.append((time.monotonic() - start, line[6:].strip().decode()))
        return dict((k.lower(), v) for k, v in resp.getheaders()), events
    finally:
        conn.close()


def tokens_of(events):
    assert events and events[-1][1] == "[DONE]", events
    return [json.loads(data) for _t, data in events[:-1]]


def test_stream_app_sse_arrives_in_pieces(stream_apps):
    tag = TAGS[0]
    headers, events = read_events(stream_apps[tag].port, "/stream?tokens=6&interval_ms=300")
    assert headers["content-type"].startswith("text/event-stream"), headers
    assert headers.get("x-accel-buffering") == "no", headers
    assert tokens_of(events) == [{"token": i, "version": tag} for i in range(6)]
    times = [t for t, _data in events]
    # Buffered, every event would come at the end: the first must come well before the last, and the
    # events in at least 3 separate reads (gaps of at least half the interval).
    assert times[-2] - times[0] >= 1.0, times
    arrivals = 1 + sum(1 for a, b in zip(times, times[1:]) if b - a >= 0.15)
    assert arrivals >= 3, times


def test_stream_app_post_stream_and_defaults(stream_apps):
    tag = TAGS[1]
    port = stream_apps[tag].port
    _headers, events = read_events(port, "/stream", method="POST", body=json.dumps({"tokens": 3, "interval_ms": 10}),
                                   headers={"Content-Type": "application/json"})
    assert tokens_of(events) == [{"token": i, "version": tag} for i in range(3)]
    # Without a count there are 20 tokens.
    _headers, events = read_events(port, "/stream?interval_ms=0")
    assert len(tokens_of(events)) == 20
    _headers, events = read_events(port, "/stream", method="POST", body="{}", headers={"Content-Type": "application/json"})
    assert len(tokens_of(events)) == 20
    # The default interval (100 ms): 3 tokens are 2 intervals apart.
    _headers, events = read_events(port, "/stream?tokens=3")
    assert events[2][0] - events[0][0] >= 0.18, events


@pytest.mark.parametrize("tag", TAGS)
def test_stream_app_websocket_echo(stream_apps, tag):
    ws = wsclient.connect("127.0.0.1", stream_apps[tag].port, "/ws")
    try:
        for text in ("hello", "h\u00e9llo \u2713 \u65e5\u672c", "x" * 70000):  # also a 64-bit length frame
            ws.send_text(text)
            assert json.loads(ws.recv_text(timeout=10)) == {"echo": text, "version": tag}
        time.sleep(1.5)  # still open after a pause: the server keeps it until the client closes
        ws.send_text("again")
        assert json.loads(ws.recv_text(timeout=10))["echo"] == "again"
    finally:
        answer = ws.close()
    assert answer == (1000, "")


def test_wsclient_reports_a_refused_handshake(frontends):
    # nginx serves files: /ws is a 404 there, which the client must report, not treat as a WebSocket.
    with pytest.raises(wsclient.HandshakeError) as e:
        wsclient.connect("127.0.0.1", frontends[TAGS[0]].port, "/ws")
    assert e.value.status == 404 and b"404" in e.value.body


@contextlib.contextmanager
def tls_relay(target_port, hostname, folder):
    """A TLS listener on loopback with a self-signed certificate for hostname, relaying to target_port.
    Yields (port, CA file)."""
    cert, key = os.path.join(folder, "relay.crt"), os.path.join(folder, "relay.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=" + hostname,
                    "-addext", "subjectAltName=DNS:" + hostname, "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()

    async def pipe(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def relay(client_r, client_w):
        up_r, up_w = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    server = loop.run_until_complete(asyncio.start_server(relay, "127.0.0.1", 0, ssl=ctx))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server.sockets[0].getsockname()[1], cert
    finally:
        async def shutdown():
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_wsclient_over_tls(stream_apps, tmp_path):
    hostname = "stream.lab.test"
    with tls_relay(stream_apps[TAGS[0]].port, hostname, str(tmp_path)) as (port, ca):
        tls = ssl.create_default_context(cafile=ca)
        # The certificate names stream.lab.test, not 127.0.0.1: the handshake verifies server_hostname.
        with pytest.raises(ssl.SSLCertVerificationError):
            wsclient.connect("127.0.0.1", port, "/ws", tls_context=tls)
        ws = wsclient.connect("127.0.0.1", port, "/ws", tls_context=tls, server_hostname=hostname,
                              headers={"Host": hostname})
        try:
            ws.send_text("over tls")
            assert json.loads(ws.recv_text(timeout=10))["echo"] == "over tls"
        finally:
            assert ws.close() == (1000, "")


def test_stream_app_headers_reflects_what_it_received(stream_apps):
    value = uuid.uuid4().hex
    got = get_json(stream_apps[TAGS[0]].port, "/headers", headers={"X-Lab-Probe": value, "X-Lab-Twice": "a"})
    assert got["x-lab-probe"] == value
    assert got["x-lab-twice"] == "a"
    assert all(name == name.lower() for name in got), got


def test_stream_app_warns_of_credential_headers_without_their_values(images, own_container):
    c = own_container(images[("stream-app", TAGS[0])], 8000)
    get_json(c.port, "/headers", headers={"X-Lab-Probe": "harmless"})
    _out, err = c.wait_logs(r"GET /headers")
    assert "WARNING" not in err, err  # an ordinary request is not flagged
    token, key = "tok-%s" % uuid.uuid4().hex, "key-%s" % uuid.uuid4().hex
    get_json(c.port, "/headers", headers={"Authorization": "Bearer " + token})
    ws = wsclient.connect("127.0.0.1", c.port, "/ws", headers={"X-Streaming-Proxy-Key": key})
    ws.close()
    out, err = c.wait_logs(r"X-Streaming-Proxy-Key header")
    warnings = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert any("GET /headers" in w and "Authorization header" in w for w in warnings), err
    assert any("/ws (WebSocket)" in w and "X-Streaming-Proxy-Key header" in w for w in warnings), err
    assert token not in out + err and key not in out + err


def test_stream_app_sigterm_finishes_streams_and_closes_websockets(images, own_container):
    c = own_container(images[("stream-app", TAGS[0])], 8000)
    ws = wsclient.connect("127.0.0.1", c.port, "/ws")
    ws.send_text("before")
    ws.recv_text(timeout=10)
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=30)
    conn.request("GET", "/stream?tokens=8&interval_ms=200")
    resp = conn.getresponse()
    assert resp.readline().startswith(b"data: ")  # the stream is in flight
    subprocess.run(["docker", "kill", "-s", "TERM", c.name], check=True, capture_output=True)
    with pytest.raises(wsclient.ConnectionClosed) as closed:
        ws.recv_text(timeout=10)
    assert closed.value.code == 1012  # "service restart"
    ws.close()
    rest = resp.read().decode()
    conn.close()
    assert rest.count('"token"') == 7 and rest.rstrip().endswith("data: [DONE]"), rest
    assert int(subprocess.run(["timeout", "30", "docker", "wait", c.name], check=True, capture_output=True,
                              text=True).stdout) == 0


def test_stream_app_runs_as_uid_10001(stream_apps):
    c = stream_apps[TAGS[0]]
    assert c.inspect()["Config"]["User"] == "10001"
    assert c.process_uids() == {"10001"}


@pytest.mark.parametrize("name", ["frontend", "stream-app"])
def test_both_tags_are_distinct_builds_labelled_with_their_version(images, name):
    ids = {}
    for tag in TAGS:
        out = subprocess.run(["docker", "image", "inspect", images[(name, tag)]], check=True, capture_output=True,
                             text=True).stdout
        image = json.loads(out)[0]
        assert image["Config"]["Labels"]["org.opencontainers.image.version"] == tag
        ids[tag] = image["Id"]
    assert len(set(ids.values())) == len(TAGS), ids


def test_stream_app_serves_each_endpoint_under_any_prefix(stream_apps):
    """A stand-in for apps whose routes live under their own paths (/api/design/stream, /api/voice/ws)."""
    port = stream_apps[TAGS[0]].port
    assert get_json(port, "/api/design/health") == {"status": "ok", "version": TAGS[0]}
    _headers, events = read_events(port, "/api/design/stream", method="POST",
                                   body=json.dumps({"tokens": 2, "interval_ms": 0}),
                                   headers={"Content-Type": "application/json"})
    assert [e["token"] for e in tokens_of(events)] == [0, 1]
    ws = wsclient.connect("127.0.0.1", port, "/api/voice/ws")
    try:
        ws.send_text("hi")
        assert json.loads(ws.recv_text(timeout=10))["echo"] == "hi"
    finally:
        ws.close()
    assert request(port, "/api/design/nothing")[0] == 404


def test_stream_app_stands_in_for_an_mcp_server_and_asks_the_ones_it_is_given(images, own_container):
    app = own_container(images[("stream-app", TAGS[0])], 9000,
                        env={"PORT": "9000", "APP_NAME": "mcp-lab",
                             "MCP_SERVERS": "http://127.0.0.1:9000/mcp, http://127.0.0.1:9/mcp"})
    for method in ("GET", "POST"):
        status, _headers, body = request(app.port, "/mcp", method=method)
        assert status == 200 and json.loads(body) == {"mcp": "ok", "name": "mcp-lab", "version": TAGS[0]}
    answers = get_json(app.port, "/api/upstreams")
    expected = {"status": 200, "body": {"mcp": "ok", "name": "mcp-lab", "version": TAGS[0]}}
    assert answers["http://127.0.0.1:9000/mcp"] == expected
    assert "error" in answers["http://127.0.0.1:9/mcp"], "a server it can't reach is named with the error"
