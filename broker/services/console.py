"""`broker login`: a console sign-in URL for a profile's session.

A role profile signs in with its role session (from the cache or the chain).
A plain IAM user has no role session to use, so broker asks for a federation
token with the long-lived key (GetFederationToken refuses session credentials,
so that session carries no MFA context), as aws-vault does.

The URL holds a sign-in token, a secret for its 15 minutes: it is returned to
be printed on stdout (``--stdout``), or handed to the browser through a one-shot
redirect on 127.0.0.1 so that it never appears in a browser's argv (``ps``).
"""

from __future__ import annotations

import secrets
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from broker.aws import federation
from broker.aws.profiles import resolve_chain
from broker.errors import BrokerError
from broker.services.context import Context
from broker.services.credentials import master_key, obtain

DEFAULT_FEDERATION_DURATION = 3600
BROWSER_WAIT = 120.0


@dataclass
class ConsoleLogin:
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
        token = federation.signin_token(endpoint, creds)
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
    opener: Callable[[str], bool] = webbrowser.open,
    wait: float = BROWSER_WAIT,
    **options: Any,
) -> ConsoleLogin:
    """Build the sign-in URL and, with ``browser``, open it; options as :func:`signin_url`."""
    signin = signin_url(ctx, profile, **options)
    if browser:
        open_in_browser(signin.url, opener=opener, wait=wait)
    return signin


def open_in_browser(
    url: str, *, opener: Callable[[str], bool] = webbrowser.open, wait: float = BROWSER_WAIT
) -> None:
    """Open ``url`` through a one-shot redirect on 127.0.0.1.

    The browser is started with ``http://127.0.0.1:PORT/<nonce>``, worthless once
    used, so the sign-in token never shows in a process list.
    """
    nonce = secrets.token_urlsafe(24)
    served = threading.Event()

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # the path is a nonce, but nothing here is worth a log line

        def do_GET(self) -> None:
            if self.path != f"/{nonce}" or served.is_set():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(302)
            self.send_header("Location", url)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.wfile.flush()
            served.set()

    # One thread handling one request at a time: the redirect is fully written
    # before shutdown() returns.
    server = HTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        local = f"http://127.0.0.1:{server.server_address[1]}/{nonce}"
        if not opener(local):
            raise BrokerError(
                "could not start a web browser",
                "set BROWSER, or run with --stdout and open the URL yourself",
            )
        if not served.wait(wait):
            raise BrokerError(
                f"the browser did not open the sign-in page within {int(wait)} s",
                "run with --stdout and open the URL yourself",
            )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
