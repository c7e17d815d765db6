"""`broker login`: a console sign-in URL for a profile's session.

A role profile signs in with its role session (from the cache or the chain).
A plain IAM user has no role session to use, so broker asks for a federation
token with the long-lived key (GetFederationToken refuses session credentials,
so that session carries no MFA context), as aws-vault does.

The URL holds a sign-in token, a secret for its 15 minutes: it is returned to
be printed on stdout (``--stdout``), or handed to the browser through a one-shot
redirect on 127.0.0.1 that only the user's own processes get (:class:`Handoff`):
never in any command line (``ps``), never to another local user who races for it.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from broker.aws import federation
from broker.aws.profiles import resolve_chain
from broker.errors import BrokerError, Unsupported
from broker.services import loopback
from broker.services.context import Context
from broker.services.credentials import master_key, obtain
from broker.services.loopback import Address, Request, Response

DEFAULT_FEDERATION_DURATION = 3600
#: How long the browser has to fetch the sign-in page.
BROWSER_WAIT = 120.0
#: A browser sends its request at once: a connection silent this long is dropped.
LOGIN_HEAD_TIMEOUT = 10.0
LOGIN_CONNECTIONS = 16
#: When the launcher says it failed, how long a browser it did start still has.
LAUNCHER_GRACE = 2.0
LAUNCHER_TIMEOUT = 30.0

Report = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


@dataclass
class ConsoleLogin:
    """A console sign-in link for ``profile``: ``via`` which call its session came from
    (``"AssumeRole"`` or ``"GetFederationToken"``), the ``partition`` (``aws``,
    ``aws-cn``, ``aws-us-gov``), the console ``destination`` URL, when the session
    ``expires`` (UTC; None when not known) and the sign-in ``url`` itself, a secret that
    grants the session to whoever holds it (never logged, never in repr).
    """
    profile: str
    via: str  # "AssumeRole" or "GetFederationToken"
    partition: str
    destination: str
    expires: datetime | None
    url: str = field(repr=False)  # a secret: never logged, never in repr


def signin_url(
    ctx: Context,
    profile: str,
    *,
    path: str | None = None,
    duration: int | None = None,
    region: str | None = None,
    mfa_code: str | None = None,
    backend: str | None = None,
) -> ConsoleLogin:
    """Build the sign-in URL for ``profile`` (its role session, or a federation token)."""
    from broker.aws import sts

    with sts.profile_scope(profile):
        chain = resolve_chain(ctx.aws, profile)
        where = ctx.region_for(chain.target, region)
        if chain.hops:
            resolved = obtain(
                ctx, profile, region=region, duration=duration, mfa_code=mfa_code, backend=backend
            )
            creds, via, arn = resolved.credentials, "AssumeRole", chain.target.role_arn
        else:
            master = master_key(ctx, chain, backend)
            creds = federation.federation_token(
                master, where, f"broker-{profile}", duration or DEFAULT_FEDERATION_DURATION
            )
            via, arn = "GetFederationToken", chain.mfa_serial
        partition = federation.partition_for(arn, where)
        endpoint = federation.endpoint(partition)
        try:
            token = federation.signin_token(endpoint, creds)
        except BrokerError as exc:
            raise sts.name_profiles(exc, profile=profile, key_profile=None) from None
        target = federation.destination(partition, where, path)
        return ConsoleLogin(
            profile, via, partition.name, target, creds.expiration,
            federation.login_url(endpoint, token, target),
        )


def login(
    ctx: Context,
    profile: str,
    *,
    browser: bool = True,
    opener: Callable[[str], bool] | None = None,
    wait: float = BROWSER_WAIT,
    report: Report = _ignore,
    **options: Any,
) -> ConsoleLogin:
    """Build the sign-in URL and, with ``browser``, hand it to the browser; options as
    :func:`signin_url`. Returns once the user's own browser has the link."""
    signin = signin_url(ctx, profile, **options)
    if browser:
        open_in_browser(signin.url, opener=opener, wait=wait, report=report)
    return signin


# --- handing the link to the browser ------------------------------------------------------


