"""Revocation follows the key: removing, replacing, rotating or moving a key ends every
cached session made from it, the role sessions built on it included, whatever the
profile's name (``base:ops`` has a colon, as session names do)."""

from __future__ import annotations

import uuid

import pytest

from broker.aws.session_cache import KEY_PROFILE, SessionCache, parse_session_name, session_name
from broker.services import backends as backend_service
from broker.services import credentials, keys, migrate, rotate
from broker.testing.memory import MemoryBackend
from tests.conftest import ACCOUNT, TEST_KEY_ID, TEST_SECRET
from tests.support.contexts import default_keys, home_context
from tests.support.iam import create_iam_user

BASE_DEVICE = f"arn:aws:iam::{ACCOUNT}:mfa/base-user"
#: base:ops: a key profile whose name has a colon, on base's device; ops-admin a role on it.
EXTRA = (
    "\n[profile base:ops]\n"
    f"mfa_serial = {BASE_DEVICE}\n"
    f'mfa_process = "$BROKER_TEST_MFA" {BASE_DEVICE}\n'
    "\n[profile ops-admin]\n"
    f"role_arn = arn:aws:iam::{ACCOUNT}:role/admin\n"
    "source_profile = base:ops\n"
)


@pytest.fixture
def ctx(in_home, sts):
    in_home.aws_config.write_text(in_home.aws_config.read_text() + EXTRA)
    return home_context(in_home, default_keys("base", "base:ops", "dev"))


def _cached(ctx, *profiles: str) -> dict[str, bool]:
    return {p: credentials.cached(ctx, p) is not None for p in profiles}


def _obtain(ctx, in_home, *profiles: str) -> None:
    """Sessions for ``profiles``; each MFA session needs a code not used yet."""
    for profile in profiles:
        credentials.obtain(ctx, profile)
        in_home.next_step()


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["base", "base:ops", "a:b:c", ":x", "x:", "role:session"])
@pytest.mark.parametrize("kind", ["session", "role"])
def test_a_session_name_is_read_back_exactly(profile, kind):
    assert parse_session_name(session_name(profile, kind, "a", None, "b")) == (profile, kind)


@pytest.mark.parametrize("name", [
    "base", "base:session", "base:session:short", "base:session:0123456789abcdeg",
    ":session:0123456789abcdef", "base::0123456789abcdef", "onepassword-token",
])
def test_other_names_are_not_taken_for_sessions(name):
    assert parse_session_name(name) is None


def test_sessions_record_the_key_they_were_made_from(ctx, in_home):
    _obtain(ctx, in_home, "admin", "ops-admin")
    backend = ctx.sessions.backend
    recorded = {}
    for name in backend.list():
        item = backend.get(name)
        parsed = parse_session_name(name)
        assert parsed is not None and item is not None
        recorded[parsed] = item.get(KEY_PROFILE)
    assert recorded == {
        ("base", "session"): "base", ("admin", "role"): "base",
        ("base:ops", "session"): "base:ops", ("ops-admin", "role"): "base:ops",
    }


# --- clear ---------------------------------------------------------------------------------


def test_clear_takes_a_profile_name_with_a_colon_exactly(ctx, in_home):
    _obtain(ctx, in_home, "base", "base:ops")
    assert backend_service.clear_sessions(ctx, "base") == 1
    assert _cached(ctx, "base", "base:ops") == {"base": False, "base:ops": True}
    assert backend_service.clear_sessions(ctx, "base:ops") == 1
    assert _cached(ctx, "base:ops") == {"base:ops": False}


# --- remove, add --replace -------------------------------------------------------------------


def test_remove_ends_the_sessions_of_roles_built_on_the_key(ctx, in_home):
    _obtain(ctx, in_home, "admin", "readonly", "dev", "ops-admin")
    _, cleared = keys.remove(ctx, "base")
    assert cleared == 3  # base's MFA session, and the admin and readonly role sessions
    assert _cached(ctx, "base", "admin", "readonly", "dev", "ops-admin", "base:ops") == {
        "base": False, "admin": False, "readonly": False,
        "dev": True, "ops-admin": True, "base:ops": True,  # other keys' sessions stay
    }


