"""Invariants of the MFA reuse guard: only a code STS accepted counts as used; an accepted
code is refused again for REUSE_WINDOW seconds and no longer; the ledger keeps the latest
step. Each MfaCodes below is a separate broker run sharing the ledger file, as processes do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.aws.mfa import (
    REUSE_WINDOW,
    MfaCodes,
    MfaProcess,
    Offer,
    Prompt,
    StoredSeed,
    TotpReference,
    check_code,
    tries_left,
)
from broker.aws.mfa_ledger import MfaLedger, UsedCode
from broker.aws.profiles import parse, resolve_chain
from broker.aws.session_cache import SessionCache
from broker.backend import Item
from broker.errors import AuthenticationError, ConfigError, MFARequired
from broker.services import credentials
from tests.conftest import ACCOUNT
from tests.support.contexts import default_keys, home_context
from tests.support.otp import SEED, T0, FakeClock, pyotp_code

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
    return MfaCodes(sources=[StoredSeed(lambda: Item(totp=SEED))], ledger=ledger, clock=clock)


class _Answers:
    """A code source of a test's own: hands out ``answers`` in turn, then nothing."""

    name = "answers"
    origin = "a code source"

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def offer(self, serial: str, chain) -> Offer | None:
        self.asked.append(serial)
        return Offer(code=self.answers.pop(0)) if self.answers else None


def _session(codes: MfaCodes, sts_answer: str, cache: SessionCache | None = None) -> str:
    """One MFA session made through the credential chain (no cached session), asking
    ``codes`` for a code; STS accepts or refuses it. The code sent."""
    from datetime import datetime, timedelta, timezone

    from broker.aws import sts
    from broker.aws.chain import ChainOptions, CredentialChain
    from broker.aws.credentials import Credentials

    sent: list[str] = []

    def get_session_token(master, region, duration, serial=None, code=None, **kwargs):
        sent.append(code)
        if sts_answer == "refuse":
            raise AuthenticationError("GetSessionToken: AWS rejected the MFA code")
        return Credentials("ASIA", "s", "t", datetime.now(timezone.utc) + timedelta(hours=1))

    producer = CredentialChain(CHAIN, cache or SessionCache(None, 300),
                               lambda: Credentials("AKIAKEY", "secret"), codes, ChainOptions())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sts, "get_session_token", get_session_token)
        if sts_answer == "refuse":
            with pytest.raises(AuthenticationError, match="rejected"):
                producer.get()
        else:
            producer.get()
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
    return home_context(in_home, default_keys("typed"))


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


# --- where codes come from: the prompt, broker_totp, the checks on a code ---------------------


def test_a_code_is_six_digits_as_typed_with_spaces_anywhere():
    assert check_code(" 123 456\n", "the prompt") == "123456"
    for bad in ("12345", "1234567", "12345a", ""):
        with pytest.raises(AuthenticationError) as info:
            check_code(bad, "mfa_process")
        assert info.value.message == "the MFA code from mfa_process is not 6 digits"
        assert info.value.hint == "give the 6-digit code your device shows"


@pytest.mark.parametrize("typed", ["１２３４５６", "١٢٣٤٥٦"])
def test_a_code_in_other_digits_is_refused_before_it_reaches_aws(typed):
    # a full-width code (an IME left on) would be sent as it is and refused by AWS
    with pytest.raises(AuthenticationError):
        check_code(typed, "the prompt")


def test_tries_left_counts_in_words():
    assert tries_left(2) == "try again (2 tries left)"
    assert tries_left(1) == "try again (1 try left)"


@pytest.fixture
def terminal(monkeypatch) -> dict[str, list[str]]:
    """A terminal answering ``answers`` in turn; what broker asked and wrote on it."""
    from broker import tty

    seen: dict[str, list[str]] = {"answers": [], "prompts": [], "written": []}

    def prompt(text: str, **kwargs) -> str:
        seen["prompts"].append(text)
        return seen["answers"].pop(0)

    monkeypatch.setattr(tty, "has_tty", lambda: True)
    monkeypatch.setattr(tty, "prompt", prompt)
    monkeypatch.setattr(tty, "write", seen["written"].append)
    return seen


