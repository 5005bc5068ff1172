"""The gateway's routes: validation naming the route, and the allow-list regex nginx matches against $uri."""
import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmstack.deploy.plugins.filter import gateway_routes as f
from ansible_collections.llmstack.deploy.plugins.module_utils import routes

UPSTREAMS = [{"name": "llm", "servers": ["127.0.0.1:8000"]},
             {"name": "agent_service", "blue": "127.0.0.1:8101", "green": "127.0.0.1:8102"}]
AGENT = {"path": "/agent/", "upstream": "agent_service", "allow": ["chat", "sessions/{id}", "health"], "check": "health"}
LLM = {"path": "/llm_api/", "upstream": "llm", "upstream_path": "/v1/", "upstream_auth": True,
       "allow": ["models", "chat/completions", "files/*"]}


def forwards(route, uri):
    (done,) = routes.normalize([route], UPSTREAMS)
    return re.match(done["allow_regex"], uri) is not None


@pytest.mark.parametrize("uri", ["/agent/chat", "/agent/sessions/0b6e-42", "/agent/health"])
def test_the_agent_route_forwards_its_chat_and_session_api(uri):
    assert forwards(AGENT, uri)


@pytest.mark.parametrize("uri", ["/agent/admin/cleanup", "/agent/docs", "/agent/openapi.json", "/agent/",
                                 "/agent/chatX", "/agent/chat/", "/agent/sessions/", "/agent/sessions/a/b",
                                 "/agent/sessions/a/../../admin/cleanup", "/agent/version"])
def test_everything_else_below_the_agent_route_is_not_forwarded(uri):
    assert not forwards(AGENT, uri)


def test_a_prefix_entry_forwards_everything_below_it_and_nothing_beside_it():
    assert forwards(LLM, "/llm_api/files/a/b.json")
    assert forwards(LLM, "/llm_api/files/")
    assert not forwards(LLM, "/llm_api/files")
    assert not forwards(LLM, "/llm_api/filesystem")


def test_a_star_forwards_everything_below_the_route_path():
    assert forwards(dict(AGENT, allow=["*"], check=""), "/agent/admin/cleanup")
    assert not forwards(dict(AGENT, allow=["*"], check=""), "/agentx")


def test_literal_dots_are_not_wildcards():
    route = dict(AGENT, allow=["openapi.json"], check="")
    assert forwards(route, "/agent/openapi.json")
    assert not forwards(route, "/agent/openapiXjson")


def test_the_regex_needs_no_backslash_and_no_character_nginx_would_read():
    (done,) = routes.normalize([dict(LLM, allow=["a.b-c~d:e@f/{x}", "files/*"])], UPSTREAMS)
    assert done["allow_regex"].startswith("^") and done["allow_regex"].endswith("$")
    assert not set(done["allow_regex"][1:-1]) & set('\\${};"\' ')


def test_defaults_are_filled_in():
    (done,) = routes.normalize([AGENT], UPSTREAMS)
    assert (done["auth"], done["streaming"], done["upstream_auth"], done["upstream_path"]) == (
        "bearer", False, False, "/")


@pytest.mark.parametrize("route,message", [
    (dict(LLM, auth=False),
     r"nginx_gateway_routes\[0\] \(/llm_api/\): upstream_auth: true needs auth \(bearer or header\)"),
    ({"path": "/agent/", "upstream": "agent_service"}, r"\(/agent/\): allow is missing"),
    (dict(AGENT, allow=[]), r"\(/agent/\): allow is missing"),
    (dict(AGENT, allow=["/chat"]), r"allow entry '/chat'"),
    (dict(AGENT, allow=["chat/*/x"]), r"allow entry 'chat/\*/x'"),
    (dict(AGENT, allow=["a/../admin"]), r"allow entry 'a/\.\./admin'"),
    (dict(AGENT, allow=["$host"]), r"allow entry '\$host'"),
    (dict(AGENT, allow=["chat"]), r"check path 'health' is not in allow"),
    (dict(AGENT, upstream="nope"), r"upstream 'nope' is not one of nginx_gateway_upstreams"),
    (dict(AGENT, path="/agent"), r"path must start and end with /"),
    (dict(AGENT, path="/a b/"), r"path must start and end with /"),
])
def test_a_bad_route_is_refused_naming_it(route, message):
    with pytest.raises(AnsibleFilterError, match=message):
        f.gateway_routes([route], UPSTREAMS)


def test_two_routes_with_one_path_are_refused():
    with pytest.raises(AnsibleFilterError, match=r"nginx_gateway_routes\[1\] \(/agent/\): another route"):
        f.gateway_routes([AGENT, AGENT], UPSTREAMS)


def test_a_bad_route_later_in_the_list_is_found_before_anything_is_rendered():
    with pytest.raises(AnsibleFilterError, match=r"nginx_gateway_routes\[1\]"):
        f.gateway_routes([LLM, dict(AGENT, allow=None)], UPSTREAMS)


# --- Any prefix, auth modes, rate, websocket, static (issue 18) ---------------------------------------------------

