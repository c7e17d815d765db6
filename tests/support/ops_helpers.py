"""Helpers for the exec --server, rotate, login and doctor tests."""

from __future__ import annotations

import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from broker.services.context import Context
from tests.conftest import TEST_KEY_ID, TEST_SECRET
from tests.support.keyring_cache import broker_context


def require_keyctl() -> None:
    from broker_keyctl import KeyctlBackend

    availability = KeyctlBackend().availability()
    if not availability.ok:
        pytest.skip(f"kernel keyring unavailable: {availability.reason}")


def memory_context(home: Any, keys: dict[str, tuple[str, str]] | None = None) -> Context:
    """A Context in the test's home: keys in an in-memory backend, sessions in the home's
    throwaway kernel keyring (the memory backend only where the keyring is unusable)."""
    return broker_context(
        Path(home.env["BROKER_CONFIG"]),
        keys or {"dev": (TEST_KEY_ID, TEST_SECRET)},
        keyring=home.keyring,
    )


def iam_client(moto_url: str) -> Any:
    import boto3

    return boto3.client(
        "iam", endpoint_url=moto_url, region_name="us-east-1",
        aws_access_key_id="AKIAADMIN0000000000", aws_secret_access_key="admin",
    )


def create_iam_user(moto_url: str, prefix: str = "rot") -> tuple[str, str, str]:
    """A new IAM user in moto with one access key: (user, key id, secret)."""
    user = f"{prefix}-{uuid.uuid4().hex[:10]}"
    iam = iam_client(moto_url)
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return user, key["AccessKeyId"], key["SecretAccessKey"]


def access_keys(moto_url: str, user: str) -> set[str]:
    listed = iam_client(moto_url).list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {k["AccessKeyId"] for k in listed}


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
    stub = StubFederation(**kwargs)
    stub.thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()
