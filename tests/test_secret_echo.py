"""No error echoes a value given for a secret setting; the MFA ledger keeps no usable
code; ``--mfa-code -`` reads the code from stdin instead of the command line (where
every local user can read it with ps)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from broker import paths
from broker.aws.mfa import MfaCodes, StoredSeed
from broker.aws.mfa_ledger import MfaLedger, UsedCode
from broker.aws.profiles import parse, resolve_chain
from broker.backend import Item
from broker.errors import AuthenticationError, BrokerError
from broker.registry import Registry
from broker.secrets import NOT_SHOWN, ReferenceResolver, shown
from tests.conftest import ACCOUNT
from tests.support.contexts import keyctl_usable
from tests.support.otp import SEED, T0, FakeClock, pyotp_code

LITERAL = "MyLiteralPassw0rd"

# --- secret references --------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    f"op:{LITERAL}",            # 1Password's scheme, but not an op:// reference
    f"{LITERAL}:xyz",           # a password with a colon: its "scheme" is secret too
    f"env:{LITERAL} and more",  # not a variable name
    f"pass: {LITERAL}",         # not a path
    f"keyctl:{LITERAL}\t",
])
def test_resolving_a_literal_never_echoes_it(value, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PASSWORD_STORE_DIR", str(tmp_path / "store"))
    with pytest.raises(BrokerError) as raised:
        ReferenceResolver(Registry()).resolve(value)
    text = str(raised.value)
    assert LITERAL.lower() not in text.lower(), text
    assert "\n" not in text


@pytest.mark.parametrize("reference", [
    "env:GPG_PASSPHRASE", "prompt:", "prompt:GPG passphrase", "op://Private/GPG key/password",
    "pass:gpg/passphrase", "pass:gpg/my key", "keyctl:onepassword-token",
    "vault://secret/data/x",
])
def test_a_reference_is_still_named(reference):
    assert shown(reference) == reference


def test_the_onepassword_token_typed_as_a_literal_is_not_echoed_by_the_cli(home):
    home.broker_config.write_text(
        'backend = "onepassword"\n\n[backends.onepassword]\nvault = "Private"\n'
        f'token = "op:{LITERAL}"\n'
    )
    result = home.run("export", "plain", "--no-session")
    assert result.returncode != 0
    assert LITERAL not in result.stderr + result.stdout, result.stderr
    assert "Traceback" not in result.stderr


# --- the MFA ledger --------------------------------------------------------------------------

SERIAL = "arn:aws:iam::1:mfa/ledger"
CHAIN = resolve_chain(parse(f"[profile g]\nmfa_serial = {SERIAL}\n", Path("/x")), "g")


@pytest.fixture
def ledger(tmp_path, monkeypatch) -> MfaLedger:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    return MfaLedger(tmp_path / "mfa.json")


def test_a_code_handed_out_for_the_console_is_not_kept(ledger):
    """`broker totp code` hands out a code that is still good for AWS: the ledger keeps
    its step and a keyed hash, never the code."""
    clock = FakeClock()
    codes = MfaCodes(sources=[StoredSeed(lambda: Item(totp=SEED))],
                     ledger=ledger, clock=clock)
    code = codes.code_for(SERIAL, CHAIN)
    assert code == pyotp_code(SEED, int(T0 // 30))
    text = ledger.path.read_text()
    assert code not in text and '"code"' not in text
    (entry,) = json.loads(text)["devices"].values()
    assert set(entry) == {"step", "period", "at", "accepted", "digest"}
    key = (paths.runtime_dir() / "mfa-ledger.key")
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    assert not str(key).startswith(str(ledger.path.parent / "mfa"))


def test_the_hash_needs_the_key(ledger, tmp_path, monkeypatch):
    ledger.record(SERIAL, UsedCode(100, 30, "123456", 3000.0))
    digest = json.loads(ledger.path.read_text())["devices"][SERIAL]["digest"]
    # the same code under another key (another machine, a stolen ledger alone): no match
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "elsewhere"))
    assert MfaLedger(ledger.path).digest(SERIAL, "123456") != digest


def test_the_guard_still_refuses_a_reused_code_across_processes(ledger):
    clock = FakeClock()
    first = MfaCodes(explicit="123456", sources=[], ledger=ledger, clock=clock)
    with first.attempt():
        first.code_for(SERIAL, CHAIN)  # STS accepted it
    clock.t += 20
    again = MfaCodes(explicit="123456", sources=[], ledger=MfaLedger(ledger.path), clock=clock)
    with pytest.raises(AuthenticationError, match="already used"):
        again.code_for(SERIAL, CHAIN)
    other = MfaCodes(explicit="654321", sources=[], ledger=MfaLedger(ledger.path), clock=clock)
    assert other.code_for(SERIAL, CHAIN) == "654321"


def test_codes_an_older_version_kept_are_hashed_on_the_next_write(ledger):
    ledger.path.write_text(json.dumps({"version": 1, "devices": {
        SERIAL: {"step": 100, "period": 30, "code": "123456", "at": 3000.0},
        "arn:aws:iam::1:mfa/other": {"step": 5, "period": 30, "code": "999999", "at": 150.0},
    }}))
    ledger.mark_seed("keyctl", "p", True)  # any write
    text = ledger.path.read_text()
    assert "123456" not in text and "999999" not in text
    last = ledger.last(SERIAL)
    assert last is not None and ledger.same_code(SERIAL, last, "123456")


# --- --mfa-code - ------------------------------------------------------------------------------

TYPED = f"\n[profile typed]\nmfa_serial = arn:aws:iam::{ACCOUNT}:mfa/dev-user\n"
STDIN = "import sys; print(repr(sys.stdin.read()))"


@pytest.fixture
def typed(home):
    if not keyctl_usable():
        pytest.skip("the kernel keyring is not usable here")
    home.aws_config.write_text(home.aws_config.read_text() + TYPED)
    home.add_key("typed")
    return home


def test_mfa_code_from_stdin_leaves_the_rest_to_the_command(typed, sts):
    code = typed.code()
    result = typed.run("exec", "--mfa-code", "-", "typed", "--", sys.executable, "-c", STDIN,
                       input=f"{code}\nthe rest is the command's\n", check=True)
    assert result.stdout.strip() == repr("the rest is the command's\n")
    (call,) = sts.actions("GetSessionToken")
    assert call["TokenCode"] == code


def test_mfa_code_from_stdin_with_export(typed, sts):
    code = typed.code()
    out = typed.run("export", "typed", "--mfa-code", "-", "--format", "json",
                    input=f"{code}\n", check=True).stdout
    assert json.loads(out)["AccessKeyId"].startswith("ASIA")


def test_mfa_code_from_an_empty_stdin_is_a_usage_error(typed, sts):
    result = typed.run("export", "typed", "--mfa-code", "-", input="")
    assert result.returncode == 2 and "stdin gave no code" in result.stderr
    assert sts.actions() == []


def test_mfa_code_help_says_the_command_line_is_visible(home):
    for command in (["exec"], ["export"], ["rotate"]):
        help_text = " ".join(home.run(*command, "--help", check=True).stdout.split())
        assert "- to read it from stdin" in help_text and "other local users (ps)" in help_text


def test_the_placeholder_is_not_a_reference():
    assert shown(NOT_SHOWN) == NOT_SHOWN
