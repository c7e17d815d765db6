"""Backends the tests register in-process (and, for subprocesses, through a dist-info).

* :class:`DirBackend`: a small persistent backend (one JSON file per item), so that
  crash tests can kill a process between two backends that both outlive it.
* :class:`SecondMemory`: a second in-memory backend, the other end of memory -> memory.
* :class:`CountingMemory`: the memory backend, counting reads per name.
* :func:`sample_items`: items with every kind of field.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import ClassVar

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


class CountingMemory(MemoryBackend):
    """The memory backend, counting reads per name."""

    reads: ClassVar[dict[str, int]] = {}

    def get(self, name: str) -> Item | None:
        if self.namespace == "credentials":
            CountingMemory.reads[name] = CountingMemory.reads.get(name, 0) + 1
        return super().get(name)


def register_test_plugins(site: Path) -> str:
    """A dist-info declaring the test backends; returns a PYTHONPATH for subprocesses."""
    info = site / "broker_test_backends-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broker-test-backends\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[broker.backends]\n"
        "dirstore = tests.support.backends:DirBackend\n"
        "nolist = tests.support.backends:UnlistedDirBackend\n"
    )
    return os.pathsep.join([str(site), str(REPO)])


#: In-process backends the CLI sees besides the installed entry points.
IN_PROCESS: dict[str, type[Backend]] = {
    "memory": MemoryBackend,
    "memory2": SecondMemory,
    "dirstore": DirBackend,
    "nolist": UnlistedDirBackend,
}
