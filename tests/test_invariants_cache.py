"""Invariants of the session cache: what a cache key is made of, when a cached session is
fresh, what is written with it (``issued``, the expiry handed to the store).

Behaviour is checked through ``final_session_name`` and ``credentials.obtain``/``cached``
(the chain's public face), so refactoring how names are put together keeps these tests.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from broker.aws import credentials as credentials_module
from broker.aws.chain import ChainOptions, final_session_name
from broker.aws.credentials import Credentials
from broker.aws.profiles import parse, resolve_chain
from broker.aws.session_cache import KEY_PROFILE, SessionCache, session_name
from broker.backend import Capability, Item
from broker.errors import BackendError
from broker.services import credentials
from broker.testing.memory import MemoryBackend
from tests.conftest import ACCOUNT
from tests.support.contexts import default_keys, home_context, keyctl_usable

P = Path("/invariants/config")

# --- the parts of a cache key --------------------------------------------------------------

BASE = {
    "key": {"mfa_serial": "arn:aws:iam::1:mfa/me"},
    "other-key": {"mfa_serial": "arn:aws:iam::1:mfa/me"},
    "mid": {
        "role_arn": "arn:aws:iam::1:role/mid",
        "source_profile": "key",
        "external_id": "ext-mid",
        "role_session_name": "sess-mid",
    },
    "top": {
        "role_arn": "arn:aws:iam::1:role/top",
        "source_profile": "mid",
        "external_id": "ext-top",
        "role_session_name": "sess-top",
    },
    "one": {
        "role_arn": "arn:aws:iam::1:role/one",
        "source_profile": "key",
        "external_id": "ext-one",
        "role_session_name": "sess-one",
    },
}


def _config(changes: dict[str, dict[str, str | None]] | None = None) -> str:
    profiles = {name: dict(values) for name, values in BASE.items()}
    for name, values in (changes or {}).items():
        for key, value in values.items():
            if value is None:
                profiles[name].pop(key, None)
            else:
                profiles[name][key] = value
    lines = []
    for name, values in profiles.items():
        lines.append(f"[profile {name}]")
        lines += [f"{k} = {v}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _name(target: str, changes=None, options: ChainOptions | None = None) -> str | None:
    chain = resolve_chain(parse(_config(changes), P), target)
    return final_session_name(chain, options or ChainOptions())


# Each change alters exactly one part of what makes a session different.
ONE_HOP_CHANGES = {
    "role ARN": {"one": {"role_arn": "arn:aws:iam::1:role/other"}},
    "external id": {"one": {"external_id": "ext-other"}},
    "no external id": {"one": {"external_id": None}},
    "role session name": {"one": {"role_session_name": "sess-other"}},
    "no role session name": {"one": {"role_session_name": None}},
    "MFA serial (key profile)": {"key": {"mfa_serial": "arn:aws:iam::1:mfa/other"}},
    "MFA serial (on the role)": {"one": {"mfa_serial": "arn:aws:iam::1:mfa/other"}},
    "no MFA serial": {"key": {"mfa_serial": None}},
    "source profile": {"one": {"source_profile": "other-key"}},
}


@pytest.mark.parametrize("what", ONE_HOP_CHANGES)
def test_a_role_sessions_key_differs_when_any_part_differs(what):
    assert _name("one") != _name("one", ONE_HOP_CHANGES[what]), what


TWO_HOP_CHANGES = {
    "last role ARN": {"top": {"role_arn": "arn:aws:iam::1:role/other"}},
    "first role ARN": {"mid": {"role_arn": "arn:aws:iam::1:role/other"}},
    "last external id": {"top": {"external_id": "ext-other"}},
    "first external id": {"mid": {"external_id": "ext-other"}},
    "last session name": {"top": {"role_session_name": "sess-other"}},
    "first session name": {"mid": {"role_session_name": "sess-other"}},
    "MFA serial": {"key": {"mfa_serial": "arn:aws:iam::1:mfa/other"}},
    "source below the first hop": {"mid": {"source_profile": "other-key"}},
}


@pytest.mark.parametrize("what", TWO_HOP_CHANGES)
def test_a_chained_sessions_key_differs_when_any_part_below_differs(what):
    assert _name("top") != _name("top", TWO_HOP_CHANGES[what]), what


@pytest.mark.parametrize("target", ["key", "one", "top"])
def test_an_explicit_duration_gets_its_own_key(target):
    names = {
        _name(target, options=ChainOptions()),
        _name(target, options=ChainOptions(duration=900)),
        _name(target, options=ChainOptions(duration=1800)),
    }
    assert len(names) == 3


@pytest.mark.parametrize("target", ["one", "top"])
def test_no_session_and_session_chains_never_share_a_key(target):
    assert _name(target) != _name(target, options=ChainOptions(no_session=True))


def test_an_mfa_sessions_key_differs_by_serial_and_by_key_profile():
    base = _name("key")
    assert base is not None
    assert _name("key", {"key": {"mfa_serial": "arn:aws:iam::1:mfa/other"}}) != base
    assert _name("key", {"key": {"mfa_serial": None}}) != base
    assert _name("other-key") != base  # same serial, another key


def test_keys_are_stable_for_the_same_config():
    # the cache is shared by processes: the same config must name the same entry
    for target in ("key", "one", "top"):
        assert _name(target) == _name(target)
        assert _name(target, options=ChainOptions(duration=900)) == _name(
            target, options=ChainOptions(duration=900)
        )


def test_keys_are_owned_by_the_target_profile():
    # `broker clear PROFILE` and `list` find a profile's sessions by the name's prefix
    for target in ("key", "one", "top"):
        name = _name(target)
        assert name is not None
        owner, kind, digest = name.split(":")
        assert owner == target and kind in ("session", "role")
        assert len(digest) == 16 and all(c in "0123456789abcdef" for c in digest)


@pytest.mark.parametrize("position", range(6))
def test_session_name_differs_when_any_one_part_differs(position):
    parts = ["arn:aws:iam::1:role/r", "ext", "sess", "below", "serial", "duration=900"]
    changed = list(parts)
    changed[position] += "x"
    assert session_name("p", "role", *parts) != session_name("p", "role", *changed)
    # parts are positional: the same values in other places are another session
    swapped = list(parts)
    swapped[position], swapped[(position + 1) % 6] = swapped[(position + 1) % 6], swapped[position]
    assert session_name("p", "role", *parts) != session_name("p", "role", *swapped)


def test_session_name_differs_by_profile_and_kind():
    assert session_name("a", "role", "x") != session_name("b", "role", "x")
    assert session_name("a", "role", "x") != session_name("a", "session", "x")


# --- through the chain, against STS: a changed part is a new session ------------------------


@pytest.fixture
def ctx(in_home):
    return home_context(in_home, default_keys("dev", "base"))


def _edit(ctx, in_home, old: str, new: str) -> None:
    text = in_home.aws_config.read_text()
    assert text.count(old) == 1, old
    in_home.aws_config.write_text(text.replace(old, new))
    ctx.__dict__.pop("aws", None)


def test_editing_role_arn_never_serves_the_old_roles_session(ctx, in_home, sts):
    first = credentials.obtain(ctx, "dev")
    assert credentials.cached(ctx, "dev") is not None
    _edit(ctx, in_home, f"role_arn = arn:aws:iam::{ACCOUNT}:role/dev-role",
          f"role_arn = arn:aws:iam::{ACCOUNT}:role/readonly")
    assert credentials.cached(ctx, "dev") is None  # the fast path would serve this
    second = credentials.obtain(ctx, "dev")
    assert [c["RoleArn"] for c in sts.actions("AssumeRole")] == [
        f"arn:aws:iam::{ACCOUNT}:role/dev-role", f"arn:aws:iam::{ACCOUNT}:role/readonly",
    ]
    assert second.credentials.access_key_id != first.credentials.access_key_id
    assert len(sts.actions("GetSessionToken")) == 1  # the MFA session below is the same


def test_editing_mfa_serial_makes_a_new_mfa_session(ctx, in_home, sts):
    credentials.obtain(ctx, "admin")  # role on top of base's MFA session
    credentials.obtain(ctx, "base")
    device = f"arn:aws:iam::{ACCOUNT}:mfa/base-user"
    other = f"arn:aws:iam::{ACCOUNT}:mfa/dev-user"
    _edit(ctx, in_home, f"mfa_serial = {device}\nmfa_process = \"$BROKER_TEST_MFA\" {device}",
          f"mfa_serial = {other}\nmfa_process = \"$BROKER_TEST_MFA\" {other}")
    assert credentials.cached(ctx, "base") is None
    assert credentials.cached(ctx, "admin") is None
    credentials.obtain(ctx, "admin")
    serials = [c["SerialNumber"] for c in sts.actions("GetSessionToken")]
    assert serials == [device, other]
    assert len(sts.actions("AssumeRole")) == 2


BASE2 = (
    "\n[profile base2]\n"  # base's twin: same MFA device, another key
    f"mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/base-user\n"
    f'mfa_process = "$BROKER_TEST_MFA" arn:aws:iam::{ACCOUNT}:mfa/base-user\n'
)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("[profile admin]\n", "[profile admin]\nexternal_id = ext-2\n"),
        ("[profile admin]\n", "[profile admin]\nrole_session_name = someone-else\n"),
        ("role/admin\nsource_profile = base\n", "role/admin\nsource_profile = base2\n" + BASE2),
    ],
    ids=["external id", "role session name", "source profile"],
)
def test_editing_any_part_of_a_role_is_a_new_session(ctx, in_home, sts, old, new):
    profile = "admin"
    ctx.backend("memory").set("base2", ctx.backend("memory").get("base"))
    credentials.obtain(ctx, profile)
    _edit(ctx, in_home, old, new)
    assert credentials.cached(ctx, profile) is None
    in_home.next_step()  # base2's MFA session needs a code not used yet
    credentials.obtain(ctx, profile)
    assert len(sts.actions("AssumeRole")) == 2


# --- what is stored with a session -------------------------------------------------------


def _raw_items(ctx) -> dict[str, Item]:
    backend = ctx.sessions.backend
    assert backend is not None
    return {name: item for name in backend.list() if (item := backend.get(name)) is not None}


def test_issued_is_whole_seconds_since_the_epoch_utc(ctx, sts):
    before = int(time.time())
    credentials.obtain(ctx, "dev")
    after = int(time.time())
    items = _raw_items(ctx)
    assert len(items) == 2  # the MFA session and the role session
    for name, item in items.items():
        issued = item["issued"]
        assert issued.isdigit(), (name, issued)  # an integer, no fraction, no sign
        assert before <= int(issued) <= after, (name, issued)  # seconds, not milliseconds
        expiration = Credentials.from_item(item).expiration
        assert expiration is not None and expiration.tzinfo is not None
        # UTC: the lifetime it implies is what STS gave (1 h role, 8 h session), not 1 h off
        lifetime = expiration.timestamp() - int(issued)
        assert min(abs(lifetime - 3600), abs(lifetime - 8 * 3600)) < 60, (name, lifetime)


def _put_with(cache: SessionCache, lifetime: float) -> tuple[Credentials, datetime]:
    # whole seconds, as stored: the boundary is then exact
    expires = (datetime.now(timezone.utc) + timedelta(seconds=lifetime)).replace(microsecond=0)
    creds = Credentials("ASIAFRESH", "secret", "token", expires)
    cache.put("p:role:0123456789abcdef", creds)
    return creds, expires


def _at(monkeypatch, moment: datetime) -> None:
    monkeypatch.setattr(credentials_module, "utcnow", lambda: moment)


@pytest.fixture
def memory_cache():
    return SessionCache(MemoryBackend(settings={"store": f"inv-{time.time_ns()}"},
                                      namespace="sessions"), margin=300)


def test_freshness_boundary_is_the_margin(memory_cache, monkeypatch):
    _, expires = _put_with(memory_cache, 3600)
    _at(monkeypatch, expires - timedelta(seconds=301))
    assert memory_cache.get("p:role:0123456789abcdef") is not None
    _at(monkeypatch, expires - timedelta(seconds=300))  # exactly the margin left: refresh
    assert memory_cache.get("p:role:0123456789abcdef") is None


def test_a_margin_longer_than_the_session_is_half_its_lifetime(monkeypatch):
    cache = SessionCache(
        MemoryBackend(settings={"store": f"inv-{time.time_ns()}"}, namespace="sessions"),
        margin=3600,
    )
    _, expires = _put_with(cache, 900)  # issued now by put(): lifetime 900 s
    _at(monkeypatch, expires - timedelta(seconds=451))
    assert cache.get("p:role:0123456789abcdef") is not None  # more than half left
    _at(monkeypatch, expires - timedelta(seconds=450))
    assert cache.get("p:role:0123456789abcdef") is None


def test_put_hands_the_sessions_expiry_to_the_store(monkeypatch):
    seen: list[datetime | None] = []

    class Recording(MemoryBackend):
        def set(self, name, item, *, expires_at=None):
            seen.append(expires_at)
            super().set(name, item, expires_at=expires_at)

    cache = SessionCache(Recording(settings={"store": f"inv-{time.time_ns()}"},
                                   namespace="sessions"), margin=300)
    _, expires = _put_with(cache, 1234)
    assert seen == [expires]
    cache.put("p:role:x", Credentials("AKIA", "secret"))  # no expiry: never cached
    assert seen == [expires]


# --- the expiry the kernel keyring really holds -----------------------------------------------


def _kernel_timeout(backend, name: str) -> str:
    """The /proc/keys timeout column of ``name``'s key in this backend's own keyring."""
    import broker_keyctl

    ops = broker_keyctl._key_ops()
    ring = backend._find_ring(ops, backend.namespace, create=False)
    serial = ops.search(ring, b"user", name.encode(), 0)
    with open("/proc/keys", encoding="utf-8") as stream:
        for line in stream:
            fields = line.split(None, 8)  # id flags usage timeout perm uid gid type description
            if int(fields[0], 16) == serial:
                return fields[3]
    raise AssertionError(f"key {serial} ({name}) is not in /proc/keys")


def _seconds(column: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    assert column[-1] in units, f"no timeout on the key: {column!r}"
    return int(column[:-1]) * units[column[-1]]


def test_session_keys_in_the_kernel_keyring_expire_with_the_session(ctx, sts):
    if not keyctl_usable():
        pytest.skip("the kernel keyring is not usable here")
    assert ctx.sessions.backend is not None and ctx.sessions.backend.name == "keyctl"
    credentials.obtain(ctx, "dev", duration=900)
    items = _raw_items(ctx)
    assert len(items) == 2
    for name, item in items.items():
        expiration = Credentials.from_item(item).expiration
        assert expiration is not None
        left = expiration.timestamp() - time.time()
        column = _kernel_timeout(ctx.sessions.backend, name)
        shown = _seconds(column)  # /proc/keys rounds down to s, m, h...
        unit = 1 if column.endswith("s") else 60 if column.endswith("m") else 3600
        assert left - unit - 5 <= shown <= left + 1, (name, column, left)


@pytest.mark.parametrize("ttl", [90, 8 * 3600])
def test_a_backend_login_token_expires_in_the_kernel_after_its_ttl(ctx, ttl):
    """`broker backend login` keeps a token in the kernel keyring: the kernel forgets it."""
    if not keyctl_usable():
        pytest.skip("the kernel keyring is not usable here")
    from broker.services import backends as backend_service

    reference, expires = backend_service.login(ctx, "onepassword", "ops_token", ttl)
    assert reference == "keyctl:onepassword-token"
    left = expires.timestamp() - time.time()
    assert ttl - 5 <= left <= ttl
    column = _kernel_timeout(ctx.backend("keyctl", "secrets"), "onepassword-token")
    shown = _seconds(column)
    unit = 1 if column.endswith("s") else 60 if column.endswith("m") else 3600
    assert left - unit - 5 <= shown <= left + 1, (column, left)


# --- names read back, listing, clearing and revoking ----------------------------------------


def test_session_names_are_those_of_the_last_version():
    # Sessions in the kernel keyring outlive an upgrade of broker: a name made another way
    # would ask for a new MFA code after every upgrade. Pinned from the names broker makes.
    mfa = f"arn:aws:iam::{ACCOUNT}:mfa/base-user"
    assert session_name("base", "session", mfa, None, "duration=900") == (
        "base:session:8067bb1370f2ad2e"
    )
    assert session_name("base:ops", "role", "arn:aws:iam::1:role/r", None) == (
        "base:ops:role:a7dc82d54f316479"
    )


NO_STS_SESSIONS = type("NoSessions", (MemoryBackend,), {
    "name": "nosessions", "capabilities": MemoryBackend.capabilities & ~Capability.STORE_SESSIONS,
})


def test_a_backend_that_cannot_hold_sessions_is_refused_with_the_way_out():
    with pytest.raises(BackendError) as caught:
        SessionCache(NO_STS_SESSIONS(settings={"store": "x"}, namespace="sessions"), margin=300)
    assert caught.value.message == "backend 'nosessions' cannot hold STS sessions"
    assert caught.value.hint == 'set session_cache to a backend that can (keyctl) or to "none"'


def _expiring(seconds: float = 3600) -> Credentials:
    expires = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return Credentials("ASIA", "s", "t", expires.replace(microsecond=0))  # as stored


class Phantom(MemoryBackend):
    """Lists names whose items are gone by the time they are read (expired, deleted by
    another process), and fails to read ``broken``."""

    phantoms: tuple[str, ...] = ()
    broken: tuple[str, ...] = ()

    def list(self) -> list[str]:
        return sorted([*super().list(), *self.phantoms])

    def get(self, name: str) -> Item | None:
        if name in self.broken:
            raise BackendError(f"cannot read {name}")
        return super().get(name)


@pytest.fixture
def store() -> Phantom:
    return Phantom(settings={"store": f"inv-{time.time_ns()}"}, namespace="sessions")


BASE_S = session_name("base", "session", "serial")
BASE_R = session_name("base", "role", "arn:aws:iam::1:role/r")
OPS_S = session_name("base:ops", "session", "serial")
ADMIN_R = session_name("admin", "role", "arn:aws:iam::1:role/admin")


def _fill(store: Phantom) -> SessionCache:
    cache = SessionCache(store, margin=300)
    # "a-token" sorts before every session: not a session name, never listed or revoked
    store.set("a-token", Item(token="x"))
    for name in (BASE_S, BASE_R, OPS_S, ADMIN_R):
        cache.put(name, _expiring())
    return cache


def test_entries_are_every_session_with_its_owner_and_kind(store):
    cache = _fill(store)
    store.phantoms = ("0:session:0123456789abcdef",)  # listed, gone when read
    listed = [(e.name, e.profile, e.kind, e.credentials.access_key_id)
              for e in cache.entries()]
    assert listed == sorted([
        (ADMIN_R, "admin", "role", "ASIA"), (BASE_R, "base", "role", "ASIA"),
        (BASE_S, "base", "session", "ASIA"), (OPS_S, "base:ops", "session", "ASIA"),
    ])
    entry = cache.entries("admin")[0]
    assert entry.item == store.get(ADMIN_R)


def test_entries_of_a_profile_are_its_own_by_exact_name(store):
    cache = _fill(store)
    assert [e.name for e in cache.entries("base")] == sorted([BASE_R, BASE_S])  # not base:ops's
    assert [e.name for e in cache.entries("base:ops")] == [OPS_S]
    assert [(e.profile, e.kind) for e in cache.entries("base:ops")] == [("base:ops", "session")]
    assert cache.entries("ops") == []


def test_clear_of_a_profile_deletes_its_sessions_only_and_counts_them(store):
    cache = _fill(store)
    assert cache.clear("base") == 2
    assert store.list() == sorted(["a-token", OPS_S, ADMIN_R])
    assert cache.clear("base") == 0
    assert cache.clear("ops") == 0  # base:ops is no prefix match
    assert cache.clear("base:ops") == 1
    assert store.list() == ["a-token", ADMIN_R]


def test_clear_of_everything_empties_the_namespace_and_counts_what_went(store):
    cache = _fill(store)
    store.phantoms = ("0:session:0123456789abcdef",)  # already gone: not counted
    assert cache.clear() == 5
    assert store.list() == ["0:session:0123456789abcdef"]


def test_revoke_ends_the_sessions_of_the_key_and_counts_them(store):
    cache = _fill(store)
    for name in (BASE_S, BASE_R, OPS_S, ADMIN_R):  # written before key_profile was recorded
        assert KEY_PROFILE not in store.get(name)
    store.phantoms = ("base:session:ffffffffffffffff",)  # listed, not there: counts nothing
    assert cache.revoke("base", ["admin"]) == 3
    assert store.list() == sorted(["base:session:ffffffffffffffff", "a-token", OPS_S])
    assert cache.revoke("base:ops") == 1
    assert cache.revoke("base:ops") == 0


def test_revoke_treats_an_unreadable_session_by_its_owner(store):
    cache = _fill(store)
    store.broken = (BASE_S, OPS_S)
    assert cache.revoke("base") == 2  # base's session (unreadable) and role
    assert store.list() == sorted(["a-token", OPS_S, ADMIN_R])


def test_revoke_follows_the_recorded_key_over_the_owner(store):
    cache = SessionCache(store, margin=300)
    cache.for_key("base").put(ADMIN_R, _expiring())
    cache.for_key("dev").put(BASE_R, _expiring())  # base's name, dev's key
    assert store.get(ADMIN_R)[KEY_PROFILE] == "base"
    assert cache.revoke("base", ["base"]) == 1
    assert store.list() == [BASE_R]


def test_a_cache_without_a_store_has_nothing_to_list_clear_or_revoke():
    cache = SessionCache(None, margin=300)
    assert not cache.enabled
    assert cache.entries() == [] and cache.entries("base") == []
    assert cache.clear() == 0 and cache.clear("base") == 0
    assert cache.revoke("base", ["admin"]) == 0


def test_for_key_records_the_key_and_keeps_the_store_and_margin(store):
    cache = SessionCache(store, margin=123)
    keyed = cache.for_key("base:ops")
    assert (keyed.backend, keyed.margin, keyed.key_profile) == (store, 123, "base:ops")
    assert cache.key_profile is None
    keyed.put(OPS_S, _expiring())
    cache.put(BASE_S, _expiring())
    assert store.get(OPS_S)[KEY_PROFILE] == "base:ops"
    assert KEY_PROFILE not in store.get(BASE_S)


# --- freshness of sessions from other writers ----------------------------------------------


def test_a_session_stored_without_issued_gets_the_whole_margin(memory_cache, monkeypatch):
    # an older broker did not write `issued`: the margin is then the configured one
    expires = (datetime.now(timezone.utc) + timedelta(seconds=900)).replace(microsecond=0)
    name = "p:role:0123456789abcdef"
    memory_cache.backend.set(name, Credentials("ASIA", "s", "t", expires).to_item())
    _at(monkeypatch, expires - timedelta(seconds=301))
    assert memory_cache.get(name) is not None
    _at(monkeypatch, expires - timedelta(seconds=300))
    assert memory_cache.get(name) is None


def test_a_session_issued_at_its_expiry_has_no_margin(memory_cache, monkeypatch):
    # issued when it expires (a clock that jumped): half of no lifetime is no margin
    expires = (datetime.now(timezone.utc) + timedelta(seconds=900)).replace(microsecond=0)
    name = "p:role:0123456789abcdef"
    memory_cache.put(name, Credentials("ASIA", "s", "t", expires),
                     issued=str(int(expires.timestamp())))
    _at(monkeypatch, expires - timedelta(seconds=0.25))
    assert memory_cache.get(name) is not None
    _at(monkeypatch, expires)
    assert memory_cache.get(name) is None


# --- get_or_create: one refresh for concurrent callers -------------------------------------


@pytest.fixture
def private_runtime(tmp_path, monkeypatch) -> Path:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    runtime.chmod(0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    return runtime


def test_a_fresh_session_is_served_without_taking_the_lock(memory_cache, monkeypatch):
    from broker.aws import session_cache

    memory_cache.put("p:role:0123456789abcdef", _expiring())

    def no_lock(*args, **kwargs):
        raise AssertionError("a cache hit took the refresh lock")

    monkeypatch.setattr(session_cache, "file_lock", no_lock)
    creds = memory_cache.get_or_create("p:role:0123456789abcdef", _expiring)
    assert creds.access_key_id == "ASIA"


def test_a_session_made_while_waiting_for_the_lock_is_served(memory_cache, monkeypatch):
    # another process held the lock and refreshed: this one serves its session
    import contextlib

    from broker.aws import session_cache

    made = Credentials("ASIAOTHER", "s", "t", _expiring().expiration)

    @contextlib.contextmanager
    def other_refreshed(name, **kwargs):
        memory_cache.put("p:role:0123456789abcdef", made)
        yield

    monkeypatch.setattr(session_cache, "file_lock", other_refreshed)

    def create():
        raise AssertionError("refreshed again under the lock")

    assert memory_cache.get_or_create("p:role:0123456789abcdef", create) == made


def test_a_refresh_goes_on_where_no_lock_file_can_be_made(memory_cache, private_runtime):
    (private_runtime / "broker").mkdir(mode=0o700)
    (private_runtime / "broker" / "locks").write_text("not a directory")
    creds = memory_cache.get_or_create("p:role:0123456789abcdef", _expiring)
    assert memory_cache.get("p:role:0123456789abcdef") == creds


def test_a_refresh_stores_what_the_caller_says_about_the_session(memory_cache, private_runtime):
    memory_cache.for_key("base").get_or_create(
        "p:role:0123456789abcdef", _expiring, kind="role", role_arn="arn:aws:iam::1:role/r",
    )
    item = memory_cache.backend.get("p:role:0123456789abcdef")
    assert (item["kind"], item["role_arn"], item[KEY_PROFILE]) == (
        "role", "arn:aws:iam::1:role/r", "base",
    )


def test_without_reuse_a_new_session_replaces_the_fresh_one(memory_cache, private_runtime):
    name = "p:role:0123456789abcdef"
    memory_cache.put(name, _expiring())
    made = Credentials("ASIANEW", "s", "t", _expiring().expiration)
    assert memory_cache.get_or_create(name, lambda: made, reuse=False, kind="role") == made
    assert memory_cache.get(name) == made
    assert memory_cache.backend.get(name)["kind"] == "role"
