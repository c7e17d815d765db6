"""The onepassword backend's own rows in `broker doctor` (OnePasswordBackend.checks).

Local only: the token's source, the desktop app from inside WSL, vaults a service
account can never read. No emulator is needed: no 1Password call is made.
"""

from __future__ import annotations

from pathlib import Path

import broker_onepassword._platform as platform
import pytest
from broker_onepassword import TOKEN_VARIABLE, OnePasswordBackend

from broker.backend import Check
from broker.errors import NotFound
from tests.support.resolvers import KeptTokens


def _nothing_kept(reference: str) -> str:
    raise NotFound(f"no {reference}", "store it first")


def _rows(**settings: str) -> dict[str, Check]:
    backend = OnePasswordBackend(settings=settings, resolver=_nothing_kept)
    return {c.name: c for c in backend.checks(True)}


@pytest.fixture
def wsl(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Set ``wsl[0] = True`` to be inside WSL."""
    inside = [False]
    monkeypatch.setattr(platform, "in_wsl", lambda: inside[0])
    return inside


def test_not_used_is_one_row() -> None:
    assert OnePasswordBackend().checks(False) == [Check("1Password", "ok", "not used")]


def test_token_sources(monkeypatch: pytest.MonkeyPatch, wsl: list[bool]) -> None:
    wsl[0] = True  # no token, no op.exe: op.exe is the way in, a token the other one
    rows = _rows()
    cli = rows["1Password CLI"]
    assert "1Password token" not in rows
    assert cli.status == "fail" and cli.summary.startswith("not found (looked for op.exe")
    assert cli.fix.startswith("in Windows: `winget install 1Password.1PasswordCLI`")
    assert "docs/wsl2.md" in cli.fix and "broker backend login onepassword" in cli.fix
    assert "account =" not in cli.fix  # the SDK's desktop-app link cannot work in WSL

    wsl[0] = False
    token = _rows()["1Password token"]  # no token, no account: no desktop app is claimed
    assert token.status == "fail" and "no desktop app account" in token.summary
    assert "desktop app is used" not in token.summary

    monkeypatch.setenv(TOKEN_VARIABLE, "ops_abc")
    assert _rows()["1Password token"] == Check("1Password token", "ok", f"from {TOKEN_VARIABLE}")

    monkeypatch.setenv(TOKEN_VARIABLE, "not-a-token")
    token = _rows()["1Password token"]
    assert token.status == "fail" and "not-a-token" not in token.summary + token.fix

    monkeypatch.delenv(TOKEN_VARIABLE)
    kept = OnePasswordBackend(resolver=KeptTokens({"test:onepassword-token": "ops_kept"}))
    row = kept.checks(True)[0]  # found where `backend login` keeps it, whatever the store
    assert row.status == "ok" and "broker backend login onepassword" in row.summary
    assert "test:onepassword-token" in row.summary

    assert _rows(token="env:MY_TOKEN")["1Password token"].summary == (
        "from the reference env:MY_TOKEN"
    )
    assert _rows(account="me@example.com")["1Password token"].status == "ok"
    wsl[0] = True  # the desktop app's SDK link cannot work in WSL: op.exe is named
    assert _rows(account="me@example.com")["1Password CLI"].status == "fail"
    assert _rows(account="me@example.com", transport="sdk")["1Password token"].status == "fail"


def test_vaults_a_service_account_can_never_read(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[backends.pass]\npassphrase = "op://Private/GPG key/password"\n')
    monkeypatch.setenv("BROKER_CONFIG", str(config))
    monkeypatch.setenv(TOKEN_VARIABLE, "ops_x")
    vault = _rows()["1Password vault"]
    assert vault.status == "fail" and "op://Private/GPG key/password" in vault.summary
    assert "vault = 'Personal'" in _rows(vault="Personal")["1Password vault"].summary
    assert "1Password vault" not in _rows(account="me@example.com")  # the app reads them all
    config.write_text('[backends.pass]\npassphrase = "op://AWS/GPG key/password"\n')
    assert "1Password vault" not in _rows(vault="AWS")
