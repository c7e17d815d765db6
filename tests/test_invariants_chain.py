"""Invariants of the credential chain: source_profile loops of any length are refused,
and every duration limit holds at its boundary, checked on the DurationSeconds that is
actually sent (the local STS records each request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.aws.profiles import parse, resolve_chain
from broker.errors import ConfigError, UsageError
from broker.services import credentials
from tests.conftest import ACCOUNT
from tests.support.keyring_cache import broker_context, default_keys

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
    return broker_context(Path(in_home.env["BROKER_CONFIG"]), default_keys("k", "plain"),
                          keyring=in_home.keyring)


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
