"""TOTP seeds in the forms people paste them, and the codes they make.

A seed is accepted as base32 (spaces, lower case and missing ``=`` padding are fine,
as authenticator apps display it) or as an ``otpauth://totp/...`` URI (issuer, period,
digits, algorithm). Errors name the problem, never the seed. pyotp computes the codes
and is imported only then: nothing here runs on the cached fast path.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from broker.errors import BrokerError, UsageError

ALGORITHMS = ("SHA1", "SHA256", "SHA512")
#: pyotp refuses shorter seeds (NIST SP 800-63B); 1Password would take them.
MIN_BITS = 112
DEFAULT_PERIOD = 30
_BASE32 = re.compile(r"^[A-Z2-7]*$")
_WHITESPACE = re.compile(r"\s+")
_SECURITY_PARAMETERS = ("secret", "issuer", "algorithm", "digits", "period", "counter")
#: Builds the error for a problem (and a hint): the caller chose the class and the origin.
_Fail = Callable[[str, str], BrokerError]


@dataclass(frozen=True, repr=False)
class TotpSeed:
    """A parsed seed: ``secret`` is base32, upper case, without padding."""

    secret: str
    digits: int = 6
    period: int = DEFAULT_PERIOD
    algorithm: str = "SHA1"
    issuer: str | None = None
    account: str | None = None

    def __repr__(self) -> str:  # never show the secret
        return (
            f"TotpSeed(secret='***', digits={self.digits}, period={self.period}, "
            f"algorithm={self.algorithm!r}, issuer={self.issuer!r}, account={self.account!r})"
        )

    def step_at(self, moment: float) -> int:
        """The time step (counter) in force at ``moment`` (Unix seconds)."""
        return int(moment // self.period)

    def code_at_step(self, step: int) -> str:
        """The code for time step (counter) ``step``, ``digits`` long with leading zeros: HOTP
        (RFC 4226) over the step with this seed's hash, as TOTP (RFC 6238) defines it, computed
        by pyotp.
        """
        import hashlib

        import pyotp

        digest = getattr(hashlib, self.algorithm.lower())
        otp = pyotp.TOTP(self.secret, digits=self.digits, digest=digest, interval=self.period)
        return otp.generate_otp(step)

    def code_at(self, moment: float) -> str:
        """The code in force at ``moment`` (seconds since the epoch, UTC)."""
        return self.code_at_step(self.step_at(moment))

    def uri(self) -> str:
        """The ``otpauth://`` URI an authenticator app (or a QR code) takes."""
        label = quote(self.account or "broker", safe="@")
        if self.issuer:
            label = f"{quote(self.issuer, safe='')}:{label}"
        query: dict[str, str] = {"secret": self.secret}
        if self.issuer:
            query["issuer"] = self.issuer
        if self.algorithm != "SHA1":
            query["algorithm"] = self.algorithm
        if self.digits != 6:
            query["digits"] = str(self.digits)
        if self.period != DEFAULT_PERIOD:
            query["period"] = str(self.period)
        return f"otpauth://totp/{label}?{urlencode(query, quote_via=quote)}"


def looks_like_uri(text: str) -> bool:
    """Whether ``text`` is an ``otpauth:`` URI (case-insensitive, blanks around ignored) rather
    than a bare base32 seed.
    """
    return text.strip().lower().startswith("otpauth:")


def parse_seed(
    text: str,
    *,
    origin: str = "the seed",
    error: type[BrokerError] = UsageError,
    hint: str | None = None,
) -> TotpSeed:
    """Parse a base32 seed or an otpauth URI; ``error`` names ``origin`` and the problem."""

    def fail(problem: str, default_hint: str) -> BrokerError:
        return error(f"{origin} {problem}", hint or default_hint)

    value = text.strip()
    if not value:
        raise fail("is empty", "give the base32 seed or the otpauth:// URI")
    if looks_like_uri(value):
        return _parse_uri(value, fail)
    return TotpSeed(_base32(value, fail))



