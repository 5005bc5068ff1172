"""The gateway's routes (issue 18) through the nginx_gateway role's own configuration: the real template and secret
files, rendered by the role's own task (tests/lab/role_gateway.py), run in the lab's nginx image on this machine's
loopback in front of stdlib upstreams that echo their name and the headers they got.

A route at / beside /api/, /api/v2/ and /llm_api/ (the longest prefix wins), unknown paths, header keys, bearer keys,
WebSockets, SSE, a static folder, and nginx -t with TLS on and off. Every request carries an X-Forwarded-For of its
own (the gateway trusts 127.0.0.1), so the per-address limits of one test don't spill into another."""
import http.client
import json
import os
import random
import socket
import subprocess
import threading
import time

import pytest

import role_gateway
import wsclient
from ansible_collections.llmstack.deploy.plugins.module_utils import routes as routes_lib

KEYS = {"alice": "a1" * 20, "bob": "b0b" * 12}
LLM_KEY = "llm-upstream-key-5f0c2e"
HEADER = "X-Streaming-Proxy-Key"
NAMES = ("root", "api", "api_v2", "llm", "hdr", "ws", "slow")
# Quick enough for the tests: nginx's read timeout on plain routes, and much longer on WebSocket routes.
READ_TIMEOUT, WS_TIMEOUT = 4, 60


def routes():
    return [
        {"path": "/", "upstream": "root", "auth": "none", "allow": ["home", "public/*"]},
        {"path": "/api/", "upstream": "api", "allow": ["*"], "streaming": True},
        {"path": "/api/v2/", "upstream": "api_v2", "auth": False, "allow": ["*"]},
        {"path": "/llm_api/", "upstream": "llm", "upstream_path": "/v1/", "upstream_auth": True, "auth": True,
         "allow": ["models", "events"], "streaming": True},
        {"path": "/stream/", "upstream": "hdr", "auth": "header", "auth_header": HEADER, "allow": ["*"],
         "streaming": True, "websocket": True},
        {"path": "/ws/", "upstream": "ws", "allow": ["*"], "streaming": True, "websocket": True},
        {"path": "/slow/", "upstream": "slow", "auth": "none", "allow": ["*"]},
        {"path": "/app/", "static": "frontend/dist", "auth": "none", "allow": ["*"]},
    ]


# What a frontend build looks like: hashed assets, an index.html per folder, a file that only looks hashed.
STATIC_FILES = {
    "index.html": "<h1>app</h1>", "sub/index.html": "<h1>sub</h1>", "logo.png": "png",
    "assets/app.3f9a1c2b.js": "a()", "assets/index-BkjD7zJ3.js": "b()", "assets/app-settings.json": "{}",
    "_next/static/chunks/main.js": "c()", "static/js/main.3f9a1c2b.chunk.js": "d()",
    "assets/app.3f9a1c2b.js.map": "{}", "android-chrome-192x192.png": "png", "og-image-1200x630.png": "png",
    "fonts/OpenSans-SemiBold.ttf": "ttf", "app-settings-v2.json": "{}",
}
IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture(scope="module")
def upstreams():
    ups = dict((name, role_gateway.EchoUpstream(name)) for name in NAMES)
    yield ups
    for up in ups.values():
        up.stop()


def upstream_list(ups):
    return [{"name": name, "servers": [up.address]} for name, up in ups.items()]


def lab_values():
    # Many requests from one test in a few seconds: the per-key rate is not what these tests are about.
    return {"nginx_gateway_trusted_proxies": ["127.0.0.1"], "nginx_gateway_api_key_rate": "1000r/s",
            "nginx_gateway_api_key_connections": 2, "nginx_gateway_read_timeout": READ_TIMEOUT,
            "nginx_gateway_websocket_timeout": WS_TIMEOUT}


@pytest.fixture(scope="module")
def gateway(lab, upstreams):
    """TLS off: every route of routes(), the static folder shipped as the role ships it."""
    gw = role_gateway.RoleGateway(lab, KEYS, llm_key=LLM_KEY)
    try:
        rc, result = gw.apply(routes(), upstream_list(upstreams), **lab_values())
        assert rc == 0, result.get("msg")
        assert result["validated"] == "image"  # nginx -t ran in a container of the image before `current` moved
        gw.static_release("app", STATIC_FILES)
        yield gw.start()
    finally:
        gw.stop()


def client_address():
    return "10.%d.%d.%d" % (random.randint(0, 255), random.randint(0, 255), random.randint(1, 254))


