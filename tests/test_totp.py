"""TOTP seeds: every accepted form, malformed ones, and the codes they make."""

from __future__ import annotations

import hashlib

import pyotp
import pytest

from broker.aws.totp import MIN_BITS, TotpSeed, parse_seed
from broker.errors import ConfigError, UsageError
from tests.support.otp import SEED

SHORT_OK = "JBSWY3DPEHPK3PXPJBSWY3DPEH"  # 26 characters: 130 bits


@pytest.mark.parametrize(
    "text",
    [
        SEED,
        SEED.lower(),
        " ".join(SEED[i : i + 4] for i in range(0, len(SEED), 4)),  # as apps display it
        " ".join(SEED[i : i + 4] for i in range(0, len(SEED), 4)).lower() + "\n",
        "\t" + SEED + "  ",
    ],
)
def test_base32_forms(text):
    seed = parse_seed(text)
    assert seed.secret == SEED
    assert (seed.digits, seed.period, seed.algorithm) == (6, 30, "SHA1")
    assert seed.code_at(1_800_000_000) == pyotp.TOTP(SEED).at(1_800_000_000)


def test_missing_and_present_padding():
    assert parse_seed(SHORT_OK).secret == SHORT_OK
    assert parse_seed(SHORT_OK + "======").secret == SHORT_OK
    assert parse_seed(SHORT_OK.lower()).code_at(0) == pyotp.TOTP(SHORT_OK).at(0)


def test_uri_with_every_parameter():
    uri = (
        "otpauth://totp/Amazon%20Web%20Services:dev-user@123456789012"
        f"?secret={SEED}&issuer=Amazon%20Web%20Services&algorithm=SHA256&digits=8&period=60"
    )
    seed = parse_seed(uri)
    assert seed.secret == SEED
    assert seed.issuer == "Amazon Web Services"
    assert seed.account == "dev-user@123456789012"
    assert (seed.digits, seed.period, seed.algorithm) == (8, 60, "SHA256")
    expected = pyotp.TOTP(SEED, digits=8, digest=hashlib.sha256, interval=60)
    for moment in (0, 59, 60, 1_800_000_000):
        assert seed.code_at(moment) == expected.at(moment)


@pytest.mark.parametrize(("name", "digest"), [("SHA1", hashlib.sha1), ("sha512", hashlib.sha512)])
def test_uri_algorithms(name, digest):
    seed = parse_seed(f"otpauth://totp/x?secret={SEED.lower()}&algorithm={name}")
    assert seed.code_at(1234567) == pyotp.TOTP(SEED, digest=digest).at(1234567)


def test_uri_label_forms_and_case():
    assert parse_seed(f"otpauth://totp/?secret={SEED}").account is None
    plain = parse_seed(f"OTPAUTH://TOTP/just-me?secret={SEED}")
    assert (plain.issuer, plain.account) == (None, "just-me")
    encoded = parse_seed(f"otpauth://totp/A%3AB:me?secret={SEED}")  # %3A belongs to the issuer
    assert (encoded.issuer, encoded.account) == ("A:B", "me")
    spaced = parse_seed(f"otpauth://totp/x?secret={SEED[:8]}%20{SEED[8:].lower()}")
    assert spaced.secret == SEED


def test_uri_round_trip():
    seed = TotpSeed(SEED, 8, 60, "SHA512", "Amazon Web Services", "dev@123")
    assert parse_seed(seed.uri()) == seed
    assert parse_seed(TotpSeed(SEED).uri()) == TotpSeed(SEED, account="broker")


def test_repr_hides_the_secret():
    seed = parse_seed(SEED)
    assert SEED not in repr(seed) and SEED not in str(seed)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("====", "is empty"),
        (SEED[:-1] + "1", "not base32"),
        (SEED[:-1] + "8", "not base32"),
        (SEED[:-3] + "!", "not base32"),
        (SEED + "A", "length is wrong"),
        ("JBSWY3DPEHPK3PXP", "112 bits"),  # 80 bits: pyotp would refuse it
        ("otpauth://hotp/x?secret=" + SEED + "&counter=1", "HOTP"),
        ("otpauth://totp/x?issuer=AWS", "no secret"),
        ("otpauth://totp/x?secret=", "no secret"),
        (f"otpauth://totp/x?secret={SEED}&secret={SEED}", "repeats the secret"),
        (f"otpauth://totp/x?secret={SEED}&algorithm=MD5", "algorithm"),
        (f"otpauth://totp/x?secret={SEED}&digits=9", "digits"),
        (f"otpauth://totp/x?secret={SEED}&digits=six", "digits"),
        (f"otpauth://totp/x?secret={SEED}&period=0", "period"),
        (f"otpauth://totp/x?secret={SEED}&period=-30", "period"),
        (f"otpauth://totp/x?secret={SEED[:-2]}08", "not base32"),
        (f"otpauth://steam/x?secret={SEED}", "not an otpauth://totp/"),
        ("otpauth:nothing", "not an otpauth://totp/"),
    ],
)
def test_malformed_seeds_name_the_problem_never_the_seed(text, words):
    with pytest.raises(UsageError) as info:
        parse_seed(text, origin="the test seed")
    message = str(info.value)
    assert message.startswith("the test seed ")
    assert words in message
    assert SEED not in message and SEED[:16] not in message
    assert info.value.hint


def test_short_seed_says_why():
    with pytest.raises(UsageError) as info:
        parse_seed("JBSWY3DPEHPK3PXP")
    assert "80 bits" in info.value.message and "pyotp" in info.value.message
    assert "320 bits" in info.value.hint
    assert MIN_BITS == 112


def test_error_class_and_hint_are_the_callers():
    with pytest.raises(ConfigError) as info:
        parse_seed("xyz!", origin="the stored seed", error=ConfigError, hint="store it again")
    assert info.value.hint == "store it again"


def test_without_a_terminal_the_countdown_is_one_line():
    """A log or an SDK capturing stderr gets one line, not a line per second."""
    from tests.support.otp import FakeClock

    clock = FakeClock(start=1000.0)
    clock.terminal = False
    clock.wait_until(1026.0, "broker: the current MFA code was used; next code in")
    assert clock.messages == ["broker: the current MFA code was used; next code in: 26 s\n"]
    assert sum(clock.slept) >= 26
    live = FakeClock(start=1000.0)
    live.wait_until(1003.0, "next code in")
    assert live.messages == ["\rnext code in:  3 s ", "\rnext code in:  2 s ",
                             "\rnext code in:  1 s ", "\rnext code in: done.\n"]
