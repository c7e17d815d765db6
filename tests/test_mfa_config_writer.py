"""Writing mfa_serial into ~/.aws/config: botocore reads the new value; comments, layout,
line endings, mode and links kept. botocore itself is the reader every test checks with."""

from __future__ import annotations

import difflib
import os
import stat
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from botocore.configloader import build_profile_map, raw_config_parse
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from broker.aws.config_writer import (
    HEADER,
    classify,
    line_ending,
    set_profile_value,
    split_lines,
    without_section,
    write_profile_value,
)
from broker.errors import ConfigError, UsageError

ARN = "arn:aws:iam::123456789012:mfa/dev-user"

ORIGINAL = """\
# top comment
[default]
region = ap-northeast-1

; the dev account
[profile dev]
role_arn = arn:aws:iam::123456789012:role/dev-role
# about the role above

[profile other]
region = eu-west-1
"""


def botocore_reads(text: str) -> dict[str, dict[str, object]]:
    """What botocore makes of a config file holding ``text``: its profiles.

    A byte-order mark is left out: botocore cannot read such a file at all (see
    test_botocore_itself_cannot_read_a_bom), while people's editors write them.
    """
    with tempfile.TemporaryDirectory() as home:
        path = Path(home, "config")
        path.write_bytes(text.removeprefix("\ufeff").encode("utf-8"))
        return build_profile_map(raw_config_parse(str(path)))["profiles"]


def mfa_serial(text: str, profile: str) -> object:
    return botocore_reads(text).get(profile, {}).get("mfa_serial")


# --- layout kept -------------------------------------------------------------------------


def test_added_after_the_sections_last_setting():
    text = set_profile_value(ORIGINAL, "dev", "mfa_serial", ARN)
    assert text == ORIGINAL.replace(
        "role/dev-role\n", f"role/dev-role\nmfa_serial = {ARN}\n"
    )
    assert mfa_serial(text, "dev") == ARN
    assert mfa_serial(text, "other") is None


def test_an_existing_value_is_replaced_in_place():
    text = ORIGINAL.replace("[profile dev]\n", "[profile dev]\nMFA_Serial=old-one\n")
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == text.replace("MFA_Serial=old-one", f"MFA_Serial={ARN}")
    assert set_profile_value(updated, "dev", "mfa_serial", ARN) == updated


def test_continuation_lines_of_the_old_value_go_comments_stay():
    text = "[profile dev]\nmfa_serial = a\n  b\n# note\n  c\nregion = x\n"
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == f"[profile dev]\nmfa_serial = {ARN}\n# note\nregion = x\n"
    assert botocore_reads(updated)["dev"] == {"mfa_serial": ARN, "region": "x"}


def test_a_missing_section_is_created_at_the_end():
    text = set_profile_value(ORIGINAL, "new", "mfa_serial", ARN)
    assert text == ORIGINAL + f"\n[profile new]\nmfa_serial = {ARN}\n"
    assert set_profile_value("", "default", "k", "v") == "[default]\nk = v\n"
    assert set_profile_value("[a]\nx = 1", "b", "k", "v") == "[a]\nx = 1\n\n[profile b]\nk = v\n"


def test_sections_found_as_botocore_finds_them():
    text = "[dev]\nregion = a\n\n[profile dev]\nregion = b\n"
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == f"[dev]\nregion = a\n\n[profile dev]\nregion = b\nmfa_serial = {ARN}\n"
    bare = set_profile_value("[default]\nregion = a\n", "default", "mfa_serial", ARN)
    assert bare == f"[default]\nregion = a\nmfa_serial = {ARN}\n"
    spaced = set_profile_value("[profile   dev  ]\n", "dev", "mfa_serial", ARN)
    assert spaced == f"[profile   dev  ]\nmfa_serial = {ARN}\n"
    assert mfa_serial(spaced, "dev") == ARN


def test_an_empty_section_and_crlf_line_endings():
    assert set_profile_value("[profile dev]\r\n\r\n[x]\r\n", "dev", "k", "v") == (
        "[profile dev]\r\nk = v\r\n\r\n[x]\r\n"
    )