def ask(port, method, path, headers=None, body=None, tls=None, client=None, timeout=10):
    """(status, headers with lower-case names, body). tls: the gateway whose certificate to trust."""
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls.tls_context())
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = dict(headers or {})
    headers.setdefault("X-Forwarded-For", client or client_address())
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
    finally:
        conn.close()


def bearer(name):
    return {"Authorization": "Bearer " + KEYS[name]}


def keyed(name):
    return {HEADER: KEYS[name]}


def echoed(answer):
    status, _headers, body = answer
    assert status == 200, answer
    return json.loads(body)


def error_code(answer):
    return json.loads(answer[2])["error"]["code"]


# --- prefixes -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,headers,upstream,upstream_path", [
    ("/home", {}, "root", "/home"),
    ("/public/site.css", {}, "root", "/public/site.css"),
    ("/api/things", bearer("alice"), "api", "/things"),
    ("/api/v2/things", {}, "api_v2", "/things"),
    ("/api/v2x", bearer("alice"), "api", "/v2x"),  # not below /api/v2/: the next longest prefix takes it
    ("/llm_api/models", bearer("alice"), "llm", "/v1/models"),
    ("/stream/x", keyed("alice"), "hdr", "/x"),
])
def test_the_longest_prefix_takes_each_request_to_its_own_upstream(gateway, path, headers, upstream, upstream_path):
    answer = echoed(ask(gateway.http_port, "GET", path, headers))
    assert (answer["upstream"], answer["path"]) == (upstream, upstream_path)


@pytest.mark.parametrize("path", ["/nope", "/admin", "/home/x", "/public", "/apix", "/.llmstack/x", "/appx"])
def test_a_path_the_root_route_does_not_allow_is_the_404_json(gateway, path):
    answer = ask(gateway.http_port, "GET", path, bearer("alice"))
    assert answer[0] == 404 and error_code(answer) == "not_found", answer
    assert answer[1]["content-type"] == "application/json"


def test_healthz_is_still_its_own(gateway, upstreams):
    before = len(upstreams["root"].requests)
    assert ask(gateway.http_port, "GET", "/healthz")[:3:2] == (200, b'{"status":"ok"}')
    assert len(upstreams["root"].requests) == before


# --- keys ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{}, {HEADER: "wrong-key-0123456789"}, {HEADER: "Bearer " + KEYS["alice"]},
                                     {HEADER: KEYS["alice"] + "x"}, {HEADER: KEYS["alice"].upper()},
                                     bearer("alice")], ids=["none", "wrong", "bearer-form", "longer", "case",
                                                            "authorization-only"])
def test_a_header_route_without_its_right_key_is_the_401_json(gateway, upstreams, headers):
    before = len(upstreams["hdr"].requests)
    status, answer_headers, body = ask(gateway.http_port, "GET", "/stream/x", headers)
    assert status == 401, body
    assert json.loads(body)["error"]["code"] == "invalid_api_key"
    assert answer_headers["www-authenticate"] == 'ApiKey header="%s"' % HEADER
    assert len(upstreams["hdr"].requests) == before


def test_a_header_route_with_the_key_passes_the_client_name_and_never_the_key(gateway, upstreams):
    headers = dict(keyed("bob"), **{"X-Llmstack-Client": "mallory", "Authorization": "Bearer " + KEYS["alice"]})
    seen = echoed(ask(gateway.http_port, "POST", "/stream/chat", headers, body=b"{}"))["headers"]
    assert seen["x-llmstack-client"] == "bob"
    assert HEADER.lower() not in seen and "authorization" not in seen
    assert KEYS["alice"] not in json.dumps(seen) and KEYS["bob"] not in json.dumps(seen)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key-0123456789"}, keyed("alice"),
                                     {"Authorization": "bearer " + KEYS["alice"]}])
def test_a_bearer_route_is_as_before_without_a_right_key(gateway, headers):
    status, answer_headers, body = ask(gateway.http_port, "GET", "/api/x", headers)
    assert (status, answer_headers["www-authenticate"]) == (401, "Bearer"), body
    assert json.loads(body)["error"]["code"] == "invalid_api_key"


def test_a_bearer_route_with_the_key_passes_the_client_name_and_never_a_key(gateway):
    seen = echoed(ask(gateway.http_port, "GET", "/api/x", dict(bearer("alice"), **keyed("bob"))))["headers"]
    assert seen["x-llmstack-client"] == "alice"
    assert "authorization" not in seen and HEADER.lower() not in seen


