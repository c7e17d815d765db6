"""~/.aws/config read as botocore reads it, STS called as AWS enforces it: each example
of a config a real user has, run through the real `broker` command against the local STS.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import ACCOUNT, BrokerHome

DEV_ROLE = f"arn:aws:iam::{ACCOUNT}:role/dev-role"
DEV_MFA = f"arn:aws:iam::{ACCOUNT}:mfa/dev-user"


def _export(home: BrokerHome, *args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    result = home.run("export", *args, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    document: dict[str, str] = json.loads(result.stdout)
    return document


def _append(home: BrokerHome, text: str) -> None:
    home.aws_config.write_text(home.aws_config.read_text() + text)


def test_aws_profile_names_the_profile_when_none_is_given(home: BrokerHome, sts) -> None:
    home.add_key("dev")
    document = _export(home, env={"AWS_PROFILE": "dev"})
    assert document["AccessKeyId"].startswith("ASIA")
    assert [c["RoleArn"] for c in sts.actions("AssumeRole")] == [DEV_ROLE]


def test_aws_default_profile_comes_before_aws_profile_as_in_botocore(home: BrokerHome, sts) -> None:
    home.add_key("dev")
    home.add_key("base")
    _export(home, env={"AWS_PROFILE": "base", "AWS_DEFAULT_PROFILE": "dev"})
    assert [c["RoleArn"] for c in sts.actions("AssumeRole")] == [DEV_ROLE]


def test_exec_without_a_profile_uses_aws_profile(home: BrokerHome, sts) -> None:
    home.add_key("dev")
    result = home.run("exec", "--", "sh", "-c", "echo $BROKER_PROFILE", env={"AWS_PROFILE": "dev"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "dev"


def test_add_without_a_profile_uses_aws_profile(home: BrokerHome) -> None:
    result = home.run("add", input="AKIAIOSFODNN7EXAMPLE\nsecret\n", env={"AWS_PROFILE": "plain"})
    assert result.returncode == 0, result.stderr
    assert "plain" in result.stderr


def test_quoted_profile_name_is_the_profile(home: BrokerHome, sts) -> None:
    _append(home, '\n[profile "personal"]\nregion = eu-west-3\n')
    home.add_key("personal")
    document = _export(home, "personal")
    assert document["SessionToken"]
    assert len(sts.actions("GetSessionToken")) == 1
    listing = home.run("list", "--json")
    assert listing.returncode == 0, listing.stderr
    assert "personal" in listing.stdout


@pytest.mark.parametrize(
    "stray",
    [
        "\n[profile other]\nduration_seconds = 1h\n",
        "\n[profile ]\nregion = x\n",
        "\n[profile a b]\nregion = x\n",
        "\n[profile nested]\nrole_arn = \n",
    ],
)
def test_one_bad_value_elsewhere_fails_no_other_profile(home: BrokerHome, sts, stray: str) -> None:
    _append(home, stray)
    home.add_key("dev")
    assert home.run("list").returncode == 0
    _export(home, "dev")


def test_bad_duration_fails_its_own_profile_naming_file_section_and_key(home: BrokerHome) -> None:
    _append(
        home, "\n[profile slow]\nrole_arn = arn:aws:iam::123456789012:role/dev-role\n"
        "source_profile = base\nduration_seconds = 1h\n",
    )
    home.add_key("base")
    result = home.run("export", "slow", "--format", "json")
    assert result.returncode == 3, result.stderr
    assert str(home.aws_config) in result.stderr
    assert "[profile slow]" in result.stderr
    assert "duration_seconds = '1h'" in result.stderr
    assert "Traceback" not in result.stderr


def test_role_longer_than_an_hour_is_assumed_with_the_key_and_mfa(home: BrokerHome, sts) -> None:
    home.add_key("dev")
    _export(home, "dev", "--duration", "8h")
    assert sts.actions("GetSessionToken") == []  # that session would make it role chaining
    role, = sts.actions("AssumeRole")
    assert role["DurationSeconds"] == str(8 * 3600)
    assert role["SerialNumber"] == DEV_MFA
    assert len(role["TokenCode"]) == 6


def test_duration_seconds_in_the_profile_gets_the_same_treatment(home: BrokerHome, sts) -> None:
    home.aws_config.write_text(
        home.aws_config.read_text().replace(
            f"role_arn = {DEV_ROLE}\n", f"role_arn = {DEV_ROLE}\nduration_seconds = 43200\n"
        )
    )
    home.add_key("dev")
    _export(home, "dev")
    assert sts.actions("GetSessionToken") == []
    role, = sts.actions("AssumeRole")
    assert role["DurationSeconds"] == "43200"
    assert role["SerialNumber"] == DEV_MFA


def test_an_hour_or_less_still_shares_the_mfa_session(home: BrokerHome, sts) -> None:
    home.add_key("dev")
    _export(home, "dev", "--duration", "1h")
    assert len(sts.actions("GetSessionToken")) == 1
    role, = sts.actions("AssumeRole")
    assert role["DurationSeconds"] == "3600"
    assert "SerialNumber" not in role


def test_chained_role_over_an_hour_is_refused_naming_the_config_key(home: BrokerHome, sts) -> None:
    _append(
        home, "\n[profile chained]\nrole_arn = arn:aws:iam::123456789012:role/admin\n"
        "source_profile = admin\nduration_seconds = 7200\n",
    )
    home.add_key("base")
    result = home.run("export", "chained", "--format", "json")
    assert result.returncode == 3
    assert "duration_seconds in" in result.stderr and "[profile chained]" in result.stderr
    assert "role chaining" in result.stderr
    assert sts.actions() == []  # refused before any call or prompt


def test_include_profile_brings_the_mfa_device(home: BrokerHome, sts) -> None:
    _append(
        home, "\n[profile mfa-defaults]\nmfa_serial = " + DEV_MFA + "\n"
        f'mfa_process = "$BROKER_TEST_MFA" {DEV_MFA}\n'
        "\n[profile inc]\ninclude_profile = mfa-defaults\n",
    )
    home.add_key("inc")
    _export(home, "inc")
    gst, = sts.actions("GetSessionToken")
    assert gst["SerialNumber"] == DEV_MFA


@pytest.mark.parametrize("key", ["credential_source = Ec2InstanceMetadata",
                                 "web_identity_token_file = /tmp/token",
                                 "sso_role_name = Admin"])
def test_keys_broker_does_not_serve_are_refused_by_name(home: BrokerHome, key: str) -> None:
    _append(home, f"\n[profile other]\nrole_arn = {DEV_ROLE}\n{key}\n")
    result = home.run("export", "other", "--format", "json")
    assert result.returncode == 3
    assert key.split(" ")[0] in result.stderr
    assert "Traceback" not in result.stderr


def test_profile_endpoint_url_is_used_and_default_does_not_leak(home: BrokerHome, sts) -> None:
    """[default] points at a dead endpoint, the profile at the local STS: the profile's own
    setting must carry every call, as `aws --profile dev` would."""
    text = home.aws_config.read_text().replace(
        "[default]\n", "[default]\nendpoint_url = http://127.0.0.1:9\n"
    ).replace(f"role_arn = {DEV_ROLE}\n", f"role_arn = {DEV_ROLE}\nendpoint_url = {sts.url}\n")
    home.aws_config.write_text(text)
    env = {k: v for k, v in home.env.items() if k != "AWS_ENDPOINT_URL"}
    home.env.clear()
    home.env.update(env)
    home.add_key("dev")
    _export(home, "dev")
    assert [c["Action"] for c in sts.actions()] == ["GetSessionToken", "AssumeRole"]


def test_services_block_endpoint_for_sts(home: BrokerHome, sts) -> None:
    text = home.aws_config.read_text().replace(
        f"role_arn = {DEV_ROLE}\n", f"role_arn = {DEV_ROLE}\nservices = local\n"
    ) + f"\n[services local]\nsts =\n  endpoint_url = {sts.url}\n"
    home.aws_config.write_text(text)
    home.env.pop("AWS_ENDPOINT_URL")
    home.add_key("dev")
    _export(home, "dev")
    assert [c["Action"] for c in sts.actions()] == ["GetSessionToken", "AssumeRole"]


def test_another_profiles_endpoint_does_not_leak(home: BrokerHome, sts) -> None:
    """AWS_PROFILE names a profile with a dead endpoint; `export dev` must not use it."""
    _append(home, "\n[profile elsewhere]\nendpoint_url = http://127.0.0.1:9\n")
    home.aws_config.write_text(
        home.aws_config.read_text().replace(
            f"role_arn = {DEV_ROLE}\n", f"role_arn = {DEV_ROLE}\nendpoint_url = {sts.url}\n"
        )
    )
    home.env.pop("AWS_ENDPOINT_URL")
    home.add_key("dev")
    _export(home, "dev", env={"AWS_PROFILE": "elsewhere"})
    assert len(sts.actions("AssumeRole")) == 1


def test_bom_is_named_as_such(home: BrokerHome) -> None:
    home.aws_config.write_bytes(b"\xef\xbb\xbf" + home.aws_config.read_bytes())
    result = home.run("export", "dev", "--format", "json")
    assert result.returncode == 3
    assert "byte-order mark" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_and_doctor_show_a_bad_value_on_its_profiles_row(home: BrokerHome) -> None:
    _append(home, "\n[profile slow]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n"
                  "duration_seconds = 1h\n\n[dev-typo]\nregion = x\n")
    listing = home.run("list")
    assert listing.returncode == 0, listing.stderr
    assert "slow: " in listing.stderr and "duration_seconds = '1h'" in listing.stderr
    assert "[dev-typo] is not read as a profile" in listing.stderr
    doctor = home.run("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["profile slow"]["status"] == "fail"
    assert "duration_seconds" in checks["profile slow"]["summary"]
    assert checks["profile dev"]["status"] != "fail"
    assert checks["aws config"]["status"] == "warn"
    assert "[profile dev-typo]" in checks["aws config"]["summary"]


def test_mfa_process_code_is_not_sent_twice_in_one_step(home: BrokerHome, sts) -> None:
    """AWS accepts each code once per device: a second MFA call in the same 30 s step
    must wait for mfa_process's next code instead of being refused."""
    import time

    home.add_key("dev")
    left = 30 - time.time() % 30
    if left < 12:  # both calls must fall in one step for the reuse to arise
        time.sleep(left + 0.5)
    _export(home, "dev", "--duration", "2h")  # AssumeRole with the key and a code
    _export(home, "dev")  # GetSessionToken with the same device: needs the next code
    assert sts.refusals == []
    first, second = [c["TokenCode"] for c in sts.actions() if "TokenCode" in c]
    assert first != second
    assert len(home.codes_given()) == 3  # the repeated code was asked again, not sent


