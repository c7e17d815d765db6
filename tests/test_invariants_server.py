"""Invariants of the credential endpoint (`exec --server`): only the exact token gets
credentials, compared in constant time; nothing else about a request changes that."""

from __future__ import annotations

import hmac
import http.client
import json
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from broker.aws.credentials import Credentials
from broker.errors import AWSError
from broker.services import server as server_service

TOKEN = "Tok3n-With_Mixed.Case-0123456789abcdefXYZ"


def _served() -> server_service.RefreshingCredentials:
    fresh = Credentials("ASIASERVED", "served-secret", "served-token",
                        datetime.now(timezone.utc) + timedelta(hours=1))

    def fetch() -> Credentials:
        raise AWSError("no refresh expected in these tests")

    return server_service.RefreshingCredentials(fetch, 300, initial=fresh)


@pytest.fixture
def endpoint() -> Iterator[server_service.CredentialServer]:
    with server_service.CredentialServer(_served(), token=TOKEN) as server:
        yield server


def _request(server: server_service.CredentialServer, authorization: bytes | None,
             method: str = "GET", path: str = "/") -> tuple[int, bytes]:
    """One request with exactly these Authorization bytes (no client-side normalising)."""
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path)
        if authorization is not None:
            conn.putheader("Authorization", authorization)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _flip(text: str, index: int) -> str:
    char = text[index]
    return text[:index] + ("a" if char != "a" else "b") + text[index + 1 :]


WRONG = {
    "one char short": TOKEN[:-1],
    "one char long": TOKEN + "x",
    "first char dropped": TOKEN[1:],
    "a char in front": "x" + TOKEN,
    "first char differs": _flip(TOKEN, 0),
    "middle char differs": _flip(TOKEN, len(TOKEN) // 2),
    "last char differs": _flip(TOKEN, -1),
    "empty": "",
    "one char": TOKEN[:1],
    "half": TOKEN[: len(TOKEN) // 2],
    "upper case": TOKEN.upper(),
    "lower case": TOKEN.lower(),
    "case swapped": TOKEN.swapcase(),
    "twice": TOKEN * 2,
    "bearer scheme": f"Bearer {TOKEN}",
    "NUL appended": TOKEN + "\0",
    "latin-1 appended": TOKEN + "é",
}


@pytest.mark.parametrize("what", WRONG)
def test_anything_but_the_exact_token_is_refused(endpoint, what):
    status, body = _request(endpoint, WRONG[what].encode("latin-1"))
    assert status == 403, what
    assert b"ASIA" not in body and b"secret" not in body


def test_the_exact_token_gets_the_credentials(endpoint):
    status, body = _request(endpoint, TOKEN.encode())
    assert status == 200
    document = json.loads(body)
    assert document["AccessKeyId"] == "ASIASERVED"
    assert document["SecretAccessKey"] == "served-secret"
    assert document["Token"] == "served-token"
    assert document["Expiration"].endswith("Z")


def test_no_authorization_header_is_401(endpoint):
    status, body = _request(endpoint, None)
    assert status == 401 and body == b""


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_every_method_checks_the_token_first(endpoint, method):
    assert _request(endpoint, TOKEN[:-1].encode(), method=method)[0] == 403
    assert _request(endpoint, None, method=method)[0] == 401
    status, body = _request(endpoint, TOKEN.encode(), method=method)
    if method == "GET":
        assert status == 200
    else:  # only GET is the ECS protocol: no credentials for anything else
        assert status not in (200, 401, 403) and b"ASIA" not in body


def test_other_paths_with_the_token_are_404_without_credentials(endpoint):
    status, body = _request(endpoint, TOKEN.encode(), path="/latest/meta-data/")
    assert status == 404 and b"ASIA" not in body
    assert _request(endpoint, TOKEN.encode(), path="/?x=1")[0] == 200  # a query is harmless


def test_the_token_is_compared_in_constant_time(endpoint, monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    monkeypatch.setattr(secrets, "compare_digest", spy)
    assert _request(endpoint, TOKEN[:-1].encode())[0] == 403
    assert _request(endpoint, TOKEN.encode())[0] == 200
    assert len(calls) == 2
    for given, _expected in calls:
        assert TOKEN.encode().startswith(given)
    assert {expected for _, expected in calls} == {TOKEN.encode()}


def test_a_generated_token_is_long_and_unpredictable():
    tokens = set()
    for _ in range(5):
        server = server_service.CredentialServer(_served())
        try:
            assert len(server.token) >= 32
            tokens.add(server.token)
        finally:
            server.stop()
    assert len(tokens) == 5


def test_the_endpoint_listens_on_loopback_only(endpoint):
    assert endpoint.url.startswith("http://127.0.0.1:")
    assert endpoint._httpd.server_address[0] == "127.0.0.1"
