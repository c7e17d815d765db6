"""Driving the 1Password SDK's async API from broker's synchronous code.

One :class:`Session` per backend instance owns a private event loop on a daemon
thread and one authenticated SDK client. Every call waits on that thread with a
timeout: a desktop-app call is a blocking ctypes call inside the SDK's async code
(a locked app blocks it, and ``asyncio.wait_for`` cannot cancel it), so the wait
happens *outside* the loop, and a call that does not return in time is abandoned
with its thread rather than hanging broker.

SDK errors become broker errors in :func:`translate`: the SDK raises
``RateLimitExceededException`` and ``DesktopSessionExpiredException`` by type and
everything else as a plain ``Exception`` carrying the native core's message.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from broker.errors import (
    AmbiguousMatch,
    AppLocked,
    AuthenticationError,
    BackendError,
    BackendUnavailable,
    BrokerError,
    ConfigError,
    NetworkError,
    NotFound,
    RateLimited,
)
from broker_onepassword import _platform

T = TypeVar("T")

INTEGRATION_NAME = "broker"
#: The native core refuses a longer integration name or version, or an empty one
#: ("integration version was too long. Max allowed: 20 chars"; the SDK's
#: test_client.py: "integration version was not specified").
MAX_INTEGRATION_NAME = 40
MAX_INTEGRATION_VERSION = 20
TOKEN_VARIABLE = "OP_SERVICE_ACCOUNT_TOKEN"  # noqa: S105 - a variable name
#: Where 1Password.com lists service accounts and makes new ones
#: (https://developer.1password.com/docs/service-accounts/get-started).
SERVICE_ACCOUNTS_MENU = (
    "on 1Password.com: Developer > Directory > Infrastructure Secrets Management > Other > "
    "Create a Service Account"
)
TOKEN_HINT = (
    f"make a new token for the service account (Developer > Service accounts on "
    f"1Password.com) or create a new service account ({SERVICE_ACCOUNTS_MENU}), then export "
    f"{TOKEN_VARIABLE} or run `broker backend login onepassword`"
)
#: A service account's vaults and permissions are fixed when it is made; the CLI's
#: `op service-account create` grants read_items only unless told
#: (https://developer.1password.com/docs/cli/reference/management-commands/service-account).


def new_account_hint(vault: str | None = None) -> str:
    """What to do when the service account cannot use ``vault`` (or write to it)."""
    name = vault or "VAULT"
    return (
        "a service account's vaults and permissions cannot be changed: create a new service "
        f"account with read and write access to the vault {vault or ''}".rstrip()
        + f" ({SERVICE_ACCOUNTS_MENU}; or `op service-account create broker --vault "
        f"'{name}:read_items,write_items'`: the CLI grants read only unless told), then use "
        "its token. Service accounts can never use a Personal, Private or Employee vault nor "
        "the default Shared vault, and the vault must exist before the account is made"
    )


RATE_LIMIT_HINT = (
    "service accounts may make 1,000 read and 100 write requests an hour per token (Teams, "
    "Families, individual; Business 10,000 and 1,000), and all service accounts of a "
    "1Password account share 1,000 requests a day (individual, Families; Teams 5,000, "
    "Business 50,000) in a rolling 24-hour window. See the usage and when it resets with "
    "`op service-account ratelimit`. A cached `broker exec` makes no 1Password requests"
)
APP_HINT = (
    "open and unlock the 1Password app, and enable Settings > Developer > Integrate with "
    "other apps; inside WSL2 the Windows app cannot be reached: use a service-account "
    "token instead"
)


class AccessDenied(BackendError):
    """1Password refused an operation (vault permissions, a firewall rule)."""


class VersionConflict(BackendError):
    """An item changed between broker's read and its write."""


def integration_version(version: str | None = None) -> str:
    """broker's version, as 1Password's activity log shows the integration.

    Always 1 to 20 characters, as the native core requires: a development build's
    ``0.1.1.dev3+gabc1234`` becomes its release part ``0.1.1``.
    """
    if version is None:
        try:
            from broker import __version__ as version
        except Exception:
            version = ""
    text = "".join(str(version).split())
    if len(text) > MAX_INTEGRATION_VERSION:
        release = re.match(r"v?\d+(?:\.\d+)*", text)
        text = release.group(0) if release else text
    text = text[:MAX_INTEGRATION_VERSION].rstrip(".+-_")
    return text or "0"


