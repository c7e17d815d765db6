"""The credential chain in-process, against moto behind a recording proxy.

moto accepts any MFA code, so these tests assert what broker sends."""

from __future__ import annotations

import pytest

from broker.backend import Item
from broker.errors import MFARequired, UsageError
from broker.services import credentials
from broker.services.context import Context
from tests.conftest import ACCOUNT, TEST_KEY_ID, TEST_SECRET
from tests.support.contexts import default_keys, home_context

DEV_MFA = f"arn:aws:iam::{ACCOUNT}:mfa/dev-user"  # the local STS checks its codes


@pytest.fixture
def ctx(in_home) -> Context:
    # keys in memory, sessions in the home's throwaway kernel keyring (where usable)
    return home_context(in_home, default_keys("dev", "base"))


def test_mfa_session_then_role(ctx, sts):
    code = sts.code(DEV_MFA)
    resolved = credentials.obtain(ctx, "dev", mfa_code=code)
    assert resolved.credentials.access_key_id.startswith("ASIA")
    assert resolved.region == "ap-northeast-1"  # from [default]
    gst, = sts.actions("GetSessionToken")
    assert gst["SerialNumber"] == f"arn:aws:iam::{ACCOUNT}:mfa/dev-user"
    assert gst["TokenCode"] == code
    assert gst["DurationSeconds"] == str(8 * 3600)
    role, = sts.actions("AssumeRole")
    assert role["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/dev-role"
    assert "DurationSeconds" not in role  # AWS's default (1 h), as botocore sends it
    assert "SerialNumber" not in role  # MFA rode on the session


def test_duration_applies_to_the_role(ctx, sts):
    credentials.obtain(ctx, "dev", mfa_code=sts.code(DEV_MFA), duration=5400)
    assert sts.actions("AssumeRole")[0]["DurationSeconds"] == "5400"


def test_roles_sharing_a_source_share_one_mfa_session(ctx, sts, in_home):
    credentials.obtain(ctx, "admin")
    credentials.obtain(ctx, "readonly")
    assert len(sts.actions("GetSessionToken")) == 1
    assert len(sts.actions("AssumeRole")) == 2
    assert in_home.mfa_prompts() == 1
    assert [sts.actions("GetSessionToken")[0]["TokenCode"]] == in_home.codes_given()
    # and the second call for each is served from the cache
    credentials.obtain(ctx, "admin")
    assert len(sts.actions("AssumeRole")) == 2


def test_no_session_sends_mfa_with_assume_role(ctx, sts):
    code = sts.code(DEV_MFA)
    credentials.obtain(ctx, "dev", mfa_code=code, no_session=True)
    assert sts.actions("GetSessionToken") == []
    role, = sts.actions("AssumeRole")
    assert role["SerialNumber"] == f"arn:aws:iam::{ACCOUNT}:mfa/dev-user"
    assert role["TokenCode"] == code


def test_region_precedence(ctx, monkeypatch):
    assert credentials.obtain(ctx, "readonly").region == "eu-west-1"
    assert credentials.obtain(ctx, "readonly", region="sa-east-1").region == "sa-east-1"
    monkeypatch.setenv("AWS_REGION", "ca-central-1")
    assert credentials.obtain(ctx, "readonly").region == "ca-central-1"


@pytest.mark.parametrize(
    ("profile", "duration", "message"),
    [
        ("dev", 600, "AssumeRole"),
        ("dev", 50000, "AssumeRole"),
        ("plain", 200000, "GetSessionToken"),
    ],
)
def test_duration_limits(ctx, sts, profile, duration, message):
    with pytest.raises(UsageError, match=message):
        credentials.obtain(ctx, profile, mfa_code="123456", duration=duration)
    assert sts.actions() == []


def test_role_chaining_is_capped_at_one_hour(ctx, sts, in_home):
    in_home.aws_config.write_text(
        in_home.aws_config.read_text()
        + f"\n[profile chained]\nrole_arn = arn:aws:iam::{ACCOUNT}:role/c\nsource_profile = admin\n"
    )
    ctx.__dict__.pop("aws", None)
    with pytest.raises(UsageError, match="role chaining"):
        credentials.obtain(ctx, "chained", duration=7200)
    credentials.obtain(ctx, "chained")
    assert [c["RoleArn"] for c in sts.actions("AssumeRole")] == [
        f"arn:aws:iam::{ACCOUNT}:role/admin",
        f"arn:aws:iam::{ACCOUNT}:role/c",
    ]


def test_mfa_without_any_source_names_the_alternatives(ctx, in_home, monkeypatch):
    monkeypatch.setattr("broker.tty.has_tty", lambda: False)
    in_home.aws_config.write_text(
        "[profile bare]\nmfa_serial = arn:aws:iam::1:mfa/x\nrole_arn = arn:aws:iam::1:role/r\n"
    )
    ctx.__dict__.pop("aws", None)
    ctx.backend("memory").set(
        "bare", Item(aws_access_key_id=TEST_KEY_ID, aws_secret_access_key=TEST_SECRET)
    )
    with pytest.raises(MFARequired) as info:
        credentials.obtain(ctx, "bare")
    assert "--mfa-code" in info.value.hint and "mfa_process" in info.value.hint


def test_explicit_duration_has_its_own_cache_entry(ctx, sts):
    credentials.obtain(ctx, "dev", mfa_code=sts.code(DEV_MFA))
    credentials.obtain(ctx, "dev", mfa_code="123457", duration=900)
    assert [c.get("DurationSeconds") for c in sts.actions("AssumeRole")] == [None, "900"]
    assert len(sts.actions("GetSessionToken")) == 1  # the MFA session below is shared
    credentials.obtain(ctx, "dev")  # the default entry is untouched
    credentials.obtain(ctx, "dev", duration=900)
    assert len(sts.actions("AssumeRole")) == 2


def test_a_cache_that_cannot_store_still_serves(ctx, sts, capsys, monkeypatch):
    from broker.errors import BackendError

    def refuse(*args, **kwargs):
        raise BackendError("keyring quota exceeded", "free some keys")

    monkeypatch.setattr(ctx.sessions.backend, "set", refuse)
    resolved = credentials.obtain(ctx, "dev", mfa_code=sts.code(DEV_MFA))
    assert resolved.credentials.session_token
    assert "session not cached: keyring quota exceeded" in capsys.readouterr().err
