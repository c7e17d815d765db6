"""Invariants of the credential chain: source_profile loops of any length are refused,
and every duration limit holds at its boundary, checked on the DurationSeconds that is
actually sent (the local STS records each request)."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from broker.aws import sts as sts_module
from broker.aws.chain import (
    ChainOptions,
    CredentialChain,
    check_duration,
    final_session_name,
    hop_session_name,
    level_session_names,
    mfa_session_name,
    needs_code,
    plan,
)
from broker.aws.credentials import Credentials
from broker.aws.mfa import PROMPT_ORIGIN, Prompt
from broker.aws.profiles import parse, resolve_chain
from broker.aws.session_cache import SessionCache
from broker.errors import ConfigError, UsageError
from broker.services import credentials
from broker.testing.memory import MemoryBackend
from tests.conftest import ACCOUNT
from tests.support.contexts import default_keys, home_context

P = Path("/invariants/config")

# --- source_profile loops ------------------------------------------------------------------


def _roles(links: dict[str, str]) -> str:
    """A config where each profile in ``links`` is a role with that source_profile."""
    return "".join(
        f"[profile {name}]\nrole_arn = arn:aws:iam::1:role/{name}\nsource_profile = {source}\n"
        for name, source in links.items()
    ) + "[profile key]\nregion = us-east-1\n"


LOOPS = {
    "a -> b -> a": {"a": "b", "b": "a"},
    "a -> b -> c -> a": {"a": "b", "b": "c", "c": "a"},
    "a -> b -> c -> b (not through the start)": {"a": "b", "b": "c", "c": "b"},
    "a -> b -> c -> d -> e -> c": {"a": "b", "b": "c", "c": "d", "d": "e", "e": "c"},
}


@pytest.mark.timeout(10)  # an undetected loop would walk forever
@pytest.mark.parametrize("what", LOOPS)
def test_a_source_profile_loop_of_any_length_is_refused(what):
    links = LOOPS[what]
    config = parse(_roles(links), P)
    for start in links:  # from wherever the user starts
        with pytest.raises(ConfigError, match="source_profile loop") as info:
            resolve_chain(config, start)
        assert type(info.value) is ConfigError and info.value.exit_code == 3
        path = info.value.message.rsplit(": ", 1)[1].split(" -> ")
        assert path[0] == start and path[-1] in path[:-1]  # the loop, named
        assert "\n" not in info.value.message


@pytest.mark.timeout(10)
def test_a_profile_naming_itself_holds_its_own_key():
    # aws-vault style: a role profile whose source is itself keeps the key itself
    config = parse(_roles({"a": "a"}), P)
    chain = resolve_chain(config, "a")
    assert chain.key_profile.name == "a" and [h.name for h in chain.hops] == ["a"]


@pytest.mark.timeout(10)
def test_long_chains_without_a_loop_resolve():
    links = {f"p{i}": f"p{i + 1}" for i in range(10)}
    links["p10"] = "key"
    chain = resolve_chain(parse(_roles(links), P), "p0")
    assert chain.key_profile.name == "key"
    assert [h.name for h in chain.hops] == [f"p{i}" for i in range(10, -1, -1)]


# --- durations: what is sent, at every boundary ---------------------------------------------

DEVICE = f"arn:aws:iam::{ACCOUNT}:mfa/dev-user"
CONFIG = f"""\
[profile k]
mfa_serial = {DEVICE}
mfa_process = "$BROKER_TEST_MFA" {DEVICE}

[profile plain]

[profile one]
role_arn = arn:aws:iam::{ACCOUNT}:role/dev-role
source_profile = k

[profile long1]
role_arn = arn:aws:iam::{ACCOUNT}:role/dev-role
source_profile = k
duration_seconds = 7200

[profile long2]
role_arn = arn:aws:iam::{ACCOUNT}:role/readonly
source_profile = long1
duration_seconds = 7200

[profile long3]
role_arn = arn:aws:iam::{ACCOUNT}:role/ro
source_profile = long2

[profile short2]
role_arn = arn:aws:iam::{ACCOUNT}:role/readonly
source_profile = one

