"""Writing mfa_serial into ~/.aws/config: comments, layout, mode and links kept."""

from __future__ import annotations

import os
import stat

import pytest

from broker.aws import profiles
from broker.aws.config_writer import set_profile_value, write_profile_value
from broker.errors import UsageError

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


def parsed(text: str, name: str) -> profiles.Profile:
    return profiles.parse(text, profiles.Path("config")).get(name)


def test_added_after_the_sections_last_setting():
    text = set_profile_value(ORIGINAL, "dev", "mfa_serial", ARN)
    assert text == ORIGINAL.replace(
        "role/dev-role\n", f"role/dev-role\nmfa_serial = {ARN}\n"
    )
    assert parsed(text, "dev").mfa_serial == ARN
    assert parsed(text, "other").mfa_serial is None


def test_an_existing_value_is_replaced_in_place():
    text = ORIGINAL.replace("[profile dev]\n", "[profile dev]\nMFA_Serial=old-one\n")
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == text.replace("MFA_Serial=old-one", f"MFA_Serial={ARN}")
    assert set_profile_value(updated, "dev", "mfa_serial", ARN) == updated


def test_continuation_lines_of_the_old_value_go_comments_stay():
    text = "[profile dev]\nmfa_serial = a\n  b\n# note\n  c\nregion = x\n"
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == f"[profile dev]\nmfa_serial = {ARN}\n# note\nregion = x\n"
    assert parsed(updated, "dev").mfa_serial == ARN
    assert parsed(updated, "dev").region == "x"


def test_a_missing_section_is_created_at_the_end():
    text = set_profile_value(ORIGINAL, "new", "mfa_serial", ARN)
    assert text == ORIGINAL + f"\n[profile new]\nmfa_serial = {ARN}\n"
    assert set_profile_value("", "default", "k", "v") == "[default]\nk = v\n"
    assert set_profile_value("[a]\nx = 1", "b", "k", "v") == "[a]\nx = 1\n\n[profile b]\nk = v\n"


def test_sections_found_as_the_reader_finds_them():
    text = "[dev]\nregion = a\n\n[profile dev]\nregion = b\n"
    updated = set_profile_value(text, "dev", "mfa_serial", ARN)
    assert updated == f"[dev]\nregion = a\n\n[profile dev]\nregion = b\nmfa_serial = {ARN}\n"
    bare = set_profile_value("[default]\nregion = a\n", "default", "mfa_serial", ARN)
    assert bare == f"[default]\nregion = a\nmfa_serial = {ARN}\n"
    spaced = set_profile_value("[profile   dev  ]\n", "dev", "mfa_serial", ARN)
    assert spaced == f"[profile   dev  ]\nmfa_serial = {ARN}\n"
    assert parsed(spaced, "dev").mfa_serial == ARN


def test_an_empty_section_and_crlf_line_endings():
    assert set_profile_value("[profile dev]\r\n\r\n[x]\r\n", "dev", "k", "v") == (
        "[profile dev]\r\nk = v\r\n\r\n[x]\r\n"
    )


def test_values_and_names_that_would_break_the_file_are_refused():
    with pytest.raises(UsageError):
        set_profile_value(ORIGINAL, "dev", "mfa_serial", "a\n[evil]")
    with pytest.raises(UsageError):
        set_profile_value(ORIGINAL, "de]v", "mfa_serial", ARN)


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
