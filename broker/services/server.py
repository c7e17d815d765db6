"""`broker exec --server`: a local credential endpoint for a long-lived child.

Instead of keys in its environment, the child gets the address of an endpoint on
127.0.0.1 speaking the ECS container-credentials format, and a random token:

    AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:PORT/
    AWS_CONTAINER_AUTHORIZATION_TOKEN=<random>

Every AWS SDK and the AWS CLI look there by themselves and ask again before the
credentials they hold expire; broker answers with fresh ones, refreshed through
the usual chain (the MFA session reused until it expires). broker stays the
parent: it relays signals to the child, stops serving when the child exits, and
exits with the child's status.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from broker.aws.chain import ChainOptions, level_session_names
from broker.aws.credentials import Credentials, format_time, utcnow
from broker.aws.profiles import Chain, resolve_chain
from broker.errors import BrokerError, UsageError
from broker.services.context import Context
from broker.services.credentials import Resolved, obtain
from broker.services.present import SCRUBBED

#: Signals relayed to the child. SIGTSTP/SIGCONT keep their default: the terminal
#: stops and continues broker and the child together.
RELAYED = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2,
)
#: Signals whose default action ends a process without a core dump: a child killed
#: by one of these makes broker die by the same signal.
_REPLAYED = frozenset(
    {signal.SIGHUP, signal.SIGINT, signal.SIGKILL, signal.SIGPIPE, signal.SIGALRM,
     signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2}
)
#: siginfo.si_code of a signal the kernel sent (the terminal's ^C, ^\, hangup).
_SI_KERNEL = 0x80
_WAIT_TICK = 0.5

Report = Callable[[str], None]


class RefreshingCredentials:
    """The credentials being served, fetched again shortly before they expire.

    Stale when no more than ``margin`` seconds remain, and never later than half
    their lifetime as seen when fetched: the session cache's rule, so that a margin
    longer than the sessions STS hands out does not refresh on every request.
    A failed refresh keeps serving the old credentials while they are still valid.
    """

    def __init__(
        self,
        fetch: Callable[[], Credentials],
        margin: float,
        *,
        initial: Credentials | None = None,
        clock: Callable[[], datetime] = utcnow,
        report: Report = lambda _: None,
    ) -> None:
        self._fetch = fetch
        self._margin = margin
        self._clock = clock
        self._report = report
        self._lock = threading.Lock()
        self._creds = initial
        self._fetched = clock()
        self.refreshes = 0

    def stale(self, now: datetime) -> bool:
        if self._creds is None:
            return True
        lifetime = max(self._creds.seconds_left(self._fetched), 0.0)
        return self._creds.seconds_left(now) <= min(self._margin, lifetime / 2)

    def current(self) -> Credentials:
        with self._lock:  # one refresh (and at most one MFA prompt) at a time
            now = self._clock()
            if not self.stale(now):
                assert self._creds is not None
                return self._creds
            try:
                fresh = self._fetch()
            except BrokerError as exc:
                if self._creds is not None and self._creds.seconds_left(now) > 0:
                    self._report(f"cannot refresh the credentials, serving the current ones: {exc}")
                    return self._creds
                raise
            self._creds, self._fetched = fresh, self._clock()
            self.refreshes += 1
            return fresh


def credentials_document(creds: Credentials) -> dict[str, str]:
    """The ECS container-credentials JSON."""
    return {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.session_token or "",
        "Expiration": format_time(creds.expiration) if creds.expiration else "",
    }


def _handler(
    token: str, source: RefreshingCredentials, report: Report
) -> type[BaseHTTPRequestHandler]:
    expected = token.encode("latin-1")

    class CredentialHandler(BaseHTTPRequestHandler):
        server_version = "broker"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass  # never log requests: nothing about them is worth a line in the child's terminal

        def _reply(self, status: int, document: Mapping[str, str] | None = None) -> None:
            body = json.dumps(document).encode() if document is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            given = self.headers.get("Authorization")
            if given is None:
                return self._reply(401)
            # http.server decodes headers as latin-1, so this round-trips any bytes
            if not hmac.compare_digest(given.encode("latin-1", "replace"), expected):
                return self._reply(403)
            if self.command != "GET":
                return self._reply(405, {"Message": "only GET"})
            if urlsplit(self.path).path != "/":
                return self._reply(404, {"Message": "not found"})
            try:
                creds = source.current()
            except BrokerError as exc:
                report(f"cannot refresh the credentials: {exc}")
                return self._reply(500, {"Message": exc.message})
            except Exception as exc:
                report(f"cannot refresh the credentials: unexpected {type(exc).__name__}")
                return self._reply(500, {"Message": "unexpected error"})
            self._reply(200, credentials_document(creds))

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle

    return CredentialHandler


class CredentialServer:
    """The endpoint on 127.0.0.1 (a random port), answering only with the token."""

    def __init__(self, source: RefreshingCredentials, report: Report = lambda _: None,
                 token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.token, source, report))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
            name="broker-credential-server", daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> CredentialServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def child_environment(
    profile: str, region: str | None, url: str, token: str, environ: Mapping[str, str]
) -> dict[str, str]:
    """The child's environment: inherited credential variables scrubbed, no keys at all."""
    env = {k: v for k, v in environ.items() if k not in SCRUBBED}
    env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = url
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token
    if region:
        env["AWS_REGION"] = region
        env["AWS_DEFAULT_REGION"] = region
    env["BROKER_PROFILE"] = profile
    return env