def test_remove_a_profile_named_with_a_colon(ctx, in_home):
    _obtain(ctx, in_home, "ops-admin", "admin")
    _, cleared = keys.remove(ctx, "base:ops")
    assert cleared == 2
    assert _cached(ctx, "base:ops", "ops-admin", "base", "admin") == {
        "base:ops": False, "ops-admin": False, "base": True, "admin": True,
    }


def test_add_replace_ends_the_sessions_made_from_the_old_key(ctx, in_home):
    _obtain(ctx, in_home, "ops-admin", "admin")
    result = keys.add(ctx, "base:ops", TEST_KEY_ID, TEST_SECRET, replace=True)
    assert result.replaced and result.sessions_cleared == 2
    assert _cached(ctx, "base:ops", "ops-admin", "admin") == {
        "base:ops": False, "ops-admin": False, "admin": True,
    }


def test_revocation_follows_the_recorded_key_when_the_config_changed(ctx, in_home):
    _obtain(ctx, in_home, "admin")
    # admin's section goes (or points elsewhere): its cached role session was still made
    # from base's key, and ends with it
    text = in_home.aws_config.read_text()
    in_home.aws_config.write_text(text.replace("[profile admin]", "[profile admin-renamed]"))
    ctx.__dict__.pop("aws", None)
    _, cleared = keys.remove(ctx, "base")
    assert cleared == 2
    names = [parse_session_name(n) for n in ctx.sessions.backend.list()]
    assert ("admin", "role") not in names


def test_a_session_recording_another_key_is_kept():
    cache = SessionCache(
        MemoryBackend(settings={"store": uuid.uuid4().hex}, namespace="sessions"), margin=300
    )
    from datetime import datetime, timedelta, timezone

    from broker.aws.credentials import Credentials

    creds = Credentials("ASIA", "s", "t", datetime.now(timezone.utc) + timedelta(hours=1))
    cache.for_key("dev").put(session_name("admin", "role", "x"), creds)  # re-pointed at dev
    cache.for_key("base").put(session_name("readonly", "role", "x"), creds)
    cache.put(session_name("admin", "role", "old"), creds)  # recorded no key (older broker)
    assert cache.revoke("base", ["base", "admin", "readonly"]) == 2
    (left,) = cache.backend.list()
    assert cache.backend.get(left)[KEY_PROFILE] == "dev"


# --- rotate ----------------------------------------------------------------------------------


def test_rotate_ends_the_sessions_of_a_key_profile_named_with_a_colon(in_home, sts, moto_server):
    _user, old_id, secret = create_iam_user(moto_server)
    key = f"k:{uuid.uuid4().hex[:6]}"
    in_home.aws_config.write_text(
        in_home.aws_config.read_text()
        + f"\n[profile {key}]\nregion = us-east-1\n"
        + f"\n[profile {key}-ro]\nrole_arn = arn:aws:iam::{ACCOUNT}:role/ro\n"
        + f"source_profile = {key}\n"
    )
    ctx = home_context(in_home, {key: (old_id, secret)})
    credentials.obtain(ctx, f"{key}-ro")
    assert _cached(ctx, key, f"{key}-ro") == {key: True, f"{key}-ro": True}
    result = rotate.rotate(ctx, key, sleep=lambda _: None)
    assert result.sessions_cleared == 2
    assert _cached(ctx, key, f"{key}-ro") == {key: False, f"{key}-ro": False}


# --- migrate --delete-source ------------------------------------------------------------------


class OtherMemory(MemoryBackend):
    name = "memory2"


def test_migrate_delete_source_ends_the_sessions_made_from_the_moved_keys(in_home, sts):
    in_home.aws_config.write_text(in_home.aws_config.read_text() + EXTRA)
    ctx = home_context(in_home, default_keys("base:ops", "base"), more={"memory2": OtherMemory})
    _obtain(ctx, in_home, "ops-admin", "admin")
    report = migrate.migrate(ctx, "memory", "memory2", profiles=["base:ops"],
                             delete_source=True)
    assert [o.source_deleted for o in report.outcomes] == [True]
    assert any("ended 2 cached sessions" in note for note in report.notes)
    assert _cached(ctx, "base:ops", "ops-admin", "base", "admin") == {
        "base:ops": False, "ops-admin": False, "base": True, "admin": True,
    }
