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


def test_sections_follow_aws_cli_semantics():
    cfg = parse(CONFIG, P)
    assert set(cfg.profiles) == {"default", "base", "mid", "top", "self", "bare"}
    assert cfg.default_region() == "ap-northeast-1"
    assert cfg.profiles["top"].duration_seconds == 1800
    assert cfg.profiles["mid"].external_id == "ext-1"


def test_profile_prefix_wins_over_bare_section():
    cfg = parse("[dev]\nregion = a\n[profile dev]\nregion = b\n", P)
    assert cfg.profiles["dev"].region == "b"


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
    with pytest.raises(ProfileNotFound, match="source_profile = 'ghost'"):
        resolve_chain(parse("[profile a]\nrole_arn = r\nsource_profile = ghost\n", P), "a")


@pytest.mark.parametrize(
    "text",
    [
        "[profile a\nregion = x\n",
        "region = x\n",
        "[profile a]\nregion = x\n[profile a]\nregion = y\n",
        "[profile a]\nduration_seconds = soon\n",
    ],
)
def test_malformed_config_is_a_config_error(text):
    with pytest.raises(ConfigError):
        parse(text, P)


def test_aws_config_file_and_profile_env(tmp_path, monkeypatch):
    path = tmp_path / "cfg"
    path.write_text("[profile work]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    monkeypatch.setenv("AWS_PROFILE", "work")
    cfg = load()
    assert cfg.path == path
    assert cfg.default_profile_name() == "work"
    assert cfg.profiles["work"].region == "eu-west-1"


def test_credential_process_pointing_back_at_broker_is_refused():
    text = "[profile cp]\ncredential_process = broker export dev --format json\n"
    with pytest.raises(ConfigError, match="from broker itself"):
        resolve_chain(parse(text, P), "cp")
