"""`exec --server`'s credential endpoint under hostile or clumsy clients, and while a
refresh waits for a person: bounded connections, no traceback, no request held up.

Bounded load only: a few dozen connections on 127.0.0.1, seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from broker.aws.credentials import Credentials
from broker.errors import AWSError
from broker.services import server as server_service
from tests.support.contexts import require_keyctl
from tests.support.other_user import hold_as, throwaway_uid


def _creds(name: str, seconds_left: float) -> Credentials:
    return Credentials(name, f"{name}-secret", f"{name}-token",
                       datetime.now(timezone.utc) + timedelta(seconds=seconds_left))


def _fresh_source() -> server_service.RefreshingCredentials:
    def fetch() -> Credentials:
        raise AWSError("no refresh expected")

    return server_service.RefreshingCredentials(fetch, 300, initial=_creds("ASIAOK", 3600))


@pytest.fixture
def endpoint() -> Iterator[server_service.CredentialServer]:
    with server_service.CredentialServer(_fresh_source()) as server:
        yield server


def _port(server: server_service.CredentialServer) -> int:
    return int(server.url.rsplit(":", 1)[1].strip("/"))


def _get(url: str, token: str, timeout: float = 10) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Authorization": token})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body else {}


def _reset(port: int, send: bytes = b"") -> None:
    """Connect, maybe send something, and abort the connection (RST, not FIN)."""
    sock = socket.create_connection(("127.0.0.1", port))
    if send:
        sock.sendall(send)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


# --- per-connection time limits ----------------------------------------------------------


def test_idle_and_trickling_connections_are_cut_off(endpoint):
    """A connection that sends nothing, and one that sends its request a byte at a time
    (slowloris), are closed once the request head is 5 s late."""
    port = _port(endpoint)
    idle = socket.create_connection(("127.0.0.1", port))
    trickle = socket.create_connection(("127.0.0.1", port))
    stop = threading.Event()

    def dribble() -> None:
        with_header = b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 1000
        for byte in with_header:
            if stop.wait(0.25):
                return
            try:
                trickle.send(bytes([byte]))
            except OSError:
                return

    dribbler = threading.Thread(target=dribble, daemon=True)
    dribbler.start()
    started = time.monotonic()
    try:
        assert _closed_within(idle, 9), "an idle connection was kept open"
        assert _closed_within(trickle, 9 - (time.monotonic() - started)), (
            "a trickling connection was kept open"
        )
        assert time.monotonic() - started < 8
    finally:
        stop.set()
        idle.close()
        trickle.close()
    assert _get(endpoint.url, endpoint.token)[0] == 200  # and still serving


def test_concurrent_connections_are_capped_and_an_extra_one_is_answered_at_once(endpoint):
    port = _port(endpoint)
    threads_before = threading.active_count()
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    try:
        time.sleep(0.5)
        assert threading.active_count() - threads_before <= 32
        started = time.monotonic()
        status, _ = _get(endpoint.url, endpoint.token, timeout=3)
        assert status == 503 and time.monotonic() - started < 1.5
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status, document = _get(endpoint.url, endpoint.token)
        if status == 200:
            break
        time.sleep(0.1)
    assert status == 200 and document["AccessKeyId"] == "ASIAOK"


def test_another_users_idle_connections_cost_seconds_not_the_endpoint(endpoint):
    """Another local user holding connections open makes the endpoint busy only until
    they time out: then the child is served again (they learn nothing either way)."""
    attacker = throwaway_uid()
    holder = hold_as(attacker, _port(endpoint), 40)
    try:
        status, _ = _get(endpoint.url, endpoint.token, timeout=3)
        assert status in (200, 503)
        time.sleep(6)  # the 5 s head deadline has passed for all of them
        status, document = _get(endpoint.url, endpoint.token, timeout=3)
        assert status == 200 and document["AccessKeyId"] == "ASIAOK"
    finally:
        holder.communicate("", timeout=10)


# --- no traceback -------------------------------------------------------------------------------


def test_resets_print_no_traceback(capfd):
    reports: list[str] = []
    with server_service.CredentialServer(_fresh_source(), reports.append) as server:
        port = _port(server)
        for _ in range(10):
            _reset(port)
            _reset(port, b"GET / HTTP/1.1\r\n")
            _reset(port, f"GET / HTTP/1.1\r\nAuthorization: {server.token}\r\n\r\n".encode())
            _reset(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64))
        time.sleep(0.5)
        status, document = _get(server.url, server.token)
    assert status == 200 and document["AccessKeyId"] == "ASIAOK"
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err
    assert len(reports) <= 1, reports


RESETS = textwrap.dedent(
    """
    import os, socket, struct, urllib.request
    url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    port = int(url.rsplit(":", 1)[1].strip("/"))
    for i in range(20):
        sock = socket.create_connection(("127.0.0.1", port))
        if i % 2:
            sock.sendall(b"GET / HTTP/1.1\\r\\nAuthorization: x\\r\\n\\r\\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    request = urllib.request.Request(url, headers={"Authorization": token})
    print(urllib.request.urlopen(request, timeout=10).status)
    """
)


def test_exec_server_prints_no_traceback_when_clients_reset(home):
    require_keyctl()
    home.add_key("dev")
    result = home.run("exec", "--server", "dev", "--", sys.executable, "-c", RESETS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "200"
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 1, result.stderr


# --- accept errors ------------------------------------------------------------------------------


LOW_FD_SERVER = textwrap.dedent(
    """
    import os, resource, sys, time
    from datetime import datetime, timedelta, timezone
    from broker.aws.credentials import Credentials
    from broker.services import server
    creds = Credentials("ASIAOK", "s", "t", datetime.now(timezone.utc) + timedelta(hours=1))
    source = server.RefreshingCredentials(lambda: creds, 300, initial=creds)
    endpoint = server.CredentialServer(
        source, lambda line: sys.stderr.write(f"broker: {line}\\n"), token="T" * 40)
    endpoint.start()
    time.sleep(0.2)
    spare = 3
    used = len(os.listdir("/proc/self/fd"))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + spare, hard))
    print(endpoint.url, flush=True)
    sys.stdin.read()
    """
)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_running_out_of_file_descriptors_does_not_spin():
    """Under a low fd limit, accept() fails with EMFILE while connections wait: the
    endpoint backs off instead of spinning, says so in one line, and recovers."""
    process = subprocess.Popen(
        [sys.executable, "-c", LOW_FD_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    held: list[socket.socket] = []
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.stderr else ""
        port = int(url.rsplit(":", 1)[1].strip("/"))
        for _ in range(12):
            with contextlib.suppress(OSError):  # a full backlog: the connect times out
                held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        time.sleep(0.5)
        before = _cpu_seconds(process.pid)
        time.sleep(2)
        spent = _cpu_seconds(process.pid) - before
        assert spent < 0.5, f"the endpoint spun: {spent:.2f} s of CPU in 2 s"
        for sock in held:
            sock.close()
        held = []
        deadline = time.monotonic() + 10
        status = 0
        while time.monotonic() < deadline:
            try:
                status = _get(url, "T" * 40, timeout=3)[0]
            except (urllib.error.URLError, OSError):
                status = 0
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200
    finally:
        for sock in held:
            sock.close()
        _, err = process.communicate("", timeout=10)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Too many open files" in lines[0], err


# --- a refresh that waits for a person ----------------------------------------------------------


class _Clock:
    """Real time, plus ``ahead`` seconds."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=self.ahead)


