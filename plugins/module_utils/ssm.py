# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSM Parameter Store access: one client, one retry policy, one name -> key mapping.

Kept free of AnsibleModule so it is unit-tested directly. Errors are raised as
SsmError, whose message names the API call and the path or name that failed and
never contains a parameter value.

The region comes from, in order: the region option, AWS_REGION, AWS_DEFAULT_REGION,
the profile's region in the AWS config file, then EC2 instance metadata (IMDSv2,
one attempt with a 1 s timeout, no proxies). botocore alone reads neither AWS_REGION
nor, in a form the lab's moto serves, the instance's region.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import os
import random
import re
import socket
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.llmstack.deploy.plugins.module_utils.envfile import EnvFileError, is_valid_key
from ansible_collections.llmstack.deploy.plugins.module_utils.state import StateError

try:
    import botocore.config
    import botocore.exceptions
    import botocore.session
    import boto3

    HAS_BOTO3 = True
except ImportError:
    HAS_BOTO3 = False

# The API's own limits: GetParametersByPath pages hold at most 10 items, and
# GetParameters takes at most 10 names per call.
PAGE_SIZE = 10
NAMES_BATCH = 10

# Codes SSM (and the AWS front door) use for "slow down". amazon.aws's list lacks
# ThrottlingException, which is what SSM actually returns.
THROTTLING_CODES = frozenset([
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "ProvisionedThroughputExceededException",
])
TRANSIENT_CODES = frozenset([
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
])

# SSM's own limit on a parameter name or path. botocore checks only minimum lengths and moto
# accepts anything, so it is checked here rather than left to a ValidationException.
MAX_NAME_LENGTH = 2048

# botocore's defaults are 60 s each; SSM answers a page in well under a second.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 15
# Attempts botocore makes itself for each call (adaptive mode: throttling, 5xx, connection errors).
BOTOCORE_ATTEMPTS = 3
# Our own attempts after a timeout or a refused connection. Each one is already BOTOCORE_ATTEMPTS
# tries, so an endpoint that accepts and never answers fails within about
# TRANSPORT_ATTEMPTS * BOTOCORE_ATTEMPTS * READ_TIMEOUT instead of max_attempts times that.
TRANSPORT_ATTEMPTS = 3

# EC2 instance metadata (IMDSv2), for the region. Same endpoint variables as botocore.
IMDS_ENDPOINT = "http://169.254.169.254"
IMDS_ENDPOINT_IPV6 = "http://[fd00:ec2::254]"
IMDS_TIMEOUT = 1.0
IMDS_TOKEN_TTL = 60
_REGION_RE = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")

# The AWS options of the SSM modules (documented in doc_fragments/aws.py).
AWS_ARGUMENT_SPEC = dict(
    region=dict(type="str", aliases=["aws_region"]),
    profile=dict(type="str", aliases=["aws_profile"]),
    endpoint_url=dict(type="str", aliases=["aws_endpoint_url"]),
    max_attempts=dict(type="int", default=8),
    state_dir=dict(type="path", default="/var/lib/llmstack"),
    # A Parameter Store kept on the controller (Ansible Vault): read in place of SSM.
    parameters=dict(type="dict", no_log=True),
)
KEY_MODES = ("basename", "relative")
_INVALID_CHARS_RE = re.compile(r"[^A-Za-z0-9_]")


class SsmError(Exception):
    """A failure that is safe to show: it names calls, paths and keys, never values."""


# --------------------------------------------------------------------------- keys

def split_selector(name):
    """'/app/db:3' -> ('/app/db', '3'); '/app/db:prod' -> ('/app/db', 'prod'); '/app/db' -> ('/app/db', '').

    A parameter name holds no ':' of its own; an ARN's colons all come before its last '/'."""
    head, slash, last = name.rpartition("/")
    base, _colon, selector = last.partition(":")
    return head + slash + base, selector


