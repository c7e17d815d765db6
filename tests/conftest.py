"""Shared fixtures: a local STS/IAM that enforces AWS's rules (moto's server behind
:class:`broker.testing.local_sts.LocalSTS`), and an isolated broker home.

End-to-end tests run the installed ``broker`` console script as a subprocess
with its own HOME, config and kernel keyrings (unique names, purged afterwards),
in a new session so that it has no controlling terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from broker.testing.local_sts import LocalSTS, local_sts

BIN = Path(sys.executable).parent
ACCOUNT = "123456789012"
#: Every kernel keyring a test makes starts with this. It names this pytest process, so
#: the end-of-session leak check never mistakes a concurrent run's keyrings for ours.
KEYRING_PREFIX = f"broker-test-{os.getpid()}-"

#: The virtual MFA devices of the user story, made through the local STS (which so learns
#: their seeds) once per session.
MFA_DEVICES = ("dev-user", "base-user")
#: Roles in moto's IAM, trusting the account; True: only with MFA
#: (aws:MultiFactorAuthPresent), as dev-role in the user story. 12 h MaxSessionDuration.
#: Beyond the user story's: otp-role (TOTP tests), typed (test_server), c (a role chained
#: from admin, test_chain), r and ro (test_rotate).
ROLES = {"dev-role": True, "admin": True, "readonly": False, "otp-role": True, "typed": True,
         "c": True, "r": True, "ro": False}


def serial(device: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:mfa/{device}"


def trust_policy(mfa: bool) -> str:
    statement: dict[str, object] = {
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "sts:AssumeRole",
    }
    if mfa:
        statement["Condition"] = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def build_world(proxy: LocalSTS, moto_url: str) -> None:
    """The user story's IAM: MFA devices (created through the proxy), roles with trust
    policies (straight in moto, as an administrator would)."""
    import boto3

    def client(url: str) -> Any:
        return boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                            aws_access_key_id="AKIAADMIN0000000000",
                            aws_secret_access_key="admin")

    admin, through_proxy = client(moto_url), client(proxy.url)
    for name, mfa in ROLES.items():
        with contextlib.suppress(admin.exceptions.EntityAlreadyExistsException):
            admin.create_role(
                RoleName=name, AssumeRolePolicyDocument=trust_policy(mfa), MaxSessionDuration=43_200
            )
    for device in MFA_DEVICES:
        with contextlib.suppress(admin.exceptions.NoSuchEntityException):
            admin.delete_virtual_mfa_device(SerialNumber=serial(device))
        through_proxy.create_virtual_mfa_device(VirtualMFADeviceName=device)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's own server: an administrator's way in, no rules (tests set up IAM with it)."""
    with local_sts(BIN) as url:
        yield url


@pytest.fixture(scope="session")
def recorder(moto_server: str) -> Iterator[LocalSTS]:
    """The local STS every client uses: AWS's rules enforced, every request recorded."""
    with LocalSTS(moto_server) as proxy:
        build_world(proxy, moto_server)
        yield proxy


@pytest.fixture
def sts(recorder: LocalSTS) -> LocalSTS:
    """The local STS, reset for this test: no calls recorded, no code used yet, every rule
    on, the server clock on real time. ``sts.rules.NAME = False`` turns one rule off for
    this test; ``sts.advance(30)`` moves the server clock (and the codes it expects)."""
    recorder.reset(rules=True)
    return recorder


USER_STORY_CONFIG = f"""\
[default]
region = ap-northeast-1

[profile dev]
mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/dev-user
role_arn = arn:aws:iam::{ACCOUNT}:role/dev-role
mfa_process = "$BROKER_TEST_MFA" arn:aws:iam::{ACCOUNT}:mfa/dev-user

[profile base]
mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/base-user
mfa_process = "$BROKER_TEST_MFA" arn:aws:iam::{ACCOUNT}:mfa/base-user

[profile admin]
role_arn = arn:aws:iam::{ACCOUNT}:role/admin
source_profile = base

[profile readonly]
role_arn = arn:aws:iam::{ACCOUNT}:role/readonly
source_profile = base
region = eu-west-1

[profile plain]
region = us-west-2

[profile cp]
credential_process = broker export admin --format json
region = ap-northeast-1
"""

TEST_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
TEST_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # the AWS documentation's example

#: The profiles' mfa_process: the code pinned by ``home.set_code()``, else the device's
#: current code at the local STS's clock; each code given is logged, one a line.
MFA_PROCESS = """\
#!/bin/sh
code=$(cat "$BROKER_TEST_CODE_FILE" 2>/dev/null)
[ -n "$code" ] || code=$("$BROKER_TEST_PYTHON" -m broker.testing.local_sts code "$1" \
                          "$BROKER_TEST_STS_URL") || exit 1
echo "$code" >> "$BROKER_TEST_CODE_FILE.count"
echo "$code"
"""