def test_upstream_auth_sends_the_llm_key_and_no_client_key(gateway):
    seen = echoed(ask(gateway.http_port, "GET", "/llm_api/models", bearer("alice")))["headers"]
    assert (seen["authorization"], seen["x-llmstack-client"]) == ("Bearer " + LLM_KEY, "alice")


def test_a_route_without_auth_passes_no_key_and_no_client_name_of_the_client_s_making(gateway):
    seen = echoed(ask(gateway.http_port, "GET", "/api/v2/x",
                      dict(keyed("alice"), **{"X-Llmstack-Client": "mallory"})))["headers"]
    assert HEADER.lower() not in seen and "authorization" not in seen
    assert "x-llmstack-client" not in seen  # empty: nginx drops the header


def test_failed_header_keys_are_counted_per_client_address_like_bearer_ones(gateway):
    # nginx_gateway_auth_failure_rate 1r/s, burst 10: guessing gets 429s, the right key from there still gets in.
    statuses = [ask(gateway.http_port, "GET", "/stream/x", {HEADER: "guess-%02d-0123456789" % n},
                    client="10.250.0.1")[0] for n in range(16)]
    assert set(statuses) == {401, 429} and statuses[0] == 401, statuses
    assert ask(gateway.http_port, "GET", "/stream/x", keyed("alice"), client="10.250.0.1")[0] == 200


def test_requests_in_flight_are_counted_per_client_whichever_way_its_key_came(gateway, upstreams):
    # nginx_gateway_api_key_connections is 2 here: two streams of alice's through her header key fill it.
    hdr = upstreams["hdr"]
    hdr.release.clear()
    streams = []
    try:
        for _stream in range(2):
            conn = http.client.HTTPConnection("127.0.0.1", gateway.http_port, timeout=10)
            conn.request("GET", "/stream/events", headers=dict(keyed("alice"), **{"X-Forwarded-For": "10.251.0.1"}))
            resp = conn.getresponse()
            assert resp.status == 200 and resp.readline() == b"data: one\n"
            streams.append(conn)
        for headers in (keyed("alice"), bearer("alice")):
            answer = ask(gateway.http_port, "GET", "/api/x" if "Authorization" in headers else "/stream/x", headers)
            assert answer[0] == 429, answer
            assert json.loads(answer[2])["error"]["message"].startswith("too many concurrent requests")
        assert echoed(ask(gateway.http_port, "GET", "/stream/x", keyed("bob")))["headers"]["x-llmstack-client"] == "bob"
    finally:
        hdr.release.set()
        for conn in streams:
            conn.close()


def test_the_access_log_names_the_client_of_a_header_key_and_no_key_appears_in_any_log(gateway):
    agent = "log-test-%d" % random.randint(0, 10 ** 9)
    ask(gateway.http_port, "GET", "/stream/logged", dict(keyed("bob"), **{"User-Agent": agent}))
    ask(gateway.http_port, "GET", "/stream/logged", {HEADER: "not-a-key-0123456789", "User-Agent": agent})
    lines = [entry for entry in gateway.access_log() if entry["user_agent"] == agent]
    assert sorted((entry["status"], entry["api_key"]) for entry in lines) == [(200, "bob"), (401, "")]
    logs = gateway.logs()
    for value in list(KEYS.values()) + [LLM_KEY, "not-a-key-0123456789"]:
        assert value not in logs


# --- streams ------------------------------------------------------------------------------------------------------

def first_event_then_rest(port, path, headers, upstream, wait):
    """The first line of an SSE answer read before the upstream may send the rest (None if it did not come within
    `wait` seconds), then the rest once it may."""
    upstream.release.clear()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=wait)
    try:
        conn.request("GET", path, headers=dict(headers, **{"X-Forwarded-For": client_address()}))
        resp = conn.getresponse()
        try:
            first = resp.readline()
        except socket.timeout:
            first = None
        upstream.release.set()
        conn.sock.settimeout(10)
        return resp.status, first, (resp.read() if first is not None else b"")
    finally:
        upstream.release.set()
        conn.close()


def test_sse_on_a_streaming_route_arrives_in_pieces(gateway, upstreams):
    status, first, rest = first_event_then_rest(gateway.http_port, "/api/events", bearer("alice"), upstreams["api"], 5)
    assert (status, first) == (200, b"data: one\n")
    assert rest == b"\ndata: two\n\n"
    status, first, _rest = first_event_then_rest(gateway.http_port, "/llm_api/events", bearer("bob"),
                                                 upstreams["llm"], 5)
    assert (status, first) == (200, b"data: one\n")


