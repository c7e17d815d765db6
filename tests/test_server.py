"""`broker exec --server`: the local credential endpoint, against moto and the real AWS CLI."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from broker.aws.chain import ChainOptions, hop_session_name, mfa_session_name, needs_code
from broker.aws.credentials import Credentials
from broker.aws.profiles import resolve_chain
from broker.errors import AWSError
from broker.services import child, credentials
from broker.services import server as server_service
from tests.conftest import BIN
from tests.support.contexts import default_keys, home_context, require_keyctl

PROBE = textwrap.dedent(
    """
    import json, os, urllib.error, urllib.request
    url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]

    def call(path="", headers=None, method="GET"):
        request = urllib.request.Request(url + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    print(json.dumps({
        "url": url,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "BROKER_"))},
        "none": call(),
        "wrong": call(headers={"Authorization": token[:-1] + ("x" if token[-1] != "x" else "y")}),
        "empty": call(headers={"Authorization": ""}),
        "right": call(headers={"Authorization": token}),
        "post": call(headers={"Authorization": token}, method="POST"),
        "other": call("role-arn/x", headers={"Authorization": token}),
    }))
    """
)


@pytest.fixture
def keyctl_home(home):
    require_keyctl()
    return home


def test_aws_cli_and_boto3_in_the_child_use_the_endpoint(keyctl_home, sts):
    home = keyctl_home
    home.add_key("dev")
    script = (
        "import boto3; print(boto3.client('sts').get_caller_identity()['Arn']); "
        "import botocore.session as s; "
        "print(s.get_session().get_credentials().method)"
    )
    command = f"aws sts get-caller-identity && {sys.executable} -c \"{script}\""
    result = home.run("exec", "--server", "dev", "--", "sh", "-c", command, check=True)
    cli_identity, boto_arn, method = result.stdout.strip().rsplit("\n", 2)
    assert ":assumed-role/dev-role/" in json.loads(cli_identity)["Arn"]
    assert ":assumed-role/dev-role/" in boto_arn
    assert method == "container-role"
    # one chain for the whole shell: the endpoint served what exec had made
    assert len(sts.actions("GetSessionToken")) == 1
    assert len(sts.actions("AssumeRole")) == 1


def test_token_is_required_and_the_endpoint_ends_with_the_child(keyctl_home):
    home = keyctl_home
    home.add_key("dev")
    result = home.run("exec", "--server", "dev", "--", sys.executable, "-c", PROBE, check=True)
    seen = json.loads(result.stdout)
    env = seen["env"]
    for absent in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                   "AWS_CREDENTIAL_EXPIRATION"):
        assert absent not in env
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"].endswith("/")
    assert len(env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]) >= 32
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "ap-northeast-1"
    assert env["BROKER_PROFILE"] == "dev"
    assert seen["none"] == [401, ""]
    assert seen["wrong"] == [403, ""]
    assert seen["empty"] == [403, ""]
    status, body = seen["right"]
    document = json.loads(body)
    assert status == 200
    assert set(document) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
    assert document["AccessKeyId"].startswith("ASIA") and document["Expiration"].endswith("Z")
    assert seen["post"][0] == 405 and "ASIA" not in seen["post"][1]
    assert seen["other"][0] == 404 and "ASIA" not in seen["other"][1]
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(seen["url"], timeout=5)
    assert isinstance(info.value.reason, ConnectionRefusedError)
    assert document["SecretAccessKey"] not in result.stderr


def test_inherited_credentials_are_scrubbed(keyctl_home):
    home = keyctl_home
    home.add_key("dev")
    inherited = {
        "AWS_ACCESS_KEY_ID": "AKIAINHERITED0000000", "AWS_SECRET_ACCESS_KEY": "inherited",
        "AWS_SESSION_TOKEN": "inherited", "AWS_PROFILE": "other",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "/nowhere",
    }
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    result = home.run("exec", "--server", "dev", "--", sys.executable, "-c", script,
                      env=inherited, check=True)
    seen = json.loads(result.stdout)
    for name in inherited:
        assert name not in seen


def test_exit_code_propagates(keyctl_home):
    home = keyctl_home
    home.add_key("dev")
    assert home.run("exec", "--server", "dev", "--", "sh", "-c", "exit 7").returncode == 7
    assert home.run("exec", "--server", "dev", "--", "true").returncode == 0


def test_shell_by_default(keyctl_home, tmp_path):
    home = keyctl_home
    home.add_key("dev")
    shell = tmp_path / "myshell"
    shell.write_text('#!/bin/sh\necho "shell with $AWS_CONTAINER_CREDENTIALS_FULL_URI"\nexit 3\n')
    shell.chmod(0o755)
    result = home.run("exec", "--server", "dev", env={"SHELL": str(shell)})
    assert result.returncode == 3
    assert result.stdout.startswith("shell with http://127.0.0.1:")


def _start(home, script: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [str(BIN / "broker"), "exec", "--server", "dev", "--", sys.executable, "-c", script],
        env=home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, stdin=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 60)
    assert ready, "the child did not start"
    assert process.stdout.readline().strip() == "ready"
    return process


def test_signals_are_relayed_to_the_child(keyctl_home):
    home = keyctl_home
    home.add_key("dev")
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        def got(signum, frame):  # os.write: the signal may interrupt print("ready")
            os.write(1, f"got {signal.Signals(signum).name}\\n".encode())
            os._exit(40 + signum)
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1):
            signal.signal(s, got)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1):
        process = _start(home, script)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
        assert out.strip() == f"got {signal.Signals(signum).name}", err
        assert process.returncode == 40 + signum


def test_a_child_killed_by_a_signal_kills_broker_the_same_way(keyctl_home):
    home = keyctl_home
    home.add_key("dev")
    result = home.run("exec", "--server", "dev", "--", "sh", "-c", "kill -TERM $$")
    assert result.returncode == -signal.SIGTERM


def test_ctrl_c_on_a_terminal_reaches_the_child_and_broker_waits(keyctl_home):
    """^C on a real terminal signals broker and the child (one process group): the child
    decides what it means, and broker, not killed by it, still exits with its code."""
    home = keyctl_home
    home.add_key("dev")
    home.run("export", "dev", check=True)  # warm the cache: no prompt on the terminal
    script = textwrap.dedent(
        """
        import signal, time
        count = []
        signal.signal(signal.SIGINT, lambda *a: count.append(1))
        print("ready", flush=True)
        end = time.time() + 3
        while time.time() < end:
            time.sleep(0.05)
        print("sigints", len(count), flush=True)
        """
    )
    master, slave = os.openpty()
    launcher = (
        "import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "  # session leader: our tty
        "[os.dup2(fd, n) for n in (0, 1, 2)]; os.execv(sys.argv[2], sys.argv[2:])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, os.ttyname(slave), str(BIN / "broker"), "exec",
         "--server", "dev", "--", sys.executable, "-c", script],
        env=home.env, start_new_session=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    output = b""  # the slave stays open here: once every slave fd closes, reads fail (EIO)
    try:
        deadline = time.monotonic() + 60
        while b"ready" not in output and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                output += os.read(master, 4096)
        assert b"ready" in output, output
        os.write(master, b"\x03")
        while b"sigints" not in output and time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                output += os.read(master, 4096)
        assert process.wait(timeout=30) == 0
    finally:
        os.close(master)
        os.close(slave)
        if process.poll() is None:
            process.kill()
    assert b"sigints 1" in output, output


def test_signals_the_terminal_sent_to_the_group_are_not_sent_twice():
    kernel, user = 0x80, 0
    assert not child.should_relay(kernel, same_group=True)
    assert child.should_relay(kernel, same_group=False)  # an interactive shell's own
    assert child.should_relay(user, same_group=True)  # kill PID from elsewhere


def test_server_refuses_the_long_lived_key(keyctl_home):
    home = keyctl_home
    home.add_key("plain")
    result = home.run("exec", "--server", "--no-session", "plain", "--", "true")
    assert result.returncode == 2
    assert "--server serves temporary credentials" in result.stderr


# --- in process: refresh --------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _creds(clock: FakeClock, name: str, lifetime: float) -> Credentials:
    return Credentials(name, "secret", "token", clock.now + timedelta(seconds=lifetime))


def test_refresh_policy_with_an_injected_clock():
    clock = FakeClock()
    made: list[str] = []

    def fetch() -> Credentials:
        made.append(f"ASIA{len(made) + 2}")
        return _creds(clock, made[-1], 3600)

    served = server_service.RefreshingCredentials(
        fetch, 300, initial=_creds(clock, "ASIA1", 3600), clock=clock
    )
    assert served.current().access_key_id == "ASIA1"
    clock.advance(3600 - 301)
    assert served.current().access_key_id == "ASIA1"  # 301 s left: still fresh
    clock.advance(2)
    assert served.current().access_key_id == "ASIA2"  # inside the 5-minute margin
    assert served.refreshes == 1
    # a margin longer than the credentials live: refreshed at half their lifetime
    short = server_service.RefreshingCredentials(
        fetch, 3600, initial=_creds(clock, "ASIA-short", 900), clock=clock
    )
    clock.advance(449)
    assert short.current().access_key_id == "ASIA-short"
    clock.advance(2)
    assert short.current().access_key_id != "ASIA-short"


def test_a_failed_refresh_serves_the_current_credentials_while_they_last():
    clock = FakeClock()
    reports: list[str] = []

    def fail() -> Credentials:
        raise AWSError("AssumeRole: cannot reach STS")

    served = server_service.RefreshingCredentials(
        fail, 300, initial=_creds(clock, "ASIA1", 3600), clock=clock, report=reports.append
    )
    clock.advance(3400)
    assert served.current().access_key_id == "ASIA1"
    assert "cannot reach STS" in reports[0]
    clock.advance(400)  # expired
    with pytest.raises(AWSError):
        served.current()


def _get(server: server_service.CredentialServer, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": token} if token is not None else {}
    request = urllib.request.Request(server.url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def _get_new(
    server: server_service.CredentialServer, old_key: str, within: float = 20
) -> tuple[int, dict]:
    """The endpoint's answer once it serves keys other than ``old_key``, retrying a 503
    (nothing valid yet: ``Retry-After``) as an SDK does, since a refresh in the background
    may take a moment on a busy machine; its last answer after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        status, document = _get(server, server.token)
        fresh = status != 503 and document.get("AccessKeyId") != old_key
        if fresh or time.monotonic() > deadline:
            return status, document
        time.sleep(0.1)