def parameter_key(name, base=None, key_mode="basename"):
    """Map a parameter name to an env key.

    basename: /app/production/db_host -> DB_HOST (what the operators' playbooks did).
    relative: /app/prod/db/host relative to /app/prod -> DB_HOST.
    A version or label selector is not part of the key (/app/db:3 -> DB).
    Characters that are not valid in an env name become '_'.
    """
    if key_mode not in KEY_MODES:
        raise SsmError("key_mode must be one of %s, got %r" % (", ".join(KEY_MODES), key_mode))
    stripped = split_selector(name)[0].strip("/")
    if key_mode == "relative":
        prefix = (base or "").strip("/")
        if prefix and (stripped == prefix or stripped.startswith(prefix + "/")):
            stripped = stripped[len(prefix):].strip("/")
        raw = stripped.replace("/", "_")
    else:
        raw = stripped.rsplit("/", 1)[-1]
    return _INVALID_CHARS_RE.sub("_", raw).upper()


def validate_key(key, source):
    if not is_valid_key(key):
        raise SsmError("key %r (from %s) is not a valid environment variable name: it must match "
                       "[A-Za-z_][A-Za-z0-9_]*" % (key, source))


def map_parameters(parameters, base=None, key_mode="basename"):
    """Turn a list of SSM parameter dicts into {key: (name, value)}.

    Two parameters that map to one key are an error naming both, rather than a
    silent "last one wins" as with amazon.aws's shortnames.
    """
    mapped = {}
    for param in parameters:
        name = param["Name"]
        key = parameter_key(name, base=base, key_mode=key_mode)
        validate_key(key, "parameter %s" % name)
        if key in mapped:
            raise SsmError("parameters %s and %s both map to key %s; rename one, or use "
                           "key_mode=relative" % (mapped[key][0], name, key))
        mapped[key] = (name, param.get("Value", ""))
    return mapped


# ------------------------------------------------------------------------- region

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """IMDS never redirects; following one would send the token elsewhere."""

    def redirect_request(self, *args, **kwargs):
        return None


def _imds_endpoint():
    """(endpoint, None) from botocore's own variables, or (None, why not)."""
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "false").strip().lower() == "true":
        return None, "disabled by AWS_EC2_METADATA_DISABLED"
    endpoint = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", "").strip()
    if endpoint:
        if not re.match(r"^https?://[^/]+", endpoint):
            return None, "AWS_EC2_METADATA_SERVICE_ENDPOINT %r is not an http:// or https:// URL" % endpoint
        return endpoint.rstrip("/"), None
    mode = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "").strip().lower()
    return (IMDS_ENDPOINT_IPV6 if mode == "ipv6" else IMDS_ENDPOINT), None


def imds_region(endpoint=None, timeout=IMDS_TIMEOUT):
    """The instance's region from EC2 instance metadata with IMDSv2: (region, None) or (None, why not).

    PUT /latest/api/token (with a TTL header), then GET /latest/meta-data/placement/region with the
    token. One attempt, `timeout` seconds per request, no proxies, no redirects. botocore's own
    InstanceMetadataRegionFetcher asks the availability-zone path instead, which moto does not serve."""
    if endpoint is None:
        endpoint, reason = _imds_endpoint()
        if endpoint is None:
            return None, reason
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    step = "PUT /latest/api/token"
    try:
        req = urllib.request.Request(endpoint + "/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": str(IMDS_TOKEN_TTL)})
        with opener.open(req, timeout=timeout) as resp:
            token = resp.read(4096).decode("ascii", "replace").strip()
        if not token:
            return None, "%s at %s: empty token" % (step, endpoint)
        step = "GET /latest/meta-data/placement/region"
        req = urllib.request.Request(endpoint + "/latest/meta-data/placement/region",
                                     headers={"X-aws-ec2-metadata-token": token})
        with opener.open(req, timeout=timeout) as resp:
            answer = resp.read(256).decode("ascii", "replace").strip()
    except urllib.error.HTTPError as e:
        return None, "%s at %s: HTTP %s" % (step, endpoint, e.code)
    except (socket.timeout, TimeoutError):
        return None, "%s at %s: no answer within %g s" % (step, endpoint, timeout)
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return None, "%s at %s: no answer within %g s" % (step, endpoint, timeout)
        return None, "%s at %s: %s" % (step, endpoint, getattr(reason, "strerror", None) or reason)
    except (OSError, ValueError) as e:
        return None, "%s at %s: %s" % (step, endpoint, getattr(e, "strerror", None) or e)
    except http.client.HTTPException as e:  # a broken answer: no region from here
        return None, "%s at %s: broken answer (%s)" % (step, endpoint, type(e).__name__)
    if not _REGION_RE.match(answer):
        return None, "%s at %s: the answer is not a region name" % (step, endpoint)
    return answer, None


