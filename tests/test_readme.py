"""README's "first ten minutes", run as written: its ~/.aws/config, then each of its
commands in a terminal (a pseudo-terminal answers the prompts), against the local STS
that enforces AWS's rules (broker.testing.local_sts.enforcing_sts), as scripts/demo does.

The world is README's: IAM user `me` with the virtual MFA device `mfa/me`, and the role
`developer` that trusts the account only with MFA. The installation lines (git clone,
pipx) are not run here: the test runs the broker this checkout installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broker.testing.gnupg import GnupgHome, throwaway_gnupg_home
from tests.conftest import BIN

README = Path(__file__).resolve().parents[1] / "README.md"
ACCOUNT = "123456789012"
#: Lines of the quick start that install broker or make a GPG key: not run here.
NOT_RUN = ("git clone", "pipx install", "uv tool install", "gpg --quick-gen-key")


def quick_start() -> tuple[list[str], list[str]]:
    """(the ini blocks, the command lines) of README's "The first ten minutes"."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The first ten minutes"):]
    section = section[:section.index("More of what it does")]
    ini = re.findall(r"```ini\n(.*?)```", section, re.DOTALL)
    commands = []
    for line in section.splitlines():
        if line.startswith("    ") and not line.startswith("     "):
            command = line.strip()
            # a trailing comment is two spaces or more, then #
            command = re.split(r"\s{2,}#", command)[0].strip()
            if command and not command.startswith(NOT_RUN):
                commands.append(command)
    return ini, commands


def run_in_terminal(argv: list[str], env: dict[str, str],
                    answers: dict[str, Callable[[], str]], timeout: float = 90) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as its controlling terminal and standard streams;
    answer each prompt that matches a key of ``answers``, once. (exit code, what it showed)."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave,
                               start_new_session=True, preexec_fn=controlling_terminal)
    os.close(slave)
    shown, answered = b"", set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the terminal closed: the process is done
                    break
                if not chunk:
                    break
                shown += chunk
                text = shown.decode("utf-8", "replace")
                for prompt, answer in answers.items():
                    if prompt not in answered and prompt in text:
                        answered.add(prompt)
                        os.write(master, (answer() + "\n").encode())
            elif process.poll() is not None:
                break
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, shown.decode("utf-8", "replace").replace("\r\n", "\n")


class World:
    """README's IAM, in the local STS."""

    def __init__(self, url: str) -> None:
        import boto3

        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                           aws_access_key_id="AKIAADMIN0000000000",
                           aws_secret_access_key="admin")
        iam.create_user(UserName="me")
        key = iam.create_access_key(UserName="me")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        device = iam.create_virtual_mfa_device(VirtualMFADeviceName="me")["VirtualMFADevice"]
        self.serial = device["SerialNumber"]
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "sts:AssumeRole",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}]}
        iam.create_role(RoleName="developer", AssumeRolePolicyDocument=json.dumps(trust))


@pytest.fixture
def readme_home(tmp_path: Path) -> Iterator[tuple[dict[str, str], World, object, GnupgHome]]:
    from broker.testing.local_sts import enforcing_sts

    exits = contextlib.ExitStack()
    gnupg = exits.enter_context(throwaway_gnupg_home())
    keyring = f"broker-readme-{uuid.uuid4().hex[:10]}"
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    config = home / ".config" / "broker" / "config.toml"
    config.parent.mkdir(parents=True, mode=0o700)
    # not README's: a keyring of the test's own, so that no session outlives it
    config.write_text(f'[backends.keyctl]\nkeyring = "{keyring}"\n')
    try:
        with enforcing_sts(BIN) as sts:
            world = World(sts.url)
            env = {
                "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "HOME": str(home), "LANG": "C.UTF-8", "TERM": "dumb",
                "GNUPGHOME": str(gnupg.path),
                "AWS_ENDPOINT_URL": sts.url,
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_STATE_HOME": str(home / ".local" / "state"),
                "XDG_CACHE_HOME": str(home / ".cache"),
            }
            yield env, world, sts, gnupg
    finally:
        exits.close()
        from broker_keyctl import KeyctlBackend

        KeyctlBackend(settings={"keyring": keyring}).purge(every_namespace=True)


def test_the_quick_start_runs_as_written(readme_home, tmp_path):
    env, world, sts, gnupg = readme_home
    ini, commands = quick_start()
    assert len(ini) == 2 and commands[:4] == [
        "pass init <gpg-id>", "broker backend list", "broker backend set pass", "broker add dev"]
    config = Path(env["HOME"]) / ".aws" / "config"
    config.write_text(ini[0])
    shell = tmp_path / "shell"
    shell.write_text('#!/bin/sh\necho "a shell for $BROKER_PROFILE as $AWS_ACCESS_KEY_ID"\n')
    shell.chmod(0o755)
    answers = {
        "Access key ID": lambda: world.key_id,
        "Secret access key": lambda: world.secret,
        "MFA code for": lambda: sts.code(world.serial),
    }
    outputs = {}
    for command in commands:
        if command.startswith("aws ") and "--profile dev-sdk" in command:
            # first without the profile's own region: what README warns about
            config.write_text(ini[0] + "\n" + ini[1].replace("region = ap-northeast-1\n", ""))
            code, shown = run_in_terminal(shlex.split(command), env, {})
            assert code != 0 and "region" in shown.lower(), shown
            config.write_text(ini[0] + "\n" + ini[1])
        argv = shlex.split(command.replace("<gpg-id>", gnupg.key.uid))
        if argv[0] == "eval":
            continue  # completion: tests/test_completion.py
        code, shown = run_in_terminal(argv, {**env, "SHELL": str(shell)}, answers)
        assert code == 0, f"{command}: {shown}"
        outputs[command] = shown
    assert "Added the key for dev in backend pass" in outputs["broker add dev"]
    identity = outputs["broker exec dev -- aws sts get-caller-identity"]
    assert f"arn:aws:sts::{ACCOUNT}:assumed-role/developer/" in identity
    assert "a shell for dev as ASIA" in outputs["broker exec dev"]
    document = json.loads(outputs["broker export dev --format json"])
    assert document["Version"] == 1 and document["AccessKeyId"].startswith("ASIA")
    assert "assumed-role/developer/" in outputs["aws sts get-caller-identity --profile dev-sdk"]
    # one MFA code for all of it: the session is cached
    assert len(sts.actions("GetSessionToken")) == 1
