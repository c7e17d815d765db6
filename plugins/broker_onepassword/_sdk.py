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
TOKEN_VARIABLE = "OP_SERVICE_ACCOUNT_TOKEN"  # noqa: S105 - a variable name
TOKEN_HINT = (
    f"create a new token for the service account in 1Password (Developer > Service "
    f"accounts), then export {TOKEN_VARIABLE} or run `broker backend login onepassword`"
)
RATE_LIMIT_HINT = (
    "service accounts may make 1,000 reads and 100 writes an hour per token (Teams, "
    "Families; Business 10,000 and 1,000) and a daily number per account: retry when "
    "the hourly window has passed (within the hour; a daily limit resets the next day). "
    "See the usage with `op service-account ratelimit`. A cached `broker exec` makes no "
    "1Password calls"
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


def integration_version() -> str:
    """broker's version, as 1Password's activity log shows the integration."""
    try:
        from broker import __version__

        return __version__
    except Exception:
        return "0"


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
                    auth, INTEGRATION_NAME, integration_version()
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
        return RateLimited(
            f"onepassword: 1Password's rate limit was reached while {what}", RATE_LIMIT_HINT
        )
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
    if "rate limit" in low:
        return RateLimited(
            f"onepassword: 1Password's rate limit was reached while {what}", RATE_LIMIT_HINT
        )
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
            "give the service account read and write access to the vault (a service account "
            "can never use the Private/Personal vault), or check the account's firewall rules",
        )
    if desktop and isinstance(exc, RuntimeError):
        return AppLocked(f"onepassword: the 1Password app did not answer while {what}: "
                         f"{message}", APP_HINT)
    if any(k in low for k in _AMBIGUOUS):
        return AmbiguousMatch(
            f"onepassword: several matches while {what}: {message}",
            "make the names unique in the 1Password app, or use ids instead of names",
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
    if "not up to date" in low:
        return VersionConflict(
            f"onepassword: the item changed while {what}", "run the command again"
        )
    return BackendError(
        f"onepassword: 1Password failed while {what}: {message}",
        "run again with --debug; if it persists, check https://status.1password.com",
    )