# --- refreshing through the chain -------------------------------------------------------


def code_needed(ctx: Context, chain: Chain, options: ChainOptions) -> bool:
    """Whether refreshing ``chain`` now needs an MFA code: every cached level down to
    the one that carries the code has expired (or is within the refresh margin)."""
    if not chain.mfa_serial or (options.no_session and not chain.hops):
        return False
    return all(ctx.sessions.get(name) is None for name in level_session_names(chain, options))


@contextlib.contextmanager
def terminal_foreground() -> Iterator[None]:
    """Make broker the terminal's foreground process group for a prompt, then give
    the terminal back. An interactive shell child puts itself in the foreground;
    a background process reading the terminal would be stopped (or, with SIGTTIN
    ignored, get EIO)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        fd = -1
    moved_from = -1
    # From the background, tcsetpgrp() stops the caller unless SIGTTOU is ignored, as
    # supervise() makes it.
    movable = signal.getsignal(signal.SIGTTOU) == signal.SIG_IGN
    try:
        if fd >= 0 and movable:
            with contextlib.suppress(OSError):
                current = os.tcgetpgrp(fd)
                if current != os.getpgrp():
                    os.tcsetpgrp(fd, os.getpgrp())
                    moved_from = current
        yield
    finally:
        if moved_from >= 0:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(fd, moved_from)
        if fd >= 0:
            os.close(fd)


def refresher(
    ctx: Context,
    profile: str,
    *,
    region: str | None = None,
    duration: int | None = None,
    no_session: bool = False,
    backend: str | None = None,
) -> Callable[[], Credentials]:
    """A function producing ``profile``'s credentials again, as `exec` would."""
    chain = resolve_chain(ctx.aws, profile)
    options = ChainOptions(
        duration=duration,
        no_session=no_session,
        session_duration=ctx.settings.session_duration,
        region=ctx.region_for(chain.target, region),
    )

    def fetch() -> Credentials:
        # A refresh that needs an MFA code may prompt: take the terminal from the
        # child's foreground job for it (only then: a job reading the terminal while
        # broker holds it would be stopped).
        prompting = code_needed(ctx, chain, options)
        foreground = terminal_foreground() if prompting else contextlib.nullcontext()
        with _signals_unblocked(), foreground:
            return obtain(
                ctx, profile, region=region, duration=duration, no_session=no_session,
                backend=backend,
            ).credentials

    return fetch


