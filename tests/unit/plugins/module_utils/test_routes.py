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
    assert (done["auth"], done["streaming"], done["upstream_auth"], done["upstream_path"]) == (True, False, False, "/")


@pytest.mark.parametrize("route,message", [
    (dict(LLM, auth=False), r"nginx_gateway_routes\[0\] \(/llm_api/\): upstream_auth: true needs auth: true"),
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
