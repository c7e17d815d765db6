"""`broker exec --server`: a local credential endpoint for a long-lived child.

Instead of keys in its environment, the child gets the address of an endpoint on
127.0.0.1 speaking the ECS container-credentials format, and a random token:

    AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:PORT/
    AWS_CONTAINER_AUTHORIZATION_TOKEN=<random>

Every AWS SDK and the AWS CLI look there by themselves and ask again before the
credentials they hold expire; broker answers with fresh ones, refreshed through
the usual chain (the MFA session reused until it expires). A refresh runs in the
background: a request never waits on a person answering an MFA prompt while the
credentials already served are still valid. The endpoint itself
(:mod:`broker.services.loopback`) bounds every connection in time and in number.
broker stays the parent (:func:`broker.services.child.supervise`): it relays signals
to the child, stops serving when the child exits, and exits with the child's status.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from broker.aws.chain import ChainOptions, needs_code
from broker.aws.credentials import Credentials, format_time, utcnow
from broker.aws.profiles import resolve_chain
from broker.errors import BrokerError, UsageError
from broker.services import loopback
from broker.services.child import command_argv, signals_unblocked, supervise, terminal_foreground
from broker.services.context import Context
from broker.services.credentials import Resolved, obtain
from broker.services.loopback import Request, Response
from broker.services.present import inherited

Report = Callable[[str], None]


#: A request waits at most this long for a refresh that needs no person (a role session
#: assumed again) while the credentials it could get are still valid.
FRESH_WAIT = 1.0
#: A request waits at most this long for a refresh when nothing valid is left to serve:
#: under the 2 s botocore gives the endpoint, so that its retry (1 s later) comes.
EXPIRED_WAIT = 1.5
#: After a failed refresh, no new one for this many seconds while the credentials
#: served are still valid (no hammering STS, no stream of error lines).
RETRY_AFTER = 5.0


class RefreshPending(BrokerError):
    """A refresh is under way and nothing valid is left to serve meanwhile."""


class RefreshingCredentials:
    """The credentials being served, fetched again shortly before they expire.

    Stale when no more than ``margin`` seconds remain, and never earlier than halfway
    through their lifetime as seen when fetched: the session cache's rule, so that a
    margin longer than the sessions STS hands out does not refresh on every request.

    A refresh runs in a thread of its own, one at a time (at most one MFA prompt). A
    request never waits on a person: while a refresh that needs an MFA code
    (``needs_code``) is under way, requests get the current credentials as long as they
    are valid. Otherwise a request waits for the refresh a bounded time
    (``fresh_wait``, ``expired_wait``), then gets the current credentials, or
    :class:`RefreshPending` when none are valid. A failed refresh keeps serving the old
    credentials while they are still valid, and is reported through ``report``.
    """

    def __init__(
        self,
        fetch: Callable[[], Credentials],
        margin: float,
        *,
        initial: Credentials | None = None,
        clock: Callable[[], datetime] = utcnow,
        report: Report = lambda _: None,
        needs_code: Callable[[], bool] | None = None,
        fresh_wait: float = FRESH_WAIT,
        expired_wait: float = EXPIRED_WAIT,
    ) -> None:
        self._fetch = fetch
        self._margin = margin
        self._clock = clock
        self._report = report
        self._needs_code = needs_code
        self._fresh_wait = fresh_wait
        self._expired_wait = expired_wait
        self._cond = threading.Condition()
        self._creds = initial
        self._fetched = clock()
        self._running = False
        self._interactive = False
        self._ended = 0  # refreshes that have ended
        self._error: BrokerError | None = None  # how the last one ended
        self._failed_at: float | None = None  # time.monotonic() of the last failure
        self.refreshes = 0

    def stale(self, now: datetime) -> bool:
        """Whether a refresh is due at ``now`` (UTC): nothing fetched yet, or no more than
        ``margin`` seconds left and at most half the lifetime seen when they were fetched.
        """
        if self._creds is None:
            return True
        lifetime = max(self._creds.seconds_left(self._fetched), 0.0)
        return self._creds.seconds_left(now) <= min(self._margin, lifetime / 2)

    def _valid(self, now: datetime) -> bool:
        return self._creds is not None and self._creds.seconds_left(now) > 0

    @property
    def refreshing(self) -> bool:
        """Whether a refresh is under way now."""
        with self._cond:
            return self._running

    def current(self) -> Credentials:
        """Credentials to serve now: the current ones while not stale; else a refresh is started
        (unless one failed less than :data:`RETRY_AFTER` seconds ago and the current ones are
        still valid) and waited for at most ``fresh_wait`` seconds (``expired_wait`` when
        nothing valid is left, not at all while it waits on a person), then the fresh ones,
        or the current ones while still valid.

        Raises:
            RefreshPending: nothing valid is left and the refresh has not ended in time.
            BrokerError: nothing valid is left and the refresh failed (its error).
        """
        with self._cond:
            now = self._clock()
            if not self.stale(now):
                assert self._creds is not None
                return self._creds
            valid = self._valid(now)
            if not self._running:
                failed = self._failed_at
                if valid and failed is not None and time.monotonic() - failed < RETRY_AFTER:
                    assert self._creds is not None
                    return self._creds
                self._start()
            ended = self._ended
            deadline = time.monotonic() + (self._fresh_wait if valid else self._expired_wait)
            while self._ended == ended and not (valid and self._interactive):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._ended != ended and self._error is None:
                assert self._creds is not None
                return self._creds  # the refresh waited for: fresh credentials
            if self._valid(self._clock()):
                assert self._creds is not None
                return self._creds
            if self._ended != ended and self._error is not None:
                raise self._error
            raise RefreshPending(
                "the credentials expired and a refresh is under way",
                "answer broker's MFA prompt if there is one; the SDK asks again",
            )

    def _start(self) -> None:
        self._running, self._interactive = True, False
        thread = threading.Thread(target=self._refresh, name="broker-refresh", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            self._running = False
            raise BrokerError("cannot start a refresh (no thread left)") from None

    def _refresh(self) -> None:
        fresh: Credentials | None = None
        error: BrokerError | None = BrokerError("the refresh was interrupted")
        try:
            try:
                interactive = self._needs_code() if self._needs_code is not None else False
            except Exception:
                interactive = True  # cannot tell: assume it may ask a person
            with self._cond:
                self._interactive = interactive
                self._cond.notify_all()
            try:
                fresh, error = self._fetch(), None
            except BrokerError as exc:
                error = exc
            except Exception as exc:  # never a traceback in the child's terminal
                error = BrokerError(f"unexpected {type(exc).__name__} while refreshing")
        finally:
            self._ended_with(fresh, error)

    def _ended_with(self, fresh: Credentials | None, error: BrokerError | None) -> None:
        now = self._clock()
        if fresh is None:  # said before the requests waiting for this refresh go on
            with self._cond:
                serving = ", serving the current ones" if self._valid(now) else ""
            with contextlib.suppress(Exception):
                self._report(f"cannot refresh the credentials{serving}: {error}")
        with self._cond:
            if fresh is not None:
                self._creds, self._fetched = fresh, now
                self.refreshes += 1
            else:
                self._failed_at = time.monotonic()
            self._error = error
            self._running = self._interactive = False
            self._ended += 1
            self._cond.notify_all()


def credentials_document(creds: Credentials) -> dict[str, str]:
    """The ECS container-credentials JSON."""
    return {
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key,
        "Token": creds.session_token or "",
        "Expiration": format_time(creds.expiration) if creds.expiration else "",
    }


def _json(status: int, document: Mapping[str, str] | None = None,
          headers: tuple[tuple[str, str], ...] = ()) -> Response:
    body = json.dumps(document).encode() if document is not None else b""
    return Response(status, body, headers=headers)


def _handler(
    token: str, source: RefreshingCredentials, report: Report
) -> Callable[[Request], Response]:
    expected = token.encode("latin-1")

    def handle(request: Request) -> Response:
        # Requests are never logged: nothing about them is worth a line in the terminal.
        given = request.values("authorization")
        if not given:
            return _json(401)
        if len(given) > 1:
            return _json(400)
        # the header's bytes as sent, compared in constant time
        if not hmac.compare_digest(given[0], expected):
            return _json(403)
        if request.method != "GET":
            return _json(405, {"Message": "only GET"})
        if request.path != "/":
            return _json(404, {"Message": "not found"})
        try:
            creds = source.current()
        except RefreshPending as exc:
            return _json(503, {"Message": exc.message}, (("Retry-After", "1"),))
        except BrokerError as exc:  # reported by the refresh that failed
            return _json(500, {"Message": exc.message})
        return _json(200, credentials_document(creds))

    return handle


class CredentialServer:
    """The endpoint on 127.0.0.1 (a random port), answering only with the token."""

    def __init__(self, source: RefreshingCredentials, report: Report = lambda _: None,
                 token: str | None = None, *, max_connections: int = loopback.MAX_CONNECTIONS,
                 head_timeout: float = loopback.HEAD_TIMEOUT) -> None:
        self.token = token or secrets.token_urlsafe(32)
        self._httpd = loopback.LoopbackServer(
            _handler(self.token, source, report), name="broker-credential-server",
            report=report, max_connections=max_connections, head_timeout=head_timeout,
        )

    @property
    def url(self) -> str:
        """The endpoint's URL, ``http://127.0.0.1:PORT/``: the child's
        ``AWS_CONTAINER_CREDENTIALS_FULL_URI``.
        """
        return f"http://127.0.0.1:{self._httpd.port}/"

    def start(self) -> None:
        """Start serving in a background thread; returns at once."""
        self._httpd.start()

    def stop(self) -> None:
        """Stop accepting and close the port (connections in progress end within their timeouts)."""
        self._httpd.stop()

    def __enter__(self) -> CredentialServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def child_environment(
    profile: str, region: str | None, url: str, token: str, environ: Mapping[str, str],
    withheld: frozenset[str] | None = None,
) -> dict[str, str]:
    """The child's environment: what a child of `exec` inherits
    (:func:`broker.services.present.inherited`: credential variables scrubbed, broker's
    own secret inputs withheld), the endpoint's address and token, no keys at all."""
    env = inherited(environ, withheld)
    env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = url
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = token
    if region:
        env["AWS_REGION"] = region
        env["AWS_DEFAULT_REGION"] = region
    env["BROKER_PROFILE"] = profile
    return env


