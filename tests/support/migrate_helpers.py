"""Helpers for the migrate and import tests.

* :class:`DirBackend`: a small persistent backend (one JSON file per item), so
  that crash tests can kill a process between two backends that both outlive it;
  registered for subprocesses through a dist-info on PYTHONPATH.
* :func:`crash_main`: runs the broker CLI with the migrate service's checkpoint
  replaced so the process SIGKILLs itself at a chosen step (see ``__main__``).
* GnuPG / pass set-up for throwaway homes.
* :class:`Stores`: the test home's backends, set up on demand (or the test is
  skipped saying why, when this machine lacks what a backend needs: a plugin that
  fails to import fails the test), and the CLI run in-process with the in-memory backends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from broker import config
from broker.backend import (
    ACCESS_KEY_ID,
    MFA_SERIAL,
    SECRET_ACCESS_KEY,
    TOTP,
    Availability,
    Backend,
    Capability,
    Item,
)
from broker.cli import app
from broker.registry import Registry
from broker.services.context import Context
from broker.testing.memory import MemoryBackend

REPO = Path(__file__).resolve().parents[2]


def sample_items(count: int = 3, tag: str = "") -> dict[str, Item]:
    """Items with every kind of field: key, MFA serial, TOTP seed, an unknown one."""
    items = {}
    for index in range(count):
        items[f"prof{index}{tag}"] = Item(
            {
                ACCESS_KEY_ID: f"AKIAMIGRATE{index:04d}TEST{tag.upper()}",
                SECRET_ACCESS_KEY: f"sec/ret+{index}=with/odd+chars{tag}",
                MFA_SERIAL: f"arn:aws:iam::123456789012:mfa/user{index}",
                TOTP: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
                "note": f"kept as is: ünïcødé {index}",
            }
        )
    return items


class DirBackend(Backend):
    """One JSON file per item under ``settings["path"]``, written atomically."""

    name: ClassVar[str] = "dirstore"
    description: ClassVar[str] = "test backend: JSON files in a directory"
    capabilities: ClassVar[Capability] = Capability.LIST | Capability.PERSISTENT

    def _dir(self) -> Path:
        return Path(str(self.settings["path"])) / self.namespace

    def _file(self, name: str) -> Path:
        return self._dir() / (name.encode().hex() + ".json")

    def availability(self) -> Availability:
        if "path" not in self.settings:
            return Availability(False, "dirstore: set path under [backends.dirstore]")
        return Availability(True)

    def get(self, name: str) -> Item | None:
        try:
            return Item(json.loads(self._file(name).read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None

    def set(self, name: str, item: Item, *, expires_at: datetime | None = None) -> None:
        self._dir().mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self._dir(), prefix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(dict(item), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._file(name))

    def delete(self, name: str) -> bool:
        try:
            self._file(name).unlink()
            return True
        except FileNotFoundError:
            return False

    def list(self) -> list[str]:
        if not self._dir().is_dir():
            return []
        return sorted(bytes.fromhex(p.stem).decode() for p in self._dir().glob("*.json"))


class UnlistedDirBackend(DirBackend):
    """The same, declaring no LIST capability."""

    name: ClassVar[str] = "nolist"
    capabilities: ClassVar[Capability] = Capability.PERSISTENT


class SecondMemory(MemoryBackend):
    """A second in-memory backend, so memory -> memory pairs have two ends."""

    name: ClassVar[str] = "memory2"


def register_test_plugins(site: Path) -> str:
    """A dist-info declaring the test backends; returns a PYTHONPATH for subprocesses."""
    info = site / "broker_test_backends-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broker-test-backends\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[broker.backends]\n"
        "dirstore = tests.support.migrate_helpers:DirBackend\n"
        "nolist = tests.support.migrate_helpers:UnlistedDirBackend\n"
    )
    return os.pathsep.join([str(site), str(REPO)])


def crash_main(step: str, nth: int, args: list[str]) -> None:
    """Run ``broker ARGS`` and SIGKILL this process at the ``nth`` checkpoint ``step``."""
    from broker.services import migrate

    seen = {"count": 0}

    def checkpoint(reached: str, profile: str) -> None:
        if reached == step:
            seen["count"] += 1
            if seen["count"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    migrate.checkpoint = checkpoint
    from broker.cli import main

    main(args)


# -- GnuPG and pass ------------------------------------------------------------------


class GnupgHome:
    """A throwaway GNUPGHOME with one unprotected key (fast S2K), agent stopped on close."""

    def __init__(self) -> None:
        # The agent's socket path is limited to ~100 bytes: keep the home short.
        self.path = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
        os.chmod(self.path, 0o700)
        (self.path / "gpg.conf").write_text("s2k-count 65536\n")
        (self.path / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\n")
        self.env = {"GNUPGHOME": str(self.path)}
        self.key_id = "broker-test@example.invalid"
        self.gpg(
            "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
            "--quick-generate-key", self.key_id, "ed25519", "cert,sign", "never",
        )
        fingerprint = self._fingerprint()
        self.gpg(
            "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
            "--quick-add-key", fingerprint, "cv25519", "encr", "never",
        )

    def gpg(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["gpg", "--homedir", str(self.path), *args],
            capture_output=True, text=True, check=True, timeout=60,
        )

    def _fingerprint(self) -> str:
        out = self.gpg("--with-colons", "--list-keys", self.key_id).stdout
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.path), "--kill", "gpg-agent"],
            capture_output=True, check=False, timeout=30,
        )
        subprocess.run(["rm", "-rf", str(self.path)], check=False)


@contextlib.contextmanager
def gnupg_home() -> Iterator[GnupgHome]:
    home = GnupgHome()
    try:
        yield home
    finally:
        home.close()


def pass_run(
    gnupg: GnupgHome, store: Path, *args: str, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The real ``pass`` command on ``store``; the secret goes on stdin (``insert -m``)."""
    env = {**os.environ, **gnupg.env, "PASSWORD_STORE_DIR": str(store)}
    return subprocess.run(
        ["pass", *args], input=input, env=env, capture_output=True, check=True, timeout=60
    )


