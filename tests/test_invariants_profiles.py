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
    ("aXb", "[profile aXb]"),
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


def test_a_missing_source_profile_is_a_config_error_keeping_the_hint_of_the_lookup():
    """As botocore's InvalidConfigError: exit code 3 (not 4, unknown profile), naming the
    file, the section and the missing profile."""
    from broker.errors import ExitCode, ProfileNotFound

    cfg = profiles.parse("[profile r]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = kee\n"
                         "[profile key]\n", P)
    with pytest.raises(ConfigError) as info:
        profiles.resolve_chain(cfg, "r")
    assert not isinstance(info.value, ProfileNotFound)
    assert info.value.exit_code == ExitCode.CONFIG
    assert info.value.message == f"{P} [profile r] has source_profile = 'kee', which does not exist"
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


# --- the exact words a user sees, and which sections are profiles (botocore's rule) -------


def _refused(text: str, path: Path = P) -> tuple[str, str | None]:
    with pytest.raises(ConfigError) as info:
        profiles.parse(text, path)
    return info.value.message, info.value.hint


def _botocore_profiles(tmp_path: Path, text: str) -> dict[str, dict]:
    import botocore.configloader

    path = tmp_path / "botocore-config"
    path.write_text(text)
    return botocore.configloader.load_config(str(path))["profiles"]


def test_a_bom_is_named_with_how_to_save_without_it():
    assert _refused("\ufeff[default]\nregion = r\n") == (
        f"{P} starts with a UTF-8 byte-order mark (BOM), which the AWS CLI cannot read",
        "save the file as UTF-8 without BOM (in Notepad: 'UTF-8', not 'UTF-8 with BOM')")


def test_a_setting_before_any_header_names_the_line_and_the_headers_to_use():
    assert _refused("\nregion = r\n") == (
        f"{P} is malformed (line 2): 'region = r' comes before any section header, so the "
        "AWS CLI cannot read the file either",
        f"fix line 2 of {P}: every setting belongs under a [default] or [profile NAME] header")


def test_an_unclosed_first_header_is_named_as_such():
    assert _refused("[profile a\nregion = r\n") == (
        f"{P} is malformed (line 1): '[profile a' is a section header without its closing "
        "']', so the AWS CLI cannot read the file either",
        f"fix line 1 of {P}: every setting belongs under a [default] or [profile NAME] header")


def test_a_line_that_is_not_a_setting_names_the_line():
    assert _refused("[profile a]\nregion = r\n[profile b\n") == (
        f"{P} is malformed (line 3): '[profile b' is not a 'key = value' line, so the AWS CLI "
        "cannot read the file either",
        f"fix or remove line 3 of {P}")


@pytest.mark.parametrize(("text", "path", "what"), [
    ("[a]\n[a]\n", P, "(line 2): section 'a' already exists"),
    ("[a]\nx = 1\nx = 2\n", P, "(line 3): option 'x' in section 'a' already exists"),
    # "]: " in a section's name or in the path: only configparser's own prefix is cut
    ("[a]: b]\nx = 1\n[a]: b]\n", P, "(line 3): section 'a]: b' already exists"),
    ("[a]\n[a]\n", Path("/c]: x/config"), "(line 2): section 'a' already exists"),
])
def test_a_repeated_section_or_setting_is_named_with_its_line(text, path, what):
    assert _refused(text, path) == (
        f"{path} is malformed {what}, so the AWS CLI cannot read it either", f"fix {path}")


def test_a_bad_credentials_file_is_named_even_when_only_its_text_is_given():
    with pytest.raises(ConfigError) as info:
        profiles.parse("[profile a]\n", P, "[x]\n[x]\n")
    assert info.value.message == (
        "/invariants/credentials is malformed (line 2): section 'x' already exists, so the "
        "AWS CLI cannot read it either")


def test_a_block_that_is_not_key_value_lines_says_to_keep_the_value_on_one_line():
    assert _refused("[profile a]\ns3 =\n  endpoint\n") == (
        f"{P} [profile a] s3: a value starting on the next line must be a block of "
        "'key = value' lines",
        "put the value of s3 on the same line as 's3 ='")


def test_a_continued_value_in_a_windows_file_reads_as_botocore_reads_it(tmp_path, home):
    import botocore.configloader

    path = tmp_path / "config"
    path.write_bytes(b"[profile a]\r\ncredential_process = tool\r\n  --flag\r\nregion = r\r\n")
    botocore_value = botocore.configloader.raw_config_parse(str(path))["profile a"]
    assert profiles.load(path).profiles["a"].credential_process == "tool\n--flag"
    assert botocore_value["credential_process"] == "tool\n--flag"