def test_values_and_names_that_would_break_the_file_are_refused():
    with pytest.raises(UsageError):
        set_profile_value(ORIGINAL, "dev", "mfa_serial", "a\n[evil]")
    with pytest.raises(UsageError):
        set_profile_value(ORIGINAL, "dev", "mfa_serial", "a\r[evil]")
    with pytest.raises(UsageError):
        set_profile_value(ORIGINAL, "de]v", "mfa_serial", ARN)
    with pytest.raises(UsageError):
        set_profile_value(ORIGINAL, "dev", "mfa_serial", " padded ")  # botocore would strip
    with pytest.raises(UsageError):
        set_profile_value(ORIGINAL, "dev", "# key", ARN)


# --- the examples: where botocore reads differently from a naive reader -------------------


def test_a_crlf_file_stays_crlf(tmp_path):
    path = tmp_path / "config"
    original = ORIGINAL.replace("\n", "\r\n").encode()
    path.write_bytes(original)
    assert write_profile_value(path, "dev", "mfa_serial", ARN) is True
    data = path.read_bytes()
    added = f"role/dev-role\r\nmfa_serial = {ARN}\r\n".encode()
    assert data == original.replace(b"role/dev-role\r\n", added)
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_each_line_keeps_its_own_ending_and_new_lines_take_the_commonest():
    text = "[profile a]\nx = 1\r\n[profile dev]\r\nregion = r\r[profile c]\r\ny = 2\r\n"
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == text.replace("region = r\r", f"region = r\rmfa_serial = {ARN}\r\n")
    assert mfa_serial(updated, "dev") == ARN
    lone = set_profile_value("[profile dev]\rregion = r\r", "dev", "mfa_serial", ARN)
    assert lone == f"[profile dev]\rregion = r\rmfa_serial = {ARN}\r"
    assert mfa_serial(lone, "dev") == ARN


@pytest.mark.parametrize(
    "char", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
)
def test_lines_split_where_file_reading_splits_them_not_where_splitlines_does(char):
    # botocore reads one line: `note = x<char>[profile dev]`, a value of profile other.
    text = f"[profile other]\nnote = x{char}[profile dev]\n"
    assert "dev" not in botocore_reads(text)
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == text + f"\n[profile dev]\nmfa_serial = {ARN}\n"
    assert mfa_serial(updated, "dev") == ARN
    assert botocore_reads(updated)["other"] == {"note": f"x{char}[profile dev]"}
    assert split_lines("a\x0bb\u2028c\r\nd\re\nf") == ["a\x0bb\u2028c\r\n", "d\r", "e\n", "f"]


def test_of_two_sections_for_one_profile_the_later_is_edited():
    text = "[profile dev]\nregion = a\n\n[profile  dev]\nregion = b\n"
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == text + f"mfa_serial = {ARN}\n"
    assert botocore_reads(updated)["dev"] == {"region": "b", "mfa_serial": ARN}
    text = "[profile default]\nregion = a\n\n[default]\nregion = b\n"
    updated = set_profile_value(text, "default", "mfa_serial", ARN)
    assert updated == text + f"mfa_serial = {ARN}\n"
    assert mfa_serial(updated, "default") == ARN


def test_a_bare_section_is_not_a_profile():
    text = "[dev]\nregion = a\n"
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == text + f"\n[profile dev]\nmfa_serial = {ARN}\n"
    assert botocore_reads(updated)["dev"] == {"mfa_serial": ARN}


def test_the_defaults_section_is_not_a_profile():
    text = "[DEFAULT]\nregion = a\n"
    updated = set_profile_value(text, "DEFAULT", "mfa_serial", ARN)
    assert updated == text + f"\n[profile DEFAULT]\nmfa_serial = {ARN}\n"
    assert botocore_reads(updated)["DEFAULT"] == {"region": "a", "mfa_serial": ARN}


def test_quoted_and_tabbed_headers_are_found():
    quoted = '[profile "my name"]\nregion = a\n'
    updated = set_profile_value(quoted, "my name", "mfa_serial", ARN)
    assert updated == quoted + f"mfa_serial = {ARN}\n"
    assert mfa_serial(updated, "my name") == ARN
    tabbed = "[profile\tdev]\nregion = a\n"
    updated = set_profile_value(tabbed, "dev", "mfa_serial", ARN)
    assert updated == tabbed + f"mfa_serial = {ARN}\n"
    assert mfa_serial(updated, "dev") == ARN