@pytest.mark.parametrize("path,headers,upstream", [
    ("/stream/socket", keyed("alice"), "hdr"), ("/ws/socket", bearer("bob"), "ws")])
def test_a_websocket_reaches_its_upstream_through_the_gateway_and_echoes(gateway, upstreams, path, headers, upstream):
    ws = wsclient.connect("127.0.0.1", gateway.http_port, path,
                          headers=dict(headers, **{"X-Forwarded-For": client_address()}))
    try:
        for text in ("hello", "x" * 70000):
            ws.send_text(text)
            assert ws.recv_text(timeout=5) == "%s: %s" % (upstream, text)
    except BaseException:
        ws.close()
        raise
    assert ws.close() == (1000, "")  # the upstream's close frame came back through the gateway
    seen = upstreams[upstream].requests[-1]["headers"]
    assert (seen["upgrade"], seen["connection"].lower()) == ("websocket", "upgrade")
    assert seen["x-llmstack-client"] == ("alice" if upstream == "hdr" else "bob")
    assert HEADER.lower() not in seen and "authorization" not in seen


def test_a_websocket_without_the_key_is_refused_with_the_401(gateway):
    with pytest.raises(wsclient.HandshakeError) as refused:
        wsclient.connect("127.0.0.1", gateway.http_port, "/stream/socket", headers={HEADER: "wrong-key-0123456789"})
    assert refused.value.status == 401


def test_a_plain_request_on_a_websocket_route_keeps_upstream_keepalive(gateway, upstreams):
    seen = echoed(ask(gateway.http_port, "GET", "/ws/plain", bearer("alice")))["headers"]
    assert "upgrade" not in seen and "connection" not in seen  # Connection "" (HTTP/1.1 keepalive upstream)


def test_a_quiet_websocket_outlives_the_read_timeout_of_plain_routes(gateway):
    # The control: a plain route's upstream that is quiet as long gets nginx's 504.
    plain = {}
    thread = threading.Thread(target=lambda: plain.update(answer=ask(gateway.http_port, "GET", "/slow/sleep",
                                                                     timeout=30)))
    ws = wsclient.connect("127.0.0.1", gateway.http_port, "/ws/quiet", headers=bearer("alice"))
    try:
        thread.start()
        time.sleep(READ_TIMEOUT + 2)
        ws.send_text("still there")
        assert ws.recv_text(timeout=5) == "ws: still there"
    finally:
        ws.close()
        thread.join()
    assert plain["answer"][0] == 504


# --- static files -------------------------------------------------------------------------------------------------

SECURITY = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer",
            "content-security-policy": "default-src 'self'; frame-ancestors 'none'"}


@pytest.mark.parametrize("path,content,cache", [
    ("/app/", "<h1>app</h1>", "no-cache"),
    ("/app/index.html", "<h1>app</h1>", "no-cache"),
    ("/app/sub/", "<h1>sub</h1>", "no-cache"),
    ("/app/logo.png", "png", "no-cache"),
    ("/app/assets/app.3f9a1c2b.js", "a()", IMMUTABLE),
    ("/app/assets/index-BkjD7zJ3.js", "b()", IMMUTABLE),
    ("/app/assets/app-settings.json", "{}", "no-cache"),
    ("/app/_next/static/chunks/main.js", "c()", IMMUTABLE),
    ("/app/static/js/main.3f9a1c2b.chunk.js", "d()", IMMUTABLE),
    ("/app/assets/app.3f9a1c2b.js.map", "{}", IMMUTABLE),
    # Names that only look hashed: a size, words.
    ("/app/android-chrome-192x192.png", "png", "no-cache"),
    ("/app/og-image-1200x630.png", "png", "no-cache"),
    ("/app/fonts/OpenSans-SemiBold.ttf", "ttf", "no-cache"),
    ("/app/app-settings-v2.json", "{}", "no-cache"),
])
def test_a_static_route_serves_its_folder_with_cache_and_security_headers(gateway, path, content, cache):
    status, headers, body = ask(gateway.http_port, "GET", path)
    assert (status, body.decode()) == (200, content)
    assert headers["cache-control"] == cache
    assert dict((k, headers.get(k)) for k in SECURITY) == SECURITY