def _base32(value: str, fail: _Fail) -> str:
    secret = _WHITESPACE.sub("", value).upper().rstrip("=")
    if not secret:
        raise fail("is empty", "give the base32 seed or the otpauth:// URI")
    if not _BASE32.match(secret):
        raise fail(
            "is not base32: it may hold only the letters A-Z and the digits 2-7",
            "copy the seed again (0, 1, 8 and 9 are never part of one), or give the "
            "otpauth:// URI",
        )
    if len(secret) % 8 in (1, 3, 6):
        raise fail(
            "is not valid base32: its length is wrong (a character missing or extra?)",
            "copy the seed again",
        )
    try:
        decoded = base64.b32decode(secret + "=" * (-len(secret) % 8))
    except binascii.Error:
        raise fail("is not valid base32", "copy the seed again") from None
    bits = len(decoded) * 8
    if bits < MIN_BITS:
        raise fail(
            f"is too short: {bits} bits, and pyotp (which computes the codes) needs at least "
            f"{MIN_BITS} bits (23 base32 characters)",
            "AWS virtual MFA seeds are 320 bits (64 characters); a hand-made seed must be "
            "longer, or keep it in 1Password and use broker_totp = op://...?attribute=totp",
        )
    return secret


def _parse_uri(value: str, fail: _Fail) -> TotpSeed:
    try:
        parts = urlsplit(value)
    except ValueError:
        raise fail("is not a valid otpauth:// URI", "copy the URI again") from None
    kind = parts.netloc.lower()
    if parts.scheme.lower() != "otpauth" or kind not in ("totp", "hotp"):
        raise fail(
            "is not an otpauth://totp/ URI", "give otpauth://totp/LABEL?secret=... or the seed"
        )
    if kind == "hotp":
        raise fail(
            "is a counter-based (HOTP) URI; AWS virtual MFA devices use time-based codes (TOTP)",
            "give the otpauth://totp/ URI of the device",
        )
    label = parts.path.lstrip("/")
    issuer: str | None = None
    account: str | None = None
    if ":" in label:  # split before unquoting: %3A is part of a name, not the separator
        head, _, tail = label.partition(":")
        issuer, account = unquote(head).strip() or None, unquote(tail).strip() or None
    elif label:
        account = unquote(label).strip() or None
    params: dict[str, str] = {}
    for key, item in parse_qsl(parts.query, keep_blank_values=True):
        key = key.lower()
        if key in _SECURITY_PARAMETERS:
            if key in params:
                raise fail(f"repeats the {key}= parameter", "give each parameter once")
            params[key] = item
    if not params.get("secret"):
        raise fail("has no secret= parameter", "copy the whole URI again")
    secret = _base32(params["secret"], fail)
    algorithm = (params.get("algorithm") or "SHA1").upper().replace("-", "")
    if algorithm not in ALGORITHMS:
        raise fail(
            f"names the algorithm {params['algorithm'][:20]!r}",
            f"use one of {', '.join(ALGORITHMS)}",
        )
    digits = _number(params.get("digits"), 6, "digits", 6, 8, fail)
    period = _number(params.get("period"), DEFAULT_PERIOD, "period", 1, 3600, fail)
    if params.get("issuer"):
        issuer = params["issuer"].strip()
    return TotpSeed(secret, digits, period, algorithm, issuer, account)


def _number(
    text: str | None, default: int, name: str, low: int, high: int, fail: _Fail
) -> int:
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise fail(
            f"has {name}={text[:12]!r}, which is not a whole number from {low} to {high}",
            f"fix the {name}= parameter",
        )
    return int(text)


class Clock:
    """The time TOTP codes depend on, and waiting for the next step.

    Tests substitute a fake that advances instead of sleeping. The countdown goes
    to the terminal (stderr without one): an SDK running ``credential_process``
    captures stderr, and a user waiting on it should still see why.
    """

    def now(self) -> float:
        """The current time, in seconds since the epoch (UTC)."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        time.sleep(seconds)

    def notify(self, text: str) -> None:
        """Show ``text`` as is (no newline added) on the terminal, else on stderr."""
        from broker import tty

        tty.write(text)

    def live(self) -> bool:
        """Whether the countdown can redraw itself (a terminal); else it is one line."""
        from broker import tty

        return tty.has_tty()

    def wait_until(self, moment: float, label: str) -> None:
        """Sleep until ``moment``, showing ``label`` and the seconds left: once a second on
        a terminal, else as one line (a log or a captured stderr keeps one line a message)."""
        shown: int | None = None
        live = None
        while True:
            left = moment - self.now()
            if left <= 0:
                break
            seconds = math.ceil(left)
            if live is None:
                live = self.live()
                if not live:
                    self.notify(f"{label}: {seconds} s\n")
            if live and seconds != shown:
                self.notify(f"\r{label}: {seconds:2d} s ")
                shown = seconds
            self.sleep(max(left - (seconds - 1), 0.01))
        if shown is not None:
            self.notify(f"\r{label}: done.\n")


#: The clock used unless a caller passes another one (tests replace it).
CLOCK = Clock()
