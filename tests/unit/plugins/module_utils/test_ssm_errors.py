"""Every failure of an SSM call ends in an SsmError naming the call and the path or name.

Real botocore throughout: a local socket that accepts and never answers (read timeout), a port
nothing listens on (connection refused), and botocore's own parameter validation (no network).
"""
import socket
import threading
import time

import boto3
import botocore.exceptions
import pytest

import labenv
from ansible_collections.llmstack.deploy.plugins.module_utils import ssm


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class Silent:
    """Accepts connections and never answers; counts them."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # kept open, never written to

    def close(self):
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.close()


def connect(endpoint, **kwargs):
    client = ssm.SsmClient.connect(region="us-east-1", endpoint_url=endpoint, **kwargs)
    sleeps = []
    client.sleep = sleeps.append
    return client, sleeps


def test_read_timeout_is_retried_then_names_the_call(silent):
    client, sleeps = connect("http://127.0.0.1:%d" % silent.port, max_attempts=3, read_timeout=0.3,
                             connect_timeout=0.5, botocore_attempts=1)
    started = time.monotonic()
    with pytest.raises(ssm.SsmError) as err:
        client.get_by_path("/app/prod")
    elapsed = time.monotonic() - started
    msg = str(err.value)
    assert "GetParametersByPath" in msg and "/app/prod" in msg and "timed out" in msg
    assert "3 attempts" in msg
    assert len(sleeps) == 2, "retried with the backoff between attempts"
    assert len(silent.accepted) == 3
    assert elapsed < 5


def test_default_timeouts_are_short():
    client = ssm.SsmClient.connect(region="us-east-1", endpoint_url="http://127.0.0.1:9")
    config = client.client.meta.config
    assert config.connect_timeout == ssm.CONNECT_TIMEOUT <= 10
    assert config.read_timeout == ssm.READ_TIMEOUT <= 30


def test_connection_refused_is_retried_then_names_the_call():
    port = labenv.free_port()
    client, sleeps = connect("http://127.0.0.1:%d" % port, max_attempts=2, botocore_attempts=1)
    with pytest.raises(ssm.SsmError) as err:
        client.get_by_names(["/app/db_password"])
    msg = str(err.value)
    assert "GetParameters" in msg and "/app/db_password" in msg and "cannot reach" in msg
    assert len(sleeps) == 1


def test_connect_timeout_is_transient(monkeypatch):
    """ConnectTimeoutError (an unroutable endpoint) is retried like the others."""
    calls = []

    class Client:
        def get_parameters(self, **kwargs):
            calls.append(kwargs)
            raise botocore.exceptions.ConnectTimeoutError(endpoint_url="https://ssm.eu-west-1.amazonaws.com/")

    sleeps = []
    client = ssm.SsmClient(Client(), max_attempts=8, sleep=sleeps.append, rand=lambda: 1.0)
    with pytest.raises(ssm.SsmError) as err:
        client.get_by_names(["/app/x"])
    assert "GetParameters on names /app/x" in str(err.value) and "timed out" in str(err.value)
    assert len(calls) == ssm.TRANSPORT_ATTEMPTS and sleeps == [0.25, 0.5]


def test_param_validation_error_names_call_and_report():
    """botocore refuses an empty name before sending anything (no network needed)."""
    real = boto3.client("ssm", region_name="us-east-1")
    sleeps = []
    client = ssm.SsmClient(real, sleep=sleeps.append)
    with pytest.raises(ssm.SsmError) as err:
        client.get_by_names([""])
    msg = str(err.value)
    assert msg.startswith("GetParameters on names ''")
    assert "Invalid length for parameter Names[0]" in msg
    assert sleeps == []


def test_too_long_path_names_call_and_limit():
    """botocore checks only minimum lengths and moto accepts anything: SSM's 2048 limit is checked here."""
    real = boto3.client("ssm", region_name="us-east-1")
    client = ssm.SsmClient(real, sleep=lambda s: None)
    path = "/" + "a" * 2100
    with pytest.raises(ssm.SsmError) as err:
        client.get_by_path(path)
    msg = str(err.value)
    assert "GetParametersByPath" in msg and "2101 characters" in msg and "2048" in msg
    assert len(msg) < 400, "the path is shortened in the message"
    with pytest.raises(ssm.SsmError, match="GetParameters on names .*2048"):
        client.get_by_names(["/x", path])
    assert client.calls == 0


def test_other_botocore_error_names_the_call():
    class Client:
        def get_parameters_by_path(self, **kwargs):
            raise botocore.exceptions.CredentialRetrievalError(provider="sso", error_msg="token expired")

    client = ssm.SsmClient(Client(), sleep=lambda s: None)
    with pytest.raises(ssm.SsmError) as err:
        client.get_by_path("/app")
    assert str(err.value) == "GetParametersByPath on path /app: Error when retrieving credentials from sso: token expired"


def test_invalid_endpoint_url_is_a_message():
    with pytest.raises(ssm.SsmError, match="endpoint_url"):
        ssm.SsmClient.connect(region="us-east-1", endpoint_url="not a url")


def test_unknown_profile_is_a_message(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    with pytest.raises(ssm.SsmError, match="profile"):
        ssm.SsmClient.connect(region="us-east-1", profile="no-such-profile")
