"""What broker remembers about MFA between runs: nothing secret.

AWS accepts a TOTP code once per device, so broker keeps, per ``mfa_serial``, the last
time step (and code) it saw accepted, and, per stored key, whether a TOTP seed is kept
with it (so ``broker list`` can say where codes come from without reading any secret).
A used code is worthless: AWS refuses it again, and it expires within a minute or two.

The state is one JSON file (0600, replaced atomically) under the state directory.
A per-device lock, shared by every broker process of the user, is held from choosing a
code until STS has answered, so two processes never pick the same code.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from broker import paths

STATE_FILE = "mfa.json"


@dataclass(frozen=True)
class UsedCode:
    """A code handed out: the time step it belongs to, its period, when it was used, and
    whether STS is known to have accepted it (False: handed out where broker could not
    see the answer, e.g. `broker totp code` for the console)."""

    step: int
    period: int
    code: str
    at: float
    accepted: bool = True

    @property
    def until(self) -> int:
        """When the step ends: a code computed for an earlier moment may repeat it."""
        return (self.step + 1) * self.period


class MfaLedger:
    """The last accepted code per device and the seed markers, in ``state_dir()/mfa.json``."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path

    @property
    def path(self) -> Path:
        return self._path or paths.state_dir() / STATE_FILE

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # missing or damaged state is only a lost memory, never a failure
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def _update(self) -> Iterator[dict[str, Any]]:
        with paths.file_lock("mfa-state"):
            data = self._read()
            yield data
            data["version"] = 1
            text = json.dumps(data, indent=1, sort_keys=True) + "\n"
            paths.atomic_write(self.path, text.encode(), 0o600)

    def device_lock(self, serial: str) -> contextlib.AbstractContextManager[None]:
        """Held from choosing a code for ``serial`` until STS accepted or refused it."""
        return paths.file_lock(f"mfa-device-{serial}")

    def last(self, serial: str) -> UsedCode | None:
        entry = self._read().get("devices", {}).get(serial)
        if not isinstance(entry, dict):
            return None
        try:
            return UsedCode(
                int(entry["step"]), int(entry["period"]), str(entry["code"]), float(entry["at"]),
                bool(entry.get("accepted", True)),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def record(self, serial: str, used: UsedCode) -> None:
        """Remember ``used`` for ``serial``, unless a later step is remembered already."""
        with self._update() as data:
            devices = data.setdefault("devices", {})
            if not isinstance(devices, dict):
                devices = data["devices"] = {}
            previous = self.last(serial) if serial in devices else None
            if previous is not None and previous.until > used.until:
                return
            devices[serial] = asdict(used)

    def seed_stored(self, backend: str, profile: str) -> bool | None:
        """Whether a seed is kept with ``profile``'s key in ``backend``; None: not known."""
        value = self._read().get("seeds", {}).get(f"{backend}/{profile}")
        return value if isinstance(value, bool) else None

    def mark_seed(self, backend: str, profile: str, stored: bool) -> None:
        if self.seed_stored(backend, profile) is stored:
            return  # the common case: nothing to write
        with self._update() as data:
            seeds = data.setdefault("seeds", {})
            if not isinstance(seeds, dict):
                seeds = data["seeds"] = {}
            seeds[f"{backend}/{profile}"] = stored
