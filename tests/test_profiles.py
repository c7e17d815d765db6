from pathlib import Path

import pytest

from broker.aws.profiles import load, parse, resolve_chain
from broker.errors import ConfigError, ProfileNotFound

P = Path("/x/config")

CONFIG = """
[default]
region = ap-northeast-1

[profile base]
mfa_serial = arn:aws:iam::1:mfa/u

[profile mid]
role_arn = arn:aws:iam::1:role/mid
source_profile = base
external_id = ext-1
role_session_name = me

[profile top]
role_arn = arn:aws:iam::1:role/top
source_profile = mid
duration_seconds = 1800

[profile self]
role_arn = arn:aws:iam::1:role/self
mfa_serial = arn:aws:iam::1:mfa/self

[sso-session corp]
sso_start_url = https://example.invalid

[bare]
region = us-east-2
"""


def test_sections_follow_botocore_semantics():
    cfg = parse(CONFIG, P)
    # a bare [bare] is not a profile for botocore (only the credentials file uses bare names)
    assert set(cfg.profiles) == {"default", "base", "mid", "top", "self"}
    assert cfg.default_region() == "ap-northeast-1"
    assert cfg.profiles["top"].duration_seconds == 1800
    assert cfg.profiles["mid"].external_id == "ext-1"


def test_bare_section_is_named_when_asked_for():
    cfg = parse("[dev]\nregion = a\n[profile dev2]\nregion = b\n", P)
    with pytest.raises(ProfileNotFound) as info:
        cfg.get("dev")
    assert "[profile dev]" in info.value.hint
    assert any("[dev]" in w for w in cfg.warnings)


def test_quoted_and_tabbed_profile_headers():
    cfg = parse('[profile "personal"]\nregion = a\n[profile\tdev]\nregion = b\n'
                '[profile "my name"]\nregion = c\n', P)
    assert cfg.profiles["personal"].region == "a"
    assert cfg.profiles["dev"].region == "b"
    assert cfg.profiles["my name"].region == "c"


@pytest.mark.parametrize(
    "header",
    ["[profile a b]", "[profiledev]", "[Profile dev]", "[ profile dev]", "[profile ]",
     '[profile "unclosed]'],
)
def test_headers_botocore_drops_are_dropped_not_fatal(header):
    cfg = parse(f"{header}\nregion = x\n[profile ok]\nregion = y\n", P)
    assert set(cfg.profiles) == {"ok"}
    assert cfg.profiles["ok"].region == "y"


def test_later_of_default_and_profile_default_wins():
    assert parse("[default]\nregion = a\n[profile default]\nregion = b\n", P)\
        .profiles["default"].region == "b"
    assert parse("[profile default]\nregion = b\n[default]\nregion = a\n", P)\
        .profiles["default"].region == "a"


def test_DEFAULT_is_configparser_defaults_not_a_profile():
    cfg = parse("[DEFAULT]\nregion = eu-west-1\n[profile a]\n[profile b]\nregion = us-east-1\n", P)
    assert "DEFAULT" not in cfg.profiles
    assert cfg.profiles["a"].region == "eu-west-1"
    assert cfg.profiles["b"].region == "us-east-1"


def test_bad_value_fails_only_the_profile_that_uses_it():
    text = (
        "[profile broken]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = base\n"
        "duration_seconds = 1h\n"
        "[profile base]\nregion = x\n[profile good]\nrole_arn = arn:aws:iam::1:role/g\n"
        "source_profile = base\n"
    )
    cfg = parse(text, P)  # no error for the file
    assert resolve_chain(cfg, "good").key_profile.name == "base"
    assert cfg.profiles["broken"].problems
    from broker.aws.chain import ChainOptions, plan

    with pytest.raises(ConfigError) as info:
        plan(resolve_chain(cfg, "broken"), ChainOptions())
    assert "[profile broken]" in info.value.message
    assert "duration_seconds = '1h'" in info.value.message
    assert "3600" in info.value.hint
    # an explicit --duration means the bad value is not used
    assert plan(resolve_chain(cfg, "broken"), ChainOptions(duration=1800))[-1].duration == 1800


def test_bom_is_named():
    with pytest.raises(ConfigError, match="byte-order mark"):
        parse("\ufeff[default]\nregion = a\n", P)


def test_include_profile_brings_in_mfa_serial_aws_vault_style():
    text = (
        "[profile shared]\nmfa_serial = arn:aws:iam::1:mfa/me\nregion = eu-west-1\n"
        "[profile work]\ninclude_profile = shared\nregion = us-east-1\n"
        "[profile old]\nparent_profile = shared\n"
    )
    cfg = parse(text, P)
    assert cfg.profiles["work"].mfa_serial == "arn:aws:iam::1:mfa/me"
    assert cfg.profiles["work"].region == "us-east-1"  # its own value wins
    assert resolve_chain(cfg, "work").mfa_serial == "arn:aws:iam::1:mfa/me"
    assert cfg.profiles["old"].region == "eu-west-1"