def test_a_mistyped_code_is_asked_for_again_three_times_in_all(terminal):
    terminal["answers"] = ["12345", "12 34 5a", " 654 321 "]
    assert Prompt().code(SERIAL, CHAIN) == "654321"
    assert terminal["prompts"] == [f"MFA code for {SERIAL}: "] * 3
    assert terminal["written"] == [
        "broker: the MFA code from the prompt is not 6 digits; try again (2 tries left)\n",
        "broker: the MFA code from the prompt is not 6 digits; try again (1 try left)\n",
    ]
    terminal["answers"] = ["1", "2", "3", "123456"]
    terminal["written"].clear()
    with pytest.raises(AuthenticationError) as info:
        Prompt().code(SERIAL, CHAIN)
    assert info.value.message == "the MFA code from the prompt is not 6 digits"
    assert terminal["answers"] == ["123456"] and len(terminal["written"]) == 2


def test_malformed_and_refused_answers_share_one_budget(terminal, ledger, clock):
    # abc (malformed), 000000 (AWS refuses it), abc: three failed answers, three prompts
    terminal["answers"] = ["abc", "000000", "abc", "123456"]
    codes = MfaCodes(sources=[Prompt()], ledger=ledger, clock=clock)
    assert codes.code_for(SERIAL, CHAIN) == "000000"
    assert codes.refused() == 1  # the malformed answer counted too
    with pytest.raises(AuthenticationError, match="not 6 digits"):
        codes.code_for(SERIAL, CHAIN)
    assert terminal["prompts"] == [f"MFA code for {SERIAL}: "] * 3
    assert terminal["answers"] == ["123456"]  # never asked a fourth time
    assert terminal["written"] == [
        "broker: the MFA code from the prompt is not 6 digits; try again (2 tries left)\n",
    ]


def test_refused_codes_use_up_the_prompt_and_other_sources_are_not_asked_again(
    terminal, ledger, clock
):
    terminal["answers"] = ["111111", "222222", "333333", "444444"]
    codes = MfaCodes(sources=[Prompt()], ledger=ledger, clock=clock)
    for left in (2, 1, 0):
        codes.code_for(SERIAL, CHAIN)
        assert codes.refused() == left
    with pytest.raises(AuthenticationError, match="took 3 codes that failed already"):
        codes.code_for(SERIAL, CHAIN)  # a caller that went on anyway is not asked again
    assert terminal["answers"] == ["444444"]
    given = MfaCodes(explicit="123456", sources=[], ledger=ledger, clock=clock)
    given.code_for(SERIAL, CHAIN)
    assert given.refused() is None  # --mfa-code would give the same code again


def test_without_a_terminal_the_prompt_offers_nothing(terminal, monkeypatch):
    from broker import tty

    monkeypatch.setattr(tty, "has_tty", lambda: False)
    terminal["answers"] = ["123456"]
    assert Prompt().code(SERIAL, CHAIN) is None
    assert terminal["prompts"] == []


REF_CHAIN = resolve_chain(
    parse(f"[profile r]\nmfa_serial = {SERIAL}\nbroker_totp = env:CODES\n", Path("/x")), "r"
)


def _from_reference(value: str, ledger: MfaLedger, clock: FakeClock) -> MfaCodes:
    return MfaCodes(sources=[TotpReference(lambda reference: value)], ledger=ledger,
                    clock=clock)


def test_broker_totp_handing_out_codes(ledger, clock):
    codes = _from_reference(" 123 456 ", ledger, clock)
    assert codes.code_for(SERIAL, REF_CHAIN) == "123456"
    assert codes.last_origin == "broker_totp"
    with pytest.raises(AuthenticationError) as info:  # 7 or 8 digits: a code, not a seed
        _from_reference("1234567", ledger, clock).code_for(SERIAL, REF_CHAIN)
    assert info.value.message == "the MFA code from broker_totp is not 6 digits"