def test_clock_two_hours_off_is_named_not_blamed_on_the_key(home: BrokerHome, sts) -> None:
    """WSL2's clock drifts while the PC sleeps: AWS then refuses every signed request."""
    home.add_key("dev")
    sts.rules.clock_offset = 7200  # AWS's clock two hours ahead of this machine's
    result = home.run("export", "dev", "--format", "json")
    assert result.returncode == 17, result.stderr
    assert "Signature expired" in result.stderr  # AWS's own words are kept
    assert "2 h" in result.stderr and "behind" in result.stderr
    assert "broker doctor" in result.stderr
    assert "broker add" not in result.stderr  # the key is not the cause


def test_next_steps_name_the_real_profiles_not_a_placeholder() -> None:
    """A key AWS no longer knows belongs to the chain's key profile: the hint names it
    (with --replace, since a key is stored); session errors name the profile run."""
    from botocore.exceptions import ClientError

    from broker.aws import sts

    refused = ClientError(
        {"Error": {"Code": "InvalidClientTokenId",
                   "Message": "The security token included in the request is invalid."},
         "ResponseMetadata": {"HTTPStatusCode": 403}}, "AssumeRole",
    )
    error = sts._translated(refused, "GetSessionToken", None, "rX", "me")  # type: ignore[arg-type]
    assert "`broker add --replace me`" in str(error)
    assert "PROFILE" not in str(error)
    expired = ClientError(
        {"Error": {"Code": "ExpiredToken", "Message": "The security token is expired"},
         "ResponseMetadata": {"HTTPStatusCode": 403}}, "AssumeRole",
    )
    error = sts._translated(expired, "AssumeRole x", None, "rX", "me")  # type: ignore[arg-type]
    assert "`broker clear rX`" in str(error) and "PROFILE" not in str(error)


