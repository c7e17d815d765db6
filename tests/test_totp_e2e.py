"""End to end: `broker totp ...` and TOTP-driven execs, as subprocesses with the keyctl
backend, against the local STS (which checks the codes against the seed, and records them)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import ACCOUNT, BrokerHome
from tests.support.imports import imported_modules
from tests.support.otp import SEED, pyotp_code

OTP_SERIAL = f"arn:aws:iam::{ACCOUNT}:mfa/otp-user"
OTP_PROFILES = f"""
# codes from the seed kept with the key
[profile otp]
mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/otp-user
role_arn = arn:aws:iam::{ACCOUNT}:role/otp-role
"""


@pytest.fixture
def home(home):
    from broker_keyctl import KeyctlBackend

    if not KeyctlBackend().availability().ok:
        pytest.skip("kernel keyring unavailable")
    home.aws_config.write_text(home.aws_config.read_text() + OTP_PROFILES)
    home.add_key("otp")
    home.sts.register_mfa_device(OTP_SERIAL, SEED)
    return home


def short_steps(home: BrokerHome, period: int) -> None:
    """The device as a seed with ``period``-second steps (the local STS checks them so)."""
    home.sts.register_mfa_device(OTP_SERIAL, SEED, period=period)


def state(home) -> dict:
    return json.loads(Path(home.env["XDG_STATE_HOME"], "broker", "mfa.json").read_text())


def possible_codes(seed: str, start: float, end: float, period: int = 30) -> dict[str, int]:
    """code -> step for every step between two moments."""
    return {
        pyotp_code(seed, step, interval=period): step
        for step in range(int(start // period), int(end // period) + 1)
    }


def test_set_then_exec_sends_pyotps_code(home, sts):
    spaced = " ".join(SEED[i : i + 4] for i in range(0, len(SEED), 4)).lower()
    start = time.time()
    result = home.run("totp", "set", "otp", input=spaced + "\n", check=True)
    assert "Stored the TOTP seed" in result.stderr and SEED not in result.stderr
    home.run("exec", "otp", "--", "true", check=True)
    # one code: `totp set` proved the seed with GetSessionToken, and exec uses that session
    gst, = sts.actions("GetSessionToken")
    assert gst["SerialNumber"] == f"arn:aws:iam::{ACCOUNT}:mfa/otp-user"
    step = state(home)["devices"][gst["SerialNumber"]]["step"]
    assert gst["TokenCode"] == pyotp_code(SEED, step)
    assert gst["TokenCode"] in possible_codes(SEED, start, time.time())
    listing = {p["name"]: p for p in json.loads(home.run("list", "--json", check=True).stdout)}
    assert listing["otp"]["mfa_source"] == "stored totp"
    assert listing["dev"]["mfa_source"] == "mfa_process"
    assert listing["plain"]["mfa_source"] == ""
    table = home.run("list", check=True).stdout
    otp_row = next(line for line in table.splitlines() if line.startswith("otp "))
    assert "stored totp" in otp_row


def test_two_cold_execs_never_send_the_same_code(home, sts):
    # a 3-second period keeps the wait short; AWS devices use 30 s, the logic is the same
    short_steps(home, 3)
    home.run("totp", "set", "otp", input=f"otpauth://totp/AWS:otp?secret={SEED}&period=3\n",
             check=True)
    start = time.time()
    home.run("exec", "otp", "--", "true", check=True)
    home.run("clear", "otp", check=True)
    home.run("exec", "otp", "--", "true", check=True)
    end = time.time()
    codes = [c["TokenCode"] for c in sts.actions("GetSessionToken")]
    assert len(codes) == 2 and codes[0] != codes[1]
    valid = possible_codes(SEED, start, end, period=3)
    assert valid[codes[1]] > valid[codes[0]]  # a later step, never the same one


def test_concurrent_cold_sessions_on_one_device_use_distinct_codes(home, sts):
    """An MFA session and a direct AssumeRole (--no-session) for the same device, made at
    once: the device lock makes the second wait for the next step."""
    # --no-verify: the check would cache an MFA session, and both are to be made cold here
    home.run("totp", "set", "otp", "--no-verify",
             input=f"otpauth://totp/x?secret={SEED}&period=2\n", check=True)
    short_steps(home, 2)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda args: home.run(*args), [
            ["export", "otp"], ["export", "otp", "--no-session"],
        ]))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    codes = [c["TokenCode"] for c in sts.actions() if "TokenCode" in c]
    assert len(codes) == 2 and codes[0] != codes[1]


def test_totp_code_for_the_console(home, sts):
    short_steps(home, 3)
    home.run("totp", "set", "otp", input=f"otpauth://totp/x?secret={SEED}&period=3\n",
             check=True)
    start = time.time()
    result = home.run("totp", "code", "otp", check=True)
    code = result.stdout.strip()
    assert code in possible_codes(SEED, start, time.time(), period=3)
    left = int(result.stderr.split("valid for ")[1].split()[0])
    assert 0 <= left <= 3
    # the console will use it: an exec right after does not send it again
    home.run("exec", "otp", "--", "true", check=True)
    assert sts.actions("GetSessionToken")[0]["TokenCode"] != code


def test_typed_code_reused_is_refused(home, sts):
    typed = home.code(OTP_SERIAL)
    home.run("exec", "--mfa-code", typed, "otp", "--", "true", check=True)
    home.run("clear", check=True)
    again = home.run("exec", "--mfa-code", typed, "otp", "--", "true")
    assert again.returncode == 8
    assert "already used" in again.stderr and "Traceback" not in again.stderr
    assert len(sts.actions("GetSessionToken")) == 1


def test_totp_set_errors(home):
    bad = home.run("totp", "set", "otp", input=SEED[:-1] + "1\n")
    assert bad.returncode == 2 and "not base32" in bad.stderr
    assert SEED[:20] not in bad.stderr
    short = home.run("totp", "set", "otp", input="JBSWY3DPEHPK3PXP\n")
    assert short.returncode == 2 and "112 bits" in short.stderr
    nokey = home.run("totp", "set", "plain", input=SEED + "\n")
    assert nokey.returncode == 5 and "broker add plain" in nokey.stderr
    role = home.run("totp", "set", "admin", input=SEED + "\n")
    assert role.returncode == 3 and "broker totp set base" in role.stderr


def test_totp_remove(home):
    missing = home.run("totp", "remove", "otp", "--force")
    assert missing.returncode == 5 and "no TOTP seed" in missing.stderr  # nothing stored
    home.run("totp", "set", "otp", input=SEED + "\n", check=True)
    # the seed may be the only copy of the device's secret: never forgotten unasked
    unasked = home.run("totp", "remove", "otp")
    assert unasked.returncode == 2 and "--force" in unasked.stderr
    assert home.run("totp", "code", "otp").returncode == 0  # still there
    home.run("totp", "remove", "otp", "--force", check=True)
    listing = {p["name"]: p for p in json.loads(home.run("list", "--json", check=True).stdout)}
    assert listing["otp"]["mfa_source"] == "prompt"
    nothing = home.run("totp", "code", "otp")
    assert nothing.returncode == 9 and "broker totp set otp" in nothing.stderr
    assert home.run("export", "otp", "--mfa-code", home.code(OTP_SERIAL), check=True)  # key stayed


def test_the_seed_never_reaches_a_file_or_the_output(home):
    home.run("totp", "set", "otp", input=SEED + "\n", check=True)
    result = home.run("exec", "otp", "--", "true", check=True)
    assert SEED not in result.stdout + result.stderr
    for path in home.root.rglob("*"):
        if path.is_file():
            assert SEED.encode() not in path.read_bytes(), path


def test_cached_exec_imports_no_pyotp(home):
    short_steps(home, 2)
    home.run("totp", "set", "otp", input=f"otpauth://totp/x?secret={SEED}&period=2\n",
             check=True)
    home.run("export", "otp", check=True)  # cold: computes the code
    names = imported_modules(home.env, "exec", "otp", "--", "true")
    assert "pyotp" not in names and "boto3" not in names
    home.run("clear", check=True)
    assert "pyotp" in imported_modules(home.env, "export", "otp")  # the probe sees it cold