def integration_name(name: str = INTEGRATION_NAME) -> str:
    """The integration name, within the core's limit of 1 to 40 characters."""
    return " ".join(name.split())[:MAX_INTEGRATION_NAME].strip() or INTEGRATION_NAME


def load_sdk() -> Any:
    """The ``onepassword`` package, imported now; BackendUnavailable if it cannot be."""
    problem = _platform.native_core_problem()
    if problem:
        raise BackendUnavailable(problem, "use the pass or keyctl backend on this machine")
    try:
        import onepassword
    except Exception as exc:  # a broken install, a missing pydantic
        raise BackendUnavailable(
            f"onepassword: the 1Password SDK failed to import: {type(exc).__name__}: {exc}",
            "reinstall broker (pip install --force-reinstall onepassword-sdk)",
        ) from None
    return onepassword


class Session:
    """An SDK client, created on first use, on a private event loop thread.

    ``auth`` returns a token (``str``) or the SDK's ``DesktopAuth``; it is called
    in the caller's thread (it may prompt or read the keyring) and only once.
    ``secrets`` returns values that must never appear in an error message.
    """

    def __init__(
        self,
        auth: Callable[[], Any],
        *,
        desktop: bool,
        timeout: float,
        secrets: Callable[[], list[str]],
    ) -> None:
        self._auth = auth
        self.desktop = desktop
        self.timeout = timeout
        self._secrets = secrets
        self._client: Any = None
        self._release: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one call at a time, one sign-in

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="broker-onepassword", daemon=True
            )
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def run(self, operation: Callable[[Any], Awaitable[T]], what: str) -> T:
        """Run ``operation(client)`` to completion; SDK errors become broker errors."""
        with self._lock:
            return self._run(operation, what)

    def _run(self, operation: Callable[[Any], Awaitable[T]], what: str) -> T:
        sdk = load_sdk()
        auth = None if self._client is not None else self._auth()

        async def job() -> T:
            if self._client is None:
                client = await sdk.Client.authenticate(
                    auth, integration_name(), integration_version()
                )
                self._adopt(client)
            return await operation(self._client)

        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(job(), loop)
        concurrent.futures.wait([future], timeout=self.timeout)
        if not future.done():
            future.cancel()
            self._abandon()
            raise self._timed_out(what)
        try:
            return future.result()
        except BrokerError:
            raise
        except Exception as exc:
            if isinstance(exc, _desktop_expired()):
                self._client = None  # the SDK already retried once; sign in again next time
            raise translate(exc, what, desktop=self.desktop, secrets=self._secrets()) from None

    def _adopt(self, client: Any) -> None:
        """Keep the client; take over its release from the SDK's exit-time finalizer.

        The SDK releases clients at interpreter exit, which for the desktop app is
        a blocking call: broker releases in :meth:`close`, with a timeout, instead.
        """
        finalizer = getattr(client, "_finalizer", None)
        detached = finalizer.detach() if finalizer is not None else None
        if detached is not None:
            _, func, args, _ = detached
            self._release = (func, tuple(args))
        self._client = client

    def _timed_out(self, what: str) -> BrokerError:
        seconds = f"{self.timeout:g}"
        if self.desktop:
            return AppLocked(
                f"onepassword: the 1Password app did not answer within {seconds} s "
                f"while {what} (locked, or waiting for your approval?)",
                f"{APP_HINT}; raise [backends.onepassword] timeout if approving takes longer",
            )
        return NetworkError(
            f"onepassword: 1Password did not answer within {seconds} s while {what}",
            "check the network connection; raise [backends.onepassword] timeout on a slow link",
        )

    def _abandon(self) -> None:
        """Forget a loop whose thread is stuck in a call; the next call starts afresh."""
        self._loop = None
        self._thread = None
        self._client = None
        self._release = None

    def close(self) -> None:
        """Release the SDK client (best effort, within ``min(timeout, 5)`` seconds, its output
        kept off stdout), stop the event loop thread and forget the client; the next
        :meth:`run` signs in again. Never raises; calling it again does nothing more.
        """
        with self._lock:
            self._close()

    def _close(self) -> None:
        loop, thread, release = self._loop, self._thread, self._release
        self._client = None
        self._release = None
        self._loop = None
        self._thread = None
        if loop is None:
            return
        if release is not None:
            func, args = release

            async def free() -> None:
                # The SDK prints release failures to stdout, which may be carrying
                # credentials JSON (credential_process): keep it clean.
                with contextlib.redirect_stdout(io.StringIO()):
                    func(*args)

            with contextlib.suppress(Exception):  # releasing is best effort, never an error
                asyncio.run_coroutine_threadsafe(free(), loop).result(min(self.timeout, 5.0))
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=2.0)
            if not thread.is_alive():
                loop.close()