def test_a_static_route_takes_get_and_head_only(gateway):
    status, headers, body = ask(gateway.http_port, "HEAD", "/app/")
    assert (status, body, headers["cache-control"]) == (200, b"", "no-cache")
    for method in ("POST", "PUT", "DELETE"):
        answer = ask(gateway.http_port, method, "/app/", body=b"x")
        assert answer[0] == 405 and error_code(answer) == "method_not_allowed", answer
        assert answer[1]["x-frame-options"] == "DENY"


def test_a_missing_file_is_a_404_that_no_cache_keeps(gateway):
    status, headers, _body = ask(gateway.http_port, "GET", "/app/assets/app.0badc0de.js")
    assert status == 404 and "cache-control" not in headers
    assert headers["x-content-type-options"] == "nosniff"


# --- other shapes: TLS, a route at / with a key, no route at / ------------------------------------------------------

def variant_tls_root_with_key(ups):
    return dict(routes=[{"path": "/", "static": "site", "auth": "bearer", "allow": ["*"]},
                        {"path": "/api/", "upstream": "api", "allow": ["*"]}],
                tls=True, nginx_gateway_server_name="gw.example")


def variant_tls_root_without_key(ups):
    return dict(routes=[{"path": "/", "upstream": "root", "auth": "none", "allow": ["*"]},
                        {"path": "/stream/", "upstream": "hdr", "auth": "header", "auth_header": HEADER,
                         "allow": ["*"], "streaming": True, "websocket": True}],
                tls=True, nginx_gateway_server_name="gw.example")


def variant_plain_no_root(ups):
    return dict(routes=[{"path": "/stream/", "upstream": "hdr", "auth": "header", "auth_header": HEADER,
                         "allow": ["*"], "streaming": True, "websocket": True, "rate": "general"},
                        {"path": "/other/", "upstream": "ws", "auth": "header", "auth_header": "X-Other-Key",
                         "allow": ["*"]},
                        {"path": "/docs/", "static": "docs", "auth": "header", "auth_header": HEADER,
                         "allow": ["*"]}],
                tls=False)


def probe_tls_root_with_key(gw):
    # :80 - the / route's 403 in place of the redirect (a name is set, so the redirect would have been a 301).
    status, _headers, body = ask(gw.http_port, "GET", "/index.html")
    assert status == 403 and b"this API is not served over plain HTTP" in body
    assert ask(gw.http_port, "GET", "/healthz")[0] == 200
    assert ask(gw.https_port, "GET", "/", tls=gw)[0] == 401
    status, headers, body = ask(gw.https_port, "GET", "/", bearer("alice"), tls=gw)
    assert (status, body, headers["cache-control"]) == (200, b"<h1>site</h1>", "no-cache")
    assert headers["strict-transport-security"] == "max-age=31536000"
    assert echoed(ask(gw.https_port, "GET", "/api/x", bearer("bob"), tls=gw))["upstream"] == "api"


def probe_tls_root_without_key(gw):
    status, headers, _body = ask(gw.http_port, "GET", "/somewhere?q=1")
    assert (status, headers["location"]) == (301, "https://gw.example:%d/somewhere?q=1" % gw.https_port)
    assert ask(gw.http_port, "GET", "/stream/x", keyed("alice"))[0] == 403
    assert echoed(ask(gw.https_port, "GET", "/somewhere", tls=gw))["upstream"] == "root"
    ws = wsclient.connect("127.0.0.1", gw.https_port, "/stream/tls", headers=keyed("bob"), tls_context=gw.tls_context())
    try:
        ws.send_text("over tls")
        assert ws.recv_text(timeout=5) == "hdr: over tls"
    finally:
        ws.close()


def probe_plain_no_root(gw):
    answer = ask(gw.http_port, "GET", "/nope", keyed("alice"))
    assert answer[0] == 404 and error_code(answer) == "not_found"
    assert echoed(ask(gw.http_port, "GET", "/other/x", {"X-Other-Key": KEYS["bob"]}))["headers"][
        "x-llmstack-client"] == "bob"
    seen = echoed(ask(gw.http_port, "GET", "/stream/x", dict(keyed("alice"), **{"X-Other-Key": KEYS["bob"]})))
    assert "x-other-key" not in seen["headers"] and seen["headers"]["x-llmstack-client"] == "alice"
    assert ask(gw.http_port, "GET", "/docs/", {"X-Other-Key": KEYS["bob"]})[0] == 401
    assert ask(gw.http_port, "GET", "/docs/", keyed("bob"))[2] == b"<h1>docs</h1>"


