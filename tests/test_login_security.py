"""`broker login`: the sign-in link goes to the user's own browser and to no one else.

The attacker is another local user (a throwaway uid, tests/support/other_user.py) who
reads the browser's command line (`ps` shows every argv) and races for the link.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import stat
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path

import pytest

from broker.aws import federation
from broker.errors import BrokerError
from broker.services import console, loopback
from broker.services.loopback import Request
from tests.support.contexts import require_keyctl
from tests.support.federation import stub_federation
from tests.support.other_user import fetch_as, hold_as, throwaway_uid

SECRET_URL = "https://signin.aws.amazon.com/federation?Action=login&SigninToken=SECRET-TOKEN"


def _fetch(url: str) -> tuple[int, str | None]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", parts.path or "/")
        response = conn.getresponse()
        return response.status, response.getheader("Location")
    finally:
        conn.close()


def _port(url: str) -> int:
    return urllib.parse.urlsplit(url).port or 0


def test_another_user_who_races_for_the_link_gets_nothing():
    """The attacker fetches the address first, as soon as the browser shows it in `ps`:
    refused, and the user's browser still gets the link."""
    attacker = throwaway_uid()
    seen: dict[str, object] = {}
    reports: list[str] = []

    def browser(url: str) -> bool:
        seen["attacker"] = fetch_as(attacker, url)
        seen["browser"] = _fetch(url)
        return True

    console.open_in_browser(SECRET_URL, opener=browser, wait=10, report=reports.append)
    assert "SECRET-TOKEN" not in json.dumps(seen["attacker"])
    assert seen["attacker"].get("status") in (None, 403)  # type: ignore[union-attr]
    assert seen["browser"] == (302, SECRET_URL)
    assert len(reports) == 1 and f"uid {attacker}" in reports[0], reports


def test_success_is_reported_only_when_the_users_own_browser_got_the_link():
    """Only the attacker fetches: broker must not say the console was opened."""
    attacker = throwaway_uid()
    fetched: list[dict[str, object]] = []

    def attacked_browser(url: str) -> bool:
        fetched.append(fetch_as(attacker, url))
        return True

    with pytest.raises(BrokerError, match="did not open the sign-in page") as info:
        console.open_in_browser(SECRET_URL, opener=attacked_browser, wait=2)
    assert f"uid {attacker}" in str(info.value)
    assert "SECRET-TOKEN" not in json.dumps(fetched)


def test_idle_connections_do_not_hold_up_the_link():
    """Idle connections, another user's by dozens and a few of the user's own (a browser's
    speculative ones), do not keep the browser's request from being answered."""
    attacker = throwaway_uid()
    seen: list[tuple[int, str | None]] = []
    own: list[socket.socket] = []

    def browser(url: str) -> bool:
        holder = hold_as(attacker, _port(url), 30)
        try:
            own.extend(socket.create_connection(("127.0.0.1", _port(url))) for _ in range(4))
            started = time.monotonic()
            seen.append(_fetch(url))
            seen.append((int(time.monotonic() - started), None))
        finally:
            holder.communicate("", timeout=10)
        return True

    try:
        console.open_in_browser(SECRET_URL, opener=browser, wait=10)
    finally:
        for sock in own:
            sock.close()
    assert seen[0] == (302, SECRET_URL)
    assert seen[1][0] < 2


def test_a_silent_connection_is_dropped(monkeypatch):
    monkeypatch.setattr(console, "LOGIN_HEAD_TIMEOUT", 0.5)
    closed_after: list[float] = []

    def browser(url: str) -> bool:
        with socket.create_connection(("127.0.0.1", _port(url))) as idle:
            idle.settimeout(10)
            started = time.monotonic()
            assert idle.recv(100) == b""
            closed_after.append(time.monotonic() - started)
        assert _fetch(url)[0] == 302
        return True

    console.open_in_browser(SECRET_URL, opener=browser, wait=20)
    assert closed_after[0] < 3


