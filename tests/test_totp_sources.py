"""MFA code sources and the reuse guard, in-process against the local STS.

These tests assert what broker sends (TokenCode) and when: the clock is a fake that
advances when broker waits for the next step, and the local STS's clock follows it, so
it checks each code against the device's seed. Tests that send made-up digits to follow
them through broker turn its MFA check off (``sts.rules.mfa = False``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.aws import sts as sts_module
from broker.aws.mfa import MfaCodes, source_name
from broker.aws.mfa_ledger import MfaLedger, UsedCode
from broker.aws.profiles import resolve_chain
from broker.errors import AuthenticationError, ConfigError
from broker.services import backends as backend_service
from broker.services import credentials, listing
from broker.services import mfa as mfa_service
from tests.conftest import ACCOUNT, follow_clock
from tests.support.backends import CountingMemory
from tests.support.contexts import home_context, store_key
from tests.support.otp import OTP_CONFIG, SEED, T0, FakeClock, pyotp_code

OTP_SERIAL = f"arn:aws:iam::{ACCOUNT}:mfa/otp-user"


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr("broker.aws.totp.CLOCK", fake)
    return fake


@pytest.fixture
def ctx(in_home, clock, sts, monkeypatch):
    follow_clock(sts, clock.now, monkeypatch)
    for device in ("otp-user", "ref-user"):
        sts.register_mfa_device(f"arn:aws:iam::{ACCOUNT}:mfa/{device}", SEED)
    in_home.aws_config.write_text(OTP_CONFIG)
    CountingMemory.reads.clear()
    context = home_context(in_home, backend=CountingMemory)
    store_key(context, "otp", totp=SEED)
    store_key(context, "proc", totp=SEED)
    store_key(context, "ref")
    return context


def token_codes(sts) -> list[str]:
    return [c["TokenCode"] for c in sts.actions("GetSessionToken")]


def test_the_code_sent_is_pyotps_for_the_step(ctx, sts, clock):
    credentials.obtain(ctx, "otp")
    gst, = sts.actions("GetSessionToken")
    step = int(T0 // 30)
    assert gst["SerialNumber"] == OTP_SERIAL
    assert gst["TokenCode"] == pyotp_code(SEED, step)
    assert clock.slept == []  # nothing was used yet: no wait
    used = MfaLedger().last(OTP_SERIAL)
    assert used is not None and (used.step, used.accepted) == (step, True)


def test_the_key_and_the_seed_come_from_one_read(ctx, sts):
    credentials.obtain(ctx, "otp")
    assert CountingMemory.reads == {"otp": 1}


def test_a_second_session_in_the_same_step_waits_for_the_next_code(ctx, sts, clock):
    credentials.obtain(ctx, "otp")
    backend_service.clear_sessions(ctx, "otp")
    credentials.obtain(ctx, "otp")
    first, second = token_codes(sts)
    step = int(T0 // 30)
    assert first == pyotp_code(SEED, step)
    assert second == pyotp_code(SEED, step + 1) != first
    assert clock.t == pytest.approx((step + 1) * 30, abs=0.02)  # waited to the boundary only
    shown = "".join(clock.messages)
    assert "was used; next code in: 10 s" in shown and "done." in shown
    assert SEED not in shown


def test_no_wait_once_the_step_has_passed(ctx, sts, clock):
    credentials.obtain(ctx, "otp")
    backend_service.clear_sessions(ctx, "otp")
    clock.t += 30
    credentials.obtain(ctx, "otp")
    assert clock.slept == []
    assert token_codes(sts)[1] == pyotp_code(SEED, int(T0 // 30) + 1)


def test_a_computed_code_repeating_a_typed_one_waits(ctx, sts, clock):
    typed = pyotp_code(SEED, int(T0 // 30))  # the user read the same code off a phone
    credentials.obtain(ctx, "otp", mfa_code=typed)
    backend_service.clear_sessions(ctx, "otp")
    credentials.obtain(ctx, "otp")
    assert token_codes(sts) == [typed, pyotp_code(SEED, int(T0 // 30) + 1)]


def test_a_typed_code_equal_to_the_last_accepted_is_refused(ctx, sts, clock):
    sts.rules.mfa = False  # made-up digits, and the same digits again later
    credentials.obtain(ctx, "otp", mfa_code="123456")
    backend_service.clear_sessions(ctx, "otp")
    clock.t += 45
    with pytest.raises(AuthenticationError) as info:
        credentials.obtain(ctx, "otp", mfa_code="123456")
    assert "already used" in info.value.message and "45 s ago" in info.value.message
    assert "next code" in info.value.hint
    assert info.value.exit_code == 8
    assert token_codes(sts) == ["123456"]  # refused before STS saw it
    credentials.obtain(ctx, "otp", mfa_code="654321")  # another code is fine
    clock.t += 600  # long after: the same digits are a new code
    backend_service.clear_sessions(ctx, "otp")
    credentials.obtain(ctx, "otp", mfa_code="123456")
    assert token_codes(sts) == ["123456", "654321", "123456"]


def test_a_code_counts_as_used_only_once_sts_accepted_it(ctx, sts, clock, monkeypatch):
    typed = pyotp_code(SEED, int(T0 // 30))
    real = sts_module.get_session_token
    answers = ["refuse", "accept"]

    def sometimes(*args, **kwargs):
        if answers.pop(0) == "refuse":
            raise AuthenticationError("GetSessionToken: AWS rejected the MFA code")
        return real(*args, **kwargs)

    monkeypatch.setattr(sts_module, "get_session_token", sometimes)
    with pytest.raises(AuthenticationError):
        credentials.obtain(ctx, "otp", mfa_code=typed)
    assert MfaLedger().last(OTP_SERIAL) is None
    credentials.obtain(ctx, "otp", mfa_code=typed)  # typed again: not a reuse
    assert token_codes(sts) == [typed]


def test_mfa_process_comes_before_the_stored_seed(ctx, sts):
    sts.rules.mfa = False  # mfa_process gives made-up digits
    credentials.obtain(ctx, "proc")
    assert token_codes(sts) == ["246810"]


def test_explicit_code_comes_first(ctx, sts):
    typed = pyotp_code(SEED, int(T0 // 30) + 1)  # not the one the stored seed gives now
    credentials.obtain(ctx, "otp", mfa_code=typed)
    assert token_codes(sts) == [typed]


def test_the_stored_seed_comes_before_broker_totp(ctx, sts, in_home, monkeypatch):
    monkeypatch.setenv("BROKER_TEST_TOTP", "111111")
    in_home.aws_config.write_text(OTP_CONFIG.replace(
        "role_arn = arn:aws:iam::123456789012:role/otp-role",
        "role_arn = arn:aws:iam::123456789012:role/otp-role\nbroker_totp = env:BROKER_TEST_TOTP",
    ))
    ctx.__dict__.pop("aws", None)
    credentials.obtain(ctx, "otp")
    assert token_codes(sts) == [pyotp_code(SEED, int(T0 // 30))]


def test_broker_totp_giving_a_seed_or_uri(ctx, sts, clock, monkeypatch):
    sts.register_mfa_device(f"arn:aws:iam::{ACCOUNT}:mfa/ref-user", SEED, period=60)
    monkeypatch.setenv("BROKER_TEST_TOTP", f"otpauth://totp/AWS:ref?secret={SEED}&period=60")
    credentials.obtain(ctx, "ref")
    assert token_codes(sts) == [pyotp_code(SEED, int(T0 // 60), interval=60)]


def test_broker_totp_giving_codes_waits_for_a_fresh_one(ctx, sts, clock, monkeypatch):
    sts.rules.mfa = False  # the reference gives made-up digits
    monkeypatch.setenv("BROKER_TEST_TOTP", "111 111")
    credentials.obtain(ctx, "ref")
    backend_service.clear_sessions(ctx, "ref")
    # the reference (say op://...?attribute=totp) shows the next code once the step ends
    clock.on_sleep = lambda: monkeypatch.setenv("BROKER_TEST_TOTP", "222222")
    credentials.obtain(ctx, "ref")
    assert token_codes(sts) == ["111111", "222222"]
    assert clock.t == pytest.approx((int(T0 // 30) + 1) * 30, abs=0.02)


def test_broker_totp_stuck_on_a_used_code_gives_up(ctx, sts, clock, monkeypatch):
    sts.rules.mfa = False  # the reference gives made-up digits
    monkeypatch.setenv("BROKER_TEST_TOTP", "111111")
    credentials.obtain(ctx, "ref")
    backend_service.clear_sessions(ctx, "ref")
    with pytest.raises(AuthenticationError, match="already used"):
        credentials.obtain(ctx, "ref")
    assert token_codes(sts) == ["111111"]


def test_a_malformed_stored_seed_is_a_clear_error(ctx, sts):
    store_key(ctx, "otp", totp="not a seed!")
    with pytest.raises(ConfigError) as info:
        credentials.obtain(ctx, "otp")
    assert "stored with otp's key" in info.value.message and "not base32" in info.value.message
    assert "broker totp set otp" in info.value.hint
    assert sts.actions("GetSessionToken") == []


def test_the_guard_holds_across_ledger_instances(in_home, clock, tmp_path):
    # what one process records, another sees: the state lives in one file
    MfaLedger().record("arn:x", UsedCode(int(T0 // 30), 30, "000000", T0))
    codes = MfaCodes(clock=clock)
    from broker.aws.totp import parse_seed

    assert codes._computed("arn:x", parse_seed(SEED)).step == int(T0 // 30) + 1
    state = json.loads(Path(in_home.env["XDG_STATE_HOME"], "broker", "mfa.json").read_text())
    assert set(state["devices"]) == {"arn:x"}
    mode = Path(in_home.env["XDG_STATE_HOME"], "broker", "mfa.json").stat().st_mode & 0o777
    assert mode == 0o600


def test_damaged_state_is_only_a_lost_memory(ctx, sts, in_home):
    state = Path(in_home.env["XDG_STATE_HOME"], "broker", "mfa.json")
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text("{not json")
    credentials.obtain(ctx, "otp")
    assert len(token_codes(sts)) == 1
    assert json.loads(state.read_text())["devices"][OTP_SERIAL]["accepted"] is True


def test_list_shows_where_codes_come_from(ctx, sts, in_home, monkeypatch):
    def sources() -> dict[str, str]:
        return {i.name: i.mfa_source for i in listing.list_profiles(ctx).profiles}

    by_name = sources()
    assert by_name["proc"] == "mfa_process"
    assert by_name["ref"] == "broker_totp"
    assert by_name["default"] == ""
    # not known before the key was read or a seed set through broker: the fallback
    assert by_name["otp"] == "prompt"
    credentials.obtain(ctx, "otp")
    assert sources()["otp"] == "stored totp"
    mfa_service.remove_seed(ctx, "otp")
    assert sources()["otp"] == "prompt"


def test_source_name_order(ctx):
    chain = resolve_chain(ctx.aws, "otp")
    assert source_name(chain, None) == "prompt"
    assert source_name(chain, True) == "stored totp"
    assert source_name(resolve_chain(ctx.aws, "proc"), True) == "mfa_process"
    assert source_name(resolve_chain(ctx.aws, "ref"), False) == "broker_totp"
    assert source_name(resolve_chain(ctx.aws, "ref"), True) == "stored totp"


def test_a_step_from_the_future_is_not_waited_for(in_home, clock):
    # the clock went back an hour since: waiting for that step would take an hour
    MfaLedger().record("arn:x", UsedCode(int(T0 // 30) + 120, 30, "000000", T0 + 3600))
    from broker.aws.totp import parse_seed

    used = MfaCodes(clock=clock)._computed("arn:x", parse_seed(SEED))
    assert used.step == int(T0 // 30) and clock.slept == []
