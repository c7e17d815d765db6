"""Invariants of the credential endpoint (`exec --server`): only the exact token gets
credentials, compared in constant time; nothing else about a request changes that."""

from __future__ import annotations

import hmac
import http.client
import json
import os
import secrets
import signal
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from broker.aws.credentials import Credentials
from broker.errors import AWSError
from broker.services import child
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


# --- the child: its exit, the signals relayed, the handlers given back ------------------------


def _in_a_fork(body) -> int:
    """Run ``body`` in a forked copy of this process; its raw wait status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            body()
        finally:
            os._exit(99)
    return os.waitpid(pid, 0)[1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_child_killed_by_a_signal_makes_broker_die_by_it(signum):
    """Even with that signal blocked and handled in Python, as during supervise()."""
    def body() -> None:
        signal.signal(signum, lambda *_: os._exit(98))
        signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
        child.exit_status(-signum)
        os._exit(97)  # exit_status came back: not killed

    status = _in_a_fork(body)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signum, status
    assert child.exit_status(3) == 3  # (called here too: mutmut sees this test)


def test_a_child_dumping_core_is_128_plus_its_signal():
    status = _in_a_fork(lambda: os._exit(child.exit_status(-signal.SIGSEGV)))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGSEGV
    assert child.exit_status(-signal.SIGSEGV) == 128 + signal.SIGSEGV


def _state() -> tuple[dict, set]:
    handlers = {s: signal.getsignal(s)
                for s in (*child.relayed_signals(), signal.SIGTTOU, signal.SIGTTIN)}
    return handlers, signal.pthread_sigmask(signal.SIG_BLOCK, [])


@pytest.mark.timeout(30)
def test_supervise_returns_the_childs_code_and_gives_everything_back():
    before = _state()
    started: list[set] = []

    def start() -> None:  # the server's threads start with the relayed signals blocked
        started.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))

    assert child.supervise(["sh", "-c", "exit 7"], {"PATH": "/usr/bin:/bin"},
                                    start) == 7
    assert set(child.relayed_signals()) | {signal.SIGCHLD} <= started[0]
    assert _state() == before


@pytest.mark.timeout(30)
def test_supervise_runs_the_child_with_the_environment_given(tmp_path):
    out = tmp_path / "env"
    code = child.supervise(
        ["sh", "-c", f'echo "$ONLY" > {out}; [ -z "$HOME" ]'], {"ONLY": "this"}, lambda: None)
    assert code == 0 and out.read_text() == "this\n"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("when", ["while starting", "while running"])
def test_a_signal_sent_to_broker_is_relayed_to_the_child(when):
    import threading
    import time

    def kill_me() -> None:
        os.kill(os.getpid(), signal.SIGUSR1)

    start = kill_me if when == "while starting" else (lambda: None)
    if when == "while running":
        threading.Timer(1.0, kill_me).start()
    began = time.monotonic()
    # without the signal the child ends by itself, with 0, after 10 s
    code = child.supervise(
        ["sh", "-c", "trap 'exit 42' USR1; i=0; while [ $i -lt 100 ]; do sleep 0.1; "
         "i=$((i+1)); done"], {"PATH": "/usr/bin:/bin"}, start)
    assert code in (42, -signal.SIGUSR1), code
    assert time.monotonic() - began < 9


@pytest.mark.parametrize(("make", "message", "hint"), [
    (lambda d: str(d / "missing"), "command not found: {}", "check the command after --"),
    (lambda d: str(d), "cannot run {}: permission denied", "check its mode"),
])
def test_supervise_says_why_a_command_cannot_start(tmp_path, make, message, hint):
    from broker.errors import UsageError

    before = _state()
    command = make(tmp_path)
    with pytest.raises(UsageError) as info:
        child.supervise([command], {}, lambda: None)
    assert (info.value.message, info.value.hint) == (message.format(command), hint)
    assert _state() == before


def test_a_handler_python_did_not_set_is_restored_to_the_default():
    old = signal.getsignal(signal.SIGUSR2)
    try:
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        child._restore({signal.SIGUSR2: None})
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR2, old)


def test_same_group_tells_a_child_in_broker_s_group():
    import subprocess

    same = subprocess.Popen(["sleep", "5"])
    apart = subprocess.Popen(["sleep", "5"], start_new_session=True)
    try:
        assert child._same_group(same) is True
        assert child._same_group(apart) is False
    finally:
        for process in (same, apart):
            process.kill()
            process.wait()
    assert child._same_group(same) is False  # gone: nothing to tell


# --- run(): what the child is handed ----------------------------------------------------------

CHILD = """\
import json, os, sys, urllib.request
token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
request = urllib.request.Request(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
                                 headers={"Authorization": token})
