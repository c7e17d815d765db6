"""Helpers for the TOTP and MFA tests: a clock that advances instead of sleeping,
an in-memory broker context, and what a subprocess imported."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pyotp

from broker.aws.totp import Clock
from broker.backend import Item
from broker.services.context import Context
from broker.testing.memory import MemoryBackend
from tests.conftest import ACCOUNT, TEST_KEY_ID, TEST_SECRET
from tests.support.keyring_cache import broker_context

#: An AWS-sized seed (64 base32 characters, 320 bits), made up for the tests.
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
#: 20 seconds into a 30-second step.
T0 = 1_800_000_010.0

OTP_CONFIG = f"""\
# broker's TOTP tests
[default]
region = ap-northeast-1

# the user's own key, codes from the stored seed
[profile otp]
mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/otp-user
role_arn = arn:aws:iam::{ACCOUNT}:role/otp-role

[profile proc]
mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/proc-user
mfa_process = echo 246810

[profile ref]
mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/ref-user
broker_totp = env:BROKER_TEST_TOTP
"""


def pyotp_code(seed: str, step: int, **kwargs: Any) -> str:
    return str(pyotp.TOTP(seed, **kwargs).at(step * kwargs.get("interval", 30)))


class FakeClock(Clock):
    """Time that moves only when slept through; messages are collected, not shown."""

    def __init__(self, start: float = T0, on_sleep: Callable[[], None] | None = None) -> None:
        self.t = start
        self.slept: list[float] = []
        self.messages: list[str] = []
        self.on_sleep = on_sleep

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        if self.on_sleep is not None:
            self.on_sleep()

    def notify(self, text: str) -> None:
        self.messages.append(text)

    def live(self) -> bool:
        return self.terminal

    terminal = True  # the countdown redraws itself as on a terminal


class CountingMemory(MemoryBackend):
    """The memory backend, counting reads per name."""

    reads: ClassVar[dict[str, int]] = {}

    def get(self, name: str) -> Item | None:
        if self.namespace == "credentials":
            CountingMemory.reads[name] = CountingMemory.reads.get(name, 0) + 1
        return super().get(name)


def memory_context(config_file: Path, backend: type[MemoryBackend] = MemoryBackend) -> Context:
    """Keys in ``backend`` (in memory), sessions in the home's throwaway kernel keyring."""
    return broker_context(config_file, backend=backend)


def store_key(ctx: Context, name: str, **fields: str) -> None:
    ctx.backend("memory").set(
        name, Item(aws_access_key_id=TEST_KEY_ID, aws_secret_access_key=TEST_SECRET, **fields)
    )


def imported_modules(env: dict[str, str], *args: str) -> set[str]:
    """Top-level module names imported by `broker ARGS`, from -X importtime."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "broker", *args],
        env=env, capture_output=True, text=True, timeout=60, start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "broker" in names
    return names