def _desktop_expired() -> type[BaseException]:
    try:
        from onepassword.errors import DesktopSessionExpiredException

        return DesktopSessionExpiredException  # type: ignore[no-any-return]
    except Exception:
        return _Never


class _Never(Exception):
    pass


def scrub(message: str, secrets: list[str]) -> str:
    """``message`` with every known secret value masked, cut to a readable length."""
    for value in sorted(secrets, key=len, reverse=True):
        if value and len(value) >= 4:
            message = message.replace(value, "***")
    message = " ".join(message.split())
    return message if len(message) <= 300 else message[:297] + "..."


_AUTH = (
    "invalid service account token",
    "service account token had invalid format",
    "service account token was not specified",
    "service account deserialization failed",
    "service account token base64 decoding failed",
    "bad service account token",
    "you are not authenticated",
    "401 unauthorized",
    "unauthorized",
    "bad credentials",
)
_NETWORK = (
    "error sending request",
    "request library",
    "reqwest",
    "request timeout",
    "timed out",
    "connection refused",
    "connection reset",
    "dns error",
    "failed to lookup address",
    "network is unreachable",
    "no route to host",
    "tcp connect error",
    "connect error",
)
_DENIED = (
    "you don't have the right permissions",
    "you do not have the right permissions",
    "403 forbidden",
    "forbidden",
)
_APP = (
    "desktop app connection channel is closed",
    "connection was unexpectedly dropped by the desktop app",
    "desktop application not found",
    "integrate with other apps",
    "session expired",
)
_AMBIGUOUS = ("more than one",)
_NOT_FOUND = (
    "not found",
    "couldn't be found",
    "could not be found",
    "cannot be found",
    "no vault matched",
    "no item matched",
    "no section matched",
    "not in an active state",
)


_FREES_UP = re.compile(
    r"(?:try again|retry|resets?|available again)\w*\s+(in|after|at)\s+([^.;,()]+)",
    re.IGNORECASE,
)


def rate_limited(message: str, what: str) -> RateLimited:
    """Which limit was reached (hourly per token, daily per account) and when it frees
    up, as far as 1Password's message says; otherwise both and how to find out."""
    low = message.lower()
    if any(k in low for k in ("daily", "per day", "24 hour", "24-hour", "a day")):
        limit = "the daily limit of the 1Password account (all its service accounts)"
        frees = "within 24 hours (a rolling window)"
    elif any(k in low for k in ("hourly", "per hour", "an hour", "60 minute", "60-minute")):
        limit = "the hourly limit of this service-account token"
        frees = "within the hour"
    else:
        limit, frees = "", ""
    found = _FREES_UP.search(message)
    if found:
        preposition = "at" if found.group(1).lower() == "at" else "in"
        frees = f"{preposition} {found.group(2).strip()}"
    text = f"onepassword: 1Password's rate limit was reached while {what}"
    if limit:
        text += f": {limit}"
    if frees:
        text += f"; it frees up {frees}"
    elif not limit:
        text += (" (1Password did not say whether the hourly token limit or the daily "
                 "account limit; `op service-account ratelimit` shows which and when it resets)")
    return RateLimited(text, RATE_LIMIT_HINT)


