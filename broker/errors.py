"""One exception hierarchy; every user-facing error carries a hint (the next step).

Each class carries its exit code, a member of :class:`ExitCode`, the one table of codes
(docs/errors.md documents it; a test checks the two agree). The CLI translates errors into
messages and codes in one place (``broker.cli.errors``). Messages must never contain
secret values: name fields, never print them.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Every exit code broker documents (docs/errors.md's table, row for row).

    Members are ints, so a code goes to ``sys.exit`` as it is. :attr:`meaning` is the
    table's text for the code.
    """

    SUCCESS = 0
    FAILURE = 1
    USAGE = 2
    CONFIG = 3
    UNKNOWN_PROFILE = 4
    NO_CREDENTIALS = 5
    BACKEND_FAILED = 6
    BACKEND_UNAVAILABLE = 7
    AUTHENTICATION = 8
    MFA_REQUIRED = 9
    AWS_REFUSED = 10
    NESTED_SESSION = 11
    RATE_LIMITED = 12
    NETWORK = 13
    NOT_FOUND = 14
    AMBIGUOUS = 15
    APP_LOCKED = 16
    CLOCK_SKEW = 17
    UNSUPPORTED = 18
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        """What the code tells the user, as docs/errors.md words it."""
        return _MEANINGS[self]


_MEANINGS: dict[ExitCode, str] = {
    ExitCode.SUCCESS: "success (exec: the child's own exit code)",
    ExitCode.FAILURE: "unexpected error (run with --debug for a traceback); "
    "`broker doctor`: a check failed; a question answered no (nothing was changed)",
    ExitCode.USAGE: "usage error: a bad flag, argument or duration",
    ExitCode.CONFIG: "configuration error: ~/.aws/config or broker's config is malformed",
    ExitCode.UNKNOWN_PROFILE: "unknown profile",
    ExitCode.NO_CREDENTIALS: "no stored credentials for the profile (its key, or a TOTP "
    "seed kept with it)",
    ExitCode.BACKEND_FAILED: "a backend failed to read or write, or a third-party plugin "
    "raised an error that is its bug",
    ExitCode.BACKEND_UNAVAILABLE: "the chosen backend is not available here",
    ExitCode.AUTHENTICATION: "authentication failed: passphrase, token, MFA code or access "
    "key rejected",
    ExitCode.MFA_REQUIRED: "an MFA code is needed and nothing can supply one",
    ExitCode.AWS_REFUSED: "AWS refused the request",
    ExitCode.NESTED_SESSION: "nested broker session refused",
    ExitCode.RATE_LIMITED: "rate limited by a backend's service, or throttled by AWS",
    ExitCode.NETWORK: "network error talking to a backend's service or to AWS",
    ExitCode.NOT_FOUND: "a vault, item or entry named in settings was not found",
    ExitCode.AMBIGUOUS: "several items match where one was expected",
    ExitCode.APP_LOCKED: "a desktop app is locked, missing or did not answer",
    ExitCode.CLOCK_SKEW: "the clock here is too far from AWS's for AWS to accept a request",
    ExitCode.UNSUPPORTED: "this machine lacks something the command needs (a web browser, "
    "/proc/net/tcp)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C), or no answer at a prompt for a value (end "
    "of input)",
}


