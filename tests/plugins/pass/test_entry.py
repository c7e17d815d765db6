"""The entry text format, without GnuPG: layout, round trips, what is refused."""

from __future__ import annotations

import re

import pyotp
import pytest
from broker_pass.entry import NOTES, format_entry, otpauth_uri, parse_entry
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, TOTP
from broker.errors import BackendError

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_layout_is_what_pass_tools_expect() -> None:
    fields = {
        "mfa_serial": "arn:aws:iam::123456789012:mfa/me",
        "aws_secret_access_key": SECRET,
        "totp": SEED,
        "region": "ap-northeast-1",
        "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    }
    text = format_entry(fields, "broker:dev")
    assert text == (
        f"{SECRET}\n"
        "aws_access_key_id: AKIAIOSFODNN7EXAMPLE\n"
        "mfa_serial: arn:aws:iam::123456789012:mfa/me\n"
        "region: ap-northeast-1\n"
        f"otpauth://totp/broker:dev?secret={SEED}&issuer=broker\n"
    )
    assert parse_entry(text) == fields
    # pass-otp and authenticator apps read the same URI
    uri = text.splitlines()[4]
    assert pyotp.parse_uri(uri).secret == SEED


def test_totp_uri_given_is_kept_as_given() -> None:
    uri = "otpauth://totp/Amazon%20Web%20Services:me@123456789012?secret=ABCDEFGH&issuer=Amazon"
    text = format_entry({"aws_secret_access_key": SECRET, "totp": uri}, "broker:dev")
    assert uri in text.splitlines()
    assert parse_entry(text)["totp"] == uri


def test_broker_form_with_other_label_reads_back_as_the_seed() -> None:
    # After `pass mv broker/dev broker/prod` the label no longer matches the name:
    # still broker's own form, so still the bare seed.
    text = f"{SECRET}\n{otpauth_uri(SEED, 'broker:dev')}\n"
    assert parse_entry(text)["totp"] == SEED
    assert parse_entry(format_entry(parse_entry(text), "broker:prod"))["totp"] == SEED


def test_lines_broker_does_not_know_survive_a_rewrite() -> None:
    written_by_hand = (
        f"{SECRET}\n"
        "aws_access_key_id: AKIAIOSFODNN7EXAMPLE\n"
        "url: https://console.aws.amazon.com/\n"
        "Rotated in 2024, see the wiki\n"
        "\n"
        "url: https://second.example/\n"
        "https://no-space-after-the-colon.example\n"
        "User Name: me\n"
    )
    fields = parse_entry(written_by_hand)
    assert fields["url"] == "https://console.aws.amazon.com/"
    assert fields["User Name"] == "me"
    assert fields[NOTES] == (
        "Rotated in 2024, see the wiki\n\nurl: https://second.example/\n"
        "https://no-space-after-the-colon.example"
    )
    rewritten = format_entry(fields, "broker:dev")
    assert sorted(rewritten.splitlines()) == sorted(written_by_hand.splitlines())
    assert parse_entry(rewritten) == fields


def test_notes_that_look_like_fields_round_trip() -> None:
    fields = {
        "aws_secret_access_key": SECRET,
        NOTES: "Rotate: yearly\nnotes: nested\notpauth://totp/x?secret=AA\nplain",
    }
    text = format_entry(fields, "broker:dev")
    assert "Rotate: yearly" not in text.splitlines()  # written as "notes: Rotate: yearly"
    assert "plain" in text.splitlines()  # written as it is
    assert parse_entry(text) == fields


def test_only_a_secret_is_what_pass_insert_writes() -> None:
    assert format_entry({"aws_secret_access_key": SECRET}, "x") == SECRET + "\n"
    assert parse_entry(SECRET) == {"aws_secret_access_key": SECRET}
    assert parse_entry(SECRET + "\r\n") == {"aws_secret_access_key": SECRET}
    assert parse_entry("") == {}
    assert format_entry({}, "x") == "\n"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"aws_secret_access_key": "line one\nline two"}, "aws_secret_access_key"),
        ({"aws_secret_access_key": SECRET, "region": "a\r"}, "region"),
        ({"aws_secret_access_key": SECRET, "totp": f"{SEED}\nextra"}, "totp"),
        ({"aws_secret_access_key": SECRET, "bad:name": "x"}, "bad:name"),
        ({"aws_secret_access_key": SECRET, " padded": "x"}, " padded"),
        ({"aws_secret_access_key": ""}, "aws_secret_access_key"),
        ({"aws_secret_access_key": SECRET, NOTES: "ends with\r"}, NOTES),
    ],
)
def test_what_cannot_round_trip_is_refused_by_name(fields: dict[str, str], named: str) -> None:
    with pytest.raises(BackendError) as raised:
        format_entry(fields, "broker:dev")
    message = str(raised.value)
    assert named in message
    assert "\n" not in message
    for value in fields.values():
        if len(value) > 3:
            assert value not in message  # names, never values