def test_a_name_with_spaces_gets_a_quoted_header():
    updated = set_profile_value(ORIGINAL, "my name", "mfa_serial", ARN)
    assert updated == ORIGINAL + f'\n[profile "my name"]\nmfa_serial = {ARN}\n'
    assert mfa_serial(updated, "my name") == ARN
    quoted = set_profile_value("", 'say "hi"', "k", "v")
    assert quoted == "[profile 'say \"hi\"']\nk = v\n"
    assert botocore_reads(quoted)['say "hi"'] == {"k": "v"}


def test_continuations_and_nested_blocks_are_not_headers_or_settings():
    text = (
        "[profile dev]\n"
        "s3 =\n"
        "    mfa_serial = nested\n"
        "    max_concurrent_requests = 10\n"
        "note = a\n"
        "  [profile other]\n"
    )
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == text + f"mfa_serial = {ARN}\n"
    dev = botocore_reads(updated)["dev"]
    assert dev["mfa_serial"] == ARN
    assert dev["s3"] == {"mfa_serial": "nested", "max_concurrent_requests": "10"}
    assert "other" not in botocore_reads(updated)
    updated = set_profile_value(text, "other", "mfa_serial", ARN)
    assert updated.endswith(f"\n\n[profile other]\nmfa_serial = {ARN}\n")


def test_a_setting_under_a_bare_header_does_not_swallow_an_indented_header():
    # "  [profile other]" is a header because nothing above it can be continued; a new
    # setting at column 0 above it would turn it into a continuation line.
    text = "[profile dev]\n  [profile other]\n  region = x\n"
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == f"[profile dev]\n  mfa_serial = {ARN}\n  [profile other]\n  region = x\n"
    assert botocore_reads(updated) == {"dev": {"mfa_serial": ARN}, "other": {"region": "x"}}


def test_a_byte_order_mark_is_kept(tmp_path):
    text = "\ufeff[profile dev]\r\nregion = a\r\n"
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == text + f"mfa_serial = {ARN}\r\n"
    path = tmp_path / "config"
    path.write_bytes(text.encode("utf-8"))
    assert write_profile_value(path, "dev", "mfa_serial", ARN) is True
    assert path.read_bytes() == updated.encode("utf-8")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf[profile dev]\r\n")


def test_botocore_itself_cannot_read_a_bom(tmp_path):
    # Why botocore_reads() drops it; aws/aws-cli#3419.
    path = tmp_path / "config"
    path.write_bytes(b"\xef\xbb\xbf[default]\nregion = a\n")
    with pytest.raises(Exception, match="Unable to parse config file"):
        raw_config_parse(str(path))


def test_a_file_botocore_cannot_parse_is_refused():
    with pytest.raises(ConfigError, match="line"):
        set_profile_value("[profile dev]\nno delimiter here\n", "dev", "mfa_serial", ARN)
    with pytest.raises(ConfigError, match="already exists"):
        set_profile_value("[profile dev]\n[profile dev]\n", "dev", "mfa_serial", ARN)
    with pytest.raises(ConfigError, match="has no '='"):
        set_profile_value("[profile dev]\ns3 =\n  no equals\n", "dev", "mfa_serial", ARN)


# --- files ---------------------------------------------------------------------------------


def test_the_file_keeps_its_mode_and_its_symlink(tmp_path):
    real = tmp_path / "dotfiles" / "aws-config"
    real.parent.mkdir()
    real.write_text(ORIGINAL)
    real.chmod(0o644)
    link = tmp_path / "config"
    link.symlink_to(real)
    assert write_profile_value(link, "dev", "mfa_serial", ARN) is True
    assert link.is_symlink()
    assert stat.S_IMODE(real.stat().st_mode) == 0o644
    assert f"mfa_serial = {ARN}" in real.read_text()
    assert write_profile_value(link, "dev", "mfa_serial", ARN) is False
    assert [p.name for p in real.parent.iterdir()] == ["aws-config"]  # no temp file left


def test_a_new_file_is_private(tmp_path):
    path = tmp_path / ".aws" / "config"
    write_profile_value(path, "dev", "mfa_serial", ARN)
    assert path.read_text() == f"[profile dev]\nmfa_serial = {ARN}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


# --- the property: botocore reads the new value, and nothing else changes -----------------

