"""readiness: the record follows the versions and is left alone while they stay the same (the module against
moto and a real rollout: tests/integration/test_readiness.py)."""
import json
import os

from ansible_collections.llmstack.deploy.plugins.module_utils import readiness

V1 = {"agent_service": {"image": "ghcr.io/o/a:1", "digest": "sha256:" + "a" * 64}}
V2 = {"agent_service": {"image": "ghcr.io/o/a:2", "digest": "sha256:" + "b" * 64}}


def test_versions_leave_out_services_without_a_deployment():
    report = {"services": [dict(name="agent_service", **V1["agent_service"]),
                           {"name": "vllm", "image": None, "digest": None}]}
    assert readiness.versions(report) == V1


def test_a_new_record_is_written_then_left_alone_until_the_versions_change(tmp_path):
    target = readiness.FileTarget(str(tmp_path / "new" / "readiness.json"))
    changed, rec, diff = readiness.update(target, "app-1", V1, now=0)
    assert changed and rec == {"host": "app-1", "versions": V1, "verified": "1970-01-01T00:00:00Z"}
    assert json.loads(target.read()) == rec and diff["before"] == ""
    assert os.stat(target.path).st_mode & 0o777 == 0o644

    changed, kept, _diff = readiness.update(target, "app-1", V1, now=100)
    assert not changed and kept == rec, "the time of an unchanged record stays"

    changed, rec2, diff = readiness.update(target, "app-1", V2, now=200)
    assert changed and rec2["versions"] == V2 and rec2["verified"] == "1970-01-01T00:03:20Z"
    assert '"ghcr.io/o/a:1"' in diff["before"] and '"ghcr.io/o/a:2"' in diff["after"]


def test_another_host_or_a_foreign_value_is_rewritten(tmp_path):
    target = readiness.FileTarget(str(tmp_path / "readiness.json"))
    readiness.update(target, "app-1", V1, now=0)
    assert readiness.update(target, "app-2", V1, now=1)[0], "a record of another host (a copied disk)"
    for foreign in ("not json", '["a list"]', '{"versions": "x"}'):
        (tmp_path / "readiness.json").write_text(foreign)
        changed, rec, _diff = readiness.update(target, "app-1", V1, now=2)
        assert changed and json.loads(target.read()) == rec


def test_check_mode_writes_nothing(tmp_path):
    target = readiness.FileTarget(str(tmp_path / "readiness.json"))
    changed, _rec, _diff = readiness.update(target, "app-1", V1, check_mode=True)
    assert changed and target.read() is None