def one(route, upstreams=None):
    (done,) = routes.normalize([route], UPSTREAMS if upstreams is None else upstreams)
    return done


def refused(route, message, upstreams=None):
    upstreams = UPSTREAMS if upstreams is None else upstreams
    with pytest.raises(routes.RouteError, match=message):
        routes.normalize([route], upstreams)


FRONTEND = {"path": "/", "static": "frontend/dist", "auth": "none", "allow": ["*"]}
HEADER = {"path": "/stream/", "upstream": "agent_service", "auth": "header", "auth_header": "X-Streaming-Proxy-Key",
          "allow": ["*"], "streaming": True}


def test_a_route_at_the_root_forwards_what_its_allow_list_names_and_nothing_else():
    done = one({"path": "/", "upstream": "agent_service", "allow": ["home", "public/*"]})
    assert done["allow_regex"] == "^/(?:home|public/.*)$"
    assert re.match(done["allow_regex"], "/public/a.css") and not re.match(done["allow_regex"], "/admin")


def test_routes_come_back_longest_path_first_whatever_the_order_given():
    given = [{"path": "/", "upstream": "llm", "allow": ["*"]}, dict(LLM),
             {"path": "/llm_api/v2/", "upstream": "llm", "allow": ["*"]}, dict(AGENT)]
    done = routes.normalize(given, UPSTREAMS)
    assert [r["path"] for r in done] == ["/llm_api/v2/", "/llm_api/", "/agent/", "/"]


@pytest.mark.parametrize("given,auth", [(True, "bearer"), (False, "none"), ("bearer", "bearer"), ("none", "none")])
def test_auth_is_one_of_three_strings_and_the_booleans_of_before_still_work(given, auth):
    assert one(dict(AGENT, auth=given))["auth"] == auth


def test_the_defaults_of_a_proxied_route():
    done = one(AGENT)
    assert {k: done[k] for k in routes.DEFAULTS} == {
        "upstream_path": "/", "auth": "bearer", "auth_header": "", "streaming": False, "websocket": False,
        "upstream_auth": False, "rate": "keyed", "static": "", "check": "health"}
    assert done["static_name"] == ""


def test_header_auth_keeps_its_header_name():
    done = one(HEADER)
    assert (done["auth"], done["auth_header"], done["rate"]) == ("header", "X-Streaming-Proxy-Key", "keyed")


@pytest.mark.parametrize("auth,rate", [("bearer", "keyed"), ("header", "keyed"), ("none", "general")])
def test_rate_defaults_to_keyed_with_a_key_and_general_without(auth, rate):
    route = dict(HEADER, auth=auth) if auth == "header" else dict(AGENT, auth=auth)
    assert one(route)["rate"] == rate


def test_a_route_with_a_key_may_use_the_general_rate():
    assert one(dict(AGENT, rate="general"))["rate"] == "general"


def test_websocket_with_streaming_is_accepted():
    assert one(dict(HEADER, websocket=True))["websocket"] is True


def test_a_static_route_gets_a_folder_name_and_no_upstream():
    done = one(FRONTEND)
    assert (done["static"], done["static_name"], done["upstream"], done["rate"]) == (
        "frontend/dist", "root", "", "general")


@pytest.mark.parametrize("path,name", [("/", "root"), ("/chat/", "chat"), ("/a/b/", "a_b"),
                                       ("/v1.2/", "v1_2"), ("/~me/x-y/", "_me_x-y")])
def test_static_names_are_safe_folder_names_derived_from_the_path(path, name):
    assert routes.static_name(path) == name
    assert one(dict(FRONTEND, path=path))["static_name"] == name


def test_static_names_stay_unique_when_two_paths_map_to_one_name():
    done = routes.normalize([dict(FRONTEND, path="/a/b/"), dict(FRONTEND, path="/a_b/"),
                             dict(FRONTEND, path="/"), dict(FRONTEND, path="/root/")], UPSTREAMS)
    names = dict((r["path"], r["static_name"]) for r in done)
    assert names["/a/b/"] == "a_b" and names["/"] == "root"
    assert re.match(r"^a_b_[0-9a-f]{8}$", names["/a_b/"]) and re.match(r"^root_[0-9a-f]{8}$", names["/root/"])
    assert len(set(names.values())) == 4


@pytest.mark.parametrize("auth", ["bearer", "header"])
def test_a_static_route_may_take_a_key(auth):
    route = dict(FRONTEND, auth=auth, **({"auth_header": "X-Site-Key"} if auth == "header" else {}))
    assert one(route)["rate"] == "keyed"


def test_normalizing_twice_changes_nothing():
    given = [AGENT, LLM, HEADER, FRONTEND, dict(FRONTEND, path="/docs/", auth="bearer")]
    once = routes.normalize(given, UPSTREAMS)
    assert routes.normalize(once, UPSTREAMS) == once


def test_extra_keys_pass_through():
    # llmstack.deploy.app_routes marks each app route with its app.
    assert one(dict(AGENT, app="agent_service"))["app"] == "agent_service"


def test_the_caller_s_routes_are_not_changed():
    given = dict(AGENT, auth=True)
    routes.normalize([given], UPSTREAMS)
    assert given == dict(AGENT, auth=True)


