import boto3
import pytest
from botocore.stub import Stubber

from ansible_collections.llmstack.deploy.plugins.module_utils import ssm


def param(name, value="v"):
    return {"Name": name, "Value": value, "Type": "String"}


@pytest.mark.parametrize("name,base,mode,key", [
    ("/app/production/db_host", "/app/production", "basename", "DB_HOST"),
    ("/app/prod/db/host", "/app/prod", "relative", "DB_HOST"),
    ("/app/prod/db/host", "/app/prod/", "relative", "DB_HOST"),
    ("/app/prod/api-key.v2", "/app/prod", "basename", "API_KEY_V2"),
    ("/app/prod/db.host", "/app/prod", "relative", "DB_HOST"),
    ("/app/prod/x", None, "relative", "APP_PROD_X"),
    # A version or label selector is not part of the key.
    ("/app/db:3", None, "basename", "DB"),
    ("/app/db_password:prod", None, "basename", "DB_PASSWORD"),
    ("arn:aws:ssm:eu-west-1:123456789012:parameter/app/db_host", None, "basename", "DB_HOST"),
])
def test_parameter_key(name, base, mode, key):
    assert ssm.parameter_key(name, base=base, key_mode=mode) == key


def test_collision_names_both_parameters():
    with pytest.raises(ssm.SsmError) as err:
        ssm.map_parameters([param("/a/x/db_host"), param("/a/y/db_host")], base="/a")
    assert "/a/x/db_host" in str(err.value) and "/a/y/db_host" in str(err.value)
    assert "DB_HOST" in str(err.value)


def test_relative_mode_resolves_that_collision():
    mapped = ssm.map_parameters([param("/a/x/db_host"), param("/a/y/db_host")], base="/a", key_mode="relative")
    assert sorted(mapped) == ["X_DB_HOST", "Y_DB_HOST"]


def test_key_still_invalid_is_named():
    with pytest.raises(ssm.SsmError, match="'9LIVES'"):
        ssm.map_parameters([param("/a/9lives")])


def test_backoff_is_exponential_and_bounded():
    delays = ssm.backoff_delays(6, base=0.25, cap=2.0, rand=lambda: 1.0)
    assert delays == [0.25, 0.5, 1.0, 2.0, 2.0]
    assert all(0 <= d <= 2.0 for d in ssm.backoff_delays(10, cap=2.0))