VARIANTS = {"tls-root-with-key": (variant_tls_root_with_key, probe_tls_root_with_key),
            "tls-root-without-key": (variant_tls_root_without_key, probe_tls_root_without_key),
            "plain-no-root-header-keys": (variant_plain_no_root, probe_plain_no_root)}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_nginx_takes_each_shape_and_it_serves_as_routed(lab, upstreams, variant):
    shape, probe = VARIANTS[variant]
    values = shape(upstreams)
    gw = role_gateway.RoleGateway(lab, KEYS, llm_key=LLM_KEY)
    try:
        extra = dict((k, v) for k, v in values.items() if k != "routes")
        rc, result = gw.apply(values["routes"], upstream_list(upstreams), **dict(lab_values(), **extra))
        assert rc == 0, result.get("msg")
        assert result["validated"] == "image"
        for route in values["routes"]:
            if route.get("static"):
                gw.static_release(routes_lib.static_name(route["path"]),
                                  {"index.html": "<h1>%s</h1>" % route["static"]})
        probe(gw.start())
    finally:
        gw.stop()


def test_a_reload_with_other_routes_is_checked_in_the_running_gateway(lab, upstreams):
    gw = role_gateway.RoleGateway(lab, KEYS, llm_key=LLM_KEY)
    try:
        first = [{"path": "/api/", "upstream": "api", "allow": ["*"]}]
        assert gw.apply(first, upstream_list(upstreams), **lab_values())[0] == 0
        gw.start()
        assert ask(gw.http_port, "GET", "/x")[0] == 404
        rc, result = gw.apply(first + [{"path": "/", "upstream": "root", "auth": "none", "allow": ["*"]}],
                              upstream_list(upstreams), **lab_values())
        assert rc == 0, result.get("msg")
        assert (result["validated"], result["reloaded"]) == ("container", True)
        deadline = time.monotonic() + 10
        while ask(gw.http_port, "GET", "/x")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert echoed(ask(gw.http_port, "GET", "/x"))["upstream"] == "root"
        assert not manually_stopped(gw.name), "the reload marked the gateway as stopped by hand: no restart at boot"
    finally:
        gw.stop()


def test_a_gateway_marked_stopped_by_an_old_reload_is_restarted_once(lab, upstreams):
    """Earlier versions reloaded through Docker's kill API: such a gateway stays marked until a start clears it."""
    gw = role_gateway.RoleGateway(lab, KEYS, llm_key=LLM_KEY)
    routes = [{"path": "/api/", "upstream": "api", "allow": ["*"]}]
    try:
        assert gw.apply(routes, upstream_list(upstreams), **lab_values())[0] == 0
        gw.start()
        subprocess.run(["docker", "kill", "--signal", "HUP", gw.name], check=True, capture_output=True)
        assert manually_stopped(gw.name)
        started = container_started(gw.name)
        rc, checked = gw.apply(routes, upstream_list(upstreams), check=True, **lab_values())
        assert rc == 0, checked.get("msg")
        assert (checked["changed"], checked["restarted"]) == (True, True)
        assert manually_stopped(gw.name) and container_started(gw.name) == started, "check mode changed nothing"
        rc, result = gw.apply(routes, upstream_list(upstreams), **lab_values())
        assert rc == 0, result.get("msg")
        assert (result["changed"], result["restarted"], result["reloaded"]) == (True, True, False)
        assert "stopped by hand" in " ".join(result.get("warnings", []))
        assert not manually_stopped(gw.name) and container_started(gw.name) != started
        deadline = time.monotonic() + 10
        while ask(gw.http_port, "GET", "/x")[0] != 404 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ask(gw.http_port, "GET", "/x")[0] == 404, "the restarted gateway answers"
        again = gw.apply(routes, upstream_list(upstreams), **lab_values())[1]
        assert (again["changed"], again["restarted"]) == (False, False)
    finally:
        gw.stop()


def container_started(container):
    return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", container], capture_output=True,
                          text=True, check=True).stdout.strip()


def manually_stopped(container):
    """dockerd's own record of `docker stop`/`docker kill` on the container (it is not in `docker inspect`): an
    unless-stopped container so marked is not started again when the daemon starts (a reboot)."""
    root = subprocess.run(["docker", "info", "-f", "{{.DockerRootDir}}"], capture_output=True, text=True,
                          check=True).stdout.strip()
    cid = subprocess.run(["docker", "inspect", "-f", "{{.Id}}", container], capture_output=True, text=True,
                         check=True).stdout.strip()
    with open(os.path.join(root, "containers", cid, "config.v2.json"), encoding="utf-8") as f:
        return json.load(f)["HasBeenManuallyStopped"]