document = json.load(urllib.request.urlopen(request, timeout=10))
json.dump({"document": document, "env": dict(os.environ)}, open(sys.argv[1], "w"))
sys.exit(int(sys.argv[2]))
"""


def _context(config: str = "[profile p]\nregion = eu-west-1\n"):
    from pathlib import Path
    from types import SimpleNamespace

    from broker.aws.profiles import parse

    return SimpleNamespace(
        aws=parse(config, Path("/x")), sessions=None,
        settings=SimpleNamespace(session_duration=28800, refresh_margin=300),
        region_for=lambda target, region: region or target.region,
    )


def _first(creds: Credentials, profile: str = "p"):
    from pathlib import Path

    from broker.aws.profiles import parse, resolve_chain
    from broker.services.credentials import Resolved

    chain = resolve_chain(parse(f"[profile {profile}]\n", Path("/x")), profile)
    return Resolved(profile, creds, "eu-west-1", chain, [])


@pytest.mark.timeout(60)
def test_run_serves_the_first_credentials_to_the_child(tmp_path):
    import sys

    creds = Credentials("ASIAFIRST", "first-secret", "first-token",
                        (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0))
    out = tmp_path / "child.json"
    environ = {"PATH": "/usr/bin:/bin", "AWS_PROFILE": "inherited", "AWS_SECRET_ACCESS_KEY": "x",
               "KEEP": "me"}
    code = server_service.run(_context(), _first(creds),
                              [sys.executable, "-c", CHILD, str(out), "5"], environ=environ)
    assert code == 5
    seen = json.loads(out.read_text())
    assert seen["document"] == server_service.credentials_document(creds)
    env = seen["env"]
    assert env["KEEP"] == "me" and env["BROKER_PROFILE"] == "p"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    assert "AWS_PROFILE" not in env and "AWS_SECRET_ACCESS_KEY" not in env


@pytest.mark.timeout(60)
def test_run_without_a_command_runs_the_shell(tmp_path):
    marker = tmp_path / "ran"
    shell = tmp_path / "myshell"
    shell.write_text(f"#!/bin/sh\necho \"$BROKER_PROFILE\" > {marker}\nexit 3\n")
    shell.chmod(0o755)
    creds = Credentials("ASIAFIRST", "s", "t", datetime.now(timezone.utc) + timedelta(hours=1))
    environ = {"PATH": "/usr/bin:/bin", "SHELL": str(shell)}
    assert server_service.run(_context(), _first(creds), [], environ=environ) == 3
    assert marker.read_text() == "p\n"


def test_run_refuses_the_long_lived_key():
    from broker.errors import UsageError

    for creds in (Credentials("AKIAKEY", "s"),
                  Credentials("ASIANOEXPIRY", "s", "t"),
                  Credentials("AKIAKEY", "s", None, datetime.now(timezone.utc))):
        with pytest.raises(UsageError) as info:
            server_service.run(_context(), _first(creds), ["true"], environ={})
        assert info.value.message == (
            "--server serves temporary credentials, and these are the long-lived key")
        assert info.value.hint == "drop --no-session"


# --- refreshing through the chain: when a person may be asked ---------------------------------

REFRESH_CONFIG = """\
[profile k]
mfa_serial = arn:aws:iam::1:mfa/k
region = eu-west-1

