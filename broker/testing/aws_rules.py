"""AWS STS rules that moto does not enforce, as pure functions for :mod:`broker.testing.local_sts`.

Each check raises :class:`Refusal` carrying the status, code and message AWS answers with;
each names the AWS page it follows. Times are POSIX seconds on the *server's* clock
(:meth:`Rules.now`), which a test may move away from the real one.
"""

from __future__ import annotations

import base64
import calendar
import fnmatch
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SIGNATURE_WINDOW = 15 * 60
ROLE_CHAINING_MAX = 3600
DEFAULT_MAX_SESSION = 3600
INVALID_CODE = "MultiFactorAuthentication failed with invalid MFA one time pass code. "
UNKNOWN_DEVICE = (
    "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your MFA "
    "serial number is valid and associated with this user."
)
BOTH_NEEDED = (
    "MultiFactorAuthentication failed, must provide both MFA serial number and one time pass code."
)


class Refusal(Exception):
    """What AWS answers instead of doing the call."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


def _validation(value: object, member: str, constraint: str) -> Refusal:
    return Refusal(
        400, "ValidationError",
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
        f"constraint: Member must {constraint}",
    )


@dataclass
class Rules:
    """Which rules are on (all, by default) and the server's clock: real time (or
    ``time_source``) plus ``clock_offset`` seconds. Turn one off for moto's leniency."""

    durations: bool = True
    role_chaining: bool = True
    clock: bool = True
    mfa: bool = True
    trust_policy: bool = True
    temporary_keys: bool = True
    expiry: bool = True
    clock_offset: float = 0.0
    time_source: Callable[[], float] = field(default=time.time, repr=False)

    def now(self) -> float:
        """The server's time: seconds since the epoch (UTC) from ``time_source``, plus
        ``clock_offset`` (to play a clock here that is ahead of or behind AWS's).
        """
        return self.time_source() + self.clock_offset


@dataclass
class Issued:
    """Temporary credentials this server handed out: whose, until when, made how."""

    access_key_id: str
    upstream_key: str  # the key moto knows them by
    arn: str
    expires: float
    mfa: bool
    role_session: bool


def amz_time(moment: float) -> str:
    """``moment`` (seconds since the epoch) in SigV4's ``X-Amz-Date`` form, basic ISO 8601 in
    UTC: ``20240101T120000Z``.
    """
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(moment))


def check_clock(amz_date: str, now: float) -> None:
    """A SigV4 request is valid for 15 minutes either side of the server's clock.

    Source: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-troubleshooting.html
    (and https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html); the wording
    is what STS answers (``SignatureDoesNotMatch``, HTTP 403)."""
    try:
        signed = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return  # botocore always sends this format; anything else is not ours to judge
    if signed < now - SIGNATURE_WINDOW:
        raise Refusal(403, "SignatureDoesNotMatch", (
            f"Signature expired: {amz_date} is now earlier than "
            f"{amz_time(now - SIGNATURE_WINDOW)} ({amz_time(now)} - 15 min.)"
        ))
    if signed > now + SIGNATURE_WINDOW:
        raise Refusal(403, "SignatureDoesNotMatch", (
            f"Signature not yet current: {amz_date} is still later than "
            f"{amz_time(now + SIGNATURE_WINDOW)} ({amz_time(now)} + 15 min.)"
        ))


def check_expiry(issued: Issued, now: float) -> None:
    """Temporary credentials stop working at their Expiration.

    Source: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_use-resources.html
    """
    if now >= issued.expires:
        raise Refusal(403, "ExpiredToken", "The security token included in the request is expired")


#: Action -> (default, lowest, highest) DurationSeconds. Sources:
#: https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html and
#: https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
DURATIONS = {"GetSessionToken": (43_200, 900, 129_600), "AssumeRole": (3600, 900, 43_200)}


def requested_duration(action: str, params: Mapping[str, str], check: bool = True) -> int:
    """The session's lifetime; with ``check``, refused outside what ``action`` allows."""
    default, low, high = DURATIONS[action]
    seconds = int(params.get("DurationSeconds") or default)
    if check and seconds < low:
        raise _validation(seconds, "durationSeconds", f"have value greater than or equal to {low}")
    if check and seconds > high:
        raise _validation(seconds, "durationSeconds", f"have value less than or equal to {high}")
    return seconds


def check_max_session(seconds: int, max_session: int) -> None:
    """No longer than the role's MaxSessionDuration (1 h unless the role says otherwise).

    Source: https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html
    (DurationSeconds) and https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_update-role-settings.html
    """
    if seconds > max_session:
        raise Refusal(400, "ValidationError", "The requested DurationSeconds exceeds the "
                      "MaxSessionDuration set for this role.")


def check_role_chaining(temporary: bool, seconds: int) -> None:
    """A role assumed with temporary credentials (role chaining) lasts at most one hour.

    Source: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_terms-and-concepts.html
    (Role chaining) and https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html"""
    if temporary and seconds > ROLE_CHAINING_MAX:
        raise Refusal(400, "ValidationError", "The requested DurationSeconds exceeds the 1 hour "
                      "session limit for roles assumed by role chaining.")


def check_no_session_from_session(temporary: bool) -> None:
    """GetSessionToken needs a long-term key.

    Source: https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html"""
    if temporary:
        raise Refusal(403, "AccessDenied", "Cannot call GetSessionToken with session credentials")


