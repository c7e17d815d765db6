"""AWS's refusals (botocore exceptions) as broker errors that keep AWS's own words.

Each message reads ``ACTION: <what broker makes of it> [AWS <Code>: <AWS's message>]``:
AWS's code and the first line of its message always survive, cut to a readable length.
The hint is the next step for that cause, and adding the key again (``broker add``) is
suggested only when the key itself is the cause (:class:`~broker.errors.KeyRejected`).
No secret is ever shown: known secret values are cut out, access key ids appear only as
aws-vault's ``FormatKeyForDisplay`` shows them (``****************ABCD``), and runs that
look like secrets or tokens are masked.

Where AWS's codes and words come from:

- STS common errors (InvalidClientTokenId, RequestExpired, ThrottlingException, ...):
  https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html
- AssumeRole and GetSessionToken errors and their DurationSeconds limits:
  https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html,
  https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html; role
  chaining (at most 1 h) and MaxSessionDuration (1 to 12 h):
  https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use.html
- SigV4 time stamps: "Signature expired: <date> is now earlier than <date>", "Signature
  not yet current: <date> is still later than <date>" (STS adds "(<now> - 15 min.)"):
  https://docs.aws.amazon.com/IAM/latest/UserGuide/signature-v4-troubleshooting.html
- STS switched off in a region (RegionDisabledException):
  https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_enable-regions.html
- Retries (retry_mode, max_attempts, AWS_RETRY_MODE, AWS_MAX_ATTEMPTS):
  https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
- Peers' reports quoting AWS exactly: 99designs/aws-vault#1049 (Signature expired on
  WSL), #676 ("MultiFactorAuthentication failed, unable to validate MFA code"), #263
  ("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by
  role chaining"); aws/aws-cli#6676 and #6325 (clock skew, refused MFA codes);
  kreuzwerker/awsu#27 ("exceeds the MaxSessionDuration set for this role").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from broker.aws.credentials import Credentials, utcnow
from broker.errors import (
    AuthenticationError,
    AWSError,
    BrokerError,
    ClockSkewError,
    ConfigError,
    KeyRejected,
    MFACodeRefused,
    NetworkError,
    Throttled,
    UsageError,
)

#: How much of AWS's message a one-line error keeps.
MESSAGE_LIMIT = 200
#: AWS's own allowance for a request's time stamp (SigV4).
ALLOWED_SKEW = "15 min"

CLOCK_CODES = frozenset({"RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture"})
SIGNATURE_CODES = frozenset({"SignatureDoesNotMatch", "InvalidSignatureException"})
UNKNOWN_KEY_CODES = frozenset(
    {"InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId"}
)
ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException"})
EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException"})
#: The throttling codes of botocore's retry handler (retries/standard.py), less the quota
#: ones (IAM's LimitExceeded means "too many", not "too fast").
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "SlowDown",
    "PriorRequestNotComplete", "EC2ThrottledException", "BandwidthLimitExceeded",
})
REGION_DISABLED_CODES = frozenset({"RegionDisabledException", "RegionDisabled"})
SERVER_CODES = frozenset(
    {"InternalFailure", "InternalError", "ServiceUnavailable", "ServiceFailure"}
)

CLOCK_HINT = (
    "sync it, then see `broker doctor`: on WSL2 run `sudo hwclock -s` or, from Windows, "
    "`wsl --shutdown`; elsewhere `sudo timedatectl set-ntp true`"
)
RETRY_HINT = (
    "wait a minute and run again; botocore already retried, and retries more with "
    "AWS_MAX_ATTEMPTS and AWS_RETRY_MODE=adaptive, or max_attempts and retry_mode in ~/.aws/config"
)
ENDPOINT_HINT = (
    "check the network, the profile's region, and endpoint_url / AWS_ENDPOINT_URL / "
    "AWS_ENDPOINT_URL_STS if set; behind a proxy set HTTPS_PROXY"
)

_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b")
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9/+=]{40,}")
_URL_USERINFO = re.compile(r"(://)[^/@\s]+@")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")
_DENIED = re.compile(
    r"User: (?P<principal>\S+) is not authorized to perform: (?P<operation>\S+)"
    r"(?: on resource: (?P<resource>\S+))?"
)
_STAMP = r"(\d{8}T\d{6}Z)"
_EXPIRED = re.compile(
    rf"Signature expired: {_STAMP} is now earlier than {_STAMP}(?: \({_STAMP} - (\d+) min\.\))?"
)
_NOT_YET = re.compile(
    rf"Signature not yet current: {_STAMP} is still later than {_STAMP}"
    rf"(?: \({_STAMP} \+ (\d+) min\.\))?"
)
_WINDOW = re.compile(r"\d{8}T\d{6}Z [-+] (\d+) min\.\)")
#: botocore's ParamValidationError names each parameter; its values stay out of messages.
_PARAMETER = re.compile(r"parameter (?:in input: \"|in \S+: \")?([A-Za-z][\w.\[\]]*)")
#: Request parameters broker takes from ~/.aws/config, and the setting each comes from.
_CONFIG_PARAMETERS = {
    "RoleArn": "role_arn",
    "SerialNumber": "mfa_serial",
    "ExternalId": "external_id",
    "RoleSessionName": "role_session_name",
}


def mask_key_id(key_id: str) -> str:
    """An access key id as aws-vault's FormatKeyForDisplay shows it: its last 4 characters."""
    return "*" * 16 + (key_id[-4:] if len(key_id) > 4 else "")