class Handoff:
    """The one-shot redirect to the sign-in link, for the user's own processes only.

    Every connection is checked twice, when accepted and again with its request: the
    socket at the other end must belong to this user (``/proc/net/tcp``). A connection
    of another user is closed unanswered and counted. Under WSL a Windows browser comes
    in through WSL's localhost relay, a socket of root's or none at all; such a
    connection is served only with the ``nonce`` path, which broker hands to the
    Windows side on a pipe, never in a Linux command line.

    The first request that passes gets the redirect; once it has gone out whole,
    :attr:`delivered` is set. Any later request gets 404.
    """

    def __init__(
        self,
        url: str,
        nonce: str,
        *,
        relayed: bool = False,
        uid: int | None = None,
        owner: Callable[[Address, Address], int | None] = loopback.peer_uid,
    ) -> None:
        self._url = url
        self._nonce_path = f"/{nonce}"
        self._relayed = relayed
        self._uid = os.getuid() if uid is None else uid
        self._owner = owner
        self._lock = threading.Lock()
        self._claimed = False
        self.delivered = threading.Event()
        #: uid (None: unknown) -> connections refused
        self.refused: dict[int | None, int] = {}

    def _allowed(self, peer: Address, local: Address, path: str | None) -> bool:
        try:
            owner = self._owner(peer, local)
        except (OSError, ValueError):
            owner = None
        if owner == self._uid:
            return True
        if self._relayed and owner in (0, None) and path in (None, self._nonce_path):
            return True  # decided again with the path, once the request has come
        with self._lock:
            self.refused[owner] = self.refused.get(owner, 0) + 1
        return False

    def admit(self, peer: Address, local: Address) -> bool:
        """:class:`LoopbackServer`'s ``admit``: whether the connection from ``peer`` to ``local``
        may take a place (the user's own socket, or under WSL the relay's, decided again with
        the path); a refused one is counted in :attr:`refused`.
        """
        return self._allowed(peer, local, None)

    def handle(self, request: Request) -> Response:
        """The answer to ``request``: 302 to the sign-in link (``Referrer-Policy: no-referrer``)
        for the first GET of ``/`` or the nonce path by an allowed peer; 403 for another
        user's, 405 for another method, 404 for another path or once the link has gone out.
        """
        if not self._allowed(request.peer, request.local, request.path):
            return _page(403, "This sign-in link is not yours.")
        if request.method != "GET":
            return _page(405, "Only GET.")
        if request.path not in ("/", self._nonce_path):
            return _page(404, "Not found.")
        with self._lock:
            if self._claimed:
                return _page(404, "This sign-in link has been used: run broker login again.")
            self._claimed = True
        return Response(
            302,
            content_type="text/plain; charset=utf-8",
            headers=(("Location", self._url), ("Referrer-Policy", "no-referrer")),
            delivered=self._delivered,
        )

    def _delivered(self, whole: bool) -> None:
        if whole:
            self.delivered.set()
        else:  # the client went away before it had the link: the next one may have it
            with self._lock:
                self._claimed = False

    def refused_summary(self) -> str:
        """"3 connections of uid 1001" for the refused ones ("" when none)."""
        with self._lock:
            refused = dict(self.refused)
        if not refused:
            return ""
        count = sum(refused.values())
        owners = ", ".join(
            "an unknown owner" if uid is None else f"uid {uid}"
            for uid in sorted(refused, key=lambda u: -1 if u is None else u)
        )
        return f"{count} connection{'s' if count != 1 else ''} of {owners}"


def _page(status: int, text: str) -> Response:
    return Response(status, (text + "\n").encode(), content_type="text/plain; charset=utf-8")