def test_the_browser_is_started_with_nothing_another_user_can_use(home, tmp_path):
    """`broker login`, with BROWSER set: the command line the browser gets holds no
    secret, not even a one-use path; another user who fetches it is refused."""
    require_keyctl()
    attacker = throwaway_uid()
    record = tmp_path / "browser.json"
    browser = tmp_path / "browser"
    browser.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import http.client, json, subprocess, sys, urllib.parse
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from tests.support.other_user import fetch_as
        url = sys.argv[1]
        seen = {{"argv": sys.argv[1:], "attacker": fetch_as({attacker}, url)}}
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        conn.request("GET", parts.path)
        response = conn.getresponse()
        seen["browser"] = [response.status, response.getheader("Location")]
        open({str(record)!r}, "w").write(json.dumps(seen))
        """))
    browser.chmod(0o755)
    home.add_key("dev")
    with stub_federation() as stub:
        env = {federation.ENDPOINT_VARIABLE: stub.url, "BROWSER": str(browser)}
        result = home.run("login", "dev", env=env)
    assert result.returncode == 0, result.stderr
    seen = json.loads(record.read_text())
    (address,) = seen["argv"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", address), address
    assert stub.token not in json.dumps(seen["attacker"])
    assert seen["attacker"].get("status") in (None, 403)
    status, location = seen["browser"]
    assert status == 302 and f"SigninToken={stub.token}" in location
    assert "Opened the AWS console for dev" in result.stderr
    assert f"refused to 1 connection of uid {attacker}" in result.stderr
    assert stub.token not in result.stderr and result.stdout == ""


# --- the parts -------------------------------------------------------------------------------


def _request(path: str, peer_port: int = 40000) -> Request:
    return Request("GET", path, (), ("127.0.0.1", peer_port), ("127.0.0.1", 8000))


def test_the_link_goes_out_once_and_again_only_if_it_never_arrived():
    handoff = console.Handoff(SECRET_URL, "n0nce", uid=1000, owner=lambda peer, local: 1000)
    first = handoff.handle(_request("/"))
    assert first.status == 302 and ("Location", SECRET_URL) in first.headers
    assert handoff.handle(_request("/")).status == 404  # claimed: nobody else gets it
    assert first.delivered is not None
    first.delivered(False)  # the client went away before the answer was out
    assert not handoff.delivered.is_set()
    second = handoff.handle(_request("/"))
    assert second.status == 302 and second.delivered is not None
    second.delivered(True)
    assert handoff.delivered.is_set()
    assert handoff.handle(_request("/")).status == 404


def test_only_the_users_own_sockets_are_served():
    owners = {40001: 1000, 40002: 1001, 40003: 0, 40004: None}
    handoff = console.Handoff(SECRET_URL, "n0nce", uid=1000,
                              owner=lambda peer, local: owners[peer[1]])
    assert handoff.admit(("127.0.0.1", 40001), ("127.0.0.1", 8000))
    for port in (40002, 40003, 40004):
        assert not handoff.admit(("127.0.0.1", port), ("127.0.0.1", 8000))
        assert handoff.handle(_request("/n0nce", port)).status == 403
    assert handoff.refused_summary() == "6 connections of an unknown owner, uid 0, uid 1001"
    assert handoff.handle(_request("/favicon.ico", 40001)).status == 404
    assert handoff.handle(_request("/", 40001)).status == 302


def test_under_wsl_the_relay_is_served_only_with_the_nonce():
    """A Windows browser comes in through WSL's localhost relay (root's socket, or no
    local socket at all): served only on the nonce path; a Linux user's socket is judged
    by its uid whatever path it asks for."""
    owners = {40001: 0, 40002: None, 40003: 1001}
    handoff = console.Handoff(SECRET_URL, "n0nce", uid=1000, relayed=True,
                              owner=lambda peer, local: owners[peer[1]])
    assert handoff.handle(_request("/", 40001)).status == 403
    assert handoff.handle(_request("/n0nc", 40002)).status == 403
    assert handoff.handle(_request("/n0nce", 40003)).status == 403
    assert not handoff.admit(("127.0.0.1", 40003), ("127.0.0.1", 8000))
    assert handoff.handle(_request("/n0nce", 40002)).status == 302


def test_the_windows_browser_gets_the_nonce_on_a_pipe_not_in_argv(tmp_path, monkeypatch):
    record = tmp_path / "powershell.json"
    fake = tmp_path / "powershell.exe"
    fake.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import json, sys
        open({str(record)!r}, "w").write(json.dumps(
            {{"argv": sys.argv[1:], "stdin": sys.stdin.read()}}))
        """))
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    address = "http://127.0.0.1:4321/abc-DEF_123"
    assert console.start_windows_browser(str(fake), address)
    seen = json.loads(record.read_text())
    assert not any("4321" in arg or "abc" in arg for arg in seen["argv"])
    assert seen["argv"][-2:] == ["-Command", "-"]
    assert f"Start-Process '{address}'" in seen["stdin"]
    with pytest.raises(ValueError):
        console.start_windows_browser(str(fake), "http://127.0.0.1:1/'; calc; '")

    monkeypatch.setattr(console, "in_wsl", lambda: True)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert console.windows_launcher({}) == str(fake)
    assert console.windows_launcher({"BROWSER": "wslview"}) == str(fake)
    assert console.windows_launcher({"BROWSER": "/usr/bin/firefox"}) is None
    monkeypatch.setattr(console, "in_wsl", lambda: False)
    assert console.windows_launcher({}) is None


def test_no_way_to_tell_who_connects_means_no_link_served(monkeypatch):
    monkeypatch.setattr(loopback, "TCP_TABLE", "/nonexistent/tcp")
    started: list[str] = []
    with pytest.raises(BrokerError, match="--stdout"):
        console.open_in_browser(SECRET_URL, opener=lambda url: bool(started.append(url)) or True)
    assert started == []