def test_include_profile_loop_and_missing_fail_that_profile_only():
    text = "[profile a]\ninclude_profile = b\n[profile b]\ninclude_profile = a\n" \
           "[profile c]\ninclude_profile = ghost\n[profile d]\nregion = x\n"
    cfg = parse(text, P)
    with pytest.raises(ConfigError, match="a -> b -> a"):
        resolve_chain(cfg, "a")
    with pytest.raises(ConfigError, match="ghost"):
        resolve_chain(cfg, "c")
    assert resolve_chain(cfg, "d").key_profile.name == "d"


@pytest.mark.parametrize("key", ["credential_source", "web_identity_token_file", "sso_account_id",
                                 "sso_role_name"])
def test_keys_that_change_how_credentials_are_made_are_refused_by_name(key):
    text = f"[profile r]\nrole_arn = arn:aws:iam::1:role/r\n{key} = x\n[profile ok]\n"
    cfg = parse(text, P)
    with pytest.raises(ConfigError, match=key):
        resolve_chain(cfg, "r")
    resolve_chain(cfg, "ok")


def test_credentials_file_profiles_are_profiles_without_their_secrets():
    cfg = parse("[profile dev]\nrole_arn = arn:aws:iam::1:role/d\nsource_profile = keys\n", P,
                "[keys]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s3cret\n"
                "region = eu-west-2\n")
    assert resolve_chain(cfg, "dev").key_profile.name == "keys"
    assert cfg.profiles["keys"].region == "eu-west-2"
    assert "aws_secret_access_key" not in cfg.profiles["keys"].values
    assert "aws_access_key_id" not in cfg.profiles["keys"].values


def test_nested_blocks_are_dicts_and_inline_comments_stay_in_values():
    cfg = parse("[profile a]\nregion = us-east-1 # comment\ns3 =\n  addressing_style = path\n", P)
    assert cfg.profiles["a"].region == "us-east-1 # comment"  # as botocore reads it
    assert cfg.profiles["a"].values["s3"] == {"addressing_style": "path"}


def test_chain_of_any_depth():
    chain = resolve_chain(parse(CONFIG, P), "top")
    assert chain.key_profile.name == "base"
    assert [h.name for h in chain.hops] == ["mid", "top"]
    assert chain.mfa_serial == "arn:aws:iam::1:mfa/u"
    assert chain.names == ["base", "mid", "top"]


def test_role_profile_without_source_holds_its_own_key():
    chain = resolve_chain(parse(CONFIG, P), "self")
    assert chain.key_profile.name == "self"
    assert [h.name for h in chain.hops] == ["self"]
    assert chain.mfa_serial == "arn:aws:iam::1:mfa/self"


def test_loop_is_detected_and_named():
    text = (
        "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n"
        "[profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = a\n"
    )
    with pytest.raises(ConfigError, match="a -> b -> a"):
        resolve_chain(parse(text, P), "a")


def test_unknown_profile_names_close_matches_never_default():
    cfg = parse(CONFIG, P)
    with pytest.raises(ProfileNotFound) as info:
        cfg.get("tpo")
    assert "'top'" in info.value.hint
    with pytest.raises(ProfileNotFound):
        resolve_chain(cfg, "nothing-like-it")


def test_missing_source_profile():
    with pytest.raises(ConfigError, match="source_profile = 'ghost'") as info:
        resolve_chain(parse("[profile a]\nrole_arn = r\nsource_profile = ghost\n", P), "a")
    assert not isinstance(info.value, ProfileNotFound)  # a config error: exit code 3


@pytest.mark.parametrize(
    "text",
    [
        "[profile a\nregion = x\n",
        "region = x\n",
        "[profile a]\nregion = x\n[profile a]\nregion = y\n",
        "[profile a]\nregion = x\nregion = y\n",
        "[profile a]\nrole_arn =\n  arn:aws:iam::1:role/x\n",
    ],
)
def test_malformed_config_is_a_config_error(text):
    with pytest.raises(ConfigError):
        parse(text, P)