def totp(seed: str, step: int, digits: int = 6) -> str:
    """RFC 6238 (SHA-1), as AWS virtual MFA devices compute it."""
    key = base64.b32decode(seed.upper() + "=" * (-len(seed) % 8))
    mac = hmac.new(key, step.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFF_FFFF
    return str(value % 10**digits).zfill(digits)


@dataclass
class MfaDevices:
    """Virtual MFA devices by serial: their seeds, and the steps whose codes were used.

    Source: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa_enable_virtual.html
    and https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html (TokenCode:
    six digits). A code is accepted for the current 30-second step and one either side, and
    only once per device (AWS refuses a reused code)."""

    seeds: dict[str, tuple[str, int]] = field(default_factory=dict)
    used: set[tuple[str, int]] = field(default_factory=set)

    def register(self, serial: str, seed: str, period: int = 30) -> None:
        """Make ``serial`` a device with base32 ``seed`` (blanks dropped, upper-cased) and a
        ``period`` of seconds per step; replaces any earlier seed for it.
        """
        self.seeds[serial] = (seed.replace(" ", "").upper(), period)

    def code(self, serial: str, now: float) -> str:
        """The 6-digit code device ``serial`` shows at ``now`` (seconds since the epoch), as a
        test's authenticator would compute it; the step is not marked used.

        Raises:
            KeyError: ``serial`` was never registered.
        """
        seed, period = self.seeds[serial]
        return totp(seed, int(now // period))

    def verify(self, params: Mapping[str, str], now: float) -> bool:
        """True when the request carries a good SerialNumber and TokenCode, False when it
        carries neither; raises what AWS answers otherwise. A good code is used up."""
        serial, code = params.get("SerialNumber"), params.get("TokenCode")
        if not serial and not code:
            return False
        if not serial or not code:
            raise Refusal(403, "AccessDenied", BOTH_NEEDED)
        if len(code) < 6:
            raise _validation(code, "tokenCode", "have length greater than or equal to 6")
        if len(code) > 6:
            raise _validation(code, "tokenCode", "have length less than or equal to 6")
        if not code.isdigit():
            raise _validation(code, "tokenCode", r"satisfy regular expression pattern: [\d]*")
        if serial not in self.seeds:
            raise Refusal(403, "AccessDenied", UNKNOWN_DEVICE)
        seed, period = self.seeds[serial]
        step = int(now // period)
        for candidate in (step, step - 1, step + 1):
            if totp(seed, candidate) == code and (serial, candidate) not in self.used:
                self.used.add((serial, candidate))
                return True
        raise Refusal(403, "AccessDenied", INVALID_CODE)


def not_authorized(caller_arn: str, role_arn: str) -> Refusal:
    """What AssumeRole answers when the trust policy (or the role) is missing.

    Source: https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_roles.html"""
    return Refusal(403, "AccessDenied", f"User: {caller_arn} is not authorized to perform: "
                   f"sts:AssumeRole on resource: {role_arn}")


def principal_names(arn: str) -> set[str]:
    """How a trust policy's ``Principal`` may name this caller: its ARN, its account (id or
    root), and for a role session the role. Source:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html"""
    parts = arn.split(":", 5)
    account = parts[4] if len(parts) == 6 else ""
    names = {"*", arn, account, f"arn:aws:iam::{account}:root"}
    resource = parts[5] if len(parts) == 6 else ""
    if resource.startswith("assumed-role/"):
        names.add(f"arn:aws:iam::{account}:role/{resource.split('/')[1]}")
    return names


def _listed(value: Any) -> list[str]:
    return [str(v) for v in (value if isinstance(value, list) else [value])]


Context = Mapping[str, "str | None"]


def _condition_holds(operator: str, block: Mapping[str, Any], context: Context) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    for key, wanted in block.items():
        actual = context.get(key.lower())
        if actual is None:
            if if_exists:
                continue
            return False
        values = _listed(wanted)
        if base == "Bool":
            ok = actual.lower() in [v.lower() for v in values]
        elif base == "StringEquals":
            ok = actual in values
        elif base == "StringLike":
            ok = any(fnmatch.fnmatchcase(actual, v) for v in values)
        else:
            return False  # an operator this emulator does not know never holds
        if not ok:
            return False
    return True


def trust_allows(policy: Mapping[str, Any], caller_arn: str, context: Context) -> bool:
    """Evaluate a role's trust policy for sts:AssumeRole: an explicit Deny wins, else an Allow
    is needed. ``context`` holds condition keys (lower case) -> value, None when absent.

    ``aws:MultiFactorAuthPresent`` is absent for a long-term key, "true"/"false" for
    temporary credentials; ``Bool`` on an absent key does not hold, ``BoolIfExists`` does.
    Sources: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-multifactorauthpresent
    and https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
    """
    names = principal_names(caller_arn)
    allowed = False
    statements = policy.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = _listed(statement.get("Action", []))
        if not any(fnmatch.fnmatch("sts:assumerole", a.lower()) for a in actions):
            continue
        principal = statement.get("Principal", {})
        listed = _listed(principal) if principal == "*" else _listed(principal.get("AWS", []))
        if not names & set(listed):
            continue
        conditions = statement.get("Condition", {})
        if not all(_condition_holds(op, block, context) for op, block in conditions.items()):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = allowed or statement.get("Effect") == "Allow"
    return allowed

