# -*- coding: utf-8 -*-
# Copyright: llmstack.deploy contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SSM Parameter Store access: one client, one retry policy, one name -> key mapping.

Kept free of AnsibleModule so it is unit-tested directly. Errors are raised as
SsmError, whose message names the API call and the path or name that failed and
never contains a parameter value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import re
import time

from ansible_collections.llmstack.deploy.plugins.module_utils.envfile import is_valid_key

try:
    import botocore.config
    import botocore.exceptions
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

KEY_MODES = ("basename", "relative")
_INVALID_CHARS_RE = re.compile(r"[^A-Za-z0-9_]")


class SsmError(Exception):
    """A failure that is safe to show: it names calls, paths and keys, never values."""


# --------------------------------------------------------------------------- keys

def parameter_key(name, base=None, key_mode="basename"):
    """Map a parameter name to an env key.

    basename: /app/production/db_host -> DB_HOST (what the operators' playbooks did).
    relative: /app/prod/db/host relative to /app/prod -> DB_HOST.
    Characters that are not valid in an env name become '_'.
    """
    if key_mode not in KEY_MODES:
        raise SsmError("key_mode must be one of %s, got %r" % (", ".join(KEY_MODES), key_mode))
    stripped = name.strip("/")
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


class SsmClient:
    """GetParametersByPath / GetParameters with retries that cover every page."""

    API_PERMISSIONS = {
        "GetParametersByPath": "ssm:GetParametersByPath",
        "GetParameters": "ssm:GetParameters",
    }

    def __init__(self, client, max_attempts=8, sleep=time.sleep, rand=random.random):
        self.client = client
        self.max_attempts = max(1, int(max_attempts))
        self.sleep = sleep
        self.rand = rand
        self.calls = 0  # API calls made, retries included (the benchmark reads it)

    @classmethod
    def connect(cls, region=None, profile=None, endpoint_url=None, max_attempts=8):
        if not HAS_BOTO3:
            raise SsmError("boto3 and botocore are required on the host that runs this module")
        # botocore retries each HTTP call itself (adaptive mode rate-limits the
        # client); our own loop in _call() adds longer backoff around each page.
        config = botocore.config.Config(
            retries={"max_attempts": 3, "mode": "adaptive"},
            user_agent_extra="llmstack.deploy",
        )
        try:
            # Credentials: boto3's own chain (instance profile, web identity, env, profile).
            session = boto3.session.Session(profile_name=profile or None, region_name=region or None)
            client = session.client("ssm", endpoint_url=endpoint_url or None, config=config)
        except botocore.exceptions.ProfileNotFound as e:
            raise SsmError("AWS profile not found: %s" % e)
        except botocore.exceptions.NoRegionError:
            raise SsmError("no AWS region: set the region option, AWS_REGION, or the profile's region")
        return cls(client, max_attempts=max_attempts)

    def _call(self, api, target, **kwargs):
        delays = backoff_delays(self.max_attempts, rand=self.rand)
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            try:
                return getattr(self.client, _snake(api))(**kwargs)
            except botocore.exceptions.ClientError as e:
                retriable = is_throttling(e) or _error_code(e) in TRANSIENT_CODES
                if retriable and attempt <= len(delays):
                    self.sleep(delays[attempt - 1])
                    continue
                raise self._explain(api, target, e, attempt)
            except botocore.exceptions.NoCredentialsError:
                raise SsmError("%s on %s: no AWS credentials found (instance profile, environment, "
                               "profile or OIDC web identity)" % (api, target))
            except botocore.exceptions.EndpointConnectionError as e:
                raise SsmError("%s on %s: cannot reach the SSM endpoint: %s" % (api, target, e))

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
        params = []
        kwargs = dict(Path=path, Recursive=recursive, WithDecryption=decrypt, MaxResults=PAGE_SIZE)
        while True:
            page = self._call("GetParametersByPath", "path %s" % path, **kwargs)
            params.extend(page.get("Parameters", []))
            token = page.get("NextToken")
            if not token:
                return params
            kwargs["NextToken"] = token

    def get_by_names(self, names, decrypt=True):
        """Parameters by explicit name, in batches of 10. Unknown names come back in
        InvalidParameters rather than as an error: collect them and fail once."""
        found, missing = [], []
        for i in range(0, len(names), NAMES_BATCH):
            batch = list(names[i:i + NAMES_BATCH])
            page = self._call("GetParameters", "names %s" % ", ".join(batch), Names=batch, WithDecryption=decrypt)
            found.extend(page.get("Parameters", []))
            missing.extend(page.get("InvalidParameters", []))
        if missing:
            raise SsmError("GetParameters: parameter(s) not found: %s" % ", ".join(sorted(missing)))
        by_name = dict((p["Name"], p) for p in found)
        # Keep the caller's order so a collision error is reported predictably.
        return [by_name[n] for n in names if n in by_name]


def _snake(api):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", api).lower()


# ------------------------------------------------------------------------ sources

def collect(client, paths=(), names=(), recursive=True, decrypt=True, key_mode="basename",
            allow_empty=False):
    """Read every source and merge: paths in order (later wins, key by key), then names.

    Returns (values, parameter_count) where values is {key: value}.
    """
    values = {}
    count = 0
    for path in paths:
        if not path.startswith("/"):
            raise SsmError("path %r must start with '/'" % path)
        params = client.get_by_path(path, recursive=recursive, decrypt=decrypt)
        if not params and not allow_empty:
            raise SsmError("path %s holds no parameters (GetParametersByPath, recursive=%s); "
                           "set allow_empty to accept that" % (path, recursive))
        count += len(params)
        for key, (_name, value) in map_parameters(params, base=path, key_mode=key_mode).items():
            values[key] = value
    if names:
        params = client.get_by_names(list(names), decrypt=decrypt)
        count += len(params)
        # Explicit names have no base path: their key is always the last segment.
        for key, (_name, value) in map_parameters(params, key_mode="basename").items():
            values[key] = value
    return values, count