# --- refreshing through the chain -------------------------------------------------------


class ChainRefresh:
    """Makes ``profile``'s credentials again, as `exec` would (call it)."""

    def __init__(
        self,
        ctx: Context,
        profile: str,
        *,
        region: str | None = None,
        duration: int | None = None,
        no_session: bool = False,
        backend: str | None = None,
    ) -> None:
        self._ctx, self._profile, self._region = ctx, profile, region
        self._duration, self._no_session, self._backend = duration, no_session, backend
        self._chain = resolve_chain(ctx.aws, profile)
        self._options = ChainOptions.from_settings(
            ctx.settings, duration=duration, no_session=no_session,
            region=ctx.region_for(self._chain.target, region),
        )

    def needs_code(self) -> bool:
        """Whether the refresh now needs an MFA code (so possibly a person): the chain's
        answer (:func:`broker.aws.chain.needs_code`) against the session cache."""
        return needs_code(self._chain, self._options, self._ctx.sessions)

    def __call__(self) -> Credentials:
        # A refresh that needs an MFA code may prompt: take the terminal from the
        # child's foreground job for it (only then: a job reading the terminal while
        # broker holds it would be stopped).
        prompting = self.needs_code()
        foreground = terminal_foreground() if prompting else contextlib.nullcontext()
        with signals_unblocked(), foreground:
            return obtain(
                self._ctx, self._profile, region=self._region, duration=self._duration,
                no_session=self._no_session, backend=self._backend,
            ).credentials