def test_refresh_through_the_chain_reuses_the_mfa_session(in_home, sts):
    ctx = home_context(in_home, default_keys("dev"))
    first = credentials.obtain(ctx, "dev")
    assert in_home.mfa_prompts() == 1
    clock = FakeClock()
    clock.now = datetime.now(timezone.utc)
    source = server_service.RefreshingCredentials(
        server_service.refresher(ctx, "dev"), ctx.settings.refresh_margin,
        initial=first.credentials, clock=clock,
    )
    chain = resolve_chain(ctx.aws, "dev")
    options = ChainOptions.from_settings(ctx.settings)
    sessions = ctx.sessions.backend
    assert sessions is not None
    with server_service.CredentialServer(source) as server:
        status, document = _get(server, server.token)
        assert status == 200 and document["AccessKeyId"] == first.credentials.access_key_id
        assert _get(server, None)[0] == 401
        assert _get(server, "not-the-token")[0] == 403

        # the role session runs out; the MFA session has hours left
        clock.advance(3600 - 60)
        sessions.delete(hop_session_name(chain, 0, options))
        assert not needs_code(chain, options, ctx.sessions)
        # the refresh runs in the background; requests meanwhile get the still-valid keys
        status, document = _get_new(server, first.credentials.access_key_id)
        assert status == 200 and document["AccessKeyId"] != first.credentials.access_key_id
        # on a busy machine a poll may find the new role session stale by the fake clock
        # and refresh it once more: what counts is that the MFA session was reused
        assert len(sts.actions("AssumeRole")) >= 2
        assert len(sts.actions("GetSessionToken")) == 1
        assert in_home.mfa_prompts() == 1

        # both run out: a new MFA session, with a new code from the profile's source
        clock.advance(3600 - 60)
        in_home.next_step()  # hours later for broker: the device shows another code
        sessions.delete(hop_session_name(chain, 0, options))
        sessions.delete(mfa_session_name(chain))
        assert needs_code(chain, options, ctx.sessions)
        second = document["AccessKeyId"]
        status, document = _get_new(server, second)
        assert status == 200 and document["AccessKeyId"] != second
        assert len(sts.actions("GetSessionToken")) == 2
        assert in_home.mfa_prompts() == 2
    assert source.refreshes >= 2


