"""Where MFA codes come from, in order: an explicit code, the profile's
``mfa_process``, then a prompt on /dev/tty (an SDK running ``credential_process``
captures stdout and stderr, so the prompt must use the terminal)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from broker import tty
from broker.aws.profiles import Chain
from broker.errors import AuthenticationError, MFARequired

_CODE = re.compile(r"^\d{6}$")

#: A source returns a code, or None when it has nothing for this device.
CodeSource = Callable[[str, Chain], "str | None"]


def check_code(code: str, origin: str) -> str:
    code = code.strip().replace(" ", "")
    if not _CODE.match(code):
        raise AuthenticationError(
            f"the MFA code from {origin} is not 6 digits", "give the 6-digit code your device shows"
        )
    return code


def mfa_process_source(serial: str, chain: Chain) -> str | None:
    command = next(
        (p.mfa_process for p in [chain.target, *reversed(chain.hops), chain.key_profile]
         if p.mfa_process),
        None,
    )
    if not command:
        return None
    try:
        result = subprocess.run(  # noqa: S602 - a command the user configured, like aws-vault
            command, shell=True, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
            timeout=120, check=False,
        )
    except subprocess.TimeoutExpired:
        raise MFARequired("mfa_process did not finish in 120 s", "check the command") from None
    if result.returncode != 0:
        raise MFARequired(
            f"mfa_process exited with status {result.returncode}",
            "run the command by hand to see why",
        )
    return check_code(result.stdout.decode("utf-8", "replace"), "mfa_process")


def tty_source(serial: str, chain: Chain) -> str | None:
    if not tty.has_tty():
        return None
    return check_code(tty.prompt(f"MFA code for {serial}: "), "the prompt")


@dataclass
class MfaCodes:
    """Ask each source in turn; an explicit ``--mfa-code`` is used once."""

    explicit: str | None = None
    sources: list[CodeSource] = field(default_factory=lambda: [mfa_process_source, tty_source])
    asked: int = 0

    def code_for(self, serial: str, chain: Chain) -> str:
        self.asked += 1
        if self.explicit:
            explicit, self.explicit = self.explicit, None
            return check_code(explicit, "--mfa-code")
        for source in self.sources:
            code = source(serial, chain)
            if code:
                return code
        raise MFARequired(
            f"an MFA code for {serial} is needed and there is no terminal to ask on",
            "pass --mfa-code, set mfa_process in the profile, or run from a terminal",
        )