def refresher(
    ctx: Context,
    profile: str,
    *,
    region: str | None = None,
    duration: int | None = None,
    no_session: bool = False,
    backend: str | None = None,
) -> ChainRefresh:
    """A function producing ``profile``'s credentials again, as `exec` would."""
    return ChainRefresh(
        ctx, profile, region=region, duration=duration, no_session=no_session, backend=backend
    )


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
    """Serve ``first`` (then fresh credentials) to ``command`` (or $SHELL) until it exits,
    supervised by :func:`broker.services.child.supervise`.

    Returns the child's return code (negative: killed by that signal); the caller exits
    with :func:`broker.services.child.exit_status` of it.

    Raises:
        UsageError: ``first`` is the long-lived key (nothing to refresh), or the command
            cannot be started.
    """
    creds = first.credentials
    if not creds.session_token or creds.expiration is None:
        raise UsageError(
            "--server serves temporary credentials, and these are the long-lived key",
            "drop --no-session",
        )
    environ = os.environ if environ is None else environ
    fetch = refresher(ctx, first.profile, region=region, duration=duration,
                      no_session=no_session, backend=backend)
    source = RefreshingCredentials(
        fetch, ctx.settings.refresh_margin, initial=creds, report=report,
        needs_code=fetch.needs_code,
    )
    server = CredentialServer(source, report)
    argv = command_argv(command, environ)
    env = child_environment(first.profile, first.region, server.url, server.token, environ)
    try:
        return supervise(argv, env, server.start)
    finally:
        server.stop()
