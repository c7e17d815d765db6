"""A recording proxy in front of moto's server.

moto checks no MFA code and no trust policy, so tests assert what broker
*sends*: every request's form parameters are recorded, then forwarded.
Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Recorder:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.calls: list[dict[str, str]] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.command == "POST" and body:
                    params = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
                    if "Action" in params:
                        with recorder.lock:
                            recorder.calls.append(params)
                conn = http.client.HTTPConnection("127.0.0.1", recorder.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"127.0.0.1:{recorder.upstream_port}"
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_POST = _forward
            do_GET = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def actions(self, name: str | None = None) -> list[dict[str, str]]:
        with self.lock:
            return [c for c in self.calls if name is None or c.get("Action") == name]

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