def test_sections_that_are_not_profiles_are_not_warned_about(tmp_path):
    # botocore's other section kinds, even holding a key a profile would have, and a bare
    # section holding nothing a profile has: not profiles, and nothing to warn about
    text = ("[sso-session corp]\nregion = r\n[services s]\nregion = r\n[plugins]\nregion = r\n"
            "[tools]\nx = 1\n[profile after]\nregion = r\n")
    cfg = profiles.parse(text, P)
    assert (set(cfg.profiles), cfg.warnings, cfg.ignored) == ({"after"}, [], {})
    assert set(_botocore_profiles(tmp_path, text)) == {"after"}


@pytest.mark.parametrize(("header", "name", "advice"), [
    ('[profile "a bX]', "a bX", 'write [profile "a bX"]'),  # shlex cannot split it
    ('[Profile "a bX"]', "a bX", 'write [profile "a bX"]'),
    ("[profile ]", None, "give it a name: [profile NAME]"),
])
def test_a_header_botocore_skips_is_warned_with_the_header_to_write(tmp_path, header, name,
                                                                    advice):
    text = f"{header}\nregion = r\n"
    cfg = profiles.parse(text, P)
    why = f"{header} is not read as a profile by the AWS CLI: {advice}"
    assert (cfg.profiles, cfg.warnings) == ({}, [why])
    assert cfg.ignored == ({name: why} if name else {})
    assert _botocore_profiles(tmp_path, text) == {}


def test_a_name_that_is_a_profile_is_not_listed_as_ignored():
    cfg = profiles.parse("[profile dev]\nregion = a\n[Profile dev]\nregion = b\n", P)
    assert cfg.warnings == ["[Profile dev] is not read as a profile by the AWS CLI: "
                            "write [profile dev]"]
    assert cfg.ignored == {}
    assert cfg.get("dev").region == "a"


def test_a_profile_names_the_header_it_was_read_from(tmp_path):
    cfg = profiles.parse('[profile "my name"]\nregion = r\n[profile\tdev]\nregion = r\n', P)
    assert cfg.profiles["my name"].where == f'{P} [profile "my name"]'
    assert cfg.profiles["dev"].where == f"{P} [profile\tdev]"


def test_a_profile_built_by_name_gets_the_header_botocore_would_read():
    assert profiles.Profile("default").section == "default"
    assert profiles.Profile("dev").section == "profile dev"
    assert profiles.Profile("dev").where == "~/.aws/config [profile dev]"
    assert profiles.Profile("dev").static_keys is False
    assert profiles.Profile("dev", section="x", path=P).where == f"{P} [x]"


def test_a_static_key_in_the_config_file_is_noted_and_not_kept():
    cfg = profiles.parse(
        "[profile r]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = k\n"
        "[profile k]\naws_access_key_id = AKIA\naws_secret_access_key = s\n"
        "role_arn = arn:aws:iam::1:role/k\nsource_profile = base\n[profile base]\n", P)
    assert (cfg.profiles["k"].static_keys, cfg.profiles["r"].static_keys) == (True, False)
    assert "aws_access_key_id" not in cfg.profiles["k"].values
    chain = profiles.resolve_chain(cfg, "r")  # botocore uses k's key, not its role
    assert (chain.key_profile.name, [h.name for h in chain.hops]) == ("k", ["r"])


@pytest.mark.parametrize("credentials_file", [None, Path("/elsewhere/creds")])
def test_a_profile_only_in_the_credentials_file_names_that_file(credentials_file):
    cfg = profiles.parse("[profile a]\n", P,
                         "[fromcreds]\naws_access_key_id = AKIA\naws_secret_access_key = s\n"
                         "region = r\n", credentials_file)
    where = credentials_file or Path("/invariants/credentials")
    profile = cfg.profiles["fromcreds"]
    assert (profile.path, profile.section, profile.where) == (
        where, "fromcreds", f"{where} [fromcreds]")
    assert (profile.static_keys, profile.values) == (True, {"region": "r"})
    assert cfg.profiles["a"].static_keys is False


def test_an_empty_value_is_the_problem_of_its_key_only():
    profile = profiles.parse("[profile a]\nregion =\n", P).profiles["a"]
    with pytest.raises(ConfigError) as info:
        profile.problem("region")
    assert (info.value.message, info.value.hint) == (
        f"{P} [profile a] region is empty", "give a value or remove the line")
    profile.unusable(target=False)  # a region only the target's counts


@pytest.mark.parametrize("mark", [" #", " ;", "\t#", "\t;"])
def test_a_comment_after_a_value_is_refused_as_part_of_the_value(mark):
    profile = profiles.parse(f"[profile a]\nsource_profile = base{mark} the key\n",
                             P).profiles["a"]
    with pytest.raises(ConfigError) as info:
        profile.problem("source_profile")
    assert (info.value.message, info.value.hint) == (
        f"{P} [profile a] source_profile = {'base' + mark + ' the key'!r} ends in a comment, "
        "which the AWS CLI reads as part of the value",
        "put the comment on a line of its own")