def test_aws_config_file_and_profile_env(tmp_path, monkeypatch):
    path = tmp_path / "cfg"
    path.write_text("[profile work]\nregion = eu-west-1\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CFG_DIR", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", "$CFG_DIR/cfg")
    monkeypatch.delenv("AWS_DEFAULT_PROFILE", raising=False)
    monkeypatch.setenv("AWS_PROFILE", "work")
    cfg = load()
    assert cfg.path == path
    assert cfg.default_profile_name() == "work"
    assert cfg.profiles["work"].region == "eu-west-1"
    monkeypatch.setenv("AWS_CONFIG_FILE", "~/cfg")
    assert load().path == path
    # botocore's order: AWS_DEFAULT_PROFILE before AWS_PROFILE
    monkeypatch.setenv("AWS_DEFAULT_PROFILE", "other")
    assert load().default_profile_name() == "other"


def test_credential_process_pointing_back_at_broker_is_refused():
    text = "[profile cp]\ncredential_process = broker export dev --format json\n"
    with pytest.raises(ConfigError, match="from broker itself"):
        resolve_chain(parse(text, P), "cp")


def test_sso_keys_without_account_or_role_are_not_refused():
    cfg = parse("[profile a]\nsso_session = corp\nsso_start_url = https://x\n", P)
    assert resolve_chain(cfg, "a").key_profile.name == "a"


def test_credential_source_without_role_is_ignored_as_by_botocore():
    cfg = parse("[profile a]\ncredential_source = Environment\n", P)
    assert resolve_chain(cfg, "a").key_profile.name == "a"


def test_static_key_in_the_files_stops_the_chain_as_in_botocore():
    text = (
        "[profile top]\nrole_arn = arn:aws:iam::1:role/top\nsource_profile = mid\n"
        "[profile mid]\nrole_arn = arn:aws:iam::1:role/mid\nsource_profile = base\n"
        "[profile base]\nregion = x\n"
    )
    chain = resolve_chain(parse(text, P, "[mid]\naws_access_key_id = AKIAX\n"
                                          "aws_secret_access_key = s\n"), "top")
    assert chain.key_profile.name == "mid"
    assert [h.name for h in chain.hops] == ["top"]


@pytest.mark.parametrize("key", ["role_arn", "source_profile", "mfa_serial", "region"])
def test_empty_values_are_refused_when_used(key):
    role = "" if key == "role_arn" else "role_arn = arn:aws:iam::1:role/a\n"
    cfg = parse(f"[profile a]\n{role}{key} =\n[profile b]\n", P)
    with pytest.raises(ConfigError, match=f"{key} is empty"):
        resolve_chain(cfg, "a")
    resolve_chain(cfg, "b")


def test_unreadable_credentials_file_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="creds-file"):
        parse("[profile a]\n", P, "[x]\n[x]\n", Path("/y/creds-file"))


def test_empty_aws_default_profile_counts_as_in_botocore(monkeypatch):
    from broker.aws.profiles import default_profile_name

    monkeypatch.setenv("AWS_DEFAULT_PROFILE", "")
    monkeypatch.setenv("AWS_PROFILE", "dev")
    assert default_profile_name() == ""
    with pytest.raises(ProfileNotFound, match="empty"):
        parse("[profile dev]\n", P).get("")


@pytest.mark.parametrize(
    ("header", "fix"),
    [("[Profile dev]", "[profile dev]"), ("[PROFILE dev]", "[profile dev]"),
     ("[Default]", "[default]"), ("[ profile sp ]", "[profile sp]"),
     ("[profiledev]", "[profile dev]"), ("[profile a b]", '[profile "a b"]'),
     ("[dev]", "[profile dev]")],
)
def test_an_ignored_header_names_the_header_botocore_reads(header, fix):
    cfg = parse(f"{header}\nregion = x\n", P)
    assert cfg.warnings == [f"{header} is not read as a profile by the AWS CLI: write {fix}"]
    # and the fix really is read as that profile
    fixed = parse(f"{fix}\nregion = x\n", P)
    name = next(iter(fixed.profiles))
    with pytest.raises(ProfileNotFound) as info:
        cfg.get(name)
    assert fix in info.value.hint


@pytest.mark.parametrize(
    ("text", "line"),
    [("[profile a]\nregion\n", "line 2): 'region'"),
     ("region = x\n[profile a]\n", "line 1): 'region = x'")],
)
def test_a_line_the_aws_cli_cannot_read_is_named_with_its_number(text, line):
    with pytest.raises(ConfigError) as info:
        parse(text, P)
    assert line in info.value.message
    assert "Source contains" not in info.value.message


@pytest.mark.parametrize(
    ("value", "why"),
    [("eu-central-1 ; my region", "comment"), ("arn:aws:iam::1:role/a # dev role", "comment"),
     ("eu central 1", "contains a space")],
)
def test_inline_comments_fail_the_profile_naming_the_fix(value, why):
    key = "role_arn" if value.startswith("arn") else "region"
    role = "" if key == "role_arn" else "role_arn = arn:aws:iam::1:role/a\n"
    cfg = parse(f"[profile a]\n{role}{key} = {value}\n[profile b]\n", P)
    with pytest.raises(ConfigError) as info:
        resolve_chain(cfg, "a")
    assert why in info.value.message and key in info.value.message
    assert cfg.profiles["a"].values[key] == value  # read as botocore reads it
    resolve_chain(cfg, "b")


def test_a_source_profiles_region_is_not_its_problem():
    cfg = parse("[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n"
                "[profile b]\nregion = x # comment\n", P)
    assert resolve_chain(cfg, "a").key_profile.name == "b"
    with pytest.raises(ConfigError, match="comment"):
        resolve_chain(cfg, "b")
