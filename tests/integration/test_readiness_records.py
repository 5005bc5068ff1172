"""llmstack.deploy.readiness against moto and a real rollout (container_rollout): the record of what a host runs
goes to an SSM parameter or a file, follows the versions, is left alone while they stay the same, and check mode
writes nothing."""
import json
import os
import stat

import pytest

MODULE = "llmstack.deploy.readiness"
HOST = "app-i-0123456789abcdef0"


def readiness(play, svc, target, **kwargs):
    return play.run([{MODULE: dict(target, state_dir=svc.state_dir, host=HOST), "register": "r"}], **kwargs)


@pytest.fixture
def targets(ssm_client, prefix, tmp_path):
    """[(module arguments, read the stored record or None)] for SSM and for a file."""
    name = "%s/status/%s" % (prefix, HOST)
    dest = tmp_path / "state-file" / "readiness.json"

    def from_ssm():
        try:
            return ssm_client.get_parameter(Name=name)["Parameter"]["Value"]
        except ssm_client.exceptions.ParameterNotFound:
            return None

    def from_file():
        return dest.read_text() if dest.exists() else None
    return [(dict(name=name), from_ssm), (dict(path=str(dest)), from_file)]


def test_the_record_follows_the_versions(recreate_service, app_images, play, targets):
    svc = recreate_service
    assert svc.run(image=app_images["v1"]).rc == 0
    first_records = []
    for target, stored in targets:
        check = readiness(play, svc, target, args=["--check"])
        assert check.rc == 0, check.output
        assert check.task()["changed"] is True and stored() is None, "check mode wrote the record"

        first = readiness(play, svc, target)
        assert first.rc == 0, first.output
        record = json.loads(stored())
        assert record == first.task()["record"]
        assert record["host"] == HOST and list(record["versions"]) == [svc.name]
        assert record["versions"][svc.name]["image"].endswith("/" + app_images["v1"])
        assert record["versions"][svc.name]["digest"].startswith("sha256:")
        first_records.append(record)

        # Nothing changed on the host: the record (and its time) stays.
        again = readiness(play, svc, target)
        assert again.task()["changed"] is False and json.loads(stored()) == record
    assert os.stat(targets[1][0]["path"]).st_mode & 0o777 == 0o644

    # A new version: each record is rewritten with it.
    assert svc.run(image=app_images["v2"]).rc == 0
    for (target, stored), before in zip(targets, first_records):
        res = readiness(play, svc, target, args=["--diff"])
        assert res.rc == 0 and res.task()["changed"] is True, res.output
        record = json.loads(stored())
        assert record["versions"][svc.name]["image"].endswith("/" + app_images["v2"])
        assert record["versions"][svc.name]["digest"] != before["versions"][svc.name]["digest"]
        assert stat.S_ISREG(os.stat(targets[1][0]["path"]).st_mode)


def test_ssm_is_refused_when_the_parameters_come_from_the_controller(play, prefix, tmp_path):
    name = "%s/status/%s" % (prefix, HOST)
    res = play.run([{MODULE: dict(name=name, host=HOST, state_dir=str(tmp_path), parameters={}), "register": "r"}])
    assert res.rc != 0
    assert name in res.task()["msg"] and "write it to a file (path)" in res.task()["msg"]
