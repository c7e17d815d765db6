"""Invariants of the MFA reuse guard: only a code STS accepted counts as used; an accepted
code is refused again for REUSE_WINDOW seconds and no longer; the ledger keeps the latest
step. Each MfaCodes below is a separate broker run sharing the ledger file, as processes do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.aws.mfa import REUSE_WINDOW, GuardedSessions, MfaCodes, stored_seed_source
from broker.aws.mfa_ledger import MfaLedger, UsedCode
from broker.aws.profiles import parse, resolve_chain
from broker.aws.session_cache import SessionCache
from broker.backend import Item
from broker.errors import AuthenticationError
from broker.services import credentials
from tests.conftest import ACCOUNT
from tests.support.keyring_cache import broker_context, default_keys
from tests.support.totp_helpers import SEED, T0, FakeClock, pyotp_code

SERIAL = "arn:aws:iam::1:mfa/guard"
CHAIN = resolve_chain(parse(f"[profile g]\nmfa_serial = {SERIAL}\n", Path("/x")), "g")


@pytest.fixture
def ledger(tmp_path, monkeypatch) -> MfaLedger:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the device locks
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return MfaLedger(tmp_path / "mfa.json")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _typed(code: str, ledger: MfaLedger, clock: FakeClock) -> MfaCodes:
    """A broker run given ``code`` on the command line (--mfa-code)."""
    return MfaCodes(explicit=code, sources=[], ledger=ledger, clock=clock)


def _seeded(ledger: MfaLedger, clock: FakeClock) -> MfaCodes:
    """A broker run computing codes from the stored seed."""
    return MfaCodes(sources=[stored_seed_source], key_item=lambda: Item(totp=SEED),
                    ledger=ledger, clock=clock)


def _session(codes: MfaCodes, sts_answer: str) -> str:
    """One session refresh asking ``codes`` for a code; STS accepts or refuses it."""
    sent: list[str] = []

    def create():
        sent.append(codes.code_for(SERIAL, CHAIN))
        if sts_answer == "refuse":
            raise AuthenticationError("GetSessionToken: AWS rejected the MFA code")
        from datetime import datetime, timedelta, timezone

        from broker.aws.credentials import Credentials

        return Credentials("ASIA", "s", "t", datetime.now(timezone.utc) + timedelta(hours=1))

    guarded = GuardedSessions(SessionCache(None, 300), codes)
    if sts_answer == "refuse":
        with pytest.raises(AuthenticationError, match="rejected"):
            guarded.get_or_create("g:session:x", create)
    else:
        guarded.get_or_create("g:session:x", create)
    return sent[0]


def test_a_refused_code_is_not_recorded(ledger, clock):
    _session(_typed("123456", ledger, clock), "refuse")
    assert ledger.last(SERIAL) is None


def test_a_refused_typed_code_can_be_typed_again(ledger, clock):
    _session(_typed("123456", ledger, clock), "refuse")
    clock.t += 5
    assert _session(_typed("123456", ledger, clock), "accept") == "123456"


def test_a_refused_computed_code_is_sent_again_without_waiting(ledger, clock):
    first = _session(_seeded(ledger, clock), "refuse")
    second = _session(_seeded(ledger, clock), "accept")
    assert first == second == pyotp_code(SEED, int(T0 // 30))
    assert clock.slept == []


def test_an_accepted_code_is_recorded_as_accepted(ledger, clock):
    _session(_typed("123456", ledger, clock), "accept")
    used = ledger.last(SERIAL)
    assert used is not None
    assert (used.accepted, used.step) == (True, int(T0 // 30))
    assert used.code == "" and ledger.same_code(SERIAL, used, "123456")  # a keyed hash only
    assert used.at == T0


def test_an_accepted_typed_code_is_refused_for_the_reuse_window_and_no_longer(ledger, clock):
    _session(_typed("123456", ledger, clock), "accept")
    clock.t = T0 + REUSE_WINDOW - 1
    with pytest.raises(AuthenticationError, match="already used") as info:
        _typed("123456", ledger, clock).code_for(SERIAL, CHAIN)
    assert type(info.value) is AuthenticationError and info.value.exit_code == 8
    clock.t = T0 + REUSE_WINDOW  # the window is over: the same digits are a new code
    assert _session(_typed("123456", ledger, clock), "accept") == "123456"


def test_an_accepted_computed_code_waits_for_the_next_step(ledger, clock):
    first = _session(_seeded(ledger, clock), "accept")
    second = _session(_seeded(ledger, clock), "accept")
    step = int(T0 // 30)
    assert (first, second) == (pyotp_code(SEED, step), pyotp_code(SEED, step + 1))
    assert clock.t == pytest.approx((step + 1) * 30, abs=0.05)


def test_a_code_handed_out_unseen_is_not_taken_for_accepted(ledger, clock):
    """Outside a session refresh (`broker totp code` for the console) broker never sees
    AWS's answer: the code is remembered, but not as accepted."""
    code = _typed("123456", ledger, clock).code_for(SERIAL, CHAIN)
    used = ledger.last(SERIAL)
    assert used is not None and ledger.same_code(SERIAL, used, code) and used.accepted is False
    clock.t += 10
    assert _session(_typed("123456", ledger, clock), "accept") == "123456"  # not refused


