"""Invariants of what a child is given: every inherited credential variable scrubbed,
the region chosen by one precedence order, no nesting (on a warm cache too), and
secret field names never shown."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from itertools import combinations
from pathlib import Path

import pytest

from broker.aws.credentials import Credentials
from broker.aws.profiles import parse, resolve_chain
from broker.backend import SECRET_FIELDS, Item
from broker.services import credentials, present
from broker.services import server as server_service
from broker.services.credentials import Resolved
from tests.support.contexts import default_keys, home_context, keyctl_usable

#: Every inherited variable that could shadow or leak into the credentials broker sets:
#: written out here so that dropping one from the product's list fails a test.
EXPECTED_SCRUBBED = frozenset({
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CREDENTIAL_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_SESSION_EXPIRATION",
    "AWS_VAULT",
})
#: Of those, what broker sets again itself (exec / exec --server), with its own values.
SET_BY_EXEC = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_CREDENTIAL_EXPIRATION"}
SET_BY_SERVER = {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN"}

INHERITED = {name: f"inherited-{name.lower()}" for name in sorted(EXPECTED_SCRUBBED)}


def test_the_scrubbed_list_is_exactly_the_expected_one():
    assert len(present.SCRUBBED) == len(set(present.SCRUBBED)) == 18
    assert frozenset(present.SCRUBBED) == EXPECTED_SCRUBBED


def _resolved(session: bool = True, region: str | None = "eu-west-1") -> Resolved:
    chain = resolve_chain(parse("[profile p]\n", Path("/x")), "p")
    if session:
        creds = Credentials("ASIABROKER", "broker-secret", "broker-token",
                            datetime.now(timezone.utc) + timedelta(hours=1))
    else:
        creds = Credentials("AKIABROKER", "broker-secret")
    return Resolved("p", creds, region, chain, [])


@pytest.mark.parametrize("name", sorted(EXPECTED_SCRUBBED))
def test_exec_scrubs_each_inherited_variable(name):
    env = present.child_environment(_resolved(), {**INHERITED, "HOME": "/h"})
    if name in SET_BY_EXEC:
        assert env[name] != INHERITED[name]
    else:
        assert name not in env
    assert env["HOME"] == "/h"  # everything else is kept


@pytest.mark.parametrize("name", sorted(EXPECTED_SCRUBBED))
def test_exec_with_the_long_lived_key_leaves_no_inherited_token(name):
    env = present.child_environment(_resolved(session=False), INHERITED)
    if name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name] != INHERITED[name]
    else:  # no session token, no expiry of broker's own: none inherited either
        assert name not in env


@pytest.mark.parametrize("name", sorted(EXPECTED_SCRUBBED))
def test_exec_server_scrubs_each_inherited_variable(name):
    env = server_service.child_environment(
        "p", "eu-west-1", "http://127.0.0.1:1/", "tok", {**INHERITED, "HOME": "/h"}
    )
    if name in SET_BY_SERVER:
        assert env[name] != INHERITED[name]
    else:
        assert name not in env  # and so no key at all: the endpoint serves them
    assert env["HOME"] == "/h"


#: broker's own secret inputs by convention: never handed to the user's command.
SECRET_INPUTS = ("OP_SERVICE_ACCOUNT_TOKEN", "AWS_VAULT_FILE_PASSPHRASE")


@pytest.mark.parametrize("name", SECRET_INPUTS)
def test_brokers_own_secret_inputs_never_reach_the_child(name):
    inherited = {name: "s3cr3t", "HOME": "/h"}
    assert name not in present.child_environment(_resolved(), inherited)
    assert name not in server_service.child_environment("p", None, "u", "t", inherited)


def test_the_child_knows_its_session():
    env = present.child_environment(_resolved(), {})
    assert env["BROKER_PROFILE"] == "p"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    env = server_service.child_environment("p", None, "u", "t", {"AWS_REGION": "x"})
    assert env["BROKER_PROFILE"] == "p"


DUMP = "import json, os; print(json.dumps(dict(os.environ)))"


def _check_child(child: dict[str, str], set_here: set[str]) -> None:
    leaked = sorted(n for n in EXPECTED_SCRUBBED - set_here if n in child)
    assert leaked == [], f"inherited variables reached the child: {leaked}"
    for name in set_here:
        assert child[name] != INHERITED[name], name


@pytest.fixture
def keyctl_home(home):
    if not keyctl_usable():
        pytest.skip("the kernel keyring is not usable here")
    return home


def test_exec_child_has_none_of_the_inherited_variables_cold_and_warm(keyctl_home):
    home = keyctl_home
    home.add_key("dev")
    for _ in ("cold", "warm (the cached fast path)"):
        result = home.run("exec", "dev", "--", sys.executable, "-c", DUMP, env=INHERITED,
                          check=True)
        _check_child(json.loads(result.stdout), SET_BY_EXEC)


def test_exec_server_child_has_none_of_the_inherited_variables(keyctl_home):
    home = keyctl_home
    home.add_key("dev")
    result = home.run("exec", "--server", "dev", "--", sys.executable, "-c", DUMP,
                      env=INHERITED, check=True)
    child = json.loads(result.stdout)
    _check_child(child, SET_BY_SERVER)
    assert "AWS_ACCESS_KEY_ID" not in child


# --- nesting -------------------------------------------------------------------------------


@pytest.mark.parametrize("server", [False, True], ids=["exec", "exec --server"])
def test_nesting_is_refused_on_a_warm_cache(keyctl_home, tmp_path, server):
    home = keyctl_home
    home.add_key("dev")
    home.run("export", "dev", check=True)  # warm: the fast path would serve exec
    marker = tmp_path / "ran"
    args = ["exec", *(["--server"] if server else []), "dev", "--", "touch", str(marker)]
    result = home.run(*args, env={"BROKER_PROFILE": "outer"})
    assert result.returncode == 11, result.stderr
    assert "already inside a broker session for profile 'outer'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()  # the command never ran
    home.run(*args, check=True)  # and without the variable, it does
    assert marker.exists()


def test_nesting_is_refused_on_a_cold_cache(keyctl_home, tmp_path, sts):
    home = keyctl_home
    home.add_key("dev")
    marker = tmp_path / "ran"
    result = home.run("exec", "dev", "--", "touch", str(marker), env={"BROKER_PROFILE": "x"})
    assert result.returncode == 11
    assert not marker.exists()
    assert sts.actions() == []  # refused before any STS call or MFA prompt
    assert home.mfa_prompts() == 0


# --- region precedence ---------------------------------------------------------------------

LEVELS = ["--region", "AWS_REGION", "AWS_DEFAULT_REGION", "profile", "[default]"]
VALUES = dict(zip(LEVELS, ["sa-east-1", "ca-central-1", "eu-north-1", "eu-west-1",
                           "ap-northeast-1"], strict=True))


def _region_home(in_home, monkeypatch, levels: tuple[str, ...]):
    """A config and environment where exactly ``levels`` give a region."""
    text = "[profile regional]\n"
    if "profile" in levels:
        text += f"region = {VALUES['profile']}\n"
    if "[default]" in levels:
        text += f"\n[default]\nregion = {VALUES['[default]']}\n"
    in_home.aws_config.write_text(text)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if name in levels:
            monkeypatch.setenv(name, VALUES[name])
        else:
            monkeypatch.delenv(name, raising=False)
    ctx = home_context(in_home, default_keys("regional"))
    flag = VALUES["--region"] if "--region" in levels else None
    return ctx, flag


@pytest.mark.parametrize(
    "levels",
    [*combinations(LEVELS, 2), *((level,) for level in LEVELS)],
    ids=lambda levels: " over ".join(levels),
)
def test_region_precedence_pairwise(in_home, monkeypatch, sts, levels):
    """Each level beats every one below it, with both set."""
    ctx, flag = _region_home(in_home, monkeypatch, levels)
    expected = VALUES[levels[0]]
    resolved = credentials.obtain(ctx, "regional", region=flag)
    assert resolved.region == expected
    cached = credentials.cached(ctx, "regional", flag)  # the fast path's way
    assert cached is not None and cached.region == expected
    env = present.child_environment(resolved, {})
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == expected


def test_no_region_anywhere_sets_none(in_home, monkeypatch, sts):
    ctx, flag = _region_home(in_home, monkeypatch, ())
    resolved = credentials.obtain(ctx, "regional", region=flag)
    assert resolved.region is None
    env = present.child_environment(resolved, {"AWS_REGION": "kept-as-is"})
    assert env["AWS_REGION"] == "kept-as-is"  # not scrubbed, not invented


def test_region_flag_beats_the_environment_on_the_command_line(keyctl_home):
    home = keyctl_home
    home.add_key("plain")
    env = {"AWS_REGION": "ca-central-1", "AWS_DEFAULT_REGION": "eu-north-1"}
    out = home.run("export", "plain", "--region", "sa-east-1", env=env, check=True).stdout
    assert "AWS_REGION=sa-east-1\n" in out and "AWS_DEFAULT_REGION=sa-east-1\n" in out
    # warm now: the fast path (no flag) puts the environment above the profile
    out = home.run("export", "plain", env=env, check=True).stdout
    assert "AWS_REGION=ca-central-1\n" in out
    out = home.run("export", "plain", env={"AWS_DEFAULT_REGION": "eu-north-1"},
                   check=True).stdout
    assert "AWS_REGION=eu-north-1\n" in out
    out = home.run("export", "plain", check=True).stdout
    assert "AWS_REGION=us-west-2\n" in out  # the profile's own
    out = home.run("exec", "plain", "--region", "sa-east-1", "--", "sh", "-c",
                   "echo $AWS_REGION $AWS_DEFAULT_REGION", env=env, check=True).stdout
    assert out.split() == ["sa-east-1", "sa-east-1"]


# --- secret field names --------------------------------------------------------------------

EXPECTED_SECRET_FIELDS = frozenset(
    {"aws_secret_access_key", "aws_session_token", "totp", "secret"}
)


def test_the_secret_field_list_is_exactly_the_expected_one():
    assert frozenset(SECRET_FIELDS) == EXPECTED_SECRET_FIELDS


@pytest.mark.parametrize("name", sorted(EXPECTED_SECRET_FIELDS))
def test_a_secret_field_is_never_shown(name):
    value = "s3cr3t-value-0123456789"
    item = Item({"aws_access_key_id": "AKIASHOWN", name: value})
    assert value not in repr(item) and value not in str(item)
    assert "AKIASHOWN" in repr(item)  # what is not secret stays readable


def test_credentials_never_show_their_secret_parts():
    creds = Credentials("ASIASHOWN", "s3cr3t-secret", "s3cr3t-token")
    assert "s3cr3t" not in repr(creds) and "s3cr3t" not in str(creds)
    assert "ASIASHOWN" in repr(creds)