[profile short3]
role_arn = arn:aws:iam::{ACCOUNT}:role/ro
source_profile = short2
duration_seconds = 1800
"""


@pytest.fixture
def ctx(in_home):
    in_home.aws_config.write_text(CONFIG)
    return home_context(in_home, default_keys("k", "plain"))


def _sent(sts, action: str) -> list[str | None]:
    return [c.get("DurationSeconds") for c in sts.actions(action)]


def test_the_chaining_cap_applies_from_the_second_hop(ctx, sts):
    """long1 (2 h) is assumed with the key; long2, assumed with long1's session, is role
    chaining: AWS allows it one hour at most, whatever it asks for."""
    credentials.obtain(ctx, "long3")
    calls = sts.actions("AssumeRole")
    assert [c["RoleArn"].rsplit("/", 1)[1] for c in calls] == ["dev-role", "readonly", "ro"]
    first, second, third = _sent(sts, "AssumeRole")
    assert first == "7200"  # the long-lived key: no chaining, the profile's 2 h
    assert second is not None and 900 <= int(second) <= 3600  # chained: capped
    assert third is None or int(third) <= 3600
    assert calls[0].get("SerialNumber") == DEVICE  # the key's call carries the MFA code
    assert "SerialNumber" not in calls[1] and "SerialNumber" not in calls[2]
    assert sts.actions("GetSessionToken") == []


def test_a_chained_role_asking_for_more_than_an_hour_is_refused_before_any_call(ctx, sts):
    with pytest.raises(ConfigError, match="1 hour") as info:
        credentials.obtain(ctx, "long2")  # itself chained (after long1), asking 2 h
    assert "duration_seconds" in info.value.message
    assert sts.actions() == []


def test_a_chained_roles_own_duration_is_sent(ctx, sts):
    credentials.obtain(ctx, "short3")
    assert _sent(sts, "AssumeRole")[-1] == "1800"


@pytest.mark.parametrize(("duration", "ok"), [(3600, True), (3601, False), (900, True),
                                              (899, False)])
def test_duration_of_a_chained_role_at_its_limits(ctx, sts, duration, ok):
    if not ok:
        with pytest.raises(UsageError):
            credentials.obtain(ctx, "short2", duration=duration)
        assert sts.actions() == []  # refused before any call or MFA prompt
        return
    credentials.obtain(ctx, "short2", duration=duration)
    assert _sent(sts, "AssumeRole")[-1] == str(duration)


@pytest.mark.parametrize(
    ("duration", "shape"),
    [
        (899, "refused"),
        (900, "via the MFA session"),
        (3600, "via the MFA session"),
        (3601, "with the key"),  # more than chaining allows: no GetSessionToken
        (43200, "with the key"),
        (43201, "refused"),
    ],
)
def test_duration_of_a_first_role_at_its_limits(ctx, sts, duration, shape):
    if shape == "refused":
        with pytest.raises(UsageError, match="AssumeRole"):
            credentials.obtain(ctx, "one", duration=duration)
        assert sts.actions() == []
        return
    credentials.obtain(ctx, "one", duration=duration)
    (role,) = sts.actions("AssumeRole")
    assert role["DurationSeconds"] == str(duration)
    if shape == "via the MFA session":
        (session,) = sts.actions("GetSessionToken")
        assert session["SerialNumber"] == DEVICE and "SerialNumber" not in role
    else:
        assert sts.actions("GetSessionToken") == []
        assert role["SerialNumber"] == DEVICE


@pytest.mark.parametrize(("duration", "ok"), [(899, False), (900, True), (129600, True),
                                              (129601, False)])
def test_duration_of_get_session_token_at_its_limits(ctx, sts, duration, ok):
    if not ok:
        with pytest.raises(UsageError, match="GetSessionToken"):
            credentials.obtain(ctx, "plain", duration=duration)
        assert sts.actions() == []
        return
    credentials.obtain(ctx, "plain", duration=duration)
    assert _sent(sts, "GetSessionToken") == [str(duration)]


def test_the_mfa_session_lasts_session_duration(ctx, sts):
    credentials.obtain(ctx, "one")
    assert _sent(sts, "GetSessionToken") == [str(ctx.settings.session_duration)]


# --- the plan: every call, exactly -----------------------------------------------------------

PURE = """\
[profile k]
mfa_serial = arn:aws:iam::1:mfa/k