@dataclass
class BrokerHome:
    root: Path
    env: dict[str, str]
    keyring: str
    sts: LocalSTS
    extra_config: list[str] = field(default_factory=list)

    @property
    def aws_config(self) -> Path:
        return Path(self.env["AWS_CONFIG_FILE"])

    @property
    def broker_config(self) -> Path:
        return Path(self.env["BROKER_CONFIG"])

    def run(
        self,
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        check: bool = False,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN / "broker"), *args],
            input=input,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,  # no controlling terminal, as under an SDK
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"broker {' '.join(args)} failed: {result.stderr}")
        return result

    def add_key(self, profile: str = "dev", key_id: str = TEST_KEY_ID) -> None:
        self.run("add", profile, input=f"{key_id}\n{TEST_SECRET}\n", check=True)

    def set_code(self, code: str | None) -> None:
        """Pin the code mfa_process gives (say, a wrong one); None: real codes again."""
        Path(self.env["BROKER_TEST_CODE_FILE"]).write_text(code + "\n" if code else "")

    def codes_given(self) -> list[str]:
        """Every code mfa_process gave, in order."""
        counter = Path(self.env["BROKER_TEST_CODE_FILE"] + ".count")
        return counter.read_text().split() if counter.exists() else []

    def mfa_prompts(self) -> int:
        return len(self.codes_given())

    def code(self, device: str = "dev-user") -> str:
        """The device's current code (by name or serial), as the local STS expects it."""
        return self.sts.code(device if device.startswith("arn:") else serial(device))

    def next_step(self) -> None:
        """Move the local STS's clock to the next 30-second step, so the devices show a code
        not used yet: for a test that needs a second MFA call without waiting."""
        self.sts.advance(30)


def keyctl_purge(keyring: str) -> None:
    try:
        from broker_keyctl import KeyctlBackend
    except ImportError:
        return
    with contextlib.suppress(Exception):
        KeyctlBackend(settings={"keyring": keyring}).purge(every_namespace=True)


@pytest.fixture
def home(tmp_path: Path, sts: LocalSTS) -> Iterator[BrokerHome]:
    """An isolated HOME using the local STS. Profiles dev and base (USER_STORY_CONFIG) get
    their MFA codes from an mfa_process that prints the device's code at the local STS's
    clock (each code is accepted once: a second MFA call in the same 30-second step needs
    ``home.next_step()``, which moves the server clock and so the codes together);
    ``home.set_code(CODE)`` pins the code it gives, ``home.codes_given()`` lists them."""
    root = tmp_path / "home"
    root.mkdir()
    (root / ".aws").mkdir()
    (root / ".aws" / "config").write_text(USER_STORY_CONFIG)
    keyring = f"{KEYRING_PREFIX}{uuid.uuid4().hex[:10]}"
    config = root / ".config" / "broker" / "config.toml"
    config.parent.mkdir(parents=True, mode=0o700)
    config.write_text(f'backend = "keyctl"\n\n[backends.keyctl]\nkeyring = "{keyring}"\n')
    config.chmod(0o600)
    code_file = root / "mfa-code"
    code_file.write_text("")
    mfa_process = root / "mfa-process"
    mfa_process.write_text(MFA_PROCESS)
    mfa_process.chmod(0o755)
    keep = ("PATH", "LANG", "LC_ALL", "TERM", "SYSTEMROOT", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        {
            "HOME": str(root),
            "PATH": f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}",
            "AWS_CONFIG_FILE": str(root / ".aws" / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(root / ".aws" / "credentials"),
            "AWS_ENDPOINT_URL": sts.url,
            "BROKER_CONFIG": str(config),
            "XDG_CONFIG_HOME": str(root / ".config"),
            "XDG_STATE_HOME": str(root / ".local" / "state"),
            "XDG_CACHE_HOME": str(root / ".cache"),
            "BROKER_TEST_CODE_FILE": str(code_file),
            "BROKER_TEST_MFA": str(mfa_process),
            "BROKER_TEST_PYTHON": sys.executable,
            "BROKER_TEST_STS_URL": sts.url,  # for mfa_process, whatever AWS_ENDPOINT_URL says
            "SHELL": "/bin/sh",
        }
    )
    yield BrokerHome(root, env, keyring, sts)
    keyctl_purge(keyring)


def follow_clock(sts: LocalSTS, now: Callable[[], float], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the local STS's clock, and botocore's signing clock in this process, on ``now``
    (a fake clock's ``now``, POSIX seconds): codes broker computes at that time are then
    the ones the server expects, and its signatures are on time. ``sts.reset()`` undoes
    the server's side (``rules=True``); monkeypatch botocore's."""
    from datetime import datetime, timezone

    sts.rules.time_source = now
    monkeypatch.setattr(
        "botocore.auth.get_current_datetime",
        lambda remove_tzinfo=True: datetime.fromtimestamp(now(), timezone.utc).replace(
            tzinfo=None if remove_tzinfo else timezone.utc),
    )


@pytest.fixture
def in_home(home: BrokerHome, monkeypatch: pytest.MonkeyPatch) -> BrokerHome:
    """The same isolated home, applied to this test process (for in-process tests)."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "BROKER_")):
            monkeypatch.delenv(key)
    for key, value in home.env.items():
        monkeypatch.setenv(key, value)
    return home


@pytest.fixture(autouse=True)
def _signals_left_as_found() -> Iterator[None]:
    """Every test leaves the main thread's blocked signals and the SIGINT/SIGTERM handlers
    as it found them: a process started later inherits the mask (a SIGINT blocked here
    makes a broker started by a later test deaf to ^C)."""
    import signal

    before = (signal.pthread_sigmask(signal.SIG_BLOCK, []),
              signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    yield
    after = (signal.pthread_sigmask(signal.SIG_BLOCK, []),
             signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    assert after == before, f"signal state changed by this test: {before} -> {after}"
