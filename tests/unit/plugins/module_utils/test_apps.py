"""llmstack_apps: every entry checked before anything is touched, with its defaults; the gateway's upstreams and
routes derived from it."""
import glob
import os
import re

import pytest
import yaml

from ansible_collections.llmstack.deploy.plugins.module_utils import apps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def app(**keys):
    return dict({"name": "sse_app", "image": "ghcr.io/acme/sse:1.0", "slots": {"blue": 8201, "green": 8202}}, **keys)


def test_an_entry_gets_every_default():
    (out,) = apps.normalize([app()])
    assert out["strategy"] == "blue_green" and out["container_port"] == 8000
    assert out["health"] == {"path": "/health", "timeout": 120}
    assert out["ssm_paths"] == [] and out["required_keys"] == [] and out["routes"] == []
    assert out["registry_username"] is None and out["user"] == ""


def test_the_default_agent_service_entry_is_valid():
    """roles/llmstack's default: the agent service, first entry, with its /agent/ route."""
    with open(os.path.join(ROOT, "roles", "llmstack", "defaults", "main.yml"), encoding="utf-8") as f:
        default = yaml.safe_load(f)["llmstack_apps"]
    (agent,) = apps.normalize(default)
    assert agent["name"] == "agent_service" and agent["slots"] == {"blue": 8101, "green": 8102}
    assert [r["path"] for r in apps.routes(default)] == ["/agent/"]
    assert apps.upstreams(default) == [{"name": "agent_service", "blue": "127.0.0.1:8101", "green": "127.0.0.1:8102"}]


def test_ports_given_as_strings_become_numbers():
    (out,) = apps.normalize([app(slots={"blue": "8201", "green": "8202"}, container_port="3000")])
    assert out["slots"] == {"blue": 8201, "green": 8202} and out["container_port"] == 3000


@pytest.mark.parametrize("entries,message", [
    ("not a list", r"llmstack_apps must be a list"),
    (["x"], r"llmstack_apps\[0\] \(no name\): an app is a dict"),
    ([app(name="Bad-Name")], r"llmstack_apps\[0\] \(Bad-Name\): name must be lower-case"),
    ([app(name="vllm")], r"name 'vllm' is taken by the stack"),
    ([app(image="")], r"\(sse_app\): image is missing"),
    ([app(port=1)], r"\(sse_app\): unknown key\(s\) port"),
    ([app(strategy="canary")], r"strategy must be blue_green or recreate, not 'canary'"),
    ([app(slots=None)], r"strategy blue_green needs slots"),
    ([app(slots={"blue": 8201})], r"strategy blue_green needs slots"),
    ([app(slots={"blue": 8201, "green": 8201})], r"slots.blue and slots.green must be two ports"),
    ([app(slots={"blue": 0, "green": 8202})], r"slots.blue must be a port number"),
    ([app(ports=["8300:8000"])], r"ports is for strategy recreate"),
    ([app(strategy="recreate")], r"slots is for strategy blue_green"),
    ([app(strategy="recreate", slots=None, health={"path": ""})], None),
    ([app(strategy="recreate", slots=None, ports=["eighty"])], r"ports entry 'eighty'"),
    ([app(strategy="recreate", slots=None, health={"path": ""}, routes=[{"path": "/x/"}])],
     r"publish container_port 8000 in ports"),
    ([app(health={"path": "health"})], r"health is \{path: /health, timeout: 120\}"),
    ([app(health={"path": "/h", "timeout": "soon"})], r"health.timeout must be a whole number"),
    ([app(strategy="recreate", slots=None)], r"health.path /health is probed through a published port"),
    ([app(env={"BAD-KEY": "x"})], r"env key 'BAD-KEY' is not an environment variable name"),
    ([app(ssm_paths="/a/b")], r"ssm_paths must be a list"),
    ([app(volumes=["/srv/app/data:/data"], backup=["/srv/app/data/"])], None),
    ([app(volumes=["/srv/app/data:/data"], backup=["/srv/app/dta"])],
     r"\(sse_app\): backup folder /srv/app/dta is not the source of one of its bind mounts \(volumes: /srv/app/data\)"),
    ([app(volumes=["appdata:/data"], backup=["appdata"])], r"backup entry 'appdata' must be an absolute folder"),
    ([app(backup="/srv/app/data")], r"backup must be a list"),
    ([app(), app()], r"llmstack_apps\[1\] \(sse_app\): llmstack_apps\[0\] has the same name"),
    ([app(), app(name="other", slots={"blue": 8202, "green": 8203})], r"\(other\): host port 8202 is already sse_app's"),
])
def test_bad_entries_are_refused_naming_the_entry_and_key(entries, message):
    if message is None:
        apps.normalize(entries)  # the case next to a refused one, accepted
        return
    with pytest.raises(apps.AppError, match=message):
        apps.normalize(entries)


