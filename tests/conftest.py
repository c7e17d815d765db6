"""Shared fixtures: moto's STS/IAM server, a recording proxy, an isolated broker home.

End-to-end tests run the installed ``broker`` console script as a subprocess
with its own HOME, config and kernel keyrings (unique names, purged afterwards),
in a new session so that it has no controlling terminal.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from broker.testing.local_sts import local_sts
from tests.support.sts_recorder import Recorder

BIN = Path(sys.executable).parent
ACCOUNT = "123456789012"
#: Every kernel keyring a test makes starts with this. It names this pytest process, so
#: the end-of-session leak check never mistakes a concurrent run's keyrings for ours.
KEYRING_PREFIX = f"broker-test-{os.getpid()}-"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    with local_sts(BIN) as url:
        yield url


@pytest.fixture(scope="session")
def recorder(moto_server: str) -> Iterator[Recorder]:
    rec = Recorder(int(moto_server.rsplit(":", 1)[1]))
    yield rec
    rec.stop()


@pytest.fixture
def sts(recorder: Recorder) -> Recorder:
    recorder.reset()
    return recorder


USER_STORY_CONFIG = f"""\
[default]
region = ap-northeast-1

[profile dev]
mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/dev-user
role_arn = arn:aws:iam::{ACCOUNT}:role/dev-role
mfa_process = cat "$BROKER_TEST_CODE_FILE" && echo x >> "$BROKER_TEST_CODE_FILE.count"

[profile base]
mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/base-user
mfa_process = cat "$BROKER_TEST_CODE_FILE" && echo x >> "$BROKER_TEST_CODE_FILE.count"

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


@dataclass
class BrokerHome:
    root: Path
    env: dict[str, str]
    keyring: str
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

    def set_code(self, code: str) -> None:
        Path(self.env["BROKER_TEST_CODE_FILE"]).write_text(code + "\n")

    def mfa_prompts(self) -> int:
        counter = Path(self.env["BROKER_TEST_CODE_FILE"] + ".count")
        return len(counter.read_text().splitlines()) if counter.exists() else 0


def keyctl_purge(keyring: str) -> None:
    try:
        from broker_keyctl import KeyctlBackend
    except ImportError:
        return
    with contextlib.suppress(Exception):
        KeyctlBackend(settings={"keyring": keyring}).purge(every_namespace=True)


@pytest.fixture
def home(tmp_path: Path, sts: Recorder) -> Iterator[BrokerHome]:
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
    code_file.write_text("123456\n")
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
            "SHELL": "/bin/sh",
        }
    )
    yield BrokerHome(root, env, keyring)
    keyctl_purge(keyring)


@pytest.fixture
def in_home(home: BrokerHome, monkeypatch: pytest.MonkeyPatch) -> BrokerHome:
    """The same isolated home, applied to this test process (for in-process tests)."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "BROKER_")):
            monkeypatch.delenv(key)
    for key, value in home.env.items():
        monkeypatch.setenv(key, value)
    return home