def test_a_refresh_error_is_a_500_with_the_message_and_no_secret(in_home, sts):
    ctx = home_context(in_home, default_keys("dev"))
    first = credentials.obtain(ctx, "dev")
    expired = Credentials("ASIAOLD", "old-secret", "old-token",
                          datetime.now(timezone.utc) - timedelta(seconds=1))
    reports: list[str] = []

    def fetch() -> Credentials:
        raise AWSError("AssumeRole: AccessDenied", "check the trust policy")

    source = server_service.RefreshingCredentials(fetch, 300, initial=expired,
                                                  report=reports.append)
    with server_service.CredentialServer(source, reports.append) as server:
        request = urllib.request.Request(server.url, headers={"Authorization": server.token})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        body = info.value.read().decode()
    assert info.value.code == 500
    assert json.loads(body) == {"Message": "AssumeRole: AccessDenied"}
    assert "old-secret" not in body and first.credentials.secret_access_key not in body
    assert any("AccessDenied" in r for r in reports)


def test_child_environment_keeps_no_key(in_home):
    environ = {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s", "HOME": "/h",
               "AWS_ENDPOINT_URL": "http://x"}
    env = server_service.child_environment("dev", "eu-west-1", "http://127.0.0.1:1/", "t",
                                           environ)
    assert env == {
        "HOME": "/h", "AWS_ENDPOINT_URL": "http://x",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "t",
        "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1", "BROKER_PROFILE": "dev",
    }


