"""A stand-in for AWS's federation endpoint (console sign-in): getSigninToken on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StubFederation:
    """A tiny federation endpoint on 127.0.0.1: answers getSigninToken, records queries."""

    def __init__(
        self, token: str = "stub-signin-token-0123456789", status: int = 200  # noqa: S107
    ) -> None:
        self.token = token
        self.status = status
        self.queries: list[dict[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                stub.queries.append(query)
                body = json.dumps({"SigninToken": stub.token}).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/federation"

    def session(self) -> dict[str, str]:
        """The Session JSON of the (only) getSigninToken request."""
        (query,) = [q for q in self.queries if q.get("Action") == "getSigninToken"]
        return dict(json.loads(query["Session"]))


@contextmanager
def stub_federation(**kwargs: Any) -> Iterator[StubFederation]:
    """A running :class:`StubFederation` (``token``, ``status``), shut down on exit."""
    stub = StubFederation(**kwargs)
    stub.thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()