NAMES = ["dev", "prod", "default", "my name", "ünï", "名前", "DEFAULT"]
KEYS = ["region", "mfa_serial", "MFA_Serial", "role_arn", "output", "x"]
ODD = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\xa0#;[]=:\"' é名"

names = st.sampled_from(NAMES)
value_text = st.text(
    alphabet=st.sampled_from("abcXYZ019-_/.:" + ODD), min_size=0, max_size=12
)
spaces = st.sampled_from(["", " ", "  ", "\t"])


def _header(kind: str, name: str) -> str:
    quoted = name if " " not in name else f'"{name}"'
    return {
        "profile": f"[profile {quoted}]",
        "quoted": f'[profile "{name}"]',
        "single": f"[profile '{name}']",
        "tab": f"[profile\t{quoted}]",
        "padded": f"[profile  {quoted} ]",
        "bare": f"[{name}]",
        "default": "[default]",
        "defaults": "[DEFAULT]",
        "other": "[sso-session corp]",
        "not": f"[ profile {quoted}]",
    }[kind]


headers = st.builds(
    _header,
    st.sampled_from(
        ["profile", "quoted", "single", "tab", "padded", "bare", "default", "defaults",
         "other", "not"]
    ),
    names,
)
settings_ = st.builds(
    lambda ind, k, sp, d, v: f"{ind}{k}{sp}{d}{sp}{v}",
    st.sampled_from(["", "", " "]), st.sampled_from(KEYS), spaces, st.sampled_from("=:"),
    value_text,
)
nested = st.builds(
    lambda k, ind, body: f"{k} =" + "".join(f"\n{ind}{b}" for b in body),
    st.sampled_from(["s3", "sts", "mfa_serial"]),
    st.sampled_from(["  ", "    ", "\t"]),
    st.lists(st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(KEYS), value_text),
             min_size=1, max_size=3),
)
continuation = st.builds(lambda ind, v: f"{ind}{v}", st.sampled_from(["  ", "\t", "    "]),
                         st.text(alphabet=st.sampled_from("ab[]= #" + ODD), min_size=1,
                                 max_size=10))
comments = st.builds(lambda ind, p, v: f"{ind}{p}{v}", spaces, st.sampled_from("#;"), value_text)
blank = spaces
element = st.one_of(headers, settings_, nested, continuation, comments, blank)
ending = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def configs(draw: st.DrawFn) -> str:
    body = draw(st.lists(st.one_of(headers, element), min_size=0, max_size=14))
    if body and draw(st.booleans()):
        body.insert(0, draw(headers))
    text = "".join(
        part.replace("\n", e) + e
        for part, e in ((p, draw(ending)) for p in "\n".join(body).split("\n"))
    ) if body else ""
    if text and draw(st.booleans()):
        text = text[: -len(line_ending(split_lines(text)[-1]))]  # no final line ending
    return ("\ufeff" if draw(st.booleans()) else "") + text


def readable(text: str) -> dict[str, object] | None:
    with tempfile.TemporaryDirectory() as home:
        path = Path(home, "config")
        path.write_bytes(text.removeprefix("\ufeff").encode("utf-8"))
        try:
            return build_profile_map(raw_config_parse(str(path)))
        except Exception:
            return None


def commonest_ending(lines: list[str]) -> str:
    counts = Counter(e for e in map(line_ending, lines) if e)
    return max(counts, key=lambda e: counts[e]) if counts else "\n"