def _aging(fetch, seconds_left: float, **kwargs):  # type: ignore[no-untyped-def]
    """Credentials fetched an hour ago that have ``seconds_left`` now."""
    clock = _Clock()
    source = server_service.RefreshingCredentials(
        fetch, 300, initial=_creds("ASIAOLD", 3600), clock=clock, **kwargs
    )
    clock.ahead = 3600 - seconds_left
    return source


class _Person:
    """A refresh that blocks until a person has answered (``answer()``)."""

    def __init__(self, fresh: Credentials) -> None:
        self.fresh = fresh
        self.asked = threading.Event()
        self.answered = threading.Event()

    def fetch(self) -> Credentials:
        self.asked.set()
        assert self.answered.wait(30)
        return self.fresh

    def answer(self) -> None:
        self.answered.set()


def _botocore_fetch(url: str, token: str) -> dict[str, str]:
    """What botocore's container provider gets (2 s timeout, 3 attempts)."""
    from botocore.utils import ContainerMetadataFetcher

    result: dict[str, str] = ContainerMetadataFetcher().retrieve_full_uri(
        url, headers={"Authorization": token}
    )
    return result


def test_a_request_never_waits_for_the_person_answering_an_mfa_prompt():
    """The credentials served have 30 s left; the refresh waits for an MFA code. The
    SDK's request is answered at once with the still-valid credentials (botocore gives
    the endpoint 2 s), and the fresh ones once the person has answered."""
    person = _Person(_creds("ASIAFRESH", 3600))
    source = _aging(person.fetch, 30, needs_code=lambda: True)
    with server_service.CredentialServer(source) as server:
        started = time.monotonic()
        document = _botocore_fetch(server.url, server.token)
        assert document["AccessKeyId"] == "ASIAOLD"
        assert time.monotonic() - started < 0.5
        assert person.asked.wait(5)
        for _ in range(3):  # more requests during the prompt: answered at once too
            started = time.monotonic()
            assert _botocore_fetch(server.url, server.token)["AccessKeyId"] == "ASIAOLD"
            assert time.monotonic() - started < 0.5
        person.answer()
        deadline = time.monotonic() + 5
        while source.refreshing and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _botocore_fetch(server.url, server.token)["AccessKeyId"] == "ASIAFRESH"
    assert source.refreshes == 1


