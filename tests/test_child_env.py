"""A child of `exec` / `exec --server` gets no secret it was not meant to have.

broker's own secret inputs sit in the environment it was started with: the 1Password
service-account token, the variable an ``env:NAME`` passphrase reference names, a
``broker_totp = env:NAME`` seed, aws-vault's file passphrase. Every program in the shell
`exec` starts could read them, and with them the long-lived key. They are withheld
(docs/security.md, "What a child process receives"); everything else is passed on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from broker.aws.credentials import Credentials
from broker.aws.profiles import parse, resolve_chain
from broker.config import Settings
from broker.importers import aws_vault
from broker.services import present
from broker.services import server as server_service
from broker.services.credentials import Resolved
from tests.support.contexts import keyctl_usable

#: In broker's config: where a passphrase and a token come from.
SETTINGS = """
[backends.pass]
passphrase = "env:BROKER_TEST_GPG_PASSPHRASE"

[backends.onepassword]
token = "ENV:BROKER_TEST_OP_TOKEN"
"""
#: In ~/.aws/config: a TOTP seed from the environment (on a profile exec does not use).
TOTP_LINE = "broker_totp = env:BROKER_TEST_TOTP_SEED\n"

SECRETS = {
    "OP_SERVICE_ACCOUNT_TOKEN": "ops_not-a-real-token-0123456789",
    "AWS_VAULT_FILE_PASSPHRASE": "aws-vault file store passphrase",
    "BROKER_TEST_GPG_PASSPHRASE": "gpg passphrase",
    "BROKER_TEST_OP_TOKEN": "ops_another-token",
    "BROKER_TEST_TOTP_SEED": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
}
KEPT = {"BROKER_TEST_ORDINARY": "passed on", "EDITOR": "vi"}

DUMP = "import json, os; print(json.dumps(dict(os.environ)))"


def _settings() -> Settings:
    return Settings(path=Path("/x"), backends={
        "pass": {"passphrase": "env:BROKER_TEST_GPG_PASSPHRASE", "gpg": "gpg"},
        "onepassword": {"token": "ENV:BROKER_TEST_OP_TOKEN", "nested": {"list": ["env:IN_A_LIST"]}},
        "keyctl": {"keyring": "env-is-not-a-reference-here"},
    })


def _aws():
    return parse(
        "[profile a]\nbroker_totp = env:SEED_A\n[profile b]\nbroker_totp = op://V/I/totp\n"
        "[profile c]\nregion = eu-west-1\n",
        Path("/x"),
    )


def test_the_withheld_variables():
    from broker import childenv

    assert childenv.withheld_variables(_settings(), _aws()) == {
        "OP_SERVICE_ACCOUNT_TOKEN", "AWS_VAULT_FILE_PASSPHRASE",
        "BROKER_TEST_GPG_PASSPHRASE", "BROKER_TEST_OP_TOKEN", "IN_A_LIST", "SEED_A",
    }


def _resolved() -> Resolved:
    chain = resolve_chain(parse("[profile p]\n", Path("/x")), "p")
    return Resolved("p", Credentials("ASIAX", "secret", "token"), None, chain, [])


def test_exec_and_server_environments_withhold_them():
    from broker import childenv

    withheld = childenv.withheld_variables(_settings(), _aws())
    inherited = {**KEPT, "OP_SERVICE_ACCOUNT_TOKEN": "x", "SEED_A": "y", "IN_A_LIST": "z"}
    env = present.child_environment(_resolved(), inherited, withheld)
    assert {k: env.get(k) for k in inherited} == {**dict.fromkeys(inherited), **KEPT}
    env = server_service.child_environment("p", None, "http://127.0.0.1:1/", "t", inherited,
                                           withheld)
    assert {k: env.get(k) for k in inherited} == {**dict.fromkeys(inherited), **KEPT}


def test_by_default_the_settings_on_disk_decide(tmp_path, monkeypatch):
    config = tmp_path / "config.toml"
    config.write_text(SETTINGS)
    aws = tmp_path / "aws-config"
    aws.write_text("[profile base]\n" + TOTP_LINE)
    monkeypatch.setenv("BROKER_CONFIG", str(config))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    env = present.child_environment(_resolved(), {**SECRETS, **KEPT})
    assert not set(SECRETS) & set(env)
    assert {k: env[k] for k in KEPT} == KEPT


# --- end to end: what the child itself sees ---------------------------------------------------


@pytest.fixture
def configured(home):
    if not keyctl_usable():
        pytest.skip("the kernel keyring is not usable here")
    home.broker_config.write_text(home.broker_config.read_text() + SETTINGS)
    home.aws_config.write_text(
        home.aws_config.read_text().replace("[profile base]\n", "[profile base]\n" + TOTP_LINE)
    )
    home.add_key("dev")
    return home


def _check(child: dict[str, str]) -> None:
    leaked = sorted(set(SECRETS) & set(child))
    assert leaked == [], f"broker's secret inputs reached the child: {leaked}"
    assert {k: child.get(k) for k in KEPT} == KEPT
    assert child["BROKER_PROFILE"] == "dev"


def test_exec_child_cold_and_warm(configured):
    for _ in ("cold", "warm: the cached fast path"):
        result = configured.run("exec", "dev", "--", sys.executable, "-c", DUMP,
                                env={**SECRETS, **KEPT}, check=True)
        _check(json.loads(result.stdout))


def test_exec_server_child(configured):
    result = configured.run("exec", "--server", "dev", "--", sys.executable, "-c", DUMP,
                            env={**SECRETS, **KEPT}, check=True)
    child = json.loads(result.stdout)
    _check(child)
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in child


# --- aws-vault's pass store: the real `pass` runs gpg and git -----------------------------------


def test_the_pass_command_for_aws_vault_gets_an_allow_list(tmp_path, monkeypatch):
    for name, value in {**SECRETS, **KEPT}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PASSWORD_STORE_GPG_OPTS", "--no-tty")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "me")
    seen: dict[str, str] = {}

    def run(argv, env, **kwargs):
        seen.update(env)
        return subprocess.CompletedProcess(argv, 1, b"", b"stopped here")

    monkeypatch.setattr(aws_vault.shutil, "which", lambda command: "/usr/bin/pass")
    monkeypatch.setattr(aws_vault.subprocess, "run", run)
    store = aws_vault.PassStore(tmp_path / "store")
    with pytest.raises(Exception, match="stopped here"):
        store.read("dev")
    assert not set(SECRETS) & set(seen) and not set(KEPT) & set(seen)
    assert seen["PASSWORD_STORE_DIR"] == str(tmp_path / "store")
    assert seen["PASSWORD_STORE_GPG_OPTS"] == "--no-tty" and seen["GIT_AUTHOR_NAME"] == "me"
