"""One-time codes for the TOTP and MFA tests: a made-up seed, pyotp's codes, and a clock
that advances instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyotp

from broker.aws.totp import Clock
from tests.conftest import ACCOUNT

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
    """pyotp's code for ``seed`` at 30-second (or ``interval``) step ``step``."""
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