def test_broker_totp_handing_out_a_seed(ledger, clock):
    codes = _from_reference(SEED, ledger, clock)
    assert codes.code_for(SERIAL, REF_CHAIN) == pyotp_code(SEED, int(clock.now() // 30))
    assert codes.last_origin == "broker_totp"
    with pytest.raises(ConfigError) as info:
        _from_reference("not a seed!", ledger, clock).code_for(SERIAL, REF_CHAIN)
    assert info.value.message.startswith("the seed from broker_totp is not base32")
    assert info.value.hint == (
        "point broker_totp at a base32 seed, an otpauth:// URI or a 6-digit code")


def test_broker_totp_is_not_asked_without_a_resolver(ledger, clock):
    codes = MfaCodes(sources=[TotpReference()], ledger=ledger, clock=clock)
    with pytest.raises(MFARequired, match="no terminal to ask on"):
        codes.code_for(SERIAL, REF_CHAIN)


# --- computed codes: the guard's boundaries ---------------------------------------------------

STEP = int(T0 // 30)


@pytest.mark.parametrize(("ahead", "waits"), [(60, True), (61, False)])
def test_a_used_step_up_to_two_periods_ahead_is_waited_for_and_no_further(ledger, ahead, waits):
    """A used step ending up to 2 periods from now is a code just used (waited for); beyond
    that the clock went back or the state is damaged (not waited for: it could be hours)."""
    clock = FakeClock(start=STEP * 30 + 60 - ahead)  # now: `ahead` s before the used step ends
    ledger.record(SERIAL, UsedCode(STEP + 1, 30, "000000", STEP * 30 - 5))
    codes = _seeded(ledger, clock)
    code = codes.code_for(SERIAL, CHAIN)
    if waits:
        assert clock.t == (STEP + 2) * 30 and code == pyotp_code(SEED, STEP + 2)
    else:
        assert clock.slept == [] and code == pyotp_code(SEED, STEP - 1)
        assert codes.last_issued is not None
        assert (codes.last_issued.step, codes.last_issued.until) == (STEP - 1, STEP * 30)
        last = ledger.last(SERIAL)  # the later step stays remembered
        assert last is not None and last.step == STEP + 1


@pytest.mark.parametrize(("ago", "waits"), [(10, True), (299.5, True), (300, False)])
def test_a_new_step_repeating_the_last_code_waits_for_the_next_within_the_window(
    ledger, clock, ago, waits
):
    # the rare repeat: this step's code equals the one used in the step before
    repeated = pyotp_code(SEED, STEP)
    ledger.record(SERIAL, UsedCode(STEP - 1, 30, repeated, T0 - ago))
    code = _seeded(ledger, clock).code_for(SERIAL, CHAIN)
    if waits:
        assert clock.t == (STEP + 1) * 30 and code == pyotp_code(SEED, STEP + 1)
    else:
        assert clock.slept == [] and code == repeated


def test_mfa_process_runs_with_no_input_its_stderr_on_the_terminal_and_a_time_limit(
    monkeypatch,
):
    import contextlib
    import subprocess

    from broker import tty
    from broker.aws import mfa as mfa_module

    runs: list[tuple[tuple, dict]] = []

    def run(*args, **kwargs):
        runs.append((args, kwargs))
        return subprocess.CompletedProcess(args, 0, b" 135 790\n", None)

    @contextlib.contextmanager
    def helper_stderr():
        yield 99  # the terminal's descriptor

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(tty, "helper_stderr", helper_stderr)
    chain = resolve_chain(parse(f"[profile p]\nmfa_serial = {SERIAL}\nmfa_process = my-otp\n",
                                Path("/x")), "p")
    assert mfa_module.MfaProcess().code(SERIAL, chain) == "135790"
    assert runs == [(("my-otp",), {
        "shell": True, "stdout": subprocess.PIPE, "stdin": subprocess.DEVNULL, "stderr": 99,
        "timeout": 120, "check": False,
    })]


P_CHAIN = resolve_chain(
    parse(f"[profile p]\nmfa_serial = {SERIAL}\nmfa_process = my-otp\n", Path("/x")), "p"
)


def _process_fails(monkeypatch, outcome) -> MFARequired | AuthenticationError:
    import subprocess

    from broker.aws import mfa as mfa_module

    def run(*args, **kwargs):
        if isinstance(outcome, BaseException):
            raise outcome
        return subprocess.CompletedProcess(args, outcome[0], outcome[1], None)

    monkeypatch.setattr(subprocess, "run", run)
    with pytest.raises((MFARequired, AuthenticationError)) as info:
        mfa_module.MfaProcess().code(SERIAL, P_CHAIN)
    return info.value


def test_mfa_process_failures_say_what_went_wrong_and_what_to_do(monkeypatch):
    import errno
    import subprocess

    def said(outcome) -> tuple[type, str, str]:
        error = _process_fails(monkeypatch, outcome)
        return type(error), error.message, error.hint

    assert said(subprocess.TimeoutExpired("my-otp", 120)) == (
        MFARequired, "mfa_process did not finish in 120 s", "check the command")
    assert said(OSError(errno.ENOENT, "No such file or directory")) == (
        MFARequired, "cannot run mfa_process: No such file or directory", "check the command")
    assert said(OSError("fork failed")) == (
        MFARequired, "cannot run mfa_process: fork failed", "check the command")
    assert said((3, b"")) == (
        MFARequired, "mfa_process exited with status 3", "run the command by hand to see why")
    assert said((0, b"12\xff456\n")) == (  # not text: a bad code, not a crash
        AuthenticationError, "the MFA code from mfa_process is not 6 digits",
        "give the 6-digit code your device shows")


def test_the_stored_seed_is_named_as_the_source_and_absent_without_a_key(ledger, clock):
    codes = _seeded(ledger, clock)
    codes.code_for(SERIAL, CHAIN)
    assert codes.last_origin == "the stored TOTP seed"
    for key_item in (None, lambda: None, lambda: Item(aws_access_key_id="AKIA")):
        codes = MfaCodes(sources=[StoredSeed(key_item)], ledger=ledger, clock=clock)
        with pytest.raises(MFARequired):  # no seed: the next source (none here)
            codes.code_for(SERIAL, CHAIN)


def _process_says(monkeypatch, *outputs: bytes) -> list[str]:
    """mfa_process printing ``outputs`` in turn; the commands run."""
    import subprocess


    left, ran = list(outputs), []

    def run(command, **kwargs):
        ran.append(command)
        return subprocess.CompletedProcess(command, 0, left.pop(0), None)

    monkeypatch.setattr(subprocess, "run", run)
    return ran


def test_mfa_process_repeating_a_used_code_is_run_again_after_the_step(ledger, clock, monkeypatch):
    ledger.record(SERIAL, UsedCode(STEP, 30, "111111", T0 - 5))  # accepted 5 s ago
    ran = _process_says(monkeypatch, b"111111\n", b"222222\n")
    codes = MfaCodes(sources=[MfaProcess()], ledger=ledger, clock=clock)
    assert codes.code_for(SERIAL, P_CHAIN) == "222222"
    assert ran == ["my-otp", "my-otp"] and clock.t == (STEP + 1) * 30
    assert codes.last_origin == "mfa_process"


def test_codes_from_other_sources_are_named_and_checked_as_they_are(ledger, clock, terminal):
    source = _Answers(["12 34 56", "12345"])
    codes = MfaCodes(sources=[source], ledger=ledger, clock=clock)
    assert codes.code_for(SERIAL, CHAIN) == "123456"
    assert source.asked == [SERIAL] and codes.last_origin == "a code source"
    with pytest.raises(AuthenticationError) as info:
        codes.code_for(SERIAL, CHAIN)
    assert info.value.message == "the MFA code from a code source is not 6 digits"
    terminal["answers"] = ["654321"]
    codes = MfaCodes(sources=[Prompt()], ledger=ledger, clock=clock)
    assert codes.code_for(SERIAL, CHAIN) == "654321" and codes.last_origin == "the prompt"


def test_mfa_process_stuck_on_a_used_code_is_asked_three_more_times(ledger, clock, monkeypatch):
    from broker.aws.mfa import REFETCH_LIMIT

    assert REFETCH_LIMIT == 3
    ledger.record(SERIAL, UsedCode(STEP, 30, "111111", T0 - 5))
    ran = _process_says(monkeypatch, *[b"111111\n"] * 6)
    codes = MfaCodes(sources=[MfaProcess()], ledger=ledger, clock=clock)
    with pytest.raises(AuthenticationError) as info:
        codes.code_for(SERIAL, P_CHAIN)
    assert len(ran) == 1 + REFETCH_LIMIT
    assert clock.t == (STEP + 3) * 30  # waited for each next step
    assert info.value.message == (  # 5 s before, then 3 waits for the next step: 85 s
        f"the MFA code from mfa_process was already used for {SERIAL} 85 s ago, and AWS "
        "accepts each code only once")
    assert info.value.hint == (
        "wait for the next code your device shows (at most 30 s), then try again")
    assert clock.messages[0] == (
        f"\rbroker: the MFA code for {SERIAL} was used 5 s ago; next code in: 20 s ")


def test_a_code_used_this_very_second_was_used_0_s_ago(ledger, clock):
    ledger.record(SERIAL, UsedCode(STEP, 30, "123456", T0 + 0.5))  # a clock a bit behind
    with pytest.raises(AuthenticationError) as info:
        _typed("123456", ledger, clock).code_for(SERIAL, CHAIN)
    assert f"was already used for {SERIAL} 0 s ago" in info.value.message


def test_broker_totp_turning_from_codes_to_a_seed_computes_the_code(ledger, clock):
    ledger.record(SERIAL, UsedCode(STEP, 30, "111111", T0 - 5))
    answers = ["111111", SEED]
    codes = MfaCodes(sources=[TotpReference(lambda reference: answers.pop(0))], ledger=ledger,
                     clock=clock)
    assert codes.code_for(SERIAL, REF_CHAIN) == pyotp_code(SEED, STEP + 1)
    last = ledger.last(SERIAL)
    assert last is not None and last.step == STEP + 1  # recorded for this device


class LockRecordingLedger(MfaLedger):
    events: list[str]

    def device_lock(self, serial: str):
        import contextlib

        @contextlib.contextmanager
        def lock():
            self.events.append(f"lock {serial}")
            try:
                yield
            finally:
                self.events.append(f"unlock {serial}")

        return lock()


@pytest.mark.parametrize("sts_answer", ["refuse", "accept"])
def test_the_device_lock_is_released_when_sts_answered(tmp_path, clock, monkeypatch, sts_answer):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    ledger = LockRecordingLedger(tmp_path / "mfa.json")
    ledger.events = []
    _session(_typed("123456", ledger, clock), sts_answer)
    assert ledger.events == [f"lock {SERIAL}", f"unlock {SERIAL}"]


def test_a_session_made_with_a_code_is_cached_plainly_and_the_code_recorded(ledger, clock):
    import uuid

    from broker.aws.chain import mfa_session_name
    from broker.testing.memory import MemoryBackend

    cache = SessionCache(MemoryBackend(settings={"store": uuid.uuid4().hex},
                                       namespace="sessions"), margin=123)
    _session(_typed("123456", ledger, clock), "accept", cache)
    assert cache.backend is not None
    item = cache.backend.get(mfa_session_name(CHAIN))
    assert item is not None and (item["kind"], item["key_profile"]) == ("session", "g")
    used = ledger.last(SERIAL)
    assert used is not None and used.accepted and ledger.same_code(SERIAL, used, "123456")


def test_an_explicit_code_is_named_as_such(ledger, clock):
    codes = _typed("123456", ledger, clock)
    assert codes.code_for(SERIAL, CHAIN) == "123456" and codes.last_origin == "--mfa-code"
    with pytest.raises(AuthenticationError) as info:
        _typed("12345", ledger, clock).code_for(SERIAL, CHAIN)
    assert info.value.message == "the MFA code from --mfa-code is not 6 digits"


def test_no_source_at_all_names_every_way_to_give_a_code(ledger, clock):
    with pytest.raises(MFARequired) as info:
        MfaCodes(sources=[], ledger=ledger, clock=clock).code_for(SERIAL, CHAIN)
    assert info.value.message == (
        f"an MFA code for {SERIAL} is needed and there is no terminal to ask on")
    assert info.value.hint == (
        "pass --mfa-code, set mfa_process in the profile, keep a TOTP seed with the key "
        "(`broker totp set g`), or run from a terminal")


@pytest.fixture
def recording_ledger(tmp_path, monkeypatch) -> LockRecordingLedger:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    ledger = LockRecordingLedger(tmp_path / "mfa.json")
    ledger.events = []
    return ledger


def test_a_device_is_locked_once_per_attempt_however_many_codes_it_gives(
    recording_ledger, clock
):
    # a code AWS refused at the prompt is asked again inside the same attempt: locking the
    # device a second time there would wait for this very process
    answers = ["111111", "222222"]
    codes = MfaCodes(sources=[_Answers(answers)], ledger=recording_ledger, clock=clock)
    other = "arn:aws:iam::1:mfa/other"
    with codes.attempt():
        assert codes.code_for(SERIAL, CHAIN) == "111111"
        assert codes.code_for(SERIAL, CHAIN) == "222222"
        with pytest.raises(MFARequired):  # no code left: nothing else is locked or kept
            codes.code_for(other, CHAIN)
        assert recording_ledger.events == [f"lock {SERIAL}"]
    assert recording_ledger.events == [f"lock {SERIAL}", f"unlock {SERIAL}"]
    last = recording_ledger.last(SERIAL)
    assert last is not None and recording_ledger.same_code(SERIAL, last, "222222")


def test_each_device_of_an_attempt_is_locked_until_its_end(recording_ledger, clock):
    other = "arn:aws:iam::1:mfa/other"
    answers = ["111111", "222222"]
    codes = MfaCodes(sources=[_Answers(answers)], ledger=recording_ledger, clock=clock)
    with codes.attempt():
        codes.code_for(SERIAL, CHAIN)
        codes.code_for(other, CHAIN)
        assert recording_ledger.events == [f"lock {SERIAL}", f"lock {other}"]
    assert recording_ledger.events[2:] == [f"unlock {other}", f"unlock {SERIAL}"]


def test_a_seed_marker_set_to_none_is_forgotten(ledger):
    ledger.mark_seed("pass", "dev", True)
    ledger.mark_seed("pass", "other", False)
    ledger.mark_seed("pass", "dev", None)  # the key could not be read: nothing known
    assert ledger.seed_stored("pass", "dev") is None
    assert json.loads(ledger.path.read_text())["seeds"] == {"pass/other": False}


def test_same_code_compares_a_code_known_in_this_process(ledger):
    handed_out = UsedCode(100, 30, "123456", 3000.0)  # made here: the code itself is known
    assert ledger.same_code(SERIAL, handed_out, "123456")
    assert not ledger.same_code(SERIAL, handed_out, "123457")
    ledger.record(SERIAL, handed_out)
    read_back = ledger.last(SERIAL)  # from the file: only the keyed hash
    assert read_back is not None and read_back.code == ""
    assert ledger.same_code(SERIAL, read_back, "123456")
    assert not ledger.same_code(SERIAL, read_back, "123457")
    assert not ledger.same_code("arn:aws:iam::1:mfa/other", read_back, "123456")


def test_a_typed_code_equal_to_the_last_accepted_is_refused_at_once(ledger, clock, terminal):
    # a code typed at the prompt cannot be asked again by broker: refused, no waiting
    ledger.record(SERIAL, UsedCode(STEP, 30, "111111", T0 - 5))
    terminal["answers"] = ["111111", "222222"]
    codes = MfaCodes(sources=[Prompt()], ledger=ledger, clock=clock)
    with pytest.raises(AuthenticationError, match="was already used"):
        codes.code_for(SERIAL, CHAIN)
    assert clock.slept == [] and terminal["answers"] == ["222222"]


def test_the_code_given_on_the_command_line_is_offered_once(ledger, clock):
    from broker.aws.mfa import ExplicitCode

    given = ExplicitCode("123456")
    assert given.offer(SERIAL, CHAIN) == Offer(code="123456")
    assert given.offer(SERIAL, CHAIN) is None  # used: the next source is asked
    assert ExplicitCode(None).offer(SERIAL, CHAIN) is None
    codes = MfaCodes(explicit="123456", sources=[_Answers(["654321"])], ledger=ledger,
                     clock=clock)
    assert codes.code_for(SERIAL, CHAIN) == "123456"
    assert codes.code_for(SERIAL, CHAIN) == "654321" and codes.last_origin == "a code source"


def test_the_prompt_offers_what_is_typed_for_the_device_and_nothing_without_a_terminal(
    terminal, monkeypatch
):
    from broker import tty

    terminal["answers"] = ["123456"]
    assert Prompt().offer(SERIAL, CHAIN) == Offer(code="123456")
    assert terminal["prompts"] == [f"MFA code for {SERIAL}: "]
    monkeypatch.setattr(tty, "has_tty", lambda: False)
    assert Prompt().offer(SERIAL, CHAIN) is None


class _LiveOnce:
    """A live code source handing out ``code`` once, then nothing (its command went away)."""

    name = "live"
    origin = "a live source"

    def __init__(self, code: str) -> None:
        self.code: str | None = code

    def offer(self, serial: str, chain) -> Offer | None:
        code, self.code = self.code, None
        return Offer(code=code, live=True) if code else None


def test_a_live_source_giving_nothing_when_asked_again_says_so(ledger, clock):
    ledger.record(SERIAL, UsedCode(STEP, 30, "111111", T0 - 5))
    codes = MfaCodes(sources=[_LiveOnce("111111")], ledger=ledger, clock=clock)
    with pytest.raises(MFARequired) as info:
        codes.code_for(SERIAL, CHAIN)
    assert (info.value.message, info.value.hint) == (
        f"a live source gave no code for {SERIAL}", "check the command")
