"""gpg, the gpg-agent it starts, and git (with the hooks it runs from the store) get a
short allow-list of broker's environment, never a secret broker was given: a gpg-agent
keeps its environment for its whole life, and a hook in the store runs whatever it likes.
A secret typed where a reference belongs is never echoed back by the pass backend."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from broker_pass import PassBackend
from broker_pass._gpg import gpg_environment

from broker.backend import Item
from broker.errors import BrokerError

#: broker's own secret inputs, as they sit in the user's environment.
SECRETS = {
    "OP_SERVICE_ACCOUNT_TOKEN": "ops_not-a-real-token-0123456789",
    "BROKER_TEST_GPG_PASSPHRASE": "the passphrase an env: reference names",
    "AWS_VAULT_FILE_PASSPHRASE": "aws-vault file store passphrase",
    "SOME_OTHER_SECRET": "anything else in the environment",
}

ITEM = Item(aws_access_key_id="AKIAHELPERENV0000000", aws_secret_access_key="s3cr3t/key")


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")


def _environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def test_gpg_gets_an_allow_list(store: Any, secrets_in_env: None) -> None:
    env = gpg_environment()
    assert not set(SECRETS) & set(env)
    assert env["GNUPGHOME"] == store.gnupghome and env["HOME"] == str(store.home)
    assert env["PATH"] == os.environ["PATH"] and env["LC_ALL"] == "C.UTF-8"


def test_the_gpg_agent_broker_starts_never_holds_a_secret(store: Any, secrets_in_env: None) -> None:
    backend = store.backend()
    backend.set("dev", ITEM)
    assert backend.get("dev") == ITEM  # gpg has run and started its agent
    answer = subprocess.run(
        ["gpg-connect-agent", "--homedir", store.gnupghome, "--no-autostart",
         "getinfo pid", "/bye"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    pid = int(next(line.split()[1] for line in answer.splitlines() if line.startswith("D ")))
    agent = _environ_of(pid)
    assert not set(SECRETS) & set(agent), sorted(set(SECRETS) & set(agent))
    assert agent["GNUPGHOME"] == store.gnupghome


def test_git_and_its_hooks_never_see_a_secret(
    store: Any, secrets_in_env: None, tmp_path: Path
) -> None:
    subprocess.run(["git", "-C", str(store.store), "init", "-q"], check=True)
    seen = tmp_path / "hook-env"
    hook = store.store / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\nenv > '{seen}'\n")
    hook.chmod(0o755)
    store.backend().set("dev", ITEM)
    assert seen.exists(), "the hook did not run"
    hook_env = dict(
        line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line
    )
    assert not set(SECRETS) & set(hook_env), sorted(set(SECRETS) & set(hook_env))
    assert hook_env["HOME"] == str(store.home)


def test_a_literal_typed_as_the_passphrase_reference_is_never_echoed(store: Any) -> None:
    literal = "op:MyLiteralPassw0rd"  # a passphrase typed where its reference belongs
    store.backend().set("dev", ITEM)  # written with the test passphrase reference
    backend = PassBackend(settings={"passphrase": literal}, resolver=lambda _: "wrong")
    assert "MyLiteralPassw0rd" not in " ".join(backend.describe().values())
    with pytest.raises(BrokerError) as raised:
        backend.get("dev")  # the passphrase it resolves to is refused by gpg
    assert "rejected" in raised.value.message
    assert "MyLiteralPassw0rd" not in str(raised.value)