def resolve_region(region=None, core_session=None, imds=imds_region):
    """(region, source) from, in order: the region option, AWS_REGION, AWS_DEFAULT_REGION, the
    profile's region in the AWS config file, EC2 instance metadata. Fails naming every source tried."""
    if region:
        return region, "the region option"
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(var, "").strip():
            return os.environ[var].strip(), var
    profile = "default"
    if core_session is not None:
        profile = core_session.profile or "default"
        # get_scoped_config() reads only the config files (AWS_CONFIG_FILE, ~/.aws/config), not the
        # environment, and raises ProfileNotFound for a profile that does not exist.
        configured = (core_session.get_scoped_config().get("region") or "").strip()
        if configured:
            return configured, "profile %s" % profile
    found, reason = imds()
    if found:
        return found, "EC2 instance metadata"
    raise SsmError("no AWS region: tried the region option, AWS_REGION, AWS_DEFAULT_REGION, the region of "
                   "profile %s in the AWS config file, and EC2 instance metadata (%s); set the region option "
                   "(or module_defaults group/llmstack.deploy.aws)" % (profile, reason))


# ------------------------------------------------------------------------- client

def _error_code(err):
    return err.response.get("Error", {}).get("Code", "")


def _error_message(err):
    return err.response.get("Error", {}).get("Message", "")


def is_throttling(err):
    code = _error_code(err)
    return code in THROTTLING_CODES or "rate exceeded" in _error_message(err).lower()


def backoff_delays(attempts, base=0.25, cap=20.0, rand=random.random):
    """Exponential backoff with full jitter: one delay before each retry."""
    return [rand() * min(cap, base * (2 ** i)) for i in range(max(0, attempts - 1))]


def _shorten(text, limit=120):
    if len(text) <= limit:
        return text
    return "%s... (%d characters)" % (text[:limit], len(text))


def _refuse_too_long(api, target, names):
    """SSM's own length limit, before the call (botocore checks only minimum lengths, moto none)."""
    if any(len(n) > MAX_NAME_LENGTH for n in names):
        raise SsmError("%s on %s: invalid request: longer than SSM's limit of %d characters"
                       % (api, target, MAX_NAME_LENGTH))


def _names_target(names):
    return "names %s" % ", ".join(_shorten(n) if n else "''" for n in names)


if HAS_BOTO3:
    # Transient transport failures: retried with the backoff, at most TRANSPORT_ATTEMPTS times.
    _TIMEOUTS = (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError)
    _UNREACHABLE = (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError)
else:  # pragma: no cover
    _TIMEOUTS = _UNREACHABLE = ()


