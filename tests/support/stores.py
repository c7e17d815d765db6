"""The test home's backends, set up on demand, and the CLI run in-process over them.

:class:`Stores` gives a test the backends it names (or skips it saying why, when this
machine lacks what a backend needs: a plugin that fails to import fails the test), with
the in-memory and directory backends of :mod:`tests.support.backends` beside the
installed ones.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from broker import config
from broker.backend import Backend, Item
from broker.cli import app
from broker.registry import Registry
from broker.services.context import Context
from broker.testing.gnupg import throwaway_gnupg_home
from broker.testing.memory import MemoryBackend
from tests.support.backends import IN_PROCESS
from tests.support.pass_store import pass_run


def _keyctl_reason() -> str | None:
    # The plugin ships with broker: failing to import it is a failure, never a skip.
    from broker_keyctl import KeyctlBackend

    availability = KeyctlBackend().availability()
    return None if availability.ok else availability.reason


class Stores:
    """The test home's broker config, backends set up on demand, and an in-process CLI."""

    def __init__(self, home: Any, monkeypatch: Any, capsys: Any, tmp_path: Path) -> None:
        self.home = home
        self.monkeypatch = monkeypatch
        self.capsys = capsys
        self.tmp_path = tmp_path
        self.ready: set[str] = set()
        self.cleanups: list[Callable[[], None]] = []
        self.extra = dict(IN_PROCESS)

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            cleanup()
        MemoryBackend.reset()

    def add_config(self, text: str) -> None:
        with open(self.home.broker_config, "a", encoding="utf-8") as handle:
            handle.write("\n" + text + "\n")

    def setenv(self, key: str, value: str) -> None:
        self.monkeypatch.setenv(key, value)
        self.home.env[key] = value

    def provide(self, name: str) -> None:
        """Make backend ``name`` usable in this home, or skip the test saying why."""
        if name in self.ready:
            return
        getattr(self, f"_provide_{name}")()
        self.ready.add(name)

    def _provide_memory(self) -> None:
        self.add_config(f'[backends.memory]\nstore = "{uuid.uuid4().hex}"')

    def _provide_memory2(self) -> None:
        self.add_config(f'[backends.memory2]\nstore = "{uuid.uuid4().hex}"')

    def _provide_dirstore(self) -> None:
        self.add_config(f'[backends.dirstore]\npath = "{self.tmp_path / "dirstore"}"')

    def _provide_nolist(self) -> None:
        self.add_config(f'[backends.nolist]\npath = "{self.tmp_path / "nolist"}"')

    def _provide_keyctl(self) -> None:
        reason = _keyctl_reason()
        if reason:
            pytest.skip(f"kernel keyring unavailable: {reason}")

    def _provide_pass(self) -> None:
        from broker_pass import PassBackend  # noqa: F401 - an import error fails the test
        stack = contextlib.ExitStack()
        self.cleanups.append(stack.close)
        gnupg = stack.enter_context(throwaway_gnupg_home())
        store = self.home.root / ".password-store"
        pass_run(gnupg, store, "init", gnupg.key.uid)
        self.setenv("GNUPGHOME", str(gnupg.path))
        self.setenv("PASSWORD_STORE_DIR", str(store))
        self._require_available("pass")

    def _provide_onepassword(self) -> None:
        # Both ship with broker: an import error fails the test, never skips it. Importing
        # the emulator routes this process's SDK calls too (the in-process CLI's).
        from broker_onepassword import OnePasswordBackend  # noqa: F401
        from broker_onepassword import testing as emulator

        state = self.tmp_path / "op-state.json"
        routed = emulator.child_environment(state, self.home.env.get("PYTHONPATH"))
        for key, value in routed.items():
            self.setenv(key, value)
        self.setenv("OP_SERVICE_ACCOUNT_TOKEN", emulator.DEFAULT_TOKEN)
        self.monkeypatch.syspath_prepend(str(emulator.SITE))
        self._require_available("onepassword")

    def _require_available(self, name: str) -> None:
        registry = self.context().registry
        loaded = registry.load(name)
        if loaded.broken:  # a plugin that does not import is a failure, never a skip
            pytest.fail(f"the {name} plugin is broken: {loaded.error}")
        availability = registry.availability(name)
        if not availability.ok:
            pytest.skip(f"{name} is not usable in the test home: {availability.reason}")

    def context(self) -> Context:
        settings = config.load()
        registry = Registry(settings.backends, settings.disabled_plugins, extra=self.extra)
        return Context(settings, registry)

    def backend(self, name: str, namespace: str = "credentials") -> Backend:
        return self.context().backend(name, namespace)

    def seed(self, name: str, items: dict[str, Item]) -> None:
        store = self.backend(name)
        for profile, item in items.items():
            store.set(profile, item)

    def contents(self, name: str, names: list[str]) -> dict[str, Item | None]:
        store = self.backend(name)
        return {profile: store.get(profile) for profile in names}

    def broker(self, *args: str) -> tuple[int, str, str]:
        """Run the CLI in this process; (exit code, stdout, stderr)."""
        self.capsys.readouterr()
        code = app.run(list(args), context=self.context())
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err



def table_rows(out: str) -> dict[str, str]:
    """PROFILE -> the rest of its row, from a summary table on stdout."""
    rows = {}
    for line in out.splitlines()[1:]:
        profile, _, rest = line.partition("  ")
        rows[profile.strip()] = rest.strip()
    return rows