def test_a_nested_block_where_a_value_belongs_is_the_problem_of_that_key():
    profile = profiles.parse("[profile a]\nregion =\n  x = y\n", P).profiles["a"]
    assert profile.region is None
    with pytest.raises(ConfigError) as info:
        profile.problem("region")
    assert (info.value.message, info.value.hint) == (
        f"{P} [profile a] region is a nested block, not a value", "put it on one line")


def test_an_include_profile_problem_is_the_problem_of_include_profile():
    cfg = profiles.parse("[profile a]\ninclude_profile = b\n[profile b]\ninclude_profile = a\n"
                         "[profile c]\ninclude_profile = ghost\n", P)
    expected = {
        "a": ("include_profile loop: a -> b -> a",
              "remove include_profile from one profile in the loop"),
        "c": ("profile 'c' has include_profile = 'ghost', which does not exist",
              "add [profile ghost] or fix include_profile"),
    }
    for name, (message, hint) in expected.items():
        assert list(cfg.profiles[name].problem_by_key) == ["include_profile"]
        with pytest.raises(ConfigError) as info:
            cfg.profiles[name].problem("include_profile")
        assert (info.value.message, info.value.hint) == (message, hint)


@pytest.mark.parametrize("key", ["include_profile", "parent_profile"])
def test_an_empty_include_profile_includes_nothing(key):
    profile = profiles.parse(f"[profile a]\n{key} =\nregion = r\n", P).profiles["a"]
    assert profile.problems == []
    assert profile.region == "r"


@pytest.mark.parametrize("key", ["mfa_serial", "role_arn", "region", "source_profile"])
def test_a_nested_block_where_a_value_belongs_is_refused_before_the_chain_is_used(key):
    """A nested ``mfa_serial`` used to read as "no MFA device": the chain was built without
    MFA instead of refusing, because the problem was only recorded on first read."""
    values = {
        "role_arn": "arn:aws:iam::123456789012:role/r",
        "source_profile": "base",
        "mfa_serial": "arn:aws:iam::123456789012:mfa/me",
        "region": "eu-west-1",
    }
    lines = [f"{name} = {value}" for name, value in values.items() if name != key]
    text = "[profile base]\nregion = eu-west-1\n\n[profile dev]\n" + "\n".join(
        [*lines, f"{key} =\n  a = b"]) + "\n"
    config = profiles.parse(text, Path("/cfg"))
    assert config.profiles["dev"].problem_by_key[key] == (
        f"/cfg [profile dev] {key} is a nested block, not a value; put it on one line")
    with pytest.raises(ConfigError) as raised:
        profiles.resolve_chain(config, "dev")
    assert raised.value.message.startswith(f"/cfg [profile dev] {key} is a nested block")


# --- broker_item's shape, checked offline ----------------------------------------------------

FIX = profiles.ITEM_REFERENCE_FIX


@pytest.mark.parametrize("value", ["my-op://V/I", "op_2://V/I", "a-b_c://V/I", "op://V/I"])
def test_a_scheme_of_letters_digits_dashes_and_underscores_is_a_scheme(value):
    assert profiles.item_reference_problem(value) is None


@pytest.mark.parametrize(("value", "problem"), [
    ("o.p://V/I", f"'o.p' is not a reference scheme; {FIX}"),
    ("op://V/I#frag", f"an item reference takes no query or fragment; {FIX}"),
    ("op://V/I?attribute=otp", f"an item reference takes no query or fragment; {FIX}"),
    # the first "://" ends the scheme: the rest is a path with a field in it
    ("op://V/a://b", f"it names a field, where broker_item names an item; {FIX}"),
    ("op://V", f"it names no item, where broker_item names an item; {FIX}"),
    ("op://V/I/field", f"it names a field, where broker_item names an item; {FIX}"),
])
def test_a_malformed_item_reference_says_what_is_wrong(value, problem):
    assert profiles.item_reference_problem(value) == problem


def test_a_malformed_broker_item_is_a_problem_of_that_key():
    config = profiles.parse("[profile dev]\nbroker_item = op://V\n", Path("/cfg"))
    assert config.profiles["dev"].problem_by_key == {"broker_item": (
        f"/cfg [profile dev] broker_item = 'op://V': it names no item, where broker_item "
        f"names an item; {FIX}")}


def test_a_nested_broker_item_is_a_problem_of_that_key():
    config = profiles.parse("[profile dev]\nbroker_item =\n  a = b\n", Path("/cfg"))
    assert config.profiles["dev"].problem_by_key == {"broker_item": (
        "/cfg [profile dev] broker_item: it is a nested block, not a value; put it on one "
        "line")}
