"""Bad input: one line naming the next step, a documented exit code, no traceback."""

from __future__ import annotations

import pytest

from broker.errors import ExitCode
from tests.conftest import TEST_KEY_ID, TEST_SECRET


def check_one_line(result, code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    assert code in {member.value for member in ExitCode}
    lines = [line for line in result.stderr.splitlines() if not line.startswith("broker: warning")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("broker: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_malformed_aws_config(home):
    home.aws_config.write_text("[profile dev\nregion = x\n")
    check_one_line(home.run("exec", "dev", "--", "true"), 3, "malformed (line 1)", "fix line 1")


def test_unknown_profile_names_close_matches(home):
    check_one_line(home.run("export", "dve"), 4, "no profile named 'dve'", "did you mean 'dev'")


def test_source_profile_loop(home):
    home.aws_config.write_text(
        "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n"
        "[profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = a\n"
    )
    check_one_line(home.run("exec", "a", "--", "true"), 3, "loop", "a -> b -> a")


def test_missing_key(home):
    check_one_line(home.run("exec", "dev", "--", "true"), 5, "no key stored", "broker add dev")


@pytest.mark.parametrize("duration", ["forever", "10", "13h"])
def test_bad_duration(home, duration):
    home.add_key("dev")
    check_one_line(home.run("exec", "dev", "--duration", duration, "--", "true"), 2, "duration")


def test_nested_exec(home):
    home.add_key("dev")
    result = home.run("exec", "dev", "--", "true", env={"BROKER_PROFILE": "dev"})
    check_one_line(result, 11, "already inside", "exit that shell")


def test_mfa_needed_without_a_tty(home):
    home.aws_config.write_text(
        "[profile bare]\nmfa_serial = arn:aws:iam::1:mfa/x\nrole_arn = arn:aws:iam::1:role/r\n"
    )
    home.add_key("bare")
    result = home.run("export", "bare")
    check_one_line(result, 9, "MFA code", "--mfa-code", "mfa_process")


def test_bad_mfa_code_format(home):
    home.add_key("dev")
    result = home.run("export", "dev", "--mfa-code", "12ab")
    check_one_line(result, 2, "not 6 digits")  # a usage error: nothing was sent


def test_malformed_broker_config(home):
    home.broker_config.write_text("backend = = 1\n")
    check_one_line(home.run("list"), 3, "not valid TOML")


def test_unknown_option_is_one_line(home):
    check_one_line(home.run("export", "dev", "--colour"), 2, "--colour", "--help")


def test_bad_key_on_add(home):
    check_one_line(home.run("add", "dev", input=f"not-a-key\n{TEST_SECRET}\n"), 2, "access key id")
    result = home.run("add", "dev", input=f"ASIA{TEST_KEY_ID[4:]}\n{TEST_SECRET}\n")
    check_one_line(result, 2, "temporary")


def test_exit_codes_are_documented():
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "errors.md").read_text()
    for code in ExitCode:
        assert f"| {code.value} |" in doc, f"exit code {code!r} missing from docs/errors.md"