_FRAGMENTS = st.sampled_from(
    ["a", "key", "notes", "totp", "aws_access_key_id", ":", ": ", " ", "\r", "ü",
     "otpauth://", "otpauth://totp/broker:x?secret=AB&issuer=broker", "=", "#", "/"]
)
_LINE = st.lists(_FRAGMENTS, max_size=6).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=8), st.booleans())
def test_any_entry_survives_a_rewrite(lines: list[str], final_newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if final_newline else "")
    fields = parse_entry(text)
    rewritten = format_entry(fields, "broker:x")  # nothing read may be refused on rewrite
    assert parse_entry(rewritten) == fields


_SPECIAL = (SECRET_ACCESS_KEY, TOTP, NOTES)
_NAME = st.one_of(
    st.text(alphabet="abcXYZ_-. :ü", min_size=1, max_size=8),
    st.sampled_from([*_SPECIAL, ACCESS_KEY_ID, MFA_SERIAL]),
)
_VALUE = st.text(alphabet="abc :/=\r\nü", max_size=10)
_FIELD_NAME = re.compile(r"[^\s:](?:[^:]*[^\s:])?", re.DOTALL)


def _unrepresentable(fields: dict[str, str]) -> list[str]:
    """Why ``fields`` cannot be a pass entry, by the module's documented rules ([] if it can)."""
    why = []
    for name, value in fields.items():
        if name not in _SPECIAL and not _FIELD_NAME.fullmatch(name):
            why.append(f"name {name!r}")
        raw = name != TOTP or value.startswith("otpauth://")  # a bare seed is quoted in a URI
        if name != NOTES and ("\n" in value or (raw and value.endswith("\r"))):
            why.append(f"value of {name!r}")
        if name == NOTES and any(line.endswith("\r") for line in value.split("\n")):
            why.append("a notes line ending with CR")
    if fields.get(SECRET_ACCESS_KEY) == "":
        why.append("an empty secret")
    return why


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_NAME, _VALUE, max_size=5))
def test_any_item_round_trips_or_is_refused(fields: dict[str, str]) -> None:
    # refused exactly when a documented rule says it cannot be written: a format_entry
    # refusing everything (or nothing) fails here
    why = _unrepresentable(fields)
    try:
        text = format_entry(fields, "broker:x")
    except BackendError:
        assert why, f"refused although representable: {fields!r}"
        return
    assert not why, f"accepted although {why}: {fields!r}"
    assert parse_entry(text) == fields


_GOOD_NAME = st.text(alphabet="abcXYZ_-.ü", min_size=1, max_size=8)
_GOOD_VALUE = st.text(alphabet="abc :/=ü", max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.one_of(_GOOD_NAME, st.sampled_from([*_SPECIAL, ACCESS_KEY_ID, MFA_SERIAL])),
        _GOOD_VALUE,
        max_size=6,
    ).filter(lambda f: f.get(SECRET_ACCESS_KEY) != "")
)
def test_every_representable_item_round_trips(fields: dict[str, str]) -> None:
    """No line breaks, no trailing CR, plain names: never refused, always read back."""
    assert parse_entry(format_entry(fields, "broker:x")) == fields