def test_a_computed_code_handed_out_unseen_is_not_computed_again(ledger, clock):
    step = int(T0 // 30)
    assert _seeded(ledger, clock).code_for(SERIAL, CHAIN) == pyotp_code(SEED, step)
    assert _seeded(ledger, clock).code_for(SERIAL, CHAIN) == pyotp_code(SEED, step + 1)


def test_state_without_the_accepted_flag_means_accepted(ledger, clock):
    # what older versions wrote: every recorded code had been accepted
    ledger.path.write_text(json.dumps({"version": 1, "devices": {
        SERIAL: {"step": int(T0 // 30), "period": 30, "code": "123456", "at": T0}}}))
    last = ledger.last(SERIAL)
    assert last is not None and last.accepted is True
    with pytest.raises(AuthenticationError, match="already used"):
        _typed("123456", ledger, clock).code_for(SERIAL, CHAIN)


def test_the_ledger_keeps_the_latest_step(ledger):
    ledger.record(SERIAL, UsedCode(100, 30, "111111", 3000.0))
    ledger.record(SERIAL, UsedCode(99, 30, "222222", 3001.0))  # older step, later call
    last = ledger.last(SERIAL)
    assert last is not None and last.step == 100 and ledger.same_code(SERIAL, last, "111111")
    ledger.record(SERIAL, UsedCode(101, 30, "333333", 3030.0))
    last = ledger.last(SERIAL)
    assert last is not None and last.step == 101 and ledger.same_code(SERIAL, last, "333333")
    ledger.record("arn:aws:iam::1:mfa/other", UsedCode(1, 30, "444444", 30.0))
    last = ledger.last(SERIAL)
    assert last is not None and last.step == 101  # devices are separate


def test_later_news_about_the_same_step_wins(ledger):
    # handed out unseen first (`broker totp code`), then the same step accepted by STS
    ledger.record(SERIAL, UsedCode(100, 30, "111111", 3000.0, accepted=False))
    ledger.record(SERIAL, UsedCode(100, 30, "111111", 3010.0, accepted=True))
    last = ledger.last(SERIAL)
    assert last is not None and (last.accepted, last.at) == (True, 3010.0)


@pytest.mark.parametrize("damaged", [
    "[]", "null", "not json", json.dumps({"devices": {SERIAL: "x"}}),
    json.dumps({"devices": {SERIAL: {"step": "x"}}}),
    '{"devices": []}',
    '{"seeds": []}',
])
def test_damaged_state_is_only_a_lost_memory(ledger, damaged):
    ledger.path.write_text(damaged)
    assert ledger.last(SERIAL) is None
    assert ledger.seed_stored("pass", "dev") is None
    ledger.record(SERIAL, UsedCode(100, 30, "111111", 3000.0))
    ledger.mark_seed("pass", "dev", True)
    last = ledger.last(SERIAL)
    assert last is not None and (last.step, last.at) == (100, 3000.0)
    assert ledger.seed_stored("pass", "dev") is True
    data = json.loads(ledger.path.read_text())
    assert isinstance(data["devices"], dict) and isinstance(data["seeds"], dict)


def test_seed_markers(ledger, monkeypatch):
    assert ledger.seed_stored("pass", "dev") is None  # not known yet
    ledger.mark_seed("pass", "dev", True)
    ledger.mark_seed("keyctl", "dev", False)
    assert ledger.seed_stored("pass", "dev") is True
    assert ledger.seed_stored("keyctl", "dev") is False
    assert ledger.seed_stored("pass", "other") is None
    from broker import paths

    writes: list[Path] = []
    real = paths.atomic_write
    monkeypatch.setattr(paths, "atomic_write",
                        lambda p, *a, **k: (writes.append(p), real(p, *a, **k)))
    ledger.mark_seed("pass", "dev", True)  # already known: nothing is written
    assert writes == []
    ledger.mark_seed("pass", "dev", False)
    assert writes == [ledger.path] and ledger.seed_stored("pass", "dev") is False
    ledger.path.write_text(json.dumps({"seeds": {"pass/dev": "yes"}}))
    assert ledger.seed_stored("pass", "dev") is None  # only a boolean counts


def test_the_ledger_file_is_private(ledger):
    ledger.record(SERIAL, UsedCode(100, 30, "111111", 3000.0))
    assert ledger.path.stat().st_mode & 0o777 == 0o600


# --- against the local STS, which checks codes as AWS does ---------------------------------


@pytest.fixture
def ctx(in_home):
    device = f"arn:aws:iam::{ACCOUNT}:mfa/dev-user"
    in_home.aws_config.write_text(f"[profile typed]\nmfa_serial = {device}\n")
    return broker_context(Path(in_home.env["BROKER_CONFIG"]), default_keys("typed"),
                          keyring=in_home.keyring)


def test_a_wrong_code_refused_by_sts_is_not_taken_for_a_used_one(ctx, sts, in_home):
    wrong = "000000" if in_home.code() != "000000" else "000001"
    for _ in range(2):  # refused by AWS each time, never by broker's reuse guard
        with pytest.raises(AuthenticationError) as info:
            credentials.obtain(ctx, "typed", mfa_code=wrong)
        assert "already used" not in info.value.message
    assert [c["TokenCode"] for c in sts.actions("GetSessionToken")] == [wrong, wrong]
    assert MfaLedger().last(f"arn:aws:iam::{ACCOUNT}:mfa/dev-user") is None
    good = in_home.code()
    credentials.obtain(ctx, "typed", mfa_code=good)
    ledger = MfaLedger()
    used = ledger.last(f"arn:aws:iam::{ACCOUNT}:mfa/dev-user")
    assert used is not None and used.accepted
    assert ledger.same_code(f"arn:aws:iam::{ACCOUNT}:mfa/dev-user", used, good)