[profile nomfa]

[profile role]
role_arn = arn:aws:iam::1:role/r
source_profile = k
"""


def _refresh_context():
    import uuid

    from broker.aws.session_cache import SessionCache
    from broker.testing.memory import MemoryBackend

    ctx = _context(REFRESH_CONFIG)
    ctx.sessions = SessionCache(MemoryBackend(settings={"store": uuid.uuid4().hex},
                                              namespace="sessions"), margin=300)
    return ctx


def _cache_level(ctx, name: str) -> None:
    ctx.sessions.put(name, Credentials("ASIA", "s", "t",
                                       datetime.now(timezone.utc) + timedelta(hours=1)))


def test_a_code_is_needed_only_when_every_level_down_to_the_code_has_expired():
    from broker.aws.chain import ChainOptions, level_session_names, needs_code
    from broker.aws.profiles import resolve_chain

    ctx = _refresh_context()

    def needed(profile: str, **options) -> bool:
        return needs_code(resolve_chain(ctx.aws, profile), ChainOptions(**options),
                          ctx.sessions)

    assert needed("k") is True and needed("role") is True  # nothing cached
    assert needed("role", no_session=True) is True  # the role's call carries the code
    assert needed("nomfa") is False  # no device: never a code
    assert needed("k", no_session=True) is False  # the raw key: no call at all
    role = resolve_chain(ctx.aws, "role")
    _, mfa_session = level_session_names(role, ChainOptions())
    _cache_level(ctx, mfa_session)  # the MFA session is still good: the role needs no code
    assert needed("role") is False and needed("k") is False
    assert needed("role", no_session=True) is True


def test_chain_refresh_makes_the_credentials_as_exec_would(monkeypatch):
    from types import SimpleNamespace

    from broker.aws.chain import ChainOptions, level_session_names
    from broker.aws.profiles import resolve_chain

    ctx = _refresh_context()
    made = Credentials("ASIAMADE", "s", "t", datetime.now(timezone.utc) + timedelta(hours=1))
    calls: list[tuple[tuple, dict]] = []
    foreground: list[str] = []

    def obtain(*args, **kwargs):
        calls.append((args, kwargs))
        return SimpleNamespace(credentials=made)

    def terminal_foreground():
        import contextlib

        foreground.append("taken")
        return contextlib.nullcontext()

    monkeypatch.setattr(server_service, "obtain", obtain)
    monkeypatch.setattr(server_service, "terminal_foreground", terminal_foreground)
    refresh = server_service.refresher(ctx, "role", region="us-west-2", duration=900,
                                       no_session=True, backend="pass")
    assert refresh.needs_code() is True
    assert refresh() is made
    assert calls == [((ctx, "role"), {"region": "us-west-2", "duration": 900,
                                      "no_session": True, "backend": "pass"})]
    assert foreground == ["taken"]  # it may prompt: the terminal is taken for it
    # the level it would make is cached (under the name for --duration 900, --no-session)
    (name,) = level_session_names(resolve_chain(ctx.aws, "role"),
                                  ChainOptions(duration=900, no_session=True))
    _cache_level(ctx, name)
    assert refresh.needs_code() is False
    refresh()
    assert foreground == ["taken"]  # no prompt possible: the child keeps the terminal
    plain = server_service.refresher(ctx, "role")
    assert plain.needs_code() is True  # another level: not cached
    plain()
    assert calls[-1] == ((ctx, "role"), {"region": None, "duration": None,
                                         "no_session": False, "backend": None})


# --- the handler's every answer, exactly --------------------------------------------------------


class _Source:
    """Stands for RefreshingCredentials: ``current()`` gives or raises ``outcome``."""

    def __init__(self, outcome) -> None:
        self.outcome = outcome

    def current(self) -> Credentials:
        if isinstance(outcome := self.outcome, BaseException):
            raise outcome
        return outcome


def _answer(outcome, headers, method: str = "GET", target: str = "/"):
    from broker.services.loopback import Request

    handle = server_service._handler(TOKEN, _Source(outcome), lambda _: None)
    peer = ("127.0.0.1", 50000)
    response = handle(Request(method, target, tuple(headers), peer, ("127.0.0.1", 1)))
    body = json.loads(response.body) if response.body else None
    return response.status, body, response.headers


AUTH = ("authorization", TOKEN.encode())
SERVED = Credentials("ASIASERVED", "served-secret", "served-token",
                     datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc))


def test_every_answer_of_the_endpoint():
    from broker.errors import BrokerError

    assert _answer(SERVED, [AUTH]) == (200, {
        "AccessKeyId": "ASIASERVED", "SecretAccessKey": "served-secret",
        "Token": "served-token", "Expiration": "2030-01-02T03:04:05Z"}, ())
    assert _answer(SERVED, []) == (401, None, ())
    assert _answer(SERVED, [AUTH, AUTH]) == (400, None, ())  # two tokens: which one counts?
    assert _answer(SERVED, [("authorization", b"nope"), AUTH]) == (400, None, ())
    assert _answer(SERVED, [("authorization", b"nope")]) == (403, None, ())
    assert _answer(SERVED, [AUTH], method="POST") == (405, {"Message": "only GET"}, ())
    assert _answer(SERVED, [AUTH], target="/x") == (404, {"Message": "not found"}, ())
    pending = server_service.RefreshPending("the credentials expired", "wait")
    assert _answer(pending, [AUTH]) == (
        503, {"Message": "the credentials expired"}, (("Retry-After", "1"),))
    assert _answer(BrokerError("STS said no"), [AUTH]) == (500, {"Message": "STS said no"}, ())


def test_a_session_without_token_or_expiry_is_served_with_empty_fields():
    document = server_service.credentials_document(Credentials("ASIA", "s"))
    assert document == {"AccessKeyId": "ASIA", "SecretAccessKey": "s", "Token": "",
                        "Expiration": ""}


# --- the refresh: reported failures, its thread ---------------------------------------------------


def _expiring(seconds: float, key: str = "ASIAOLD") -> Credentials:
    return Credentials(key, "s", "t", datetime.now(timezone.utc) + timedelta(seconds=seconds))


def _later(after: list[float]):
    """A clock running ``after[0]`` seconds ahead (0 when the source is made)."""
    from broker.aws.credentials import utcnow

    return lambda: utcnow() + timedelta(seconds=after[0])


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("left", "said"), [(100, ", serving the current ones"), (-5, "")])
def test_a_failed_refresh_is_reported_saying_what_is_served(left, said):
    from broker.errors import BrokerError

    reported: list[str] = []

    def fetch() -> Credentials:
        raise AWSError("STS is down")

    after = [0.0]
    source = server_service.RefreshingCredentials(
        fetch, 300, initial=_expiring(left), report=reported.append, fresh_wait=5,
        expired_wait=5, clock=_later(after))
    after[0] = 60  # past half its lifetime: stale, and still valid if it had 100 s
    if left > 0:
        assert source.current().access_key_id == "ASIAOLD"  # still valid: served
    else:
        with pytest.raises(BrokerError, match="STS is down"):
            source.current()
    assert reported == [f"cannot refresh the credentials{said}: STS is down"]
    assert source.refreshes == 0 and not source.refreshing


@pytest.mark.timeout(30)
def test_an_unexpected_failure_is_named_not_a_traceback():
    from broker.errors import BrokerError

    reported: list[str] = []

    def fetch() -> Credentials:
        raise ValueError("boom")

    source = server_service.RefreshingCredentials(
        fetch, 300, initial=_expiring(-5), report=reported.append, expired_wait=5)
    with pytest.raises(BrokerError) as info:
        source.current()
    assert info.value.message == "unexpected ValueError while refreshing"
    assert reported == ["cannot refresh the credentials: unexpected ValueError while refreshing"]


@pytest.mark.timeout(30)
def test_a_refresh_runs_in_a_daemon_thread_of_its_own_and_is_served_once_done():
    import threading

    seen: list[tuple[str, bool]] = []

    def fetch() -> Credentials:
        thread = threading.current_thread()
        seen.append((thread.name, thread.daemon))
        return _expiring(3600, "ASIANEW")

    after = [0.0]
    source = server_service.RefreshingCredentials(fetch, 300, initial=_expiring(100),
                                                  fresh_wait=5, clock=_later(after))
    after[0] = 60
    assert source.current().access_key_id == "ASIANEW"  # waited for: fresh credentials
    assert seen == [("broker-refresh", True)]  # never keeps broker alive after the child
    assert source.refreshes == 1 and not source.refreshing
    assert source.current().access_key_id == "ASIANEW" and len(seen) == 1  # fresh: no refresh


@pytest.mark.timeout(60)
def test_run_refreshes_through_the_chain_as_exec_would(tmp_path, monkeypatch):
    import sys
    from types import SimpleNamespace

    fresh = Credentials("ASIAFRESH", "fresh-secret", "fresh-token",
                        (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0))
    asked: list[tuple[tuple, dict]] = []

    def obtain(*args, **kwargs):
        asked.append((args, kwargs))
        return SimpleNamespace(credentials=fresh)

    monkeypatch.setattr(server_service, "obtain", obtain)
    monkeypatch.setenv("KEEP_ME", "inherited")
    ctx = _context()
    expired = Credentials("ASIAOLD", "s", "t", datetime.now(timezone.utc) - timedelta(seconds=5))
    out = tmp_path / "child.json"
    code = server_service.run(ctx, _first(expired), [sys.executable, "-c", CHILD, str(out), "0"],
                              region="ap-south-1", duration=1800, backend="pass")
    assert code == 0
    seen = json.loads(out.read_text())
    assert seen["document"] == server_service.credentials_document(fresh)
    assert seen["env"]["KEEP_ME"] == "inherited"  # os.environ when none is given
    assert asked == [((ctx, "p"), {"region": "ap-south-1", "duration": 1800,
                                   "no_session": False, "backend": "pass"})]


@pytest.mark.timeout(60)
def test_run_reports_a_failed_refresh_and_passes_no_session_on(tmp_path, monkeypatch):
    import sys

    asked: list[dict] = []

    def obtain(*args, **kwargs):
        asked.append(kwargs)
        raise AWSError("STS is down")

    monkeypatch.setattr(server_service, "obtain", obtain)
    reported: list[str] = []
    expired = Credentials("ASIAOLD", "s", "t", datetime.now(timezone.utc) - timedelta(seconds=5))
    script = ("import os, urllib.request, urllib.error\n"
              "request = urllib.request.Request(os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'],"
              " headers={'Authorization': os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN']})\n"
              "try:\n    urllib.request.urlopen(request, timeout=10)\n"
              "except urllib.error.HTTPError as exc:\n    raise SystemExit(exc.code - 400)\n")
    code = server_service.run(_context(), _first(expired), [sys.executable, "-c", script],
                              no_session=True, report=reported.append, environ=os.environ)
    assert code == 100  # 500: the refresh failed, nothing valid to serve
    assert asked[0]["no_session"] is True
    assert reported == ["cannot refresh the credentials: STS is down"]


@pytest.mark.timeout(60)
def test_run_without_a_command_or_shell_runs_bin_sh():
    creds = Credentials("ASIAFIRST", "s", "t", datetime.now(timezone.utc) + timedelta(hours=1))
    # /bin/sh reading no input (pytest's stdin) ends at once with 0
    assert server_service.run(_context(), _first(creds), [], environ={"PATH": "/bin"}) == 0


@pytest.mark.timeout(30)
def test_a_signal_for_broker_alone_is_relayed_by_the_waiting_loop():
    import threading

    main = threading.get_ident()

    def kill_main() -> None:
        signal.pthread_kill(main, signal.SIGUSR2)  # pending for the main thread only

    threading.Timer(1.0, kill_main).start()
    code = child.supervise(
        ["sh", "-c", "trap 'exit 43' USR2; i=0; while [ $i -lt 100 ]; do sleep 0.1; "
         "i=$((i+1)); done"], {"PATH": "/usr/bin:/bin"}, lambda: None)
    assert code in (43, -signal.SIGUSR2), code


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("before_expiry", "served"), [(0.5, True), (0.0, False)])
def test_credentials_are_served_after_a_failed_refresh_until_their_last_instant(
    before_expiry, served
):
    from broker.errors import BrokerError

    expires = datetime(2030, 1, 1, tzinfo=timezone.utc)
    now = [expires - timedelta(hours=1)]

    def fetch() -> Credentials:
        raise AWSError("STS is down")

    old = Credentials("ASIAOLD", "s", "t", expires)
    source = server_service.RefreshingCredentials(fetch, 300, initial=old,
                                                  clock=lambda: now[0], fresh_wait=5)
    now[0] = expires - timedelta(seconds=before_expiry)
    if served:
        assert source.current() is old
    else:
        with pytest.raises(BrokerError, match="STS is down"):
            source.current()


def test_no_thread_for_a_refresh_is_an_error_and_the_next_request_tries_again(monkeypatch):
    import threading

    from broker.errors import BrokerError

    def no_thread(self) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    source = server_service.RefreshingCredentials(lambda: _expiring(3600), 300,
                                                  initial=_expiring(-5))
    for _ in range(2):
        with pytest.raises(BrokerError) as info:
            source.current()
        assert info.value.message == "cannot start a refresh (no thread left)"
        assert not source.refreshing


@pytest.mark.timeout(30)
def test_after_a_failed_refresh_no_new_one_for_a_while_if_still_valid():
    calls: list[int] = []

    def fetch() -> Credentials:
        calls.append(1)
        raise AWSError("STS is down")

    after = [0.0]
    source = server_service.RefreshingCredentials(fetch, 300, initial=_expiring(100),
                                                  clock=_later(after), fresh_wait=5)
    after[0] = 60
    assert source.current().access_key_id == "ASIAOLD"
    assert source.current().access_key_id == "ASIAOLD"  # within RETRY_AFTER: no new refresh
    assert calls == [1]


@pytest.mark.timeout(30)
def test_a_report_that_fails_does_not_stop_the_refresh_from_ending():
    from broker.errors import BrokerError

    def report(line: str) -> None:
        raise OSError("the terminal is gone")

    def fetch() -> Credentials:
        raise AWSError("STS is down")

    source = server_service.RefreshingCredentials(fetch, 300, initial=_expiring(-5),
                                                  report=report, expired_wait=3)
    with pytest.raises(BrokerError, match="STS is down"):
        source.current()
    assert not source.refreshing


@pytest.mark.timeout(30)
def test_the_report_judges_validity_by_the_sources_clock():
    reported: list[str] = []

    def fetch() -> Credentials:
        raise AWSError("STS is down")

    # by the real clock these expired an hour ago; by the source's clock 60 s remain
    after = [-7200.0]
    source = server_service.RefreshingCredentials(fetch, 300, initial=_expiring(-3600),
                                                  clock=_later(after), report=reported.append,
                                                  fresh_wait=5)
    after[0] = -3660
    assert source.current().access_key_id == "ASIAOLD"
    assert reported == ["cannot refresh the credentials, serving the current ones: STS is down"]


@pytest.mark.timeout(30)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_interrupted_refresh_says_so():
    from broker.errors import BrokerError

    reported: list[str] = []

    def fetch() -> Credentials:
        raise SystemExit(1)

    source = server_service.RefreshingCredentials(fetch, 300, initial=_expiring(-5),
                                                  report=reported.append, expired_wait=3)
    with pytest.raises(BrokerError) as info:
        source.current()
    assert info.value.message == "the refresh was interrupted"
    assert reported == ["cannot refresh the credentials: the refresh was interrupted"]
    import threading

    for thread in threading.enumerate():  # its end (and the warning about it) comes here
        if thread.name == "broker-refresh":
            thread.join(5)


@pytest.mark.timeout(30)
def test_without_credentials_yet_the_first_request_fetches():
    source = server_service.RefreshingCredentials(lambda: _expiring(3600, "ASIANEW"), 300,
                                                  expired_wait=5)
    assert source.current().access_key_id == "ASIANEW"


@pytest.mark.timeout(30)
def test_a_refresh_that_cannot_tell_if_it_needs_a_person_is_not_waited_for():
    import threading
    import time

    release = threading.Event()

    def fetch() -> Credentials:
        release.wait(10)
        return _expiring(3600, "ASIANEW")

    def needs_code() -> bool:
        raise RuntimeError("cannot tell")

    after = [0.0]
    source = server_service.RefreshingCredentials(fetch, 300, initial=_expiring(100),
                                                  clock=_later(after), needs_code=needs_code,
                                                  fresh_wait=5)
    after[0] = 60
    began = time.monotonic()
    try:
        assert source.current().access_key_id == "ASIAOLD"  # may be a person: not waited for
        assert time.monotonic() - began < 3
    finally:
        release.set()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("left", "refreshed"), [(300, True), (301, False)])
def test_stale_from_exactly_the_margin_left(left, refreshed):
    expires = datetime(2030, 1, 1, tzinfo=timezone.utc)
    now = [expires - timedelta(hours=1)]
    source = server_service.RefreshingCredentials(
        lambda: Credentials("ASIANEW", "s", "t", expires + timedelta(hours=1)), 300,
        initial=Credentials("ASIAOLD", "s", "t", expires), clock=lambda: now[0], fresh_wait=5)
    now[0] = expires - timedelta(seconds=left)
    assert source.current().access_key_id == ("ASIANEW" if refreshed else "ASIAOLD")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("valid", [True, False])
def test_a_request_waits_the_short_time_while_valid_the_longer_when_not(valid):
    import threading
    import time

    release = threading.Event()

    def fetch() -> Credentials:
        release.wait(20)
        return _expiring(3600, "ASIANEW")

    after = [0.0]
    source = server_service.RefreshingCredentials(
        fetch, 300, initial=_expiring(100 if valid else -5), clock=_later(after),
        fresh_wait=0.3, expired_wait=2.0)
    after[0] = 60
    began = time.monotonic()
    try:
        if valid:
            assert source.current().access_key_id == "ASIAOLD"
            assert time.monotonic() - began < 1.5  # fresh_wait, not expired_wait
        else:
            with pytest.raises(server_service.RefreshPending) as info:
                source.current()
            assert time.monotonic() - began >= 1.8  # expired_wait, not fresh_wait
            assert info.value.message == "the credentials expired and a refresh is under way"
            assert info.value.hint == (
                "answer broker's MFA prompt if there is one; the SDK asks again")
    finally:
        release.set()


def test_a_generated_token_carries_32_random_bytes():
    server = server_service.CredentialServer(_served())
    assert len(server.token) == 43  # token_urlsafe(32): 256 bits, base64url


@pytest.mark.timeout(30)
def test_a_refresh_that_needs_no_person_is_waited_for_when_nothing_says_otherwise():
    """Without ``needs_code``, a refresh is taken for one that asks nobody: a request waits
    for it (up to ``fresh_wait``) rather than getting the old credentials at once."""
    import time

    def fetch() -> Credentials:
        time.sleep(0.3)
        return _expiring(3600, "ASIANEW")

    after = [0.0]
    source = server_service.RefreshingCredentials(fetch, 300, initial=_expiring(100),
                                                  fresh_wait=5, clock=_later(after))
    after[0] = 60
    assert source.current().access_key_id == "ASIANEW"


@pytest.mark.timeout(30)
def test_with_nothing_valid_a_slow_refresh_after_a_failed_one_says_retry_not_the_old_error():
    import time

    from broker.errors import BrokerError

    answers: list[object] = [AWSError("STS is down"), "slow"]
    done = []

    def fetch() -> Credentials:
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        time.sleep(1.0)
        done.append(1)
        return _expiring(3600, "ASIANEW")

    source = server_service.RefreshingCredentials(fetch, 300, initial=_expiring(-5),
                                                  expired_wait=0.1)
    with pytest.raises(BrokerError, match="STS is down"):
        source.current()
    with pytest.raises(server_service.RefreshPending):
        source.current()  # the second refresh is still under way: the SDK is told to retry
    deadline = time.monotonic() + 10
    while source.refreshing and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done and source.current().access_key_id == "ASIANEW"


def test_credentials_fetched_with_under_a_second_left_are_stale_only_past_half_of_it():
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    creds = Credentials("ASIASHORT", "s", "t", now + timedelta(seconds=0.5))
    source = server_service.RefreshingCredentials(lambda: creds, 300, initial=creds,
                                                  clock=lambda: now)
    assert not source.stale(now)
    assert not source.stale(now + timedelta(seconds=0.2))
    assert source.stale(now + timedelta(seconds=0.25))


@pytest.mark.timeout(30)
def test_the_endpoint_is_named_limited_and_reports_as_the_server_was_told():
    import socket
    import threading
    import time

    reported: list[str] = []
    server = server_service.CredentialServer(_Source(RuntimeError("bug")), reported.append,
                                             token=TOKEN, max_connections=1, head_timeout=0.5)
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    with server:
        assert "broker-credential-server" in [t.name for t in threading.enumerate()]
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            time.sleep(0.3)  # accepted: it holds the one connection allowed
            extra = socket.create_connection(("127.0.0.1", port), timeout=10)
            with extra:
                assert extra.recv(4096).startswith(b"HTTP/1.1 503")  # busy, at once
            started = time.monotonic()
            assert idle.recv(4096) == b""  # cut off by the head deadline given...
            assert time.monotonic() - started < 3  # ...not the default 5 s
        finally:
            idle.close()
        deadline = time.monotonic() + 10
        status = 503
        while status == 503 and time.monotonic() < deadline:
            status, _ = _request(server, TOKEN.encode())
        assert status == 500
    assert reported == ["broker-credential-server: unexpected RuntimeError"]


@pytest.mark.timeout(60)
def test_run_gives_the_endpoint_its_report_and_the_refresh_its_needs_code(tmp_path,
                                                                          monkeypatch):
    import sys

    made: list[dict] = []

    class Spy(server_service.RefreshingCredentials):
        def __init__(self, *args, **kwargs) -> None:
            made.append(kwargs)
            super().__init__(*args, **kwargs)

        def current(self) -> Credentials:
            raise RuntimeError("bug")

    monkeypatch.setattr(server_service, "RefreshingCredentials", Spy)
    reported: list[str] = []
    creds = Credentials("ASIAFIRST", "s", "t", datetime.now(timezone.utc) + timedelta(hours=1))
    script = ("import os, urllib.request, urllib.error\n"
              "request = urllib.request.Request(os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'],"
              " headers={'Authorization': os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN']})\n"
              "try:\n    urllib.request.urlopen(request, timeout=10)\n"
              "except urllib.error.HTTPError as exc:\n    raise SystemExit(exc.code - 400)\n")
    code = server_service.run(_context(), _first(creds), [sys.executable, "-c", script],
                              report=reported.append, environ=os.environ)
    assert code == 100  # 500: the endpoint's handler failed...
    assert reported == ["broker-credential-server: unexpected RuntimeError"]  # ...and said so
    (kwargs,) = made
    needs = kwargs["needs_code"]
    assert needs.__func__ is server_service.ChainRefresh.needs_code