def translate(exc: BaseException, what: str, *, desktop: bool, secrets: list[str]) -> BrokerError:
    """The broker error for an exception raised by the SDK while doing ``what``."""
    try:
        from onepassword.errors import (
            DesktopSessionExpiredException,
            RateLimitExceededException,
        )
    except Exception:  # pragma: no cover - the SDK imported before we got here
        DesktopSessionExpiredException = RateLimitExceededException = _Never

    if isinstance(exc, RateLimitExceededException):
        return rate_limited(scrub(str(exc), secrets), what)
    if isinstance(exc, DesktopSessionExpiredException):
        return AppLocked(
            f"onepassword: the 1Password app session expired while {what} (the app locked, "
            "or 10 idle minutes passed)", f"unlock the app and run the command again; {APP_HINT}"
        )
    if isinstance(exc, FileNotFoundError) and desktop:
        return AppLocked(
            "onepassword: the 1Password desktop app was not found on this machine"
            + (" (inside WSL2 the Windows app cannot be reached)" if _platform.in_wsl() else ""),
            "install the 1Password app and enable Settings > Developer > Integrate with other "
            "apps, or remove `account` from [backends.onepassword] and use a service-account "
            "token",
        )
    if isinstance(exc, ImportError) or (
        isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError)
        and any(k in str(exc) for k in ("GLIBC", "shared object", ".so", "ELF"))
    ):
        return BackendUnavailable(
            f"onepassword: the 1Password SDK's native core cannot load here: "
            f"{scrub(str(exc), secrets)}",
            "it needs glibc 2.34+ (Ubuntu 22.04+, Debian 12+) on x86_64 or aarch64; "
            "use the pass or keyctl backend on this machine",
        )
    if type(exc).__module__.startswith("pydantic"):
        # Validation errors quote their input, which may hold item values: name only.
        return BackendError(
            f"onepassword: 1Password sent an answer this SDK version does not understand "
            f"while {what} ({type(exc).__name__})",
            "upgrade broker and onepassword-sdk",
        )
    message = scrub(str(exc) or type(exc).__name__, secrets)
    low = message.lower()
    if "rate limit" in low or "too many requests" in low:
        return rate_limited(message, what)
    if desktop and any(k in low for k in _APP):
        return AppLocked(f"onepassword: the 1Password app is not available while {what}: "
                         f"{message}", APP_HINT)
    if any(k in low for k in _AUTH):
        if desktop:
            return AuthenticationError(
                f"onepassword: the 1Password app refused access while {what}: {message}",
                "approve broker in the 1Password app when it asks, and check the `account` "
                "setting (the account name or id shown in the app)",
            )
        return AuthenticationError(
            f"onepassword: the service-account token was rejected while {what}: {message}",
            TOKEN_HINT,
        )
    if any(k in low for k in _NETWORK):
        return NetworkError(
            f"onepassword: cannot reach 1Password while {what}: {message}",
            "check the network connection and that your 1Password sign-in address "
            "(my.1password.com or your team's) is reachable; behind a proxy set HTTPS_PROXY",
        )
    if any(k in low for k in _DENIED):
        return AccessDenied(
            f"onepassword: 1Password refused access while {what}: {message}",
            "check that your 1Password account may edit the vault" if desktop
            else new_account_hint() + "; or check the account's firewall rules",
        )
    if desktop and isinstance(exc, RuntimeError):
        return AppLocked(f"onepassword: the 1Password app did not answer while {what}: "
                         f"{message}", APP_HINT)
    if any(k in low for k in _AMBIGUOUS):
        return AmbiguousMatch(
            f"onepassword: several matches while {what}: {message}",
            "make the names unique in the 1Password app, or use ids instead of names",
        )
    if desktop and "account" in low and any(k in low for k in _NOT_FOUND):
        return NotFound(
            f"onepassword: the 1Password app has no account matching the `account` setting "
            f"while {what}: {message}",
            "set [backends.onepassword] account to the account's name or id as the app shows "
            "it (or its sign-in address); check that you are signed in to it in the app",
        )
    if any(k in low for k in _NOT_FOUND):
        return NotFound(
            f"onepassword: not found while {what}: {message}",
            "check the vault, item and field names (and that the service account can see the "
            "vault)",
        )
    if "secret reference could not be parsed" in low:
        return ConfigError(
            f"onepassword: {message}",
            "write it as op://vault/item/[section/]field[?attribute=totp], with letters, "
            "digits, spaces, _, . and - in the names",
        )
    if "totp attribute" in low:
        return ConfigError(
            f"onepassword: {message} (while {what})",
            "?attribute=totp works on one-time password fields only",
        )
    if "totp code could not be generated" in low:
        return BackendError(
            f"onepassword: {message} (while {what})",
            "check the one-time password field's seed in the 1Password app",
        )
    if "one-time password secret" in low or "secrettooshort" in low \
            or "secretnotbase32" in low:
        return BackendError(
            f"onepassword: 1Password refused the one-time password seed while {what}: "
            f"{message}",
            "a TOTP seed is base32 (letters A-Z, digits 2-7) and not too short (AWS's virtual "
            "MFA seeds are 64 characters): copy it again, then `broker totp set PROFILE`",
        )
    if "not up to date" in low or "conflict occurred on the server" in low:
        return VersionConflict(
            f"onepassword: the item changed while {what}", "run the command again"
        )
    return BackendError(
        f"onepassword: 1Password failed while {what}: {message}",
        "run again with --debug; if it persists, check https://status.1password.com",
    )
