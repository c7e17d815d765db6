"""Invariants of reading ~/.aws/config: where the files are, which profile is meant when
none is named, what an unreadable file says, and the header suggested for a name that
botocore would not read as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.aws import profiles
from broker.errors import ConfigError

P = Path("/invariants/config")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_files_are_where_botocore_looks(home, monkeypatch):
    assert profiles.config_path() == home / ".aws" / "config"
    assert profiles.credentials_path() == home / ".aws" / "credentials"
    monkeypatch.setenv("SUB", "x")
    monkeypatch.setenv("AWS_CONFIG_FILE", "~/$SUB/cfg")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "~/$SUB/creds")
    assert profiles.config_path() == home / "x" / "cfg"
    assert profiles.credentials_path() == home / "x" / "creds"
    monkeypatch.setenv("AWS_CONFIG_FILE", "")  # empty: the default, as botocore
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "")
    assert profiles.config_path() == home / ".aws" / "config"
    assert profiles.credentials_path() == home / ".aws" / "credentials"


def test_the_default_profile_is_named_default(home):
    assert profiles.default_profile_name() == "default"


def test_an_unreadable_config_says_so_and_what_to_check(tmp_path):
    directory = tmp_path / "config"
    directory.mkdir()  # reading a directory: EISDIR
    with pytest.raises(ConfigError) as info:
        profiles.load(directory)
    assert info.value.message == f"{directory}: cannot read (Is a directory)"
    assert info.value.hint == "check the file"


def test_a_config_not_in_utf8_names_the_byte(tmp_path):
    path = tmp_path / "config"
    path.write_bytes(b"[profile a]\nregion = \xe9u\n")
    with pytest.raises(ConfigError) as info:
        profiles.load(path)
    assert info.value.message == f"{path} is not UTF-8 (byte 21)"
    assert info.value.hint == "save the file as UTF-8"


@pytest.mark.parametrize(("name", "header"), [
    ("dev", "[profile dev]"),
    ("default", "[default]"),
    ("a b", '[profile "a b"]'),
    ("a\tb", '[profile "a\tb"]'),
    ('say "hi"', "[profile 'say \"hi\"']"),
    ("it's", '[profile "it\'s"]'),
    ("a#b", '[profile "a#b"]'),
    ("a;b", '[profile "a;b"]'),
    ("xx", "[profile xx]"),
])
def test_the_header_suggested_for_a_name_is_the_one_botocore_reads(name, header):
    assert profiles._header_for(name) == header
    parsed = profiles.parse(f"{header}\nregion = r\n", P)
    assert parsed.profiles[name].region == "r"


def test_a_nested_value_splits_at_the_first_equals_sign():
    cfg = profiles.parse("[profile a]\ns3 =\n  endpoint = http://x/?a=b\n", P)
    assert cfg.profiles["a"].values["s3"] == {"endpoint": "http://x/?a=b"}


def test_windows_and_old_mac_line_ends_are_read_as_lines(tmp_path, home):
    path = tmp_path / "config"
    path.write_bytes(b"[profile a]\r\nregion = eu-west-1\r\n[profile b]\rregion = us-east-2\r")
    cfg = profiles.load(path)
    assert (cfg.profiles["a"].region, cfg.profiles["b"].region) == ("eu-west-1", "us-east-2")


def test_load_merges_the_credentials_file_and_names_it_when_it_is_bad(tmp_path, home,
                                                                      monkeypatch):
    creds = tmp_path / "creds"
    creds.write_text("[fromcreds]\naws_access_key_id = AKIA\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    cfg = profiles.load(tmp_path / "no-config-file")  # no config file: not an error
    assert "fromcreds" in cfg.profiles and cfg.warnings == []
    creds.write_text("[x]\n[x]\n")
    with pytest.raises(ConfigError, match=str(creds)):
        profiles.load(tmp_path / "no-config-file")


def test_web_identity_is_refused_on_a_key_profile_and_sso_only_without_a_source():
    base = "[profile k]\nregion = r\n"
    web = profiles.parse("[profile w]\nweb_identity_token_file = /t\n" + base, P)
    with pytest.raises(ConfigError, match="web_identity_token_file"):
        profiles.resolve_chain(web, "w")
    sso = "sso_account_id = 1\nsso_role_name = x\n"
    role = profiles.parse("[profile r]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = k\n"
                          + sso + base, P)
    assert [h.name for h in profiles.resolve_chain(role, "r").hops] == ["r"]
    key = profiles.parse("[profile s]\n" + sso + base, P)
    with pytest.raises(ConfigError, match="sso_account_id"):
        profiles.resolve_chain(key, "s")


@pytest.mark.parametrize(("section", "key", "hint"), [
    ("role_arn = arn:aws:iam::1:role/r\ncredential_source = Environment\n", "credential_source",
     "use source_profile pointing at a profile whose key broker holds"),
    ("web_identity_token_file = /t\n", "web_identity_token_file",
     "web identity (OIDC) credentials do not need broker: use that profile directly"),
    ("sso_account_id = 1\nsso_role_name = x\n", "sso_account_id",
     "IAM Identity Center (SSO) profiles do not need broker: use `aws sso login`"),
])
def test_a_refused_key_is_named_with_the_way_out(section, key, hint):
    cfg = profiles.parse(f"[profile a]\n{section}", P)
    with pytest.raises(ConfigError) as info:
        profiles.resolve_chain(cfg, "a")
    assert info.value.message == (
        f"{P} [profile a] uses {key}, so the AWS CLI would not use a stored key for it and "
        "broker does not serve it")
    assert info.value.hint == hint


def test_a_loop_says_how_to_end_it():
    cfg = profiles.parse("[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n"
                         "[profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = a\n", P)
    with pytest.raises(ConfigError) as info:
        profiles.resolve_chain(cfg, "a")
    assert info.value.hint == "make one profile in the loop hold the key (no source_profile)"


def test_a_bad_region_makes_the_profile_unusable_unless_told_it_is_not_the_target():
    profile = profiles.parse("[profile a]\nregion = eu west\n", P).profiles["a"]
    with pytest.raises(ConfigError, match="region"):
        profile.unusable()
    profile.unusable(target=False)  # only the target's region is used


def _not_found(config: str, name: str) -> tuple[str, str]:
    from broker.errors import ProfileNotFound

    with pytest.raises(ProfileNotFound) as info:
        profiles.parse(config, P).get(name)
    return info.value.message, info.value.hint


def test_a_missing_profile_is_named_with_what_there_is_instead():
    assert _not_found("[profile a]\n", "") == (
        "the profile name is empty",
        "AWS_DEFAULT_PROFILE or AWS_PROFILE is set but empty: unset it or name a profile")
    four = "".join(f"[profile {n}]\n" for n in ("deva", "devb", "devc", "devd"))
    message, hint = _not_found(four, "dev")
    assert message == f"no profile named 'dev' in {P}"
    assert hint == "did you mean 'devd' or 'devc' or 'devb'?"  # three at most, closest first
    assert _not_found("[profile abxy]\n", "abcd")[1] == "did you mean 'abxy'?"  # half alike
    assert _not_found("[profile zeta]\n[profile alpha]\n", "q")[1] == (
        f"profiles in {P}: alpha, zeta")
    assert _not_found("", "default")[1] == f"add a [default] section to {P}"
    assert _not_found("", "x")[1] == f"add a [profile x] section to {P}"
    assert _not_found("[Profile x]\nregion = r\n", "x") == (
        f"no profile named 'x' in {P}",
        "[Profile x] is not read as a profile by the AWS CLI: write [profile x]")


def test_a_missing_source_profile_keeps_the_hint_of_the_lookup():
    from broker.errors import ProfileNotFound

    cfg = profiles.parse("[profile r]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = kee\n"
                         "[profile key]\n", P)
    with pytest.raises(ProfileNotFound) as info:
        profiles.resolve_chain(cfg, "r")
    assert info.value.message == "profile 'r' has source_profile = 'kee', which does not exist"
    assert info.value.hint == "did you mean 'key'?"


def test_a_profile_served_by_broker_itself_says_how_to_split_it():
    cfg = profiles.parse("[profile me]\ncredential_process = /usr/bin/broker export me\n", P)
    with pytest.raises(ConfigError) as info:
        profiles.resolve_chain(cfg, "me")
    assert info.value.message == (
        "profile 'me' gets its credentials from broker itself (credential_process)")
    assert info.value.hint == (
        "use another profile for broker, e.g. [profile me-broker] holding the key, and point "
        "credential_process at that")