@pytest.mark.parametrize("route,message", [
    # auth
    (dict(AGENT, auth="basic"), r"\(/agent/\): auth must be bearer .*header .* or none, not 'basic'"),
    (dict(AGENT, auth="yes"), r"\(/agent/\): auth must be bearer"),
    (dict(HEADER, auth_header=None), r"\(/stream/\): auth: header needs auth_header"),
    (dict(HEADER, auth_header=""), r"\(/stream/\): auth: header needs auth_header"),
    (dict(HEADER, auth_header="X_Key"), r"\(/stream/\): auth: header needs auth_header"),
    (dict(HEADER, auth_header="X Key"), r"\(/stream/\): auth: header needs auth_header"),
    (dict(HEADER, auth_header="Authorization"), r"\(/stream/\): auth_header 'Authorization' is a header the gateway"),
    (dict(HEADER, auth_header="authorization"), r"\(/stream/\): auth_header 'authorization' is a header the gateway"),
    (dict(HEADER, auth_header="Host"), r"\(/stream/\): auth_header 'Host' is a header the gateway"),
    (dict(AGENT, auth_header="X-Key"), r"\(/agent/\): auth_header is for auth: header \(this route has auth: bearer\)"),
    (dict(AGENT, auth=False, check="", auth_header="X-Key"), r"\(/agent/\): auth_header is for auth: header"),
    # rate
    (dict(AGENT, rate="fast"), r"\(/agent/\): rate must be keyed .* or general, not 'fast'"),
    (dict(AGENT, auth="none", rate="keyed"), r"\(/agent/\): rate: keyed needs auth"),
    (dict(AGENT, auth=False, rate="keyed"), r"\(/agent/\): rate: keyed needs auth"),
    # upstream_auth, booleans
    (dict(LLM, auth="none"), r"\(/llm_api/\): upstream_auth: true needs auth \(bearer or header\)"),
    (dict(AGENT, streaming="yes"), r"\(/agent/\): streaming must be true or false, not 'yes'"),
    (dict(AGENT, websocket="true"), r"\(/agent/\): websocket must be true or false"),
    # websocket
    (dict(AGENT, websocket=True), r"\(/agent/\): websocket: true needs streaming: true"),
    (dict(AGENT, websocket=True, streaming=False), r"\(/agent/\): websocket: true needs streaming: true"),
    # static
    (dict(AGENT, static_root="/srv/www"), r"\(/agent/\): static_root is gone: use static"),
    ({"path": "/s/", "static_root": "/srv/www", "allow": ["*"]}, r"\(/s/\): static_root is gone: use static"),
    (dict(FRONTEND, upstream="llm"), r"nginx_gateway_routes\[0\] \(/\): set upstream or static, not both"),
    (dict(FRONTEND, static=["dist"]), r"\(/\): static must be a folder on the controller"),
    (dict(FRONTEND, static="  "), r"\(/\): static must be a folder on the controller"),
    (dict(FRONTEND, upstream_auth=True, auth="bearer"), r"\(/\): upstream_auth is for a proxied route"),
    (dict(FRONTEND, streaming=True), r"\(/\): streaming is for a proxied route"),
    (dict(FRONTEND, streaming=True, websocket=True), r"\(/\): websocket is for a proxied route"),
    (dict(FRONTEND, upstream_path="/v1/"), r"\(/\): upstream_path is for a proxied route"),
    (dict(FRONTEND, allow=None), r"\(/\): allow is missing"),
    # neither upstream nor static
    ({"path": "/x/", "allow": ["*"]}, r"\(/x/\): upstream None is not one of nginx_gateway_upstreams"),
])
def test_a_bad_new_key_is_refused_naming_the_route_and_the_key(route, message):
    refused(route, message)


def test_a_duplicate_root_is_refused_like_any_other_path():
    with pytest.raises(routes.RouteError, match=r"nginx_gateway_routes\[1\] \(/\): another route has the same path"):
        routes.normalize([FRONTEND, dict(FRONTEND, static="other")], UPSTREAMS)


def test_messages_name_the_list_the_caller_says():
    with pytest.raises(routes.RouteError,
                       match=r"^llmstack_apps\[1\] \(sse_app\) routes\[0\] \(/api/\): upstream 'nope'"):
        routes.normalize([{"path": "/api/", "upstream": "nope", "allow": ["*"]}], UPSTREAMS,
                         where="llmstack_apps[1] (sse_app) routes")
    with pytest.raises(routes.RouteError, match=r"^llmstack_apps\[0\] \(x\) routes must be a list"):
        routes.normalize({"path": "/"}, UPSTREAMS, "llmstack_apps[0] (x) routes")


def test_the_filter_takes_where_too():
    with pytest.raises(AnsibleFilterError, match=r"^llmstack_apps\[1\] \(sse_app\) routes\[0\] \(/api/\): websocket"):
        f.gateway_routes([{"path": "/api/", "upstream": "llm", "allow": ["*"], "websocket": True}], UPSTREAMS,
                         where="llmstack_apps[1] (sse_app) routes")