# -- an isolated home with backends on demand ------------------------------------------

#: In-process backends the CLI sees besides the installed entry points.
EXTRA: dict[str, type[Backend]] = {
    "memory": MemoryBackend,
    "memory2": SecondMemory,
    "dirstore": DirBackend,
    "nolist": UnlistedDirBackend,
}


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
        self.extra = dict(EXTRA)

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
        gnupg = GnupgHome()
        self.cleanups.append(gnupg.close)
        store = self.home.root / ".password-store"
        pass_run(gnupg, store, "init", gnupg.key_id)
        self.setenv("GNUPGHOME", str(gnupg.path))
        self.setenv("PASSWORD_STORE_DIR", str(store))
        self._require_available("pass")

    def _provide_onepassword(self) -> None:
        # Both ship with broker: an import error fails the test, never skips it.
        from broker_onepassword import OnePasswordBackend  # noqa: F401

        from broker.testing import onepassword_emulator
        site = Path(app.__file__).resolve().parents[1] / "testing" / "_op_site"
        state = self.tmp_path / "op-state.json"
        self.setenv("BROKER_OP_EMULATOR", str(state))
        self.setenv("OP_SERVICE_ACCOUNT_TOKEN", onepassword_emulator.DEFAULT_TOKEN)
        self.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site),
                                                                self.home.env.get("PYTHONPATH")])))
        self.monkeypatch.syspath_prepend(str(site))
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
        app._CONTEXT["ctx"] = self.context()
        code = app.run(list(args))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err



def table_rows(out: str) -> dict[str, str]:
    """PROFILE -> the rest of its row, from a summary table on stdout."""
    rows = {}
    for line in out.splitlines()[1:]:
        profile, _, rest = line.partition("  ")
        rows[profile.strip()] = rest.strip()
    return rows


if __name__ == "__main__":  # python -m tests.support.migrate_helpers STEP NTH broker-args...
    crash_main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