def open_in_browser(
    url: str,
    *,
    opener: Callable[[str], bool] | None = None,
    wait: float = BROWSER_WAIT,
    report: Report = _ignore,
) -> None:
    """Hand ``url`` to the user's browser through a one-shot redirect on 127.0.0.1 that
    only the user's own processes get (see :class:`Handoff`).

    The browser is started with ``http://127.0.0.1:PORT/``: nothing secret, nothing
    another user can use, in any command line. Returns once the redirect went out whole
    to one of the user's processes; raises when that does not happen within ``wait``.
    ``opener`` replaces how the browser is started (it gets that address).
    """
    if not loopback.can_tell_peers():
        raise Unsupported(
            "cannot check which user connects to a local port on this system "
            f"({loopback.TCP_TABLE} is not readable), so the sign-in link is not served",
            "run with --stdout and paste the URL into your browser",
        )
    nonce = secrets.token_urlsafe(24)
    windows = None if opener is not None else windows_launcher()
    handoff = Handoff(url, nonce, relayed=windows is not None)
    server = loopback.LoopbackServer(
        handoff.handle, name="broker-login", report=report, admit=handoff.admit,
        max_connections=LOGIN_CONNECTIONS, head_timeout=LOGIN_HEAD_TIMEOUT,
    )
    server.start()
    try:
        address = f"http://127.0.0.1:{server.port}/"
        if windows is not None:
            started = start_windows_browser(windows, address + nonce)
        else:
            started = _start(opener, address)
        if not started and not handoff.delivered.wait(LAUNCHER_GRACE):
            raise Unsupported(
                "could not start a web browser",
                "set BROWSER, or run with --stdout and open the URL yourself",
            )
        if not handoff.delivered.wait(wait):
            refused = handoff.refused_summary()
            raise Unsupported(
                f"the browser did not open the sign-in page within {int(wait)} s"
                + (f" ({refused} refused: only your own processes get it)" if refused else ""),
                "run with --stdout and paste the URL into your browser "
                "(a browser behind a proxy for 127.0.0.1 does not get it)",
            )
    finally:
        server.stop()
    refused = handoff.refused_summary()
    if refused:
        report(
            f"the sign-in page was refused to {refused}: another local user may be "
            "watching for sign-in links"
        )


def _start(opener: Callable[[str], bool] | None, address: str) -> bool:
    if opener is None:
        import webbrowser

        opener = webbrowser.open
    try:
        return bool(opener(address))
    except Exception:  # webbrowser.Error, a launcher that cannot run: no browser
        return False


# --- WSL: the Windows browser ---------------------------------------------------------------

#: Where Windows PowerShell is when WSL does not put Windows' PATH on ours.
POWERSHELL = "/mnt/c/Windows/System32/WindowsPowerShell/v1.0/powershell.exe"


def in_wsl(osrelease: str = "/proc/sys/kernel/osrelease") -> bool:
    """Whether this is Linux under WSL (1 or 2): the kernel release (``osrelease``) names
    Microsoft or WSL, as WSL's own kernels do. False when the file cannot be read.
    """
    try:
        with open(osrelease, encoding="utf-8", errors="replace") as handle:
            release = handle.read().lower()
    except OSError:
        return False
    return "microsoft" in release or "wsl" in release


def windows_launcher(environ: Mapping[str, str] | None = None) -> str | None:
    """Under WSL, PowerShell to start the Windows default browser with, unless
    ``BROWSER`` names a Linux browser; else None (the browser is a Linux process)."""
    if not in_wsl():
        return None
    environ = os.environ if environ is None else environ
    first = environ.get("BROWSER", "").split(os.pathsep)[0].strip()
    if first:
        try:
            words = shlex.split(first)
        except ValueError:
            return None
        program = os.path.basename(words[0]) if words else ""
        if program != "wslview" and not program.lower().endswith(".exe"):
            return None  # a Linux browser (WSLg): the uid check covers it
    for candidate in (shutil.which("powershell.exe"), POWERSHELL):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def start_windows_browser(powershell: str, address: str) -> bool:
    """Start the Windows default browser on ``address`` (which holds the nonce): the
    command goes to PowerShell on its standard input, so no Linux process shows it."""
    if not re.fullmatch(r"http://127\.0\.0\.1:\d+/[A-Za-z0-9_-]*", address):
        raise ValueError("not a local address")
    script = f"Start-Process '{address}'\r\nexit\r\n"
    try:
        done = subprocess.run(
            [powershell, "-NoLogo", "-NoProfile", "-NonInteractive", "-Command", "-"],
            input=script.encode(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=LAUNCHER_TIMEOUT, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