# --- the child ----------------------------------------------------------------------------


@contextlib.contextmanager
def _signals_unblocked() -> Iterator[None]:
    old = signal.pthread_sigmask(signal.SIG_UNBLOCK, RELAYED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _relay(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signum)


def should_relay(si_code: int, same_group: bool) -> bool:
    """Relay a signal unless the terminal sent it to the group the child is in."""
    return not (si_code == _SI_KERNEL and same_group)


def _same_group(child: subprocess.Popen[bytes]) -> bool:
    try:
        return os.getpgid(child.pid) == os.getpgrp()
    except OSError:
        return False


def _restore(handlers: dict[signal.Signals, Any]) -> None:
    for signum, handler in handlers.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def supervise(argv: list[str], env: dict[str, str], start: Callable[[], None]) -> int:
    """Run ``argv`` as a child, relaying signals, until it exits; its return code.

    ``start`` runs first with the relayed signals blocked, so that the threads it
    starts (the server's) never take a signal meant for the child. The main thread
    then waits with sigtimedwait(), which also says who sent a signal: one the
    terminal sent to the whole process group already reached a child in that group
    and is not sent twice.
    """
    waited = {*RELAYED, signal.SIGCHLD}
    early: list[int] = []

    def remember(signum: int, frame: object) -> None:
        early.append(signum)

    previous = {s: signal.signal(s, remember) for s in RELAYED}
    try:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
        try:
            start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        try:
            child = subprocess.Popen(argv, env=env)
        except FileNotFoundError:
            raise UsageError(
                f"command not found: {argv[0]}", "check the command after --"
            ) from None
        except PermissionError:
            raise UsageError(
                f"cannot run {argv[0]}: permission denied", "check its mode"
            ) from None
        # Ignored only now, so the child does not inherit it: lets a prompt take the
        # terminal back from the child's foreground job (see terminal_foreground).
        tty_signals = {
            s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTTOU, signal.SIGTTIN)
        }
        signal.pthread_sigmask(signal.SIG_BLOCK, waited)
        try:
            while True:
                while early:
                    _relay(child, early.pop(0))
                code = child.poll()
                if code is not None:
                    return code
                info = signal.sigtimedwait(waited, _WAIT_TICK)
                if info is None or info.si_signo == signal.SIGCHLD:
                    continue
                if should_relay(info.si_code, _same_group(child)):
                    _relay(child, info.si_signo)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            _restore(tty_signals)
    finally:
        _restore(previous)


def exit_status(returncode: int) -> int:
    """The child's exit code; a child killed by a signal makes broker die by the same
    signal (when that signal ends a process without a core dump), else 128 + signal."""
    if returncode >= 0:
        return returncode
    signum = -returncode
    if signum in _REPLAYED:
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)
    return 128 + signum


def run(
    ctx: Context,
    first: Resolved,
    command: list[str],
    *,
    region: str | None = None,
    duration: int | None = None,
    no_session: bool = False,
    backend: str | None = None,
    report: Report = lambda _: None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Serve ``first`` (then fresh credentials) to ``command`` (or $SHELL) until it exits.

    Returns the child's return code (negative: killed by that signal).
    """
    creds = first.credentials
    if not creds.session_token or creds.expiration is None:
        raise UsageError(
            "--server serves temporary credentials, and these are the long-lived key",
            "drop --no-session",
        )
    environ = os.environ if environ is None else environ
    source = RefreshingCredentials(
        refresher(ctx, first.profile, region=region, duration=duration, no_session=no_session,
                  backend=backend),
        ctx.settings.refresh_margin,
        initial=creds,
        report=report,
    )
    server = CredentialServer(source, report)
    argv = command or [environ.get("SHELL") or "/bin/sh"]
    env = child_environment(first.profile, first.region, server.url, server.token, environ)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        return supervise(argv, env, server.start)
    finally:
        server.stop()