@pytest.mark.parametrize(
    ("section", "flagged"),
    [("role_arn = arn:aws:iam::123456789012:role/admin\nsource_profile = base\n"
      "duration_seconds = 50000\n", True),  # beyond AWS's 12 h: exec refuses it
     ("role_arn = arn:aws:iam::123456789012:role/admin\nsource_profile = base\n"
      "duration_seconds = 600\n", True),  # under AWS's 15 min
     ("duration_seconds = 1h\n", False)],  # no role: the key's profile never uses it
)
def test_list_and_doctor_agree_with_exec_about_durations(
    home: BrokerHome, section: str, flagged: bool
) -> None:
    _append(home, f"\n[profile odd]\n{section}")
    home.add_key("base")
    if not flagged:
        home.add_key("odd")
    exec_refuses = home.run("export", "odd", "--format", "json").returncode == 3
    assert exec_refuses is flagged
    listing = home.run("list")
    row = next(line for line in listing.stdout.splitlines() if line.startswith("odd "))
    assert ("error" in row) is flagged
    assert ("odd: " in listing.stderr) is flagged
    doctor = json.loads(home.run("doctor", "--json").stdout)
    check = next(c for c in doctor["checks"] if c["name"] == "profile odd")
    assert (check["status"] == "fail") is flagged


def test_cached_export_picks_the_default_profile_as_the_full_path_does(home: BrokerHome) -> None:
    """botocore counts a set-but-empty AWS_DEFAULT_PROFILE: the cached path must not skip it
    and serve AWS_PROFILE's session where the full path refuses."""
    home.add_key("dev")
    _export(home, "dev")  # the session is cached now
    warm = home.run("export", "--format", "json",
                    env={"AWS_DEFAULT_PROFILE": "", "AWS_PROFILE": "dev"})
    assert warm.returncode == 4 and "empty" in warm.stderr
    assert home.run("export", "--format", "json", env={"AWS_PROFILE": "dev"}).returncode == 0