@dataclass(frozen=True)
class ClockSkew:
    """This machine's clock minus AWS's, in seconds (negative: behind); ``exact`` is false
    when only a lower bound of its size is known."""

    seconds: float
    exact: bool = True

    def describe(self) -> str:
        """The skew as a clause for a message: "the clock here is [at least ]2 h 10 min ahead of
        AWS's" (or "behind AWS's"), the size by :func:`describe_duration`.
        """
        where = "behind" if self.seconds < 0 else "ahead of"
        size = describe_duration(abs(self.seconds))
        return f"the clock here is {'' if self.exact else 'at least '}{size} {where} AWS's"


def describe_duration(seconds: float) -> str:
    """``7800`` -> ``2 h 10 min``; ``314`` -> ``5 min 14 s``."""
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def skew_from_message(message: str) -> ClockSkew | None:
    """The skew a SigV4 time-stamp refusal shows: the request's time (this machine's clock
    when it signed) against AWS's time, both in the message."""
    for pattern in (_EXPIRED, _NOT_YET):
        match = pattern.search(message)
        if not match:
            continue
        signed, limit, server, _window = match.groups()
        if server:
            return ClockSkew((_stamp(signed) - _stamp(server)).total_seconds())
        # Only the limit (AWS's time -/+ its allowance): the skew is at least this big.
        return ClockSkew((_stamp(signed) - _stamp(limit)).total_seconds(), exact=False)
    return None