class BrokerError(Exception):
    """Base class for every error broker reports to a user."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({_closing(self.hint)})" if self.hint else self.message

    def as_problem(self) -> str:
        """``"MESSAGE; HINT"`` (or the message alone): the error as one of several
        problems listed about a profile (`broker list`, a chain's problems)."""
        return f"{self.message}; {self.hint}" if self.hint else self.message


def _closing(hint: str) -> str:
    """``hint`` as it goes inside the parentheses of a message: a parenthesis that would
    close it twice, "(install GnuPG (`apt install gnupg`))", becomes a dash instead,
    "(install GnuPG — `apt install gnupg`)"."""
    if not hint.endswith(")"):
        return hint
    depth = 0
    for at in range(len(hint) - 1, -1, -1):
        depth += {")": 1, "(": -1}.get(hint[at], 0)
        if depth == 0:
            if at == 0:
                return hint[1:-1]
            if hint[at - 1] == " ":
                return f"{hint[:at - 1]} — {hint[at + 1:-1]}"
            return hint
    return hint


class UsageError(BrokerError):
    """The command line itself is wrong (bad flag value, bad duration)."""

    exit_code = ExitCode.USAGE


class ConfigError(BrokerError):
    """~/.aws/config or broker's own config is malformed or inconsistent."""

    exit_code = ExitCode.CONFIG


class ProfileNotFound(ConfigError):
    """No profile of that name in ~/.aws/config (or only a section botocore ignores, as
    ``[name]`` without ``profile``); the hint names the nearest one or the fix.
    """
    exit_code = ExitCode.UNKNOWN_PROFILE


class CredentialsNotFound(BrokerError):
    """No stored key for a profile."""

    exit_code = ExitCode.NO_CREDENTIALS


class BackendError(BrokerError):
    """A backend failed while reading or writing."""

    exit_code = ExitCode.BACKEND_FAILED


class BackendUnavailable(BackendError):
    """The chosen backend cannot work here: disabled, broken (its plugin fails to import),
    or its ``availability()`` said why (no pass store, no 1Password token, no kernel
    keyring); the message carries the reason.
    """
    exit_code = ExitCode.BACKEND_UNAVAILABLE


class AuthenticationError(BrokerError):
    """A passphrase, token or MFA code was rejected."""

    exit_code = ExitCode.AUTHENTICATION


class KeyRejected(AuthenticationError):
    """AWS refuses the stored access key itself: unknown or inactive in IAM, a secret that
    does not match its id, or not a long-lived IAM user key. Only this error's next step is
    to add the key again."""

    exit_code = ExitCode.AUTHENTICATION


class MFACodeRefused(AuthenticationError):
    """AWS refused the MFA code itself (a wrong or reused code): another code may do."""

    exit_code = ExitCode.AUTHENTICATION


class MFARequired(BrokerError):
    """An MFA code is needed and no source can provide one (no tty, no mfa_process)."""

    exit_code = ExitCode.MFA_REQUIRED


class AWSError(BrokerError):
    """STS/IAM refused a call."""

    exit_code = ExitCode.AWS_REFUSED


class ClockSkewError(AWSError):
    """AWS refused a request because the clock here is too far from AWS's.

    ``skew_seconds`` is this machine's clock minus AWS's (negative: behind), when known.
    """

    exit_code = ExitCode.CLOCK_SKEW

    def __init__(self, message: str, hint: str = "", skew_seconds: float | None = None) -> None:
        super().__init__(message, hint)
        self.skew_seconds = skew_seconds


class Throttled(AWSError):
    """AWS throttled the calls (after botocore's own retries)."""

    exit_code = ExitCode.RATE_LIMITED


class NestedSession(BrokerError):
    """``exec``/``export`` inside a broker session (``BROKER_PROFILE`` is set), which broker
    refuses as aws-vault does.
    """
    exit_code = ExitCode.NESTED_SESSION


class RateLimited(BackendError):
    """A backend's service refused for its rate limit (1Password's hourly and daily limits)."""
    exit_code = ExitCode.RATE_LIMITED


class NetworkError(BrokerError):
    """A service could not be reached (DNS, connection refused, TLS, timeout): AWS or the
    endpoint ``AWS_ENDPOINT_URL`` names, the console sign-in endpoint, 1Password.
    """
    exit_code = ExitCode.NETWORK


class NotFound(BrokerError):
    """A vault, item or entry named in settings does not exist."""

    exit_code = ExitCode.NOT_FOUND


class AmbiguousMatch(BrokerError):
    """Several items match where one was expected."""

    exit_code = ExitCode.AMBIGUOUS


class AppLocked(BackendUnavailable):
    """A desktop app (1Password) is locked, absent or did not answer in time."""

    exit_code = ExitCode.APP_LOCKED


class Unsupported(BrokerError):
    """This machine lacks something the command needs (a web browser to start, a way to
    tell which user connects to a local port); the hint names the way around it."""

    exit_code = ExitCode.UNSUPPORTED


class Interrupted(BrokerError):
    """The user interrupted (Ctrl-C) or closed input at a prompt; exit 130, as a shell reports
    death by SIGINT (128 + 2).
    """
    exit_code = ExitCode.INTERRUPTED
