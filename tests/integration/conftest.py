"""Integration fixtures: the running lab (tests/lab/up) and a way to run plays through Ansible."""
import uuid

import pytest

import labenv
from helpers import Play, Service


@pytest.fixture
def prefix():
    """A fresh SSM path per test, so tests never see each other's parameters."""
    return "/it/%s" % uuid.uuid4().hex[:10]


@pytest.fixture
def put(ssm_client):
    """put({name: value}) as String, or {name: (value, 'SecureString')}."""
    def put(params):
        for name, value in params.items():
            kind = "String"
            if isinstance(value, tuple):
                value, kind = value
            ssm_client.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)
    return put


@pytest.fixture
def play(tmp_path, lab):
    return Play(tmp_path, lab)


@pytest.fixture(scope="session")
def app_images(lab):
    """The rollout test app in the lab registry as lab/rollout-app:v1..v5: v3's health check fails,
    v4 exits at start."""
    return labenv.push_app_images(lab)


@pytest.fixture(params=["recreate", "blue_green"])
def service(request, play, lab, tmp_path, app_images):
    svc = Service(play, lab, tmp_path, request.param)
    yield svc
    svc.cleanup()


@pytest.fixture
def recreate_service(play, lab, tmp_path, app_images):
    svc = Service(play, lab, tmp_path, "recreate")
    yield svc
    svc.cleanup()


@pytest.fixture
def blue_green_service(play, lab, tmp_path, app_images):
    svc = Service(play, lab, tmp_path, "blue_green")
    yield svc
    svc.cleanup()