@pytest.fixture
def stubbed():
    client = boto3.client("ssm", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    sleeps = []
    wrapper = ssm.SsmClient(client, max_attempts=4, sleep=sleeps.append, rand=lambda: 1.0)
    with Stubber(client) as stub:
        yield wrapper, stub, sleeps


def by_path_args(path, token=None):
    args = {"Path": path, "Recursive": True, "WithDecryption": True, "MaxResults": 10}
    if token:
        args["NextToken"] = token
    return args


def test_by_path_follows_next_token_through_empty_pages(stubbed):
    client, stub, _sleeps = stubbed
    stub.add_response("get_parameters_by_path", {"Parameters": [param("/p/a")], "NextToken": "t1"}, by_path_args("/p"))
    stub.add_response("get_parameters_by_path", {"Parameters": [], "NextToken": "t2"}, by_path_args("/p", "t1"))
    stub.add_response("get_parameters_by_path", {"Parameters": [param("/p/b")]}, by_path_args("/p", "t2"))
    assert [p["Name"] for p in client.get_by_path("/p")] == ["/p/a", "/p/b"]
    assert client.calls == 3
    stub.assert_no_pending_responses()


def test_throttled_page_is_retried_with_backoff(stubbed):
    client, stub, sleeps = stubbed
    stub.add_response("get_parameters_by_path", {"Parameters": [param("/p/a")], "NextToken": "t1"}, by_path_args("/p"))
    stub.add_client_error("get_parameters_by_path", "ThrottlingException", "Rate exceeded", 400)
    stub.add_client_error("get_parameters_by_path", "ThrottlingException", "Rate exceeded", 400)
    stub.add_response("get_parameters_by_path", {"Parameters": [param("/p/b")]}, by_path_args("/p", "t1"))
    assert [p["Name"] for p in client.get_by_path("/p")] == ["/p/a", "/p/b"]
    assert sleeps == [0.25, 0.5]


def test_rate_exceeded_message_alone_counts_as_throttling(stubbed):
    client, stub, sleeps = stubbed
    stub.add_client_error("get_parameters", "SomethingElse", "Rate exceeded", 400)
    stub.add_response("get_parameters", {"Parameters": [param("/n/a")]})
    assert [p["Name"] for p in client.get_by_names(["/n/a"])] == ["/n/a"]
    assert len(sleeps) == 1


def test_throttling_gives_up_naming_the_call(stubbed):
    client, stub, sleeps = stubbed
    for _attempt in range(4):
        stub.add_client_error("get_parameters_by_path", "ThrottlingException", "Rate exceeded", 400)
    with pytest.raises(ssm.SsmError) as err:
        client.get_by_path("/p")
    assert "GetParametersByPath" in str(err.value) and "/p" in str(err.value)
    assert "4 attempts" in str(err.value)
    assert len(sleeps) == 3


def test_access_denied_names_path_and_permission(stubbed):
    client, stub, sleeps = stubbed
    stub.add_client_error("get_parameters_by_path", "AccessDeniedException",
                          "User: arn:aws:iam::1:user/x is not authorized to perform: ssm:GetParametersByPath", 400)
    with pytest.raises(ssm.SsmError) as err:
        client.get_by_path("/secret/path")
    msg = str(err.value)
    assert "/secret/path" in msg and "ssm:GetParametersByPath" in msg and "access denied" in msg
    assert sleeps == []


def test_kms_denied_names_kms_decrypt(stubbed):
    client, stub, _sleeps = stubbed
    stub.add_client_error("get_parameters", "AccessDeniedException",
                          "not authorized to perform: kms:Decrypt on resource key/abc", 400)
    with pytest.raises(ssm.SsmError) as err:
        client.get_by_names(["/n/secret"])
    assert "kms:Decrypt" in str(err.value) and "/n/secret" in str(err.value)


def test_names_are_batched_by_ten_and_unknown_names_fail(stubbed):
    client, stub, _sleeps = stubbed
    names = ["/n/k%02d" % i for i in range(23)]
    for i in range(0, 23, 10):
        batch = names[i:i + 10]
        page = {"Parameters": [param(n) for n in batch if n != "/n/k15"]}
        if "/n/k15" in batch:
            page["InvalidParameters"] = ["/n/k15"]
        stub.add_response("get_parameters", page, {"Names": batch, "WithDecryption": True})
    with pytest.raises(ssm.SsmError, match="not found in region us-east-1: /n/k15"):
        client.get_by_names(names)
    assert client.calls == 3


def test_duplicate_names_are_asked_once(stubbed):
    client, stub, _sleeps = stubbed
    stub.add_response("get_parameters", {"Parameters": [param("/n/a")]}, {"Names": ["/n/a"], "WithDecryption": True})
    assert [p["Name"] for p in client.get_by_names(["/n/a", "/n/a"])] == ["/n/a"]


# ----------------------------------------------------------------------------- selectors
# AWS answers GetParameters for `name:3` / `name:label` with Name *without* the selector and a
# Selector field (":3", ":prod"), in alphabetical order rather than the order asked.

def aws_param(name, value, version, selector=None):
    p = {"Name": name, "Value": value, "Type": "SecureString", "Version": version, "DataType": "text",
         "ARN": "arn:aws:ssm:us-east-1:123456789012:parameter" + name}
    if selector is not None:
        p["Selector"] = selector
    return p


def test_selectors_map_back_by_name_and_selector_aws_shape(stubbed):
    client, stub, _sleeps = stubbed
    names = ["/app/db:3", "/app/plain", "/app/api_key:prod"]
    stub.add_response("get_parameters", {"Parameters": [
        aws_param("/app/api_key", "k-prod", 7, ":prod"),
        aws_param("/app/db", "db-v3", 3, ":3"),
        aws_param("/app/plain", "plain-latest", 2),
    ]}, {"Names": names, "WithDecryption": True})
    params = client.get_by_names(names)
    assert [(p["Name"], p["Value"]) for p in params] == [
        ("/app/db:3", "db-v3"), ("/app/plain", "plain-latest"), ("/app/api_key:prod", "k-prod")]
    values = dict((k, v) for k, (_n, v) in ssm.map_parameters(params).items())
    assert values == {"DB": "db-v3", "PLAIN": "plain-latest", "API_KEY": "k-prod"}


def test_selector_without_colon_in_response_still_matches(stubbed):
    client, stub, _sleeps = stubbed
    stub.add_response("get_parameters", {"Parameters": [aws_param("/app/db", "v3", 3, "3")]})
    assert [p["Value"] for p in client.get_by_names(["/app/db:3"])] == ["v3"]


def test_selector_response_without_selector_field_matches_by_version(stubbed):
    """moto (the lab's stand-in) drops the Selector field: match on Name, then Version."""
    client, stub, _sleeps = stubbed
    stub.add_response("get_parameters", {"Parameters": [aws_param("/app/db", "v1", 1), aws_param("/app/tok", "t", 4)]})
    params = client.get_by_names(["/app/tok:prod", "/app/db:1"])
    assert [(p["Name"], p["Value"]) for p in params] == [("/app/tok:prod", "t"), ("/app/db:1", "v1")]


def test_requested_name_missing_from_both_lists_is_an_error(stubbed):
    """A name that is neither in Parameters nor in InvalidParameters is never dropped silently."""
    client, stub, _sleeps = stubbed
    stub.add_response("get_parameters", {"Parameters": [aws_param("/app/other", "s3cr3t-value", 1)]})
    with pytest.raises(ssm.SsmError) as err:
        client.get_by_names(["/app/other", "/app/db:3"])
    msg = str(err.value)
    assert "GetParameters" in msg and "/app/db:3" in msg and "s3cr3t-value" not in msg


def test_unknown_selector_is_reported_as_not_found(stubbed):
    client, stub, _sleeps = stubbed
    stub.add_response("get_parameters", {"Parameters": [], "InvalidParameters": ["/app/db:9"]})
    with pytest.raises(ssm.SsmError, match="not found in region us-east-1: /app/db:9"):
        client.get_by_names(["/app/db:9"])


def test_two_selectors_of_one_parameter_collide_naming_both(stubbed):
    client, stub, _sleeps = stubbed
    stub.add_response("get_parameters", {"Parameters": [aws_param("/app/db", "a", 1, ":1"),
                                                        aws_param("/app/db", "b", 2, ":prod")]})
    params = client.get_by_names(["/app/db:1", "/app/db:prod"])
    with pytest.raises(ssm.SsmError) as err:
        ssm.map_parameters(params)
    assert "/app/db:1" in str(err.value) and "/app/db:prod" in str(err.value) and "DB" in str(err.value)


def test_selectors_against_moto(lab, ssm_client):
    """What the lab's moto really returns for selectors: Name without the selector and no Selector field."""
    import uuid
    base = "/ut/%s" % uuid.uuid4().hex[:8]
    ssm_client.put_parameter(Name=base + "/db", Value="first", Type="SecureString")
    ssm_client.put_parameter(Name=base + "/db", Value="second", Type="SecureString", Overwrite=True)
    ssm_client.put_parameter(Name=base + "/tok", Value="t1", Type="SecureString")
    ssm_client.put_parameter(Name=base + "/tok", Value="t2", Type="SecureString", Overwrite=True)
    ssm_client.label_parameter_version(Name=base + "/tok", ParameterVersion=1, Labels=["prod"])
    raw = ssm_client.get_parameters(Names=[base + "/db:1"], WithDecryption=True)["Parameters"]
    assert [p["Name"] for p in raw] == [base + "/db"] and "Selector" not in raw[0]

    client = ssm.SsmClient(ssm_client)
    values, count = ssm.collect(client, names=[base + "/db:1", base + "/tok:prod"])
    assert values == {"DB": "first", "TOK": "t1"} and count == 2
    values, _count = ssm.collect(client, names=[base + "/db"])
    assert values == {"DB": "second"}
    with pytest.raises(ssm.SsmError, match="not found in region us-east-1: %s/db:9" % base):
        ssm.collect(client, names=[base + "/db:9"])


class FakeClient:
    """Feeds collect() canned pages; stands in for SsmClient's two reads only."""

    def __init__(self, by_path=None, by_names=None):
        self.by_path = by_path or {}
        self.by_names = by_names or []
        self.region = "eu-west-3"

    def get_by_path(self, path, recursive=True, decrypt=True):
        return self.by_path.get(path, [])

    def get_by_names(self, names, decrypt=True):
        return [p for p in self.by_names if p["Name"] in names]


def test_collect_precedence_later_path_then_names():
    client = FakeClient(
        by_path={"/base": [param("/base/a", "base"), param("/base/b", "base")],
                 "/over": [param("/over/b", "over"), param("/over/c", "over")]},
        by_names=[param("/x/c", "name")])
    values, count = ssm.collect(client, paths=["/base", "/over"], names=["/x/c"])
    assert values == {"A": "base", "B": "over", "C": "name"}
    assert count == 5


def test_collect_named_gives_explicit_keys_and_wins():
    client = FakeClient(by_path={"/app": [param("/app/pgpassword", "from-path")]},
                        by_names=[param("/pg/postgres_password", "pw"), param("/llm/vllm_api_key", "key")])
    named = {"PGPASSWORD": "/pg/postgres_password", "LLM_API_KEY": "/llm/vllm_api_key",
             "SAME_KEY_AGAIN": "/llm/vllm_api_key"}
    values, count = ssm.collect(client, paths=["/app"], named=named)
    assert values == {"PGPASSWORD": "pw", "LLM_API_KEY": "key", "SAME_KEY_AGAIN": "key"}
    assert count == 3


@pytest.mark.parametrize("named,message", [
    ({"BAD KEY": "/a"}, "'BAD KEY' (from named) is not a valid environment variable name"),
    ({"K": "relative/name"}, "named: K: parameter name 'relative/name' must start with '/'"),
])
def test_collect_named_bad_input_is_named(named, message):
    with pytest.raises(ssm.SsmError) as err:
        ssm.collect(FakeClient(), named=named)
    assert message in str(err.value)


def test_collect_empty_path_fails_unless_allowed():
    # The region is named: a wrong one is the usual reason a path that exists looks empty.
    with pytest.raises(ssm.SsmError, match="/empty holds no parameters in region eu-west-3"):
        ssm.collect(FakeClient(), paths=["/empty"])
    assert ssm.collect(FakeClient(), paths=["/empty"], allow_empty=True) == ({}, 0)


# ------------------------------------------------------------- the controller's parameters (Ansible Vault)

STORE = {"/app/prod/db/host": "db", "/app/prod/db/password": "pw", "/app/prod/api_key": "k",
         "/app/production/other": "x"}


def test_controller_parameters_read_paths_as_ssm_does():
    store = ssm.ControllerParameters(STORE)
    values, count = ssm.collect(store, paths=["/app/prod"], named={"PW": "/app/prod/db/password"})
    # Recursive by default; /app/production is not under /app/prod.
    assert values == {"HOST": "db", "PASSWORD": "pw", "API_KEY": "k", "PW": "pw"} and count == 4
    flat, _count = ssm.collect(store, paths=["/app/prod/"], recursive=False)
    assert flat == {"API_KEY": "k"}
    relative, _count = ssm.collect(store, paths=["/app/prod"], key_mode="relative")
    assert relative["DB_PASSWORD"] == "pw"
    assert (store.calls, store.region) == (0, None)


@pytest.mark.parametrize("kwargs, named", [
    (dict(paths=["/app/none"]), "path /app/none holds no parameters in the parameters given on the controller"),
    (dict(names=["/app/prod/api_key", "/app/gone"]), "not found in the parameters given on the controller: /app/gone"),
    (dict(names=["/app/prod/api_key:3"]), "selectors need SSM: /app/prod/api_key:3"),
])
def test_controller_parameters_name_what_is_missing_never_a_value(kwargs, named):
    with pytest.raises(ssm.SsmError) as e:
        ssm.collect(ssm.ControllerParameters(STORE), **kwargs)
    assert named in str(e.value) and "pw" not in str(e.value).split()


@pytest.mark.parametrize("name", ["app/prod/x", "/app//x", "/app/x/"])
def test_controller_parameters_need_full_names(name):
    with pytest.raises(ssm.SsmError) as e:
        ssm.ControllerParameters({name: "secret-value"})
    assert repr(name) in str(e.value) and "secret-value" not in str(e.value)


def test_controller_parameters_refuse_a_value_that_is_not_a_string():
    with pytest.raises(ssm.SsmError) as e:
        ssm.ControllerParameters({"/app/prod/list": ["a"]})
    assert "/app/prod/list must be a string" in str(e.value)
