"""Prompts forgive typos, and `broker totp set` proves a seed before keeping it.

* An MFA code typed at the prompt gets three tries: one that is not 6 digits is asked
  for again before anything is sent, one AWS refuses is asked for again after.
* A GPG passphrase from a ``prompt:`` reference gets three tries, as pinentry gives.
* `totp set` sends a code made from the seed to AWS (GetSessionToken for the profile's
  device) and stores nothing when AWS refuses it.

The terminal is a pty made the controlling terminal of a new session, with broker's
stdout and stderr on pipes; the local STS checks every code against the device's seed.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.backend import Item
from broker.testing.gnupg import throwaway_gnupg_home
from tests.conftest import ACCOUNT, BIN, TEST_KEY_ID, TEST_SECRET, BrokerHome, serial
from tests.support.contexts import require_keyctl

KEY = f"{TEST_KEY_ID}\n{TEST_SECRET}\n"
DEVICE = serial("dev-user")
#: A profile whose codes come from the prompt (no mfa_process, no seed).
TYPED = f"\n[profile typed]\nmfa_serial = {DEVICE}\n"

#: Becomes the session leader's controlling terminal (argv[1]) on stdin, keeps stdout and
#: stderr (as in test_mfa_process_stderr), with SIGINT at its default disposition, as on a
#: user's terminal: a job started without job control (CI) inherits it ignored, and ^C
#: would then do nothing.
LAUNCHER = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "fd = os.open(sys.argv[1], os.O_RDWR); os.dup2(fd, 0); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


class Terminal:
    """``broker ARGS`` on a pty: wait for what it shows, type answers."""

    def __init__(self, home: BrokerHome, *args: str) -> None:
        self.master, self.slave = os.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, os.ttyname(self.slave), str(BIN / "broker"),
             *args],
            env=home.env, start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.shown = ""
        self._seen = 0

    def _read(self, timeout: float) -> bool:
        if select.select([self.master], [], [], timeout)[0]:
            try:
                self.shown += os.read(self.master, 4096).decode("utf-8", "replace")
            except OSError:
                return False
            return True
        return False

    def expect(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.shown[self._seen:]:
            if not self._read(0.2) and self.process.poll() is not None:
                self._read(0.2)
                if text in self.shown[self._seen:]:
                    break
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise AssertionError(
                    f"ended ({self.process.returncode}) before showing {text!r}; the terminal "
                    f"showed {self.shown!r}; stderr: {stderr}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout} s; shown: {self.shown!r}")
        self._seen = self.shown.index(text, self._seen) + len(text)

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def finish(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        try:
            out, err = self.process.communicate(timeout=timeout)
            while self._read(0.2):
                pass
        finally:
            os.close(self.master)
            os.close(self.slave)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)


@pytest.fixture
def typed(home: BrokerHome) -> BrokerHome:
    require_keyctl()
    home.aws_config.write_text(home.aws_config.read_text() + TYPED)
    home.run("add", "typed", input=KEY, check=True)
    return home


def wrong_code(home: BrokerHome) -> str:
    """Six digits the device shows at no step near now."""
    now = time.time()
    near = {home.sts.code(DEVICE, at=now + offset) for offset in (-60, -30, 0, 30, 60)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in near)


# --- MFA codes -----------------------------------------------------------------------------


def test_a_malformed_code_is_asked_for_again(typed, sts):
    terminal = Terminal(typed, "exec", "typed", "--", "true")
    terminal.expect(f"MFA code for {DEVICE}: ")
    terminal.type("12345")  # five digits
    terminal.expect("not 6 digits; try again (2 tries left)")
    terminal.expect(f"MFA code for {DEVICE}: ")
    right = typed.code()
    terminal.type(right)
    result = terminal.finish()
    assert result.returncode == 0, result.stderr + terminal.shown
    sent, = sts.actions("GetSessionToken")  # the malformed one was never sent
    assert sent["TokenCode"] == right


def test_a_code_aws_refuses_is_asked_for_again(typed, sts):
    wrong = wrong_code(typed)
    terminal = Terminal(typed, "exec", "typed", "--", "true")
    terminal.expect(f"MFA code for {DEVICE}: ")
    terminal.type(wrong)
    terminal.expect("AWS refused the MFA code")
    terminal.expect("try again (2 tries left)")
    terminal.expect(f"MFA code for {DEVICE}: ")
    right = typed.code()  # the code typed, not one computed later (a new 30 s step)
    terminal.type(right)
    result = terminal.finish()
    assert result.returncode == 0, result.stderr + terminal.shown
    assert [a["TokenCode"] for a in sts.actions("GetSessionToken")] == [wrong, right]


def test_three_typos_end_it(typed, sts):
    terminal = Terminal(typed, "exec", "typed", "--", "true")
    for left in ("2 tries left", "1 try left"):
        terminal.expect(f"MFA code for {DEVICE}: ")
        terminal.type("abc")
        terminal.expect(left)
    terminal.expect(f"MFA code for {DEVICE}: ")
    terminal.type("1234567")
    result = terminal.finish()
    assert result.returncode == 8 and "not 6 digits" in result.stderr
    assert "Traceback" not in result.stderr
    assert sts.actions("GetSessionToken") == []


@pytest.mark.parametrize("answers", [("abc", "wrong", "abc"), ("wrong", "abc", "wrong")])
def test_malformed_and_refused_codes_share_three_tries(typed, sts, answers):
    """Alternating the two kinds of failure does not start the count again."""
    wrong = wrong_code(typed)
    terminal = Terminal(typed, "exec", "typed", "--", "true")
    for answer, left in zip(answers, ("2 tries left", "1 try left", None), strict=True):
        terminal.expect(f"MFA code for {DEVICE}: ")
        terminal.type(wrong if answer == "wrong" else answer)
        if left:
            terminal.expect(left)
    result = terminal.finish()
    assert result.returncode == 8, result.stderr + terminal.shown
    assert terminal.shown.count("MFA code for") == 3, terminal.shown
    assert "Traceback" not in result.stderr
    assert len(sts.actions("GetSessionToken")) == answers.count("wrong")


def test_mfa_code_dash_on_a_terminal_forgives_a_typo(typed, sts):
    # click prompts on stderr (captured here, as an SDK would): the answers are typed ahead
    terminal = Terminal(typed, "exec", "--mfa-code", "-", "typed", "--", "true")
    terminal.type("12 34 5")
    terminal.type(typed.code())
    result = terminal.finish()
    assert result.returncode == 0, result.stderr + terminal.shown
    assert result.stderr.count("MFA code: ") == 2
    assert "not 6 digits; try again (2 tries left)" in result.stderr


# --- a passphrase from a prompt: reference -------------------------------------------------

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def protected_gnupg() -> Iterator[tuple[Path, str]]:
    """A throwaway GNUPGHOME whose key has a passphrase; gpg-agent caches nothing."""
    with throwaway_gnupg_home("prompt-test@example.invalid", PASSPHRASE) as gnupg:
        yield gnupg.path, gnupg.key.uid


@pytest.fixture
def pass_home(typed: BrokerHome, protected_gnupg) -> BrokerHome:
    gnupghome, uid = protected_gnupg
    store = typed.root / ".password-store"
    typed.env.update(GNUPGHOME=str(gnupghome), PASSWORD_STORE_DIR=str(store))
    subprocess.run(["pass", "init", uid], env=typed.env, capture_output=True, check=True)
    typed.broker_config.write_text(
        f'backend = "pass"\n\n[backends.keyctl]\nkeyring = "{typed.keyring}"\n\n'
        '[backends.pass]\npassphrase = "prompt:GPG passphrase"\n'
    )
    typed.run("add", "typed", input=KEY, check=True)
    return typed


def test_a_prompted_passphrase_and_a_typed_code_each_forgive_typos(pass_home, sts):
    terminal = Terminal(pass_home, "exec", "typed", "--", "true")
    for wrong in ("not it", ""):
        terminal.expect("GPG passphrase: ")
        terminal.type(wrong)
        terminal.expect("try again")
    terminal.expect("GPG passphrase: ")
    terminal.type(PASSPHRASE)
    # the code's typo no longer throws away the passphrase typed just before
    terminal.expect(f"MFA code for {DEVICE}: ")
    terminal.type("12345")
    terminal.expect("try again (2 tries left)")
    terminal.expect(f"MFA code for {DEVICE}: ")
    terminal.type(pass_home.code())
    result = terminal.finish()
    assert result.returncode == 0, result.stderr + terminal.shown
    assert PASSPHRASE not in terminal.shown + result.stderr  # never echoed


def test_a_prompted_passphrase_gets_three_tries(pass_home):
    terminal = Terminal(pass_home, "exec", "typed", "--", "true")
    for _ in range(3):
        terminal.expect("GPG passphrase: ")
        terminal.type("not it")
    result = terminal.finish()
    assert result.returncode == 8, result.stderr + terminal.shown
    assert "rejected" in result.stderr and "Traceback" not in result.stderr
    # broker's own lines; the passphrase typed is to blame, not a secret it points to
    assert terminal.shown.count("broker: pass: the GPG passphrase was rejected; try again") == 2
    assert "the GPG passphrase typed was rejected" in result.stderr
    assert "points to" not in result.stderr


def test_a_passphrase_from_elsewhere_is_asked_for_once(pass_home, monkeypatch):
    """Any other reference gives the same value again: no second try is made."""
    from broker_pass import PassBackend

    monkeypatch.setenv("GNUPGHOME", pass_home.env["GNUPGHOME"])
    monkeypatch.setenv("PASSWORD_STORE_DIR", pass_home.env["PASSWORD_STORE_DIR"])
    calls: list[str] = []

    def resolver(reference: str) -> str:
        calls.append(reference)
        return "not it"

    backend = PassBackend(settings={"passphrase": "env:GPG_PASSPHRASE"}, resolver=resolver)
    from broker.errors import AuthenticationError

    with pytest.raises(AuthenticationError):
        backend.get("typed")
    assert calls == ["env:GPG_PASSPHRASE"]
    answers = iter(["not it", "still not", PASSPHRASE])
    prompted = PassBackend(settings={"passphrase": "prompt:GPG passphrase"},
                           resolver=lambda _ref: next(answers))
    assert prompted.get("typed") == Item(aws_access_key_id=TEST_KEY_ID,
                                         aws_secret_access_key=TEST_SECRET,
                                         mfa_serial=DEVICE)


# --- totp set proves the seed ----------------------------------------------------------------

OTP_SERIAL = f"arn:aws:iam::{ACCOUNT}:mfa/otp-user"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
OTHER_SEED = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


@pytest.fixture
def otp(home: BrokerHome) -> BrokerHome:
    require_keyctl()
    home.aws_config.write_text(
        home.aws_config.read_text()
        + f"\n[profile otp]\nmfa_serial = {OTP_SERIAL}\n"
        f"role_arn = arn:aws:iam::{ACCOUNT}:role/otp-role\n\n[profile solo]\n"
    )
    home.add_key("otp")
    home.add_key("solo")
    home.sts.register_mfa_device(OTP_SERIAL, SEED)
    return home


def kept_seed(home: BrokerHome, profile: str) -> str | None:
    from broker_keyctl import KeyctlBackend

    item = KeyctlBackend(settings={"keyring": home.keyring}).get(profile)
    assert item is not None
    return item.get("totp")


def test_totp_set_refuses_a_seed_aws_does_not_accept(otp, sts):
    result = otp.run("totp", "set", "otp", input=OTHER_SEED + "\n")
    assert result.returncode == 8, result.stderr
    assert "AWS refused the code made from that seed" in result.stderr
    assert "nothing was stored" in result.stderr
    assert OTHER_SEED not in result.stderr
    assert kept_seed(otp, "otp") is None
    listing = {p["name"]: p for p in json.loads(otp.run("list", "--json", check=True).stdout)}
    assert listing["otp"]["mfa_source"] == "prompt"


def test_totp_set_proves_the_right_seed_and_exec_needs_no_new_code(otp, sts):
    result = otp.run("totp", "set", "otp", input=SEED + "\n", check=True)
    assert f"AWS accepted its code for {OTP_SERIAL}" in result.stderr
    assert kept_seed(otp, "otp") == SEED
    proof, = sts.actions("GetSessionToken")
    assert proof["SerialNumber"] == OTP_SERIAL
    # its MFA session is the one exec uses: the code, accepted once, is not sent again
    otp.run("exec", "otp", "--", "true", check=True)
    assert len(sts.actions("GetSessionToken")) == 1
    assert len(sts.actions("AssumeRole")) == 1


def test_totp_set_no_verify_and_no_device_say_it_was_not_checked(otp, sts):
    result = otp.run("totp", "set", "otp", "--no-verify", input=OTHER_SEED + "\n", check=True)
    assert "not checked against AWS" in result.stderr
    assert kept_seed(otp, "otp") == OTHER_SEED
    solo = otp.run("totp", "set", "solo", input=SEED + "\n", check=True)
    assert "not checked against AWS" in solo.stderr and "no mfa_serial" in solo.stderr
    assert sts.actions("GetSessionToken") == []