def test_a_recreate_app_is_reached_on_the_port_that_publishes_its_container_port():
    recreate = app(name="ml_api", strategy="recreate", slots=None, container_port=5000,
                   ports=["127.0.0.1:9100:9100", "0.0.0.0:8500:5000"], routes=[{"path": "/ml/"}])
    assert apps.upstreams([recreate]) == [{"name": "ml_api", "servers": ["127.0.0.1:8500"]}]


def test_apps_without_routes_get_no_upstream():
    assert apps.upstreams([app()]) == []


def test_routes_go_to_their_app_unless_they_name_an_upstream_or_serve_files():
    entry = app(routes=[{"path": "/api/", "allow": ["*"]}, {"path": "/llm/", "upstream": "llm", "allow": ["*"]},
                        {"path": "/", "static": "/srv/site", "allow": ["*"]}])
    out = apps.routes([entry])
    assert [(r["path"], r.get("upstream"), r["app"]) for r in out] == [
        ("/api/", "sse_app", "sse_app"), ("/llm/", "llm", "sse_app"), ("/", None, "sse_app")]
    # The caller's entry is not changed.
    assert "upstream" not in entry["routes"][0]


def test_the_app_roles_readme_names_every_key():
    with open(os.path.join(ROOT, "roles", "app", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    table = readme[readme.index("| key |"):readme.index("## Variables")]
    written = {k for cell in re.findall(r"^\| ([^|]+) \|", table, re.M)
               for k in re.findall(r"`([a-z_]+)`", cell)}
    assert written == set(apps.DEFAULTS) | {"name", "image"}


@pytest.mark.parametrize("source", ["roles/llmstack/defaults/main.yml"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "examples", "*", "group_vars", "all.yml"))))
def test_a_resolved_list_gives_the_same_entries_upstreams_and_routes(source):
    """app validate resolves the list once (app_entries) and the app and gateway roles read that: normalizing
    it again, and deriving the gateway's upstreams and routes from it, must give what the raw list gives."""
    with open(os.path.join(ROOT, source), encoding="utf-8") as f:
        raw = yaml.safe_load(f)["llmstack_apps"]
    resolved = apps.normalize(raw)
    assert apps.normalize(resolved) == resolved
    assert apps.upstreams(resolved) == apps.upstreams(raw)
    assert apps.routes(resolved) == apps.routes(raw)


def test_an_absent_app_needs_only_its_name_and_loses_its_routes_and_upstream():
    listed = apps.normalize([app(routes=[{"path": "/api/", "allow": ["*"]}]),
                             {"name": "old_app", "state": "absent"},
                             dict(app(name="gone", slots={"blue": 8201, "green": 8202}), state="absent",
                                  routes=[{"path": "/gone/", "allow": ["*"]}])])
    assert [(a["name"], a["state"]) for a in listed] == [("sse_app", "present"), ("old_app", "absent"),
                                                         ("gone", "absent")]
    # gone's slots are sse_app's ports: an app on its way out holds no port.
    assert [u["name"] for u in apps.upstreams(listed)] == ["sse_app"]
    assert [r["path"] for r in apps.routes(listed)] == ["/api/"]
    assert apps.normalize(listed) == listed


def test_state_is_present_or_absent():
    with pytest.raises(apps.AppError, match=r"llmstack_apps\[0\] \(sse_app\): state must be present or absent"):
        apps.normalize([app(state="stopped")])


def test_backup_folders_are_normalized_once():
    (out,) = apps.normalize([app(volumes=["/srv/app/data:/data:ro"], backup=["/srv/app/data/", "/srv/app//data"])])
    assert out["backup"] == ["/srv/app/data"]