def test_exit_status_maps_return_codes():
    assert child.exit_status(0) == 0
    assert child.exit_status(7) == 7
    assert child.exit_status(-signal.SIGSEGV) == 128 + signal.SIGSEGV


def _read_until(master: int, output: bytearray, marker: bytes, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while marker not in output:
        assert time.monotonic() < deadline, bytes(output)
        if select.select([master], [], [], 1)[0]:
            output += os.read(master, 4096)


HARNESS = textwrap.dedent(
    """
    # `exec --server` as run() does it, but with the clock two hours ahead (every
    # request refreshes) and no session cache (every refresh needs an MFA code).
    import os, sys
    from datetime import timedelta
    from broker import config
    from broker.aws.credentials import utcnow
    from broker.services import child, credentials, server
    from broker.testing.context import memory_context

    ctx = memory_context(config.paths.config_file(),
                         {"typed": ("AKIAIOSFODNN7EXAMPLE", "secret")}, session_cache="none")
    first = credentials.obtain(ctx, "typed", mfa_code=os.environ["BROKER_TEST_FIRST_CODE"])
    source = server.RefreshingCredentials(
        server.refresher(ctx, "typed"), 300, initial=first.credentials,
        clock=lambda: utcnow() + timedelta(hours=2),
        report=lambda line: sys.stderr.write(f"broker: {line}\\n"),
    )
    endpoint = server.CredentialServer(source)
    env = server.child_environment("typed", "us-east-1", endpoint.url, endpoint.token,
                                   os.environ)
    try:
        code = child.supervise(["bash", "--norc", "--noprofile", "-i"], env, endpoint.start)
    finally:
        endpoint.stop()
    sys.exit(code)
    """
)


def test_an_mfa_prompt_during_a_refresh_takes_the_terminal_from_the_shell(home, sts):
    """An interactive shell puts its jobs in the terminal's foreground; the MFA prompt of a
    refresh must still reach the user, and the terminal go back to the job afterwards."""
    from tests.conftest import ACCOUNT
    from tests.support.otp import SEED

    typed = f"arn:aws:iam::{ACCOUNT}:mfa/typed"
    sts.register_mfa_device(typed, SEED)
    first_code = sts.code(typed)
    home.aws_config.write_text(
        home.aws_config.read_text()
        + f"\n[profile typed]\nmfa_serial = arn:aws:iam::{ACCOUNT}:mfa/typed\n"
        f"role_arn = arn:aws:iam::{ACCOUNT}:role/typed\n"
    )
    master, slave = os.openpty()
    launcher = (
        "import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
        "[os.dup2(fd, n) for n in (0, 1, 2)]; os.execv(sys.argv[2], sys.argv[2:])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, os.ttyname(slave), sys.executable, "-c", HARNESS],
        env={**home.env, "PS1": "READY> ", "BROKER_TEST_FIRST_CODE": first_code},
        start_new_session=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    output = bytearray()
    try:
        _read_until(master, output, b"READY> ")
        # a job in the foreground (bash gave it the terminal) asks for credentials
        os.write(master, b"aws sts get-caller-identity\n")
        _read_until(master, output, b"MFA code for")
        sts.advance(30)  # the next code on the user's phone
        second_code = sts.code(typed)
        os.write(master, f"{second_code}\n".encode())
        _read_until(master, output, b"assumed-role/typed/")
        _read_until(master, output, b"READY> ")
        os.write(master, b"exit 5\n")
        assert process.wait(timeout=30) == 5
    finally:
        os.close(master)
        os.close(slave)
        if process.poll() is None:
            process.kill()
    codes = [c["TokenCode"] for c in sts.actions("GetSessionToken")]
    assert codes == [first_code, second_code]