[profile other-k]
mfa_serial = arn:aws:iam::1:mfa/k

[profile nomfa]

[profile mid]
role_arn = arn:aws:iam::1:role/mid
source_profile = k
external_id = ext-mid
role_session_name = sess-mid

[profile top]
role_arn = arn:aws:iam::1:role/top
source_profile = mid
duration_seconds = 1800

[profile long]
role_arn = arn:aws:iam::1:role/long
source_profile = k
duration_seconds = 7200

[profile long-next]
role_arn = arn:aws:iam::1:role/next
source_profile = long
duration_seconds = 7200

[profile bad]
role_arn = arn:aws:iam::1:role/bad
source_profile = k
duration_seconds = soon
"""
K_MFA = "arn:aws:iam::1:mfa/k"
SESSION_SOURCE = "session_duration in broker's config"


def _chain(target: str, config: str = PURE):
    return resolve_chain(parse(config, P), target)


def _plan(target: str, **options) -> list[dict[str, object]]:
    return [vars(call) for call in plan(_chain(target), ChainOptions(**options))]


def _call(action: str, profile: str, signed_with: str, duration, source: str, serial=None,
          role_arn=None, external_id=None, session_name=None) -> dict[str, object]:
    return {"action": action, "profile": profile, "signed_with": signed_with,
            "duration": duration, "duration_source": source, "serial": serial,
            "role_arn": role_arn, "external_id": external_id, "session_name": session_name}


def test_plan_of_a_key_profile_is_one_mfa_session():
    assert _plan("k") == [_call("GetSessionToken", "k", "key", 28800, SESSION_SOURCE, K_MFA)]
    assert _plan("k", session_duration=900) == [
        _call("GetSessionToken", "k", "key", 900, SESSION_SOURCE, K_MFA)]
    assert _plan("k", duration=1000) == [
        _call("GetSessionToken", "k", "key", 1000, "--duration", K_MFA)]
    assert _plan("nomfa") == [_call("GetSessionToken", "nomfa", "key", 28800, SESSION_SOURCE)]
    assert _plan("k", no_session=True) == []


def test_plan_of_a_chain_through_the_mfa_session():
    mid = _call("AssumeRole", "mid", "session", None, "AWS's default",
                role_arn="arn:aws:iam::1:role/mid", external_id="ext-mid", session_name="sess-mid")
    assert _plan("top") == [
        _call("GetSessionToken", "k", "key", 28800, SESSION_SOURCE, K_MFA),
        mid,
        _call("AssumeRole", "top", "role", 1800, f"duration_seconds in {P} [profile top]",
              role_arn="arn:aws:iam::1:role/top"),
    ]
    assert _plan("top", duration=900)[-1] == _call(
        "AssumeRole", "top", "role", 900, "--duration", role_arn="arn:aws:iam::1:role/top")


def test_plan_of_a_chain_whose_first_role_is_assumed_with_the_key():
    no_session = _plan("mid", no_session=True)
    assert no_session == [_call("AssumeRole", "mid", "key", None, "AWS's default", K_MFA,
                                "arn:aws:iam::1:role/mid", "ext-mid", "sess-mid")]
    # more than role chaining allows: the key and the code, no MFA session; the next role
    # is chained, so an intermediate role is capped at 1 hour (only carries the next call)
    assert _plan("long-next", duration=3600) == [
        _call("AssumeRole", "long", "key", 7200, f"duration_seconds in {P} [profile long]",
              K_MFA, "arn:aws:iam::1:role/long"),
        _call("AssumeRole", "long-next", "role", 3600, "--duration",
              role_arn="arn:aws:iam::1:role/next"),
    ]


def _refused(target: str, **options) -> tuple[type, str, str]:
    with pytest.raises((UsageError, ConfigError)) as info:
        plan(_chain(target), ChainOptions(**options))
    with pytest.raises(type(info.value)):
        check_duration(_chain(target), ChainOptions(**options))  # the same refusal, early
    return type(info.value), info.value.message, info.value.hint


def test_refusals_name_the_setting_the_limit_and_the_fix():
    gst = "is outside what AWS allows for GetSessionToken (15 min to 36 h)"
    assert _refused("k", duration=899) == (
        UsageError, f"--duration 899s {gst}", "choose a value between 900 and 129600 seconds")
    assert _refused("k", session_duration=129601) == (
        ConfigError, f"session_duration in broker's config: 129601s {gst}",
        "choose a value between 900 and 129600 seconds")
    assert _refused("mid", duration=43201) == (
        UsageError, "--duration 43201s is outside what AWS allows for AssumeRole "
        "(15 min to 12 h; the role's own maximum may be lower)",
        "choose a value between 900 and 43200 seconds")
    assert _refused("long-next") == (
        ConfigError, f"duration_seconds in {P} [profile long-next]: 7200s exceeds the 1 hour "
        "limit AWS sets for a role assumed with another role's session "
        "(role chaining: k -> long -> long-next)", "choose at most 3600 seconds")
    assert _refused("k", no_session=True, duration=900) == (
        UsageError, "--duration has no effect with --no-session on a profile without a role",
        "drop one of the two flags")


def test_an_unusable_duration_seconds_is_refused_not_ignored():
    kind, message, hint = _refused("bad")
    assert kind is ConfigError
    assert message == (
        f"{P} [profile bad] duration_seconds = 'soon' is not a whole number of seconds")
    assert hint == "give seconds, e.g. duration_seconds = 3600"
    check_duration(_chain("mid"), ChainOptions())  # a usable chain passes


# --- cache names: what each level is cached under ---------------------------------------------


def test_cache_names_are_those_of_the_last_version():
    # cached sessions outlive an upgrade: another name would mean another MFA prompt
    assert final_session_name(_chain("mid"), ChainOptions()) == "mid:role:64b985f1efff6674"
    assert final_session_name(_chain("mid"), ChainOptions(no_session=True)) == (
        "mid:role:cecda4e394c620fa")
    assert final_session_name(_chain("top"), ChainOptions(duration=900)) == (
        "top:role:a81eed2907017eb3")
    assert mfa_session_name(_chain("top")) == "k:session:6ceafb5f2c13336d"


def test_a_role_assumed_with_the_key_is_cached_by_that_key_and_device():
    direct = ChainOptions(no_session=True)
    mid = "[profile mid]\nrole_arn = arn:aws:iam::1:role/mid\n"
    other_key = PURE.replace(mid + "source_profile = k", mid + "source_profile = other-k")
    other_device = PURE.replace("mfa_serial = arn:aws:iam::1:mfa/k\n\n[profile other-k]",
                                "mfa_serial = arn:aws:iam::1:mfa/x\n\n[profile other-k]")
    no_device = PURE.replace("mfa_serial = arn:aws:iam::1:mfa/k\n\n[profile other-k]",
                             "\n[profile other-k]")
    names = {final_session_name(_chain("mid", config), direct)
             for config in (PURE, other_key, other_device, no_device)}
    assert len(names) == 4


def test_the_levels_are_every_cached_session_from_the_target_down():
    top = _chain("top")
    assert level_session_names(top, ChainOptions()) == [
        hop_session_name(top, 1, ChainOptions()), hop_session_name(top, 0, ChainOptions()),
        mfa_session_name(top),
    ]
    assert level_session_names(top, ChainOptions(no_session=True)) == [
        hop_session_name(top, 1, ChainOptions(no_session=True)),
        hop_session_name(top, 0, ChainOptions(no_session=True)),
    ]
    long = _chain("long")  # its first role is assumed with the key: no MFA session
    assert level_session_names(long, ChainOptions()) == [hop_session_name(long, 0, ChainOptions())]
    k = _chain("k")
    assert level_session_names(k, ChainOptions(duration=900)) == [
        mfa_session_name(k, ChainOptions(duration=900))]
    assert level_session_names(k, ChainOptions(no_session=True)) == []
    assert final_session_name(k, ChainOptions(no_session=True)) is None


def test_a_code_is_needed_only_when_every_level_down_to_the_code_has_expired():
    cache = SessionCache(MemoryBackend(settings={"store": uuid.uuid4().hex},
                                       namespace="sessions"), margin=300)
    expires = datetime.now(timezone.utc) + timedelta(hours=1)

    def needed(target: str, **options) -> bool:
        return needs_code(_chain(target), ChainOptions(**options), cache)

    assert needed("k") and needed("top") and needed("mid", no_session=True)
    assert not needed("nomfa")  # no device: never a code
    assert not needed("k", no_session=True)  # the raw key: no call at all
    top = _chain("top")
    cache.put(mfa_session_name(top), Credentials("ASIA", "s", "t", expires))
    assert not needed("k") and not needed("mid") and not needed("top")
    assert needed("mid", no_session=True)  # signed with the key: the MFA session is no help
    assert needed("k", duration=900)  # a level of its own
    assert needed("long")  # asked for more than role chaining allows: signed with the key
    cache.put(hop_session_name(_chain("mid"), 0, ChainOptions(no_session=True)),
              Credentials("ASIA", "s", "t", expires))
    assert not needed("mid", no_session=True)
    issued = datetime.now(timezone.utc) - timedelta(seconds=3400)  # an hour's session...
    cache.put(mfa_session_name(top), Credentials("ASIA", "s", "t", issued + timedelta(hours=1)),
              issued=str(int(issued.timestamp())))
    assert needed("k") and needed("mid")  # ...within the refresh margin: as good as gone


# --- the calls made, in process ---------------------------------------------------------------


class FakeCodes:
    last_origin = "mfa_process"

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.depth = 0  # how many MFA attempts are open
        self.attempts = 0
        self.prompt = Prompt()  # the budget of failed answers, when codes are "typed"

    def code_for(self, serial: str, chain) -> str:
        self.asked.append(serial)
        return "123456"

    def refused(self) -> int | None:
        return self.prompt.refused() if self.last_origin == PROMPT_ORIGIN else None

    @contextlib.contextmanager
    def attempt(self):
        self.depth += 1
        self.attempts += 1
        try:
            yield
        finally:
            self.depth -= 1


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, tuple, dict]]:
    calls: list[tuple[str, tuple, dict]] = []
    expires = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0)

    def fake(action: str):
        def call(*args, **kwargs) -> Credentials:
            calls.append((action, args, kwargs))
            return Credentials(f"ASIA{len(calls)}", "s", "t", expires)
        return call

    monkeypatch.setattr(sts_module, "get_session_token", fake("GetSessionToken"))
    monkeypatch.setattr(sts_module, "assume_role", fake("AssumeRole"))
    return calls


MASTER = Credentials("AKIAMASTER", "secret")


def _producer(target: str, cache: SessionCache, *, fresh: bool = False,
              **options) -> CredentialChain:
    options.setdefault("region", "eu-west-3")
    options.setdefault("profile", target)
    return CredentialChain(_chain(target), cache, lambda: MASTER, FakeCodes(),
                           ChainOptions(**options), fresh=fresh)


@pytest.fixture
def cache() -> SessionCache:
    return SessionCache(MemoryBackend(settings={"store": uuid.uuid4().hex},
                                      namespace="sessions"), margin=300)


def test_each_call_carries_exactly_what_the_plan_says(sent, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "none"))  # locks: the state dir
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    producer = _producer("top", cache)
    final = producer.get()
    assert producer.calls == ["GetSessionToken", "AssumeRole mid", "AssumeRole top"]
    assert producer.mfa.asked == [K_MFA]
    assert [action for action, _, _ in sent] == ["GetSessionToken", "AssumeRole", "AssumeRole"]
    (_, gst_args, gst_kw), (_, mid_args, mid_kw), (_, top_args, top_kw) = sent
    assert gst_args == (MASTER, "eu-west-3", 28800, K_MFA, "123456")
    assert gst_kw == {"profile": "top", "key_profile": "k"}
    assert mid_args[1:] == ("eu-west-3", "arn:aws:iam::1:role/mid")
    assert mid_args[0].access_key_id == "ASIA1"  # signed with the MFA session
    assert mid_kw == {"duration": None, "session_name": "sess-mid", "external_id": "ext-mid",
                      "serial": None, "code": None, "profile": "top", "key_profile": "k"}
    assert top_args[0].access_key_id == "ASIA2"  # signed with mid's session
    assert top_args[1:] == ("eu-west-3", "arn:aws:iam::1:role/top")
    assert top_kw == {"duration": 1800, "session_name": None, "external_id": None,
                      "serial": None, "code": None, "profile": "top", "key_profile": "k"}
    assert final.access_key_id == "ASIA3"
    assert producer.cached() == final
    # what each level is cached with: `broker list` shows the role ARN
    backend = cache.backend
    stored = {name: {k: v for k, v in backend.get(name).items()
                     if k in ("kind", "profile", "role_arn", "mfa_serial", "key_profile")}
              for name in backend.list()}
    top_chain = _chain("top")
    assert stored == {
        mfa_session_name(top_chain): {"kind": "session", "profile": "k", "mfa_serial": K_MFA,
                                      "key_profile": "k"},
        hop_session_name(top_chain, 0, ChainOptions()): {
            "kind": "role", "profile": "mid", "role_arn": "arn:aws:iam::1:role/mid",
            "key_profile": "k"},
        hop_session_name(top_chain, 1, ChainOptions()): {
            "kind": "role", "profile": "top", "role_arn": "arn:aws:iam::1:role/top",
            "key_profile": "k"},
    }


@pytest.mark.parametrize(("target", "options", "in_attempt"), [
    ("top", {}, ["GetSessionToken"]),
    ("mid", {"no_session": True}, ["AssumeRole mid"]),
    ("nomfa", {}, []),
])
def test_only_the_call_carrying_the_code_is_an_mfa_attempt(
    cache, tmp_path, monkeypatch, target, options, in_attempt
):
    """The reuse guard wraps the STS call that sends the code, once: the code counts as used
    when that call succeeded, whatever happens to the levels built on it."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    producer = _producer(target, cache, **options)
    codes = producer.mfa
    expires = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0)
    inside: list[str] = []

    def fake(action: str):
        def call(*args, **kwargs) -> Credentials:
            name = action if action == "GetSessionToken" else f"{action} {args[2].rsplit('/')[-1]}"
            if codes.depth:
                inside.append(name)
            return Credentials("ASIA", "s", "t", expires)
        return call

    monkeypatch.setattr(sts_module, "get_session_token", fake("GetSessionToken"))
    monkeypatch.setattr(sts_module, "assume_role", fake("AssumeRole"))
    producer.get()
    assert inside == in_attempt
    assert codes.attempts == len(in_attempt) and codes.depth == 0


