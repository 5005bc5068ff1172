"""Region resolution: the option, AWS_REGION, AWS_DEFAULT_REGION, the profile's region, then IMDSv2.

The IMDS tests run against a strict local stand-in: it issues a token on PUT /latest/api/token (only
with the TTL header), answers 401 to a GET without that token, and records every request.
"""
import socket
import threading
import time
import uuid

import pytest

from ansible_collections.llmstack.deploy.plugins.module_utils import ssm

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ENV_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_EC2_METADATA_DISABLED",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
            "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No region anywhere unless a test puts one there; no real IMDS."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


class Imds:
    """A strict IMDSv2 stand-in on 127.0.0.1."""

    def __init__(self, region="eu-central-1"):
        self.region = region
        self.token = uuid.uuid4().hex
        self.refuse = False
        self.requests = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body=b""):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                stand_in.requests.append(("PUT", self.path, dict((k.lower(), v) for k, v in self.headers.items())))
                if self.path != "/latest/api/token":
                    return self._answer(404)
                if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self._answer(400)
                self._answer(200, stand_in.token.encode())

            def do_GET(self):
                stand_in.requests.append(("GET", self.path, dict((k.lower(), v) for k, v in self.headers.items())))
                if stand_in.refuse or self.headers.get("X-aws-ec2-metadata-token") != stand_in.token:
                    return self._answer(401)
                if self.path != "/latest/meta-data/placement/region":
                    return self._answer(404)
                self._answer(200, stand_in.region.encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def imds(monkeypatch):
    stand_in = Imds()
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", stand_in.url + "/")
    yield stand_in
    stand_in.close()


@pytest.fixture
def silent(monkeypatch):
    """An IMDS that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held = []

    def serve():
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:%d" % sock.getsockname()[1])
    yield held
    for conn in held:
        conn.close()
    sock.close()


def region_of(**kwargs):
    return ssm.SsmClient.connect(endpoint_url="http://127.0.0.1:9", **kwargs).region


# ------------------------------------------------------------------------------ order

def test_aws_region_alone_is_enough(monkeypatch):
    """botocore reads only AWS_DEFAULT_REGION: AWS_REGION alone used to give NoRegionError."""
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    client = ssm.SsmClient.connect()
    assert client.region == "eu-west-1"
    assert client.client.meta.region_name == "eu-west-1"


def test_order_option_then_aws_region_then_default_region_then_profile(monkeypatch, clean_env):
    (clean_env / "aws-config").write_text("[default]\nregion = ap-south-1\n[profile other]\nregion = sa-east-1\n")
    assert region_of() == "ap-south-1"
    assert region_of(profile="other") == "sa-east-1"
    monkeypatch.setenv("AWS_PROFILE", "other")
    assert region_of() == "sa-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert region_of() == "us-west-2"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert region_of() == "eu-west-1"
    assert region_of(region="eu-north-1") == "eu-north-1"


def test_empty_variables_count_as_unset(monkeypatch, imds):
    monkeypatch.setenv("AWS_REGION", "")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "")
    assert region_of() == "eu-central-1"


def test_profile_region_comes_before_imds(clean_env, imds):
    (clean_env / "aws-config").write_text("[default]\nregion = ap-south-1\n")
    assert region_of() == "ap-south-1"
    assert imds.requests == []


def test_no_region_anywhere_names_every_source():
    with pytest.raises(ssm.SsmError) as err:
        ssm.SsmClient.connect()
    msg = str(err.value)
    for source in ("region option", "AWS_REGION", "AWS_DEFAULT_REGION", "profile default",
                   "EC2 instance metadata", "AWS_EC2_METADATA_DISABLED"):
        assert source in msg, source


# ------------------------------------------------------------------------------- IMDS

def test_imds_token_flow(imds):
    assert region_of() == "eu-central-1"
    assert [(m, p) for m, p, _h in imds.requests] == [("PUT", "/latest/api/token"),
                                                      ("GET", "/latest/meta-data/placement/region")]
    put_headers, get_headers = imds.requests[0][2], imds.requests[1][2]
    assert int(put_headers["x-aws-ec2-metadata-token-ttl-seconds"]) > 0
    assert get_headers["x-aws-ec2-metadata-token"] == imds.token


def test_imds_stand_in_is_strict(imds):
    """The stand-in refuses IMDSv1 (a GET without its token) and a PUT without the TTL header, so the
    flow test above means something."""
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(imds.url + "/latest/meta-data/placement/region", timeout=2)
    assert err.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(imds.url + "/latest/api/token", method="PUT"), timeout=2)
    assert err.value.code == 400


def test_imds_refusal_is_named(imds):
    imds.refuse = True  # every GET now gets 401
    region, reason = ssm.imds_region()
    assert region is None and "401" in reason and "/latest/meta-data/placement/region" in reason


def test_imds_ignores_proxies(monkeypatch, imds):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    assert region_of() == "eu-central-1"


def test_imds_disabled_sends_nothing(monkeypatch, imds):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "True")
    with pytest.raises(ssm.SsmError, match="AWS_EC2_METADATA_DISABLED"):
        ssm.SsmClient.connect()
    assert imds.requests == []


def test_imds_garbage_answer_is_not_a_region(imds):
    imds.region = "<html>captive portal</html>"
    with pytest.raises(ssm.SsmError) as err:
        ssm.SsmClient.connect()
    assert "EC2 instance metadata" in str(err.value) and "not a region" in str(err.value)


def test_imds_that_never_answers_costs_about_a_second(silent):
    started = time.monotonic()
    with pytest.raises(ssm.SsmError) as err:
        ssm.SsmClient.connect()
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed
    assert len(silent) == 1, "one attempt"
    msg = str(err.value)
    assert "EC2 instance metadata" in msg and "no answer within 1 s" in msg


def test_imds_bad_endpoint_is_named(monkeypatch):
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "ftp://example")
    with pytest.raises(ssm.SsmError, match="AWS_EC2_METADATA_SERVICE_ENDPOINT"):
        ssm.SsmClient.connect()