@settings(
    max_examples=400, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(configs(), names, st.sampled_from(["mfa_serial", "region"]), value_text)
def test_botocore_reads_the_new_value_and_nothing_else_changes(text, profile, key, value):
    value = value.strip()
    before = readable(text)
    assume(before is not None)
    assert before is not None
    try:
        updated = set_profile_value(text, profile, key, value)
    except ConfigError:
        # Only when no section can be added: [DEFAULT] holds an indented block botocore
        # cannot parse, and reads only once a section inherits it.
        assert profile not in before["profiles"]
        assert readable(text + "\n[profile z]\nk = v\n") is None
        return
    after = readable(updated)
    assert after is not None

    # The profile reads the value; every other profile and section reads as before.
    assert after["profiles"][profile][key] == value
    expected = dict(before["profiles"].get(profile, {}))
    expected[key] = value
    if profile not in before["profiles"]:  # a new section starts from [DEFAULT]'s values
        expected = {**after["profiles"][profile], key: value}
    assert after["profiles"][profile] == expected
    for name in set(before["profiles"]) | set(after["profiles"]):
        if name != profile:
            assert after["profiles"].get(name) == before["profiles"].get(name)
    for part in ("sso_sessions", "services"):
        assert after[part] == before[part]
    others = {k: v for k, v in before.items() if k not in ("profiles", "sso_sessions", "services")}
    assert {k: v for k, v in after.items() if k in others} == others

    # A byte-order mark stays; original lines stay byte for byte, in order, each with
    # its own ending; lines go only if they were the old setting or its continuation.
    assert updated.startswith("\ufeff") == text.startswith("\ufeff")
    old = split_lines(text.removeprefix("\ufeff"))
    new = split_lines(updated.removeprefix("\ufeff"))
    dominant = commonest_ending(old)
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        gone, came = old[i1:i2], new[j1:j2]
        contents = {line.rstrip("\r\n") for line in came}
        for line in gone:
            assert (
                line is old[-1]  # the last line, given its missing ending
                or line[:1] in " \t"  # a continuation of the old setting
                or line.strip().lower().startswith(key)  # the old setting
                # a lone "\r" that would now run into a "\n" (read as one "\r\n")
                or (line_ending(line) == "\r" and line.rstrip("\r") in contents)
            ), (op, gone, came)
        for index, line in enumerate(came, start=j1):
            allowed = {dominant, *map(line_ending, gone)}
            # "\r" then "\n" would read as one "\r\n": a blank line after a lone "\r" takes
            # "\r", and a line before a "\n" takes the ending of the line before it
            if not line.strip() and index and line_ending(new[index - 1]) == "\r":
                allowed.add("\r")
            if index and new[index + 1 : index + 2] and new[index + 1].startswith("\n"):
                allowed.add(line_ending(new[index - 1]))
            assert line_ending(line) in allowed, (line, dominant)
            assert (
                value in line or not line.strip() or line.lstrip().startswith("[")
                or any(line.startswith(g.rstrip("\r\n")) for g in gone)
            ), (op, gone, came)

    # Writing the same value again changes nothing.
    assert set_profile_value(updated, profile, key, value) == updated


# --- removing a section: botocore reads every other section as before --------------------


def raw_sections(text: str) -> dict[str, object] | None:
    """botocore's raw_config_parse of a file holding ``text`` (BOM left out), or None."""
    with tempfile.TemporaryDirectory() as home:
        path = Path(home, "credentials")
        path.write_bytes(text.removeprefix("\ufeff").encode("utf-8"))
        try:
            return dict(raw_config_parse(str(path)))
        except Exception:
            return None


@settings(
    max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(configs(), st.data())
def test_removing_a_section_leaves_every_other_section_as_botocore_read_it(text, data):
    before = raw_sections(text)
    assume(before is not None)
    assert before is not None
    old = split_lines(text.removeprefix("\ufeff"))
    names = [line.name for line in classify(old) if line.kind == HEADER]
    assume(names)
    name = data.draw(st.sampled_from(names))
    try:
        updated = without_section(text, lambda header: header == name)
    except ConfigError as exc:
        assert name == "DEFAULT" or "without changing how other sections" in str(exc)
        return
    after = raw_sections(updated)
    assert after == {k: v for k, v in before.items() if k != name}
    assert updated.startswith("\ufeff") == text.startswith("\ufeff")
    # Lines only go, the section's header among them; a kept line is kept byte for byte,
    # but for a blank line after a lone "\r", which takes "\r" so as not to merge with it.
    new = split_lines(updated.removeprefix("\ufeff"))
    kinds = classify(old)
    at, removed_headers = 0, []
    for line in new:
        while at < len(old) and old[at] != line and not (line == "\r" and old[at] == "\n"):
            if kinds[at].kind == HEADER:
                removed_headers.append(kinds[at].name)
            at += 1
        assert at < len(old), (line, new)
        at += 1
    removed_headers += [k.name for k in kinds[at:] if k.kind == HEADER]
    assert removed_headers == [name]
    # Removing it again finds nothing when the header was unique.
    if names.count(name) == 1:
        assert without_section(updated, lambda header: header == name) == updated