def test_a_fresh_chain_makes_every_level_again_and_caches_it(sent, cache, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    first = _producer("k", cache).get()
    assert _producer("k", cache).get() == first and len(sent) == 1  # served from the cache
    fresh = _producer("k", cache, fresh=True)
    again = fresh.get()
    assert len(sent) == 2 and fresh.mfa.asked == [K_MFA]  # asked AWS, with a code
    assert again != first and _producer("k", cache).cached() == again  # it replaced the old


def test_a_chain_records_its_key_profile_with_every_session(sent, cache, tmp_path,
                                                            monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert cache.key_profile is None
    _producer("mid", cache).get()  # given the cache for no key in particular
    backend = cache.backend
    assert {backend.get(name)["key_profile"] for name in backend.list()} == {"k"}


def test_a_role_assumed_with_the_key_carries_the_code(sent, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    producer = _producer("mid", cache, no_session=True)
    producer.get()
    ((action, args, kwargs),) = sent
    assert (action, args) == ("AssumeRole", (MASTER, "eu-west-3", "arn:aws:iam::1:role/mid"))
    assert kwargs == {"duration": None, "session_name": "sess-mid", "external_id": "ext-mid",
                      "serial": K_MFA, "code": "123456", "profile": "mid", "key_profile": "k"}


def test_a_key_profile_without_a_device_sends_no_code(sent, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    producer = _producer("nomfa", cache, duration=900)
    assert producer.cached() is None
    creds = producer.get()
    assert sent == [("GetSessionToken", (MASTER, "eu-west-3", 900, None, None),
                     {"profile": "nomfa", "key_profile": "nomfa"})]
    assert producer.mfa.asked == []
    assert producer.cached() == creds
    raw = _producer("k", cache, no_session=True)
    assert raw.get() is MASTER and raw.cached() is None
    assert final_session_name(raw.chain, raw.options) is None


@pytest.fixture
def refusing(monkeypatch) -> dict[str, object]:
    """STS refusing the first ``refusals`` codes; what broker wrote to the terminal."""
    from broker import tty
    from broker.errors import MFACodeRefused

    state: dict[str, object] = {"refusals": 0, "codes": [], "written": []}
    expires = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0)

    def get_session_token(master, region, duration, serial=None, code=None, **kwargs):
        state["codes"].append(code)  # type: ignore[attr-defined]
        if len(state["codes"]) <= state["refusals"]:  # type: ignore[arg-type]
            raise MFACodeRefused("the MFA code was refused", "check the device")
        return Credentials("ASIA", "s", "t", expires)

    monkeypatch.setattr(sts_module, "get_session_token", get_session_token)
    monkeypatch.setattr(tty, "write", state["written"].append)  # type: ignore[attr-defined]
    return state


@pytest.mark.parametrize(("origin", "refusals", "calls", "ok"), [
    ("the prompt", 2, 3, True),  # a typo at the prompt is asked again...
    ("the prompt", 3, 3, False),  # ...three times in all
    ("mfa_process", 1, 1, False),  # a source that is not the prompt is not asked again
])
def test_a_code_aws_refuses_is_asked_again_only_at_the_prompt(
    refusing, cache, tmp_path, monkeypatch, origin, refusals, calls, ok
):
    from broker.errors import MFACodeRefused

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    refusing["refusals"] = refusals
    producer = _producer("k", cache)
    producer.mfa.last_origin = origin
    if ok:
        assert producer.get().access_key_id == "ASIA"
    else:
        with pytest.raises(MFACodeRefused):
            producer.get()
    assert refusing["codes"] == ["123456"] * calls
    assert producer.mfa.asked == [K_MFA] * calls
    assert refusing["written"] == [  # one line before each code asked again
        f"broker: the MFA code was refused; try again ({left} {'try' if left == 1 else 'tries'} "
        "left)\n" for left in (2, 1)[:calls - 1]
    ]


def test_a_fresh_chain_assumes_every_role_again(sent, cache, tmp_path, monkeypatch):
    """`fresh` reaches every level, not only the MFA session: no cached role is served."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    first = _producer("top", cache).get()
    assert _producer("top", cache).get() == first and len(sent) == 3  # served from the cache
    fresh = _producer("top", cache, fresh=True)
    again = fresh.get()
    assert fresh.calls == ["GetSessionToken", "AssumeRole mid", "AssumeRole top"]
    assert again != first and _producer("top", cache).cached() == again


def test_problems_are_what_exec_would_refuse_with_the_next_step():
    from broker.aws.chain import problems

    assert problems(_chain("top")) == []  # no options: the defaults, as `list` runs it
    assert problems(_chain("long-next")) == [
        f"duration_seconds in {P} [profile long-next]: 7200s exceeds the 1 hour limit AWS sets "
        "for a role assumed with another role's session (role chaining: k -> long -> "
        "long-next); choose at most 3600 seconds"
    ]
    assert problems(_chain("k"), ChainOptions(no_session=True, duration=900)) == [
        "--duration has no effect with --no-session on a profile without a role; "
        "drop one of the two flags"
    ]


def test_options_from_settings_take_the_session_duration_from_the_config():
    from broker.config import Settings

    options = ChainOptions.from_settings(
        Settings(P, session_duration=5400), duration=900, no_session=True,
        region="eu-north-1", profile="top",
    )
    assert (options.duration, options.no_session, options.session_duration, options.region,
            options.profile) == (900, True, 5400, "eu-north-1", "top")


def test_the_device_kept_with_the_key_signs_the_keys_own_call(ctx, sts, monkeypatch):
    """A key profile that names no mfa_serial but whose key item names one (a broker_item's
    ``mfa serial``): GetSessionToken carries that device and a code; without the hook
    (``key_serial``) broker would ask STS for a session without MFA."""
    import os
    import subprocess

    monkeypatch.setattr(credentials.StoredKey, "serial", lambda self: DEVICE)
    code = subprocess.run([os.environ["BROKER_TEST_MFA"], DEVICE], capture_output=True,
                          text=True, check=True).stdout.strip()
    credentials.obtain(ctx, "plain", mfa_code=code)
    (call,) = sts.actions("GetSessionToken")
    assert call.get("SerialNumber") == DEVICE and call.get("TokenCode") == code
