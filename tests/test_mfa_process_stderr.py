"""What `mfa_process` says on stderr ("Touch your YubiKey") reaches the user's terminal,
also when an SDK runs broker as `credential_process` and captures broker's stdout and
stderr; its stdout (the code) stays broker's.

The terminal is a pty made the controlling terminal of a new session, with broker's (or
the AWS CLI's) stdout and stderr on pipes, as an SDK runs them.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import pytest

from tests.conftest import BIN
from tests.support.contexts import require_keyctl

MESSAGE = "Touch your YubiKey"

#: Becomes the session leader's controlling terminal (argv[1]), keeps stdout and stderr.
LAUNCHER = (
    "import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.dup2(fd, 0); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


@pytest.fixture
def touchy(home, tmp_path):  # type: ignore[no-untyped-def]
    """The home, with every mfa_process first asking for a touch on stderr."""
    require_keyctl()
    wrapper = tmp_path / "touch-then-code"
    wrapper.write_text(f'#!/bin/sh\necho "{MESSAGE}" >&2\nexec "$BROKER_TEST_MFA" "$@"\n')
    wrapper.chmod(0o755)
    config = home.aws_config.read_text()
    assert 'mfa_process = "$BROKER_TEST_MFA"' in config
    home.aws_config.write_text(
        config.replace('mfa_process = "$BROKER_TEST_MFA"', f'mfa_process = "{wrapper}"')
    )
    return home


def _on_a_terminal(home, argv: list[str]) -> tuple[subprocess.CompletedProcess[str], str]:  # type: ignore[no-untyped-def]
    """Run ``argv`` with a pty as its controlling terminal and its stdout and stderr
    captured; what it wrote and what the terminal showed."""
    master, slave = os.openpty()
    shown = b""
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, os.ttyname(slave), *argv], env=home.env,
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                shown += os.read(master, 4096)
        stdout, stderr = process.communicate(timeout=30)
        while select.select([master], [], [], 0.2)[0]:
            shown += os.read(master, 4096)
    finally:
        os.close(master)
        os.close(slave)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr), shown.decode(
        "utf-8", "replace"
    )


def test_mfa_process_stderr_reaches_the_terminal_not_the_capturing_sdk(touchy):
    touchy.add_key("dev")
    result, shown = _on_a_terminal(touchy, [str(BIN / "broker"), "export", "dev",
                                            "--format", "json"])
    assert result.returncode == 0, result.stderr
    assert MESSAGE in shown
    assert MESSAGE not in result.stderr
    document = json.loads(result.stdout)
    assert document["AccessKeyId"].startswith("ASIA")
    code = touchy.codes_given()[-1]
    assert code not in shown  # the code is broker's, not the terminal's


def test_under_credential_process_the_user_sees_the_message(touchy):
    """The real AWS CLI runs `broker export admin` as credential_process (profile cp) and
    captures its output: the touch request still shows on the terminal."""
    touchy.add_key("base")
    result, shown = _on_a_terminal(
        touchy, [str(BIN / "aws"), "sts", "get-caller-identity", "--profile", "cp"]
    )
    assert result.returncode == 0, result.stderr
    assert ":assumed-role/admin/" in json.loads(result.stdout)["Arn"]
    assert MESSAGE in shown
    assert MESSAGE not in result.stderr


def test_without_a_terminal_the_message_goes_to_brokers_stderr(touchy):
    touchy.add_key("dev")
    result = touchy.run("export", "dev", "--format", "json")  # a new session: no terminal
    assert result.returncode == 0, result.stderr
    assert MESSAGE in result.stderr
    assert MESSAGE not in result.stdout
    assert json.loads(result.stdout)["AccessKeyId"].startswith("ASIA")