def _stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def _moment(text: object) -> datetime | None:
    """A time in any of the forms AWS error fields and headers use."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = text.strip()
    try:
        return _stamp(text)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None


def _skew_from_response(
    response: Mapping[str, Any], now: Callable[[], datetime]
) -> ClockSkew | None:
    """The skew from S3-style RequestTime/ServerTime fields, else from the answer's Date
    header against the clock here (good to a second or two)."""
    error = response.get("Error") or {}
    requested, served = _moment(error.get("RequestTime")), _moment(error.get("ServerTime"))
    if requested and served:
        return ClockSkew((requested - served).total_seconds())
    headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    served = _moment(headers.get("date"))
    if served is None:
        return None
    return ClockSkew((now() - served).total_seconds())


class _Scrubber:
    """Cuts secrets out of text that may quote a request: the known secret values, any
    access key id (shown masked), long token-like runs and credentials inside URLs."""

    def __init__(self, credentials: Credentials | None) -> None:
        self.secrets: list[str] = []
        self.key_ids: list[str] = []
        if credentials is not None:
            self.secrets = [
                s for s in (credentials.secret_access_key, credentials.session_token)
                if s and len(s) >= 4
            ]
            if credentials.access_key_id:
                self.key_ids = [credentials.access_key_id]

    def __call__(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        for key_id in self.key_ids:
            text = text.replace(key_id, mask_key_id(key_id))
        text = _KEY_ID.sub(lambda m: mask_key_id(m.group()), text)
        text = _TOKEN_LIKE.sub(lambda m: "***" if _looks_secret(m.group()) else m.group(), text)
        return _URL_USERINFO.sub(r"\1***@", text)


def _looks_secret(run: str) -> bool:
    return any(c.isdigit() for c in run) and any(c.islower() for c in run) and any(
        c.isupper() for c in run
    )


def _first_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    line = _LINE_BREAK.split(text.strip(), maxsplit=1)[0] if text.strip() else ""
    line = _CONTROL.sub(" ", line).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass(frozen=True)
class _Refusal:
    """One ClientError, read once: what every branch below needs."""

    action: str
    code: str
    message: str  # AWS's full message, unscrubbed: for matching only, never shown
    said: str  # AWS's words as shown: scrubbed, first line, capped
    status: int
    retries: int
    temporary: bool  # signed with temporary credentials (a cached session)
    key: str  # "the stored key ****************ABCD", or "the stored key"

    @property
    def words(self) -> str:
        """AWS's code and message, as every message ends."""
        code = self.code or f"HTTP {self.status}"
        return f"[AWS {code}: {self.said}]" if self.said else f"[AWS {code}]"

    def line(self, summary: str) -> str:
        return f"{self.action}: {summary} {self.words}"

    @property
    def role_arn(self) -> str | None:
        match = _ROLE_ARN.search(self.action) or _ROLE_ARN.search(self.said)
        return match.group() if match else None