class SsmClient:
    """GetParametersByPath / GetParameters with retries that cover every page."""

    API_PERMISSIONS = {
        "GetParametersByPath": "ssm:GetParametersByPath",
        "GetParameters": "ssm:GetParameters",
        "GetParameter": "ssm:GetParameter",
        "PutParameter": "ssm:PutParameter",
    }

    def __init__(self, client, max_attempts=8, sleep=time.sleep, rand=random.random, region=None):
        self.client = client
        self.max_attempts = max(1, int(max_attempts))
        self.sleep = sleep
        self.rand = rand
        self.region = region or getattr(getattr(client, "meta", None), "region_name", None)
        self.calls = 0  # API calls made, retries included (the benchmark reads it)

    @classmethod
    def connect(cls, region=None, profile=None, endpoint_url=None, max_attempts=8, connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT, botocore_attempts=BOTOCORE_ATTEMPTS, imds=imds_region):
        if not HAS_BOTO3:
            raise SsmError("boto3 and botocore are required on the host that runs this module")
        # botocore retries each HTTP call itself (adaptive mode rate-limits the
        # client); our own loop in _call() adds longer backoff around each page.
        config = botocore.config.Config(
            retries={"total_max_attempts": botocore_attempts, "mode": "adaptive"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            user_agent_extra="llmstack.deploy",
        )
        try:
            # Credentials: boto3's own chain (instance profile, web identity, env, profile).
            core = botocore.session.Session(profile=profile or None)
            region, _source = resolve_region(region, core, imds=imds)
            session = boto3.session.Session(botocore_session=core, region_name=region)
            client = session.client("ssm", endpoint_url=endpoint_url or None, config=config)
        except botocore.exceptions.ProfileNotFound as e:
            raise SsmError("AWS profile not found: %s" % e)
        except botocore.exceptions.BotoCoreError as e:
            raise SsmError("cannot create the SSM client: %s" % e)
        except ValueError as e:
            # botocore: "Invalid endpoint: ..." for an endpoint_url that is not a URL.
            raise SsmError("cannot create the SSM client: endpoint_url %r: %s" % (endpoint_url, e))
        return cls(client, max_attempts=max_attempts, region=region)

    def _call(self, api, target, absent=(), **kwargs):
        """One API call with the retries; None when AWS answers with an error code of `absent`."""
        delays = backoff_delays(self.max_attempts, rand=self.rand)
        transport_limit = min(self.max_attempts, TRANSPORT_ATTEMPTS)
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            try:
                return getattr(self.client, _snake(api))(**kwargs)
            except botocore.exceptions.ClientError as e:
                if _error_code(e) in absent:
                    return None
                retriable = is_throttling(e) or _error_code(e) in TRANSIENT_CODES
                if retriable and attempt <= len(delays):
                    self.sleep(delays[attempt - 1])
                    continue
                raise self._explain(api, target, e, attempt)
            except _TIMEOUTS + _UNREACHABLE as e:
                if attempt < transport_limit:
                    self.sleep(delays[attempt - 1])
                    continue
                what = "timed out" if isinstance(e, _TIMEOUTS) else "cannot reach the SSM endpoint"
                raise SsmError("%s on %s: %s after %d attempts: %s" % (api, target, what, attempt, e))
            except botocore.exceptions.NoCredentialsError:
                raise SsmError("%s on %s: no AWS credentials found (instance profile, environment, "
                               "profile or OIDC web identity)" % (api, target))
            except botocore.exceptions.ParamValidationError as e:
                report = " ".join(str(e).split())
                raise SsmError("%s on %s: invalid request: %s" % (api, target, report))
            except botocore.exceptions.BotoCoreError as e:
                raise SsmError("%s on %s: %s" % (api, target, e))

    def _explain(self, api, target, err, attempts):
        code = _error_code(err)
        message = _error_message(err)
        if is_throttling(err):
            return SsmError("%s on %s: still throttled (%s) after %d attempts" % (api, target, code, attempts))
        if code.startswith("KMS") or code in ("InvalidKeyId",) or "kms:" in message.lower():
            return SsmError("%s on %s: cannot decrypt a SecureString (%s): the caller needs kms:Decrypt "
                            "on the parameter's KMS key. AWS said: %s" % (api, target, code, message))
        if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
            return SsmError("%s on %s: access denied: the caller needs %s on it. AWS said: %s"
                            % (api, target, self.API_PERMISSIONS.get(api, api), message))
        return SsmError("%s on %s failed (%s): %s" % (api, target, code, message))

    def get_by_path(self, path, recursive=True, decrypt=True):
        """All parameters under path. Loops until there is no NextToken: a page may
        hold 0 to 10 items and still carry one."""
        target = "path %s" % _shorten(path)
        _refuse_too_long("GetParametersByPath", target, [path])
        params = []
        kwargs = dict(Path=path, Recursive=recursive, WithDecryption=decrypt, MaxResults=PAGE_SIZE)
        while True:
            page = self._call("GetParametersByPath", target, **kwargs)
            params.extend(page.get("Parameters", []))
            token = page.get("NextToken")
            if not token:
                return params
            kwargs["NextToken"] = token

    def get_by_names(self, names, decrypt=True):
        """Parameters by explicit name, in batches of 10, in the order asked.

        A name may carry a version or label selector (/app/db:3, /app/db:prod). AWS answers such a
        name with Name *without* the selector plus a Selector field, in alphabetical order, so
        results are mapped back by Name + Selector. Each returned dict is a copy whose Name is the
        name as asked. Unknown names come back in InvalidParameters rather than as an error:
        collect them and fail once. A name that is in neither list is an error too."""
        wanted = []
        for name in names:
            if name not in wanted:
                wanted.append(name)
        too_long = [n for n in wanted if len(n) > MAX_NAME_LENGTH]
        _refuse_too_long("GetParameters", _names_target(too_long), too_long)
        found, missing = [], []
        for i in range(0, len(wanted), NAMES_BATCH):
            batch = wanted[i:i + NAMES_BATCH]
            page = self._call("GetParameters", _names_target(batch), Names=batch, WithDecryption=decrypt)
            found.extend(page.get("Parameters", []))
            missing.extend(page.get("InvalidParameters", []))
        if missing:
            raise SsmError("GetParameters: parameter(s) not found in region %s: %s"
                           % (self.region or "(unknown)", ", ".join(sorted(missing))))
        matched = match_results(wanted, found)
        unanswered = [n for n in wanted if n not in matched]
        if unanswered:
            raise SsmError("GetParameters on %s: the answer holds neither the parameter nor an InvalidParameters "
                           "entry for it" % _names_target(unanswered))
        return [dict(matched[n], Name=n) for n in wanted]

    def get_one(self, name):
        """The value of one String parameter, or None when there is none (GetParameter, not decrypted)."""
        page = self._call("GetParameter", "parameter %s" % _shorten(name), absent=("ParameterNotFound",), Name=name)
        return None if page is None else page["Parameter"].get("Value")

    def put(self, name, value, description=""):
        """Write one String parameter, overwriting it (PutParameter)."""
        _refuse_too_long("PutParameter", "parameter %s" % _shorten(name), [name])
        self._call("PutParameter", "parameter %s" % _shorten(name), Name=name, Value=value, Type="String",
                   Overwrite=True, Description=description)


class ControllerParameters:
    """The parameters given on the controller ({name: value}, e.g. from Ansible Vault), read the way SsmClient
    reads SSM: the same paths, names, keys and errors, and no AWS call (calls stays 0, region None)."""

    where = "the parameters given on the controller"

    def __init__(self, parameters):
        self.values = {}
        for name, value in (parameters or {}).items():
            name = str(name)
            if not name.startswith("/") or name.endswith("/") or "//" in name:
                raise SsmError("parameters: name %r must be a full parameter name: start with '/', no empty "
                               "segment, no trailing '/'" % _shorten(name))
            if value is None or isinstance(value, (dict, list)):
                raise SsmError("parameters: %s must be a string" % _shorten(name))
            self.values[name] = str(value)
        self.region = None
        self.calls = 0

    def get_by_path(self, path, recursive=True, decrypt=True):  # pylint: disable=unused-argument
        base = path.rstrip("/") + "/"
        return [{"Name": n, "Value": v} for n, v in sorted(self.values.items())
                if n.startswith(base) and (recursive or "/" not in n[len(base):])]

    def get_by_names(self, names, decrypt=True):  # pylint: disable=unused-argument
        selected = [n for n in names if split_selector(n)[1]]
        if selected:
            raise SsmError("%s: version and label selectors need SSM: %s" % (self.where, ", ".join(selected)))
        missing = sorted(set(n for n in names if n not in self.values))
        if missing:
            raise SsmError("parameter(s) not found in %s: %s" % (self.where, ", ".join(missing)))
        return [{"Name": n, "Value": self.values[n]} for n in names]


def match_results(wanted, results):
    """{name as asked: parameter} for GetParameters results.

    First by Name (or ARN) + Selector, as AWS answers. A result without a Selector field that no
    plain name claims answers a selected name of that parameter: the lab's moto drops the field.
    Among several such names the one whose selector is the result's Version wins, then the first
    asked (moto answers in the order asked; two selectors of one parameter collide on the key anyway)."""
    by_key = {}
    for name in wanted:
        base, selector = split_selector(name)
        by_key.setdefault((base, selector), name)
    matched, loose = {}, []
    for param in results:
        selector = str(param.get("Selector") or "").lstrip(":")
        name = None
        for ident in (param.get("Name"), param.get("ARN")):
            candidate = by_key.get((ident, selector))
            if candidate is not None and candidate not in matched:
                name = candidate
                break
        if name is not None:
            matched[name] = param
        elif not param.get("Selector"):
            loose.append(param)
    for param in loose:
        idents = (param.get("Name"), param.get("ARN"))
        candidates = [n for (base, selector), n in by_key.items()
                      if selector and base in idents and n not in matched]
        exact = [n for n in candidates if split_selector(n)[1] == str(param.get("Version"))]
        if exact or candidates:
            matched[(exact or candidates)[0]] = param
    return matched


def _snake(api):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", api).lower()


# ------------------------------------------------------------------------ sources

def collect(client, paths=(), names=(), recursive=True, decrypt=True, key_mode="basename",
            allow_empty=False, named=None):
    """Read every source and merge: paths in order (later wins, key by key), then names, then named
    ({KEY: parameter name}: an explicit key, for wiring one service's secret into another's env).

    Returns (values, parameter_count) where values is {key: value}.
    """
    values = {}
    count = 0
    for path in paths:
        if not path.startswith("/"):
            raise SsmError("path %r must start with '/'" % path)
        params = client.get_by_path(path, recursive=recursive, decrypt=decrypt)
        if not params and not allow_empty:
            # Named with the region: a wrong region is the usual reason a path that exists looks empty.
            where = getattr(client, "where", None) or "region %s" % (getattr(client, "region", None) or "(unknown)")
            raise SsmError("path %s holds no parameters in %s (GetParametersByPath, recursive=%s); set allow_empty "
                           "to accept that" % (path, where, recursive))
        count += len(params)
        for key, (_name, value) in map_parameters(params, base=path, key_mode=key_mode).items():
            values[key] = value
    if names:
        params = client.get_by_names(list(names), decrypt=decrypt)
        count += len(params)
        # Explicit names have no base path: their key is always the last segment.
        for key, (_name, value) in map_parameters(params, key_mode="basename").items():
            values[key] = value
    if named:
        for key, name in named.items():
            validate_key(key, "named")
            if not str(name).startswith("/"):
                raise SsmError("named: %s: parameter name %r must start with '/'" % (key, name))
        params = client.get_by_names(list(named.values()), decrypt=decrypt)
        count += len(params)
        by_name = dict((p["Name"], p.get("Value", "")) for p in params)
        for key, name in named.items():
            values[key] = by_name[name]
    return values, count


def run_module(module, run, what):
    """The end of each SSM module's main(): the source (the parameters option, else SSM with the AWS options of
    AWS_ARGUMENT_SPEC), then run(module, client) and exit with its result; errors become messages naming the file,
    never a value. With the parameters option nothing reaches for AWS, and boto3 is not needed."""
    p = module.params
    local = p["parameters"] is not None
    if not local and not HAS_BOTO3:
        module.fail_json(msg=missing_required_lib("boto3 and botocore"))
    try:
        client = ControllerParameters(p["parameters"]) if local else SsmClient.connect(
            region=p["region"], profile=p["profile"], endpoint_url=p["endpoint_url"], max_attempts=p["max_attempts"])
        module.exit_json(**run(module, client))
    except (SsmError, EnvFileError, StateError) as e:
        module.fail_json(msg="%s: %s" % (p["path"], e))
    except OSError as e:
        module.fail_json(msg="%s: cannot write the %s: %s" % (p["path"], what, e.strerror or e))