def test_a_slow_refresh_does_not_make_the_sdk_time_out():
    """Without knowing whether a person is involved, a request still gets the valid
    credentials within botocore's 2 s while the refresh goes on in the background."""
    person = _Person(_creds("ASIAFRESH", 3600))
    source = _aging(person.fetch, 30)
    with server_service.CredentialServer(source) as server:
        started = time.monotonic()
        document = _botocore_fetch(server.url, server.token)
        assert document["AccessKeyId"] == "ASIAOLD"
        assert time.monotonic() - started < 2
        person.answer()


def test_with_nothing_valid_left_the_sdk_is_told_to_retry_not_left_hanging():
    person = _Person(_creds("ASIAFRESH", 3600))
    source = server_service.RefreshingCredentials(
        person.fetch, 300, initial=_creds("ASIAOLD", -5), needs_code=lambda: True
    )
    with server_service.CredentialServer(source) as server:
        started = time.monotonic()
        status, document = _get(server.url, server.token, timeout=5)
        assert status == 503 and "refresh is under way" in document["Message"]
        assert time.monotonic() - started < 2
        person.answer()
        # botocore retries after a second: by then the answer is there
        assert _botocore_fetch(server.url, server.token)["AccessKeyId"] == "ASIAFRESH"


def test_the_chain_refresh_says_when_it_needs_a_code(in_home, sts, tmp_path):
    """Through the real chain: an mfa_process that waits for a touch (a YubiKey). While
    it waits, requests get the valid credentials; the touch completes the refresh."""
    from broker.aws.chain import ChainOptions, hop_session_name, mfa_session_name
    from broker.aws.profiles import resolve_chain
    from broker.services import credentials
    from tests.support.contexts import default_keys, home_context

    touch = tmp_path / "touched"
    touch.touch()
    config = in_home.aws_config.read_text()
    waiting = (
        f'mfa_process = while [ ! -e "{touch}" ]; do sleep 0.05; done; "$BROKER_TEST_MFA"'
    )
    assert 'mfa_process = "$BROKER_TEST_MFA"' in config
    in_home.aws_config.write_text(config.replace('mfa_process = "$BROKER_TEST_MFA"', waiting))
    ctx = home_context(in_home, default_keys("dev"))
    first = credentials.obtain(ctx, "dev")
    clock = _Clock()
    fetch = server_service.refresher(ctx, "dev")
    source = server_service.RefreshingCredentials(
        fetch, ctx.settings.refresh_margin, initial=first.credentials, clock=clock,
        needs_code=fetch.needs_code,
    )
    clock.ahead = first.credentials.seconds_left(clock()) - 30  # 30 s left
    chain = resolve_chain(ctx.aws, "dev")
    options = ChainOptions.from_settings(ctx.settings)
    sessions = ctx.sessions.backend
    assert sessions is not None
    sessions.delete(hop_session_name(chain, 0, options))
    sessions.delete(mfa_session_name(chain))
    assert fetch.needs_code()
    touch.unlink()
    in_home.next_step()
    with server_service.CredentialServer(source) as server:
        started = time.monotonic()
        document = _botocore_fetch(server.url, server.token)
        assert document["AccessKeyId"] == first.credentials.access_key_id
        assert time.monotonic() - started < 0.5
        assert source.refreshing
        touch.touch()
        deadline = time.monotonic() + 30
        while source.refreshing and time.monotonic() < deadline:
            time.sleep(0.05)
        assert source.refreshes == 1
        document = _botocore_fetch(server.url, server.token)
        assert document["AccessKeyId"] != first.credentials.access_key_id
    assert len(sts.actions("GetSessionToken")) == 2
