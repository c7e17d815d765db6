"""Fixtures for the onepassword backend: the SDK's real Python layer over the emulator.

1Password cannot be reached from here, so every test (except the opt-in live one)
routes the SDK's native core to :mod:`broker_onepassword.testing`, with
its own state file, its own HOME and XDG directories (so the backend's id state
file is fresh), and the emulator's token in ``OP_SERVICE_ACCOUNT_TOKEN``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from broker_onepassword import OnePasswordBackend
from broker_onepassword.testing import SITE, OnePasswordEmulator, child_environment, installed

from broker.backend import Resolver

#: Put on PYTHONPATH (with BROKER_OP_EMULATOR set) to route child processes' SDK calls.
OP_SITE = SITE
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and XDG dirs; no 1Password or emulator settings inherited."""
    home = tmp_path / "op-home"  # not "home": the end-to-end fixture makes that one
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (("XDG_STATE_HOME", ".local/state"), ("XDG_CONFIG_HOME", ".config"),
                     ("XDG_CACHE_HOME", ".cache")):
        monkeypatch.setenv(var, str(home / sub))
    for var in ("XDG_RUNTIME_DIR", "OP_SERVICE_ACCOUNT_TOKEN", "BROKER_OP_EMULATOR",
                "BROKER_CONFIG", "BROKER_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    # A token kept by `broker backend login` for the real user must not leak in here.
    monkeypatch.setenv("BROKER_DISABLED_PLUGINS", "keyctl")
    return home


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OnePasswordEmulator]:
    """A fresh fake 1Password account; its token is in OP_SERVICE_ACCOUNT_TOKEN."""
    with installed(tmp_path / "op-state.json") as emu:
        monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", emu.token)
        yield emu


@pytest.fixture
def make_backend(emulator: OnePasswordEmulator) -> Iterator[Callable[..., OnePasswordBackend]]:
    """``make_backend(namespace="credentials", resolver=None, **settings)``; closed after."""
    made: list[OnePasswordBackend] = []

    def make(namespace: str = "credentials", resolver: Resolver | None = None,
             **settings: Any) -> OnePasswordBackend:
        settings.setdefault("vault", "Broker")
        backend = OnePasswordBackend(settings=settings, namespace=namespace, resolver=resolver)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def child_env(emulator: OnePasswordEmulator, isolated_home: Path) -> dict[str, str]:
    """The environment for a child process that shares this test's fake account."""
    return {**os.environ, **child_environment(emulator.path, os.environ.get("PYTHONPATH"))}
