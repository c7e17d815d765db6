"""The AWS console sign-in (federation) endpoint and GetFederationToken.

The sign-in token this produces is a secret: whoever holds the URL for its
15 minutes of validity gets a console session. Nothing here logs it or puts it
in an error message (urllib's errors do not carry the request URL).
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from broker import config
from broker.aws import sts
from broker.aws.credentials import Credentials
from broker.errors import AWSError, NetworkError, UsageError

ENDPOINT_VARIABLE = "BROKER_FEDERATION_ENDPOINT"
ISSUER = "broker"
TIMEOUT = 30.0

#: GetFederationToken: allow everything the user may do (the session gets the
#: intersection of this and the user's own policies; without a policy it gets nothing).
ALLOW_ALL_POLICY = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
)
FEDERATION_TOKEN_LIMITS = (900, 129_600)


@dataclass(frozen=True)
class Partition:
    """An AWS partition's console URLs: ``name`` (``aws``, ``aws-cn``, ``aws-us-gov``), its
    federation endpoint and its console home, as the AWS docs page "Enable custom identity
    broker access to the AWS console" gives them per partition.
    """
    name: str
    signin: str  # the federation endpoint
    console: str  # the console's home


PARTITIONS = {
    "aws": Partition(
        "aws", "https://signin.aws.amazon.com/federation", "https://console.aws.amazon.com"
    ),
    "aws-cn": Partition(
        "aws-cn", "https://signin.amazonaws.cn/federation", "https://console.amazonaws.cn"
    ),
    "aws-us-gov": Partition(
        "aws-us-gov",
        "https://signin.amazonaws-us-gov.com/federation",
        "https://console.amazonaws-us-gov.com",
    ),
}


def partition_for(arn: str | None, region: str | None) -> Partition:
    """The partition named in ``arn`` (``arn:aws-cn:...``), else the region's."""
    if arn and arn.startswith("arn:"):
        name = arn.split(":")[1]
        if name in PARTITIONS:
            return PARTITIONS[name]
    if region:
        if region.startswith("cn-"):
            return PARTITIONS["aws-cn"]
        if region.startswith("us-gov-"):
            return PARTITIONS["aws-us-gov"]
    return PARTITIONS["aws"]


def destination(partition: Partition, region: str | None, path: str | None) -> str:
    """Where the console opens: its home, or ``path`` (``s3/home``, or a full console URL)."""
    if path and path.startswith("https://"):
        return path
    target = f"{partition.console}/{(path or 'console/home').lstrip('/')}"
    if region:
        target += ("&" if "?" in target else "?") + urllib.parse.urlencode({"region": region})
    return target


def endpoint(partition: Partition) -> str:
    """``$BROKER_FEDERATION_ENDPOINT`` (tests, proxies), else the partition's endpoint."""
    return config.environment(ENDPOINT_VARIABLE) or partition.signin


def federation_token(
    master: Credentials, region: str | None, name: str, duration: int
) -> Credentials:
    """sts:GetFederationToken with the long-lived key (it refuses session credentials)."""
    low, high = FEDERATION_TOKEN_LIMITS
    if not low <= duration <= high:
        raise UsageError(
            f"--duration {duration}s is outside what AWS allows for GetFederationToken "
            "(15 min to 36 h)",
            f"choose a value between {low} and {high} seconds",
        )
    safe = re.sub(r"[^\w+=,.@-]", "-", name)[:32].ljust(2, "-")
    try:
        response = sts.client("sts", master, region).get_federation_token(
            Name=safe, Policy=ALLOW_ALL_POLICY, DurationSeconds=duration
        )
    except Exception as exc:
        raise sts.translate(exc, "GetFederationToken", master) from None
    c = response["Credentials"]
    return Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], c["Expiration"])


def signin_token(url: str, creds: Credentials, timeout: float = TIMEOUT) -> str:
    """Exchange session credentials for a sign-in token (``Action=getSigninToken``)."""
    if not creds.session_token:
        raise UsageError(
            "the console needs temporary credentials, not the long-lived key",
            "drop --no-session",
        )
    session = json.dumps(
        {
            "sessionId": creds.access_key_id,
            "sessionKey": creds.secret_access_key,
            "sessionToken": creds.session_token,
        }
    )
    query = urllib.parse.urlencode({"Action": "getSigninToken", "Session": session})
    _check_scheme(url)
    request = urllib.request.Request(f"{url}?{query}", method="GET")  # noqa: S310 - checked
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(65536)
    except urllib.error.HTTPError as exc:
        raise AWSError(
            f"the sign-in endpoint refused the session (HTTP {exc.code})",
            "the role session may have expired: run `broker clear PROFILE` and try again",
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NetworkError(
            f"cannot reach the sign-in endpoint {url} ({reason})",
            f"check the network, or {ENDPOINT_VARIABLE}",
        ) from None
    try:
        token = json.loads(body)["SigninToken"]
    except (ValueError, KeyError, TypeError):
        raise AWSError(
            "the sign-in endpoint answered without a SigninToken", f"check {ENDPOINT_VARIABLE}"
        ) from None
    if not isinstance(token, str) or not token:
        raise AWSError("the sign-in endpoint returned an empty SigninToken", "try again")
    return token


def login_url(url: str, token: str, target: str, issuer: str = ISSUER) -> str:
    """The URL that signs the browser in and opens ``target``."""
    query = urllib.parse.urlencode(
        {"Action": "login", "Issuer": issuer, "Destination": target, "SigninToken": token}
    )
    return f"{url}?{query}"


def _check_scheme(url: str) -> None:
    parsed = urllib.parse.urlsplit(url)
    local = parsed.hostname in ("127.0.0.1", "localhost", "::1")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and local):
        raise UsageError(
            f"the federation endpoint {url!r} must be https (http only on 127.0.0.1)",
            f"fix {ENDPOINT_VARIABLE}",
        )
