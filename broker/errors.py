"""One exception hierarchy; every user-facing error carries a hint (the next step).

The CLI translates these into exit codes in one place (``broker.cli.errors``).
Messages must never contain secret values: name fields, never print them.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base class for every error broker reports to a user."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({_closing(self.hint)})" if self.hint else self.message


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

    exit_code = 2


class ConfigError(BrokerError):
    """~/.aws/config or broker's own config is malformed or inconsistent."""

    exit_code = 3


class ProfileNotFound(ConfigError):
    exit_code = 4


class CredentialsNotFound(BrokerError):
    """No stored key for a profile."""

    exit_code = 5


class BackendError(BrokerError):
    """A backend failed while reading or writing."""

    exit_code = 6


class BackendUnavailable(BackendError):
    exit_code = 7


class AuthenticationError(BrokerError):
    """A passphrase, token or MFA code was rejected."""

    exit_code = 8


class KeyRejected(AuthenticationError):
    """AWS refuses the stored access key itself: unknown or inactive in IAM, a secret that
    does not match its id, or not a long-lived IAM user key. Only this error's next step is
    to add the key again."""

    exit_code = 8


class MFACodeRefused(AuthenticationError):
    """AWS refused the MFA code itself (a wrong or reused code): another code may do."""

    exit_code = 8


class MFARequired(BrokerError):
    """An MFA code is needed and no source can provide one (no tty, no mfa_process)."""

    exit_code = 9


class AWSError(BrokerError):
    """STS/IAM refused a call."""

    exit_code = 10


class ClockSkewError(AWSError):
    """AWS refused a request because the clock here is too far from AWS's.

    ``skew_seconds`` is this machine's clock minus AWS's (negative: behind), when known.
    """

    exit_code = 17

    def __init__(self, message: str, hint: str = "", skew_seconds: float | None = None) -> None:
        super().__init__(message, hint)
        self.skew_seconds = skew_seconds


class Throttled(AWSError):
    """AWS throttled the calls (after botocore's own retries)."""

    exit_code = 12


class NestedSession(BrokerError):
    exit_code = 11


class RateLimited(BackendError):
    exit_code = 12


class NetworkError(BrokerError):
    exit_code = 13


class NotFound(BrokerError):
    """A vault, item or entry named in settings does not exist."""

    exit_code = 14


class AmbiguousMatch(BrokerError):
    """Several items match where one was expected."""

    exit_code = 15


class AppLocked(BackendUnavailable):
    """A desktop app (1Password) is locked, absent or did not answer in time."""

    exit_code = 16


class Unsupported(BrokerError):
    """This machine lacks something the command needs (a web browser to start, a way to
    tell which user connects to a local port); the hint names the way around it."""

    exit_code = 18


class Interrupted(BrokerError):
    exit_code = 130


# The table docs/errors.md documents; kept here so the docs test can check it.
EXIT_CODES: dict[int, str] = {
    0: "success (exec: the child's own exit code)",
    1: "unexpected error (run with --debug for a traceback)",
    2: "usage error: a bad flag, argument or duration",
    3: "configuration error: ~/.aws/config or broker's config is malformed",
    4: "unknown profile",
    5: "no stored credentials for the profile (its key, or a TOTP seed kept with it)",
    6: "a backend failed to read or write",
    7: "the chosen backend is not available here",
    8: "authentication failed: passphrase, token, MFA code or access key rejected",
    9: "an MFA code is needed and nothing can supply one",
    10: "AWS refused the request",
    11: "nested broker session refused",
    12: "rate limited by a backend's service, or throttled by AWS",
    13: "network error talking to a backend's service or to AWS",
    14: "a vault, item or entry named in settings was not found",
    15: "several items match where one was expected",
    16: "a desktop app is locked, missing or did not answer",
    17: "the clock here is too far from AWS's for AWS to accept a request",
    18: "this machine lacks something the command needs (a web browser, /proc/net/tcp)",
    130: "interrupted (Ctrl-C)",
}