def translate(
    exc: Exception,
    action: str,
    *,
    credentials: Credentials | None = None,
    now: Callable[[], datetime] = utcnow,
) -> Exception:
    """The broker error for ``exc``, raised by botocore while doing ``action``.

    ``action`` names the call and its subject (``"AssumeRole arn:aws:iam::...:role/dev"``).
    ``credentials`` are those that signed the request, when known: their key id is then
    shown masked, their secrets are cut from anything quoted, and a refusal of temporary
    credentials (a cached session) points at ``broker clear`` instead of at the stored key.
    ``now`` is the clock here, to size a skew from the answer's Date header. Anything that
    is not a botocore exception is returned unchanged.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, BrokerError):
        return exc
    scrub = _Scrubber(credentials)
    action = scrub(action)
    if isinstance(exc, ClientError):
        return _client_error(exc.response or {}, action, credentials, scrub, now)
    if isinstance(exc, BotoCoreError):
        return _botocore_error(exc, action, scrub)
    return exc


def _client_error(
    response: Mapping[str, Any],
    action: str,
    credentials: Credentials | None,
    scrub: _Scrubber,
    now: Callable[[], datetime],
) -> BrokerError:
    error = response.get("Error") or {}
    meta = response.get("ResponseMetadata") or {}
    message = str(error.get("Message") or "")
    temporary = bool(credentials is not None and credentials.session_token)
    key = "the stored key"
    if credentials is not None and not temporary and credentials.access_key_id:
        key = f"the stored key {mask_key_id(credentials.access_key_id)}"
    refusal = _Refusal(
        action=action,
        code=str(error.get("Code") or ""),
        message=message,
        said=_first_line(scrub(message)),
        status=int(meta.get("HTTPStatusCode") or 0),
        retries=int(meta.get("RetryAttempts") or 0),
        temporary=temporary,
        key=key,
    )
    code, low = refusal.code, message.lower()
    if code in CLOCK_CODES or (code in SIGNATURE_CODES and _is_about_time(message)):
        return _clock(refusal, response, now)
    if code in UNKNOWN_KEY_CODES:
        return _unknown_key(refusal)
    if code in SIGNATURE_CODES:
        return _wrong_secret(refusal)
    if code == "InvalidAuthenticationCode" or (
        code in ACCESS_DENIED_CODES and "multifactorauthentication" in low
    ):
        return _mfa_refused(refusal)
    if code in ACCESS_DENIED_CODES:
        return _access_denied(refusal)
    if code in EXPIRED_CODES:
        return AuthenticationError(
            refusal.line("the session these credentials come from has expired"),
            "run `broker clear PROFILE` and try again; if it happens again within minutes, "
            "the clock here may be behind: see `broker doctor`",
        )
    if code in THROTTLING_CODES:
        after = f" after {refusal.retries} retries" if refusal.retries else ""
        return Throttled(refusal.line(f"AWS is throttling these calls{after}"), RETRY_HINT)
    if code.startswith("Validation") and "durationseconds" in low:
        return _duration(refusal)
    if code in REGION_DISABLED_CODES:
        return AWSError(
            refusal.line("STS is not activated in this region for the account"),
            "activate it in the IAM console (Account settings > Security Token Service "
            "endpoints) of the account that owns the role or user, or set another `region` "
            "for the profile (AWS_REGION)",
        )
    if code in SERVER_CODES or refusal.status >= 500:
        return AWSError(
            refusal.line("AWS failed to answer"),
            "a failure on AWS's side: try again in a minute (https://health.aws.amazon.com)",
        )
    return AWSError(
        refusal.line("AWS refused the request"),
        "AWS's message says why; `broker doctor` checks the set-up, --debug shows more",
    )


def _is_about_time(message: str) -> bool:
    return message.startswith(("Signature expired", "Signature not yet current"))


def _clock(
    refusal: _Refusal, response: Mapping[str, Any], now: Callable[[], datetime]
) -> ClockSkewError:
    skew = skew_from_message(refusal.message) or _skew_from_response(response, now)
    window = _WINDOW.search(refusal.message)
    allowed = f"{window.group(1)} min" if window else ALLOWED_SKEW
    if skew is None:
        summary = f"the clock here is more than {allowed} off AWS's"
    elif skew.exact and abs(skew.seconds) < 60:
        # AWS says the time stamp was off, yet the clocks agree now: the clock was just
        # corrected, or the request sat somewhere (a proxy) for a long time.
        return ClockSkewError(
            refusal.line(f"AWS found the request's time off, yet {skew.describe()}"),
            "try again; if it happens again, see `broker doctor`",
            skew.seconds,
        )
    else:
        summary = f"{skew.describe()}, more than the {allowed} AWS allows"
    return ClockSkewError(
        refusal.line(summary), CLOCK_HINT, None if skew is None else skew.seconds
    )


def _unknown_key(refusal: _Refusal) -> AuthenticationError:
    if refusal.temporary:
        return AuthenticationError(
            refusal.line("AWS does not accept the cached session's token"),
            "run `broker clear PROFILE` and try again (a session can be revoked, and one from "
            "the global STS endpoint is refused in opt-in regions)",
        )
    return KeyRejected(
        refusal.line(f"AWS does not accept {refusal.key}: it is unknown or inactive, deleted "
                     "or deactivated in IAM"),
        "check the user's access keys in IAM (`aws iam list-access-keys`), then add an active "
        "key with `broker add PROFILE`",
    )


def _wrong_secret(refusal: _Refusal) -> AuthenticationError:
    if refusal.temporary:
        return AuthenticationError(
            refusal.line("the cached session's secret does not match its key id"),
            "run `broker clear PROFILE` and try again",
        )
    return KeyRejected(
        refusal.line(f"the secret of {refusal.key} does not match its key id"),
        "add the key again with `broker add PROFILE`, pasting both parts of the same key "
        "(no spaces or missing characters)",
    )


def _mfa_refused(refusal: _Refusal) -> AuthenticationError:
    low = refusal.message.lower()
    device = (
        "check that mfa_serial is the ARN of the device assigned to this IAM user "
        "(arn:aws:iam::ACCOUNT:mfa/NAME, see `aws iam list-mfa-devices`)"
    )
    if "must provide both" in low:
        return AuthenticationError(
            refusal.line("AWS got an MFA serial or code without the other"),
            f"{device}, and that a code source is set for the profile",
        )
    if "unable to validate" in low:
        return AuthenticationError(
            refusal.line("AWS could not check the MFA code against the MFA serial"),
            f"{device}; if it is, wait for the next code and try again",
        )
    return MFACodeRefused(
        refusal.line("AWS refused the MFA code"),
        "wait for the next code and try again (AWS takes each code once); codes made from "
        f"a stored seed need the clock here right (`broker doctor`); {device}",
    )


def _access_denied(refusal: _Refusal) -> BrokerError:
    low = refusal.message.lower()
    if "with session credentials" in low:  # "Cannot call GetSessionToken with session credentials"
        return KeyRejected(
            refusal.line(f"{refusal.key} is a temporary (session) key, not an IAM user's key"),
            "add an IAM user's long-lived access key (AKIA...) with `broker add PROFILE`",
        )
    if "root account" in low:  # "Roles may not be assumed by root accounts."
        return KeyRejected(
            refusal.line(f"{refusal.key} belongs to the account's root user"),
            "AWS lets no root user assume roles: add an IAM user's key with `broker add PROFILE`",
        )
    match = _DENIED.search(refusal.message)
    who = match.group("principal") if match else "this user"
    explicit = (
        "; an explicit Deny (a policy, permissions boundary or SCP) blocks it"
        if "explicit deny" in low else ""
    )
    role = refusal.role_arn
    if refusal.action.startswith("AssumeRole") and role:
        named = "the role" if role in refusal.action else role
        return AWSError(
            refusal.line(f"AWS refused {who} {named}"),
            f"check that the trust policy of {named} allows {who}, with MFA if it requires "
            f"aws:MultiFactorAuthPresent (then the profile needs mfa_serial), and that {who}'s "
            f"own policies allow sts:AssumeRole on it{explicit}",
        )
    operation = match.group("operation") if match else refusal.action.split(" ", 1)[0]
    resource = match.group("resource") if match and match.group("resource") else None
    on = f" on {resource}" if resource else ""
    return AWSError(
        refusal.line(f"AWS denied {who} {operation}{on}"),
        f"an administrator must allow {operation}{on} in {who}'s IAM policies{explicit}",
    )


def _duration(refusal: _Refusal) -> UsageError:
    low = refusal.message.lower()
    role = refusal.role_arn
    named = "the role" if role is None or role in refusal.action else role
    if "role chaining" in low:
        return UsageError(
            refusal.line("AWS allows at most 1 h for a role assumed with temporary credentials"),
            "ask for 1 h or less (--duration 1h, or duration_seconds = 3600 in the profile), "
            "or pass --no-session so that the first role is assumed straight from the stored "
            "key (with the MFA code) and may last up to its MaxSessionDuration",
        )
    if "maxsessionduration" in low:
        name = role.rsplit("/", 1)[-1] if role else "NAME"
        return UsageError(
            refusal.line(f"the duration asked for is longer than the MaxSessionDuration of "
                         f"{named}, which is 1 h unless raised, at most 12 h"),
            "ask for less (--duration, or duration_seconds in the profile), or raise the role's "
            f"maximum in IAM: `aws iam update-role --role-name {name} "
            "--max-session-duration 43200`",
        )
    return UsageError(
        refusal.line("AWS refused the duration"),
        "AssumeRole takes 15 min to the role's MaxSessionDuration (at most 12 h), "
        "GetSessionToken 15 min to 36 h: choose a --duration or duration_seconds in range",
    )


def _botocore_error(exc: Exception, action: str, scrub: _Scrubber) -> BrokerError:
    from botocore import exceptions as bce

    kwargs: dict[str, Any] = getattr(exc, "kwargs", {}) or {}
    url = scrub(str(kwargs.get("endpoint_url") or "the AWS endpoint"))
    detail = _first_line(scrub(str(exc)))
    if isinstance(exc, bce.SSLError):
        return NetworkError(
            f"{action}: TLS certificate verification failed for {url} "
            f"[{_first_line(scrub(str(kwargs.get('error') or exc)))}]",
            "if a proxy or TLS inspection sits in between, point ca_bundle in the profile (or "
            "AWS_CA_BUNDLE) at its CA certificate; check endpoint_url / AWS_ENDPOINT_URL_STS "
            "if set",
        )
    if isinstance(exc, bce.ProxyConnectionError):
        proxy = scrub(str(kwargs.get("proxy_url") or "the proxy"))
        return NetworkError(
            f"{action}: cannot reach the proxy {proxy} [{detail}]",
            "check HTTPS_PROXY / HTTP_PROXY and NO_PROXY",
        )
    if isinstance(exc, bce.ConnectTimeoutError):
        return NetworkError(f"{action}: timed out connecting to {url}", ENDPOINT_HINT)
    if isinstance(exc, bce.ReadTimeoutError):
        return NetworkError(
            f"{action}: {url} did not answer in time", "try again; if it persists, " + ENDPOINT_HINT
        )
    if isinstance(exc, bce.EndpointConnectionError):
        return NetworkError(f"{action}: cannot reach {url}", ENDPOINT_HINT)
    if isinstance(exc, bce.ConnectionClosedError):
        return NetworkError(f"{action}: {url} closed the connection", "try again")
    if isinstance(exc, (bce.ConnectionError, bce.HTTPClientError)):
        return NetworkError(f"{action}: {detail}", ENDPOINT_HINT)
    if isinstance(exc, bce.NoRegionError):
        return ConfigError(
            f"{action}: no region is set [{detail}]",
            "set `region` in the profile, or AWS_REGION",
        )
    if isinstance(exc, bce.InvalidRegionError):
        return ConfigError(
            f"{action}: {scrub(str(kwargs.get('region_name')))!r} is not a region name",
            "fix `region` in the profile (or AWS_REGION / AWS_DEFAULT_REGION), e.g. us-east-1",
        )
    if isinstance(exc, bce.BaseEndpointResolverError):
        return ConfigError(
            f"{action}: botocore finds no endpoint [{detail}]",
            "check the profile's region, use_fips_endpoint and use_dualstack_endpoint",
        )
    if isinstance(exc, bce.InvalidRetryConfigurationError):
        return ConfigError(
            f"{action}: {detail}",
            "retry_mode takes legacy, standard or adaptive and max_attempts a whole number "
            "(also AWS_RETRY_MODE, AWS_MAX_ATTEMPTS)",
        )
    if isinstance(exc, bce.InvalidSTSRegionalEndpointsConfigError):
        return ConfigError(f"{action}: {detail}", "sts_regional_endpoints takes legacy or regional")
    if isinstance(exc, bce.ConfigParseError):
        return ConfigError(
            f"{action}: {detail}",
            "fix the file; one saved as \"UTF-8 with BOM\" (Windows Notepad) must be saved as "
            "plain UTF-8",
        )
    if isinstance(exc, bce.ParamValidationError):
        return _bad_parameters(str(kwargs.get("report") or exc), action)
    return AWSError(
        f"{action}: {type(exc).__name__}: {detail}", "run again with --debug for details"
    )


def _bad_parameters(report: str, action: str) -> BrokerError:
    """botocore refused the request's parameters before sending it. Its report quotes the
    values (an MFA code, an external id): only the parameters' names are shown."""
    names = list(dict.fromkeys(_PARAMETER.findall(report)))
    listed = ", ".join(names) or "some parameters"
    settings = [f"{_CONFIG_PARAMETERS[n]} ({n})" for n in names if n in _CONFIG_PARAMETERS]
    if settings:
        return ConfigError(
            f"{action}: botocore refused {listed} before sending the request",
            f"check {', '.join(settings)} in the profile",
        )
    return UsageError(
        f"{action}: botocore refused {listed} before sending the request",
        "check the values given (an MFA code is 6 digits; a duration 900 seconds or more)",
    )
