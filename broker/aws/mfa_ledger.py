"""What broker remembers about MFA between runs: nothing secret, and no usable code.

AWS accepts a TOTP code once per device, so broker keeps, per ``mfa_serial``, the time
step of the last code it handed out, whether STS is known to have accepted it, and a
keyed hash of it (HMAC-SHA256 under a random key kept in the runtime directory, see
:func:`broker.paths.runtime_key`), never the code itself: the ledger alone, say on a
stolen disk or in a backup, cannot tell a code, not even by trying all million of them.
The hash is enough for the reuse guard: a typed code equal to the last accepted one is
still refused. Per stored key it also keeps whether a TOTP seed is kept with it and, for
a key read from an item a profile names (``broker_item``), the MFA device that item
names, so ``broker list`` can say where codes come from without reading any secret.

The state is one JSON file (0600, replaced atomically) under the state directory.
A per-device lock, shared by every broker process of the user, is held from choosing a
code until STS has answered, so two processes never pick the same code.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker import paths

STATE_FILE = "mfa.json"
#: The file under the runtime directory holding the key of the codes' hashes.
KEY_FILE = "mfa-ledger.key"


@dataclass(frozen=True)
class UsedCode:
    """A code handed out: the time step it belongs to, its period, when it was used, and
    whether STS is known to have accepted it (False: handed out where broker could not
    see the answer, e.g. `broker totp code` for the console).

    ``code`` is known only in the process that handed it out; one read back from the
    ledger has ``code == ""`` and its keyed hash in ``digest``
    (:meth:`MfaLedger.same_code` compares).
    """

    step: int
    period: int
    code: str
    at: float
    accepted: bool = True
    digest: str = ""

    @property
    def until(self) -> int:
        """When the step ends: a code computed for an earlier moment may repeat it."""
        return (self.step + 1) * self.period


class MfaLedger:
    """The last accepted code per device and the seed markers, in ``state_dir()/mfa.json``."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._key: bytes | None = None

    @property
    def path(self) -> Path:
        """The state file: the path given, else ``$XDG_STATE_HOME/broker/mfa.json``
        (:func:`broker.paths.state_dir`); it may not exist yet.
        """
        return self._path or paths.state_dir() / STATE_FILE

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(paths.read_private(self.path).decode("utf-8"))
        except (OSError, ValueError):
            return {}  # missing or damaged state is only a lost memory, never a failure
        return data if isinstance(data, dict) else {}

    def digest(self, serial: str, code: str) -> str:
        """The keyed hash of ``code`` for device ``serial``."""
        if self._key is None:
            self._key = paths.runtime_key(KEY_FILE)
        key = self._key
        message = f"{serial}\x1f{code}".encode()
        import hmac  # here, not at the top: hashlib loads OpenSSL (~4 MiB); `list` needs none

        return hmac.new(key, message, "sha256").hexdigest()[:32]

    def same_code(self, serial: str, used: UsedCode, code: str) -> bool:
        """Whether ``code`` is the code ``used`` recorded for ``serial``."""
        import hmac

        if used.code:
            return hmac.compare_digest(used.code, code)
        return bool(used.digest) and hmac.compare_digest(used.digest, self.digest(serial, code))

    @contextlib.contextmanager
    def _update(self) -> Iterator[dict[str, Any]]:
        with paths.file_lock("mfa-state"):
            data = self._read()
            yield data
            data["version"] = 2
            devices = data.get("devices")
            if isinstance(devices, dict):  # codes older versions kept become hashes
                for serial, entry in devices.items():
                    if isinstance(entry, dict) and "code" in entry:
                        code = entry.pop("code")
                        entry.setdefault("digest", self.digest(serial, str(code)))
            text = json.dumps(data, indent=1, sort_keys=True) + "\n"
            paths.atomic_write(self.path, text.encode(), 0o600)

    def device_lock(self, serial: str) -> contextlib.AbstractContextManager[None]:
        """Held from choosing a code for ``serial`` until STS accepted or refused it."""
        return paths.file_lock(f"mfa-device-{serial}")

    def _table(self, name: str) -> dict[str, object]:
        """One table of the state file; damaged state is only a lost memory."""
        table = self._read().get(name)
        return table if isinstance(table, dict) else {}

    def last(self, serial: str) -> UsedCode | None:
        """The last code handed out for ``serial`` (its step, time and hash), if known."""
        entry = self._table("devices").get(serial)
        if not isinstance(entry, dict):
            return None
        try:
            digest = entry.get("digest")
            if not isinstance(digest, str):  # written by an older version, with the code
                digest = self.digest(serial, str(entry["code"]))
            return UsedCode(
                int(entry["step"]), int(entry["period"]), "", float(entry["at"]),
                bool(entry.get("accepted", True)), digest,
            )
        except (KeyError, TypeError, ValueError):
            return None

    def record(self, serial: str, used: UsedCode) -> None:
        """Remember ``used`` for ``serial`` (its step and keyed hash, never the code),
        unless a later step is remembered already."""
        with self._update() as data:
            devices = data.setdefault("devices", {})
            if not isinstance(devices, dict):
                devices = data["devices"] = {}
            previous = self.last(serial) if serial in devices else None
            if previous is not None and previous.until > used.until:
                return
            devices[serial] = {
                "step": used.step,
                "period": used.period,
                "at": used.at,
                "accepted": used.accepted,
                "digest": used.digest or self.digest(serial, used.code),
            }

    def seed_stored(self, backend: str, profile: str) -> bool | None:
        """Whether a seed is kept with ``profile``'s key in ``backend``; None: not known."""
        value = self._table("seeds").get(f"{backend}/{profile}")
        return value if isinstance(value, bool) else None

    def mark_seed(self, backend: str, profile: str, stored: bool | None) -> None:
        """Remember whether a seed is kept with ``profile``'s key; None forgets it (the key
        could not be read, so nothing is known about it any more)."""
        if self.seed_stored(backend, profile) is not stored:
            self._mark("seeds", f"{backend}/{profile}", stored)

    def _mark(self, table: str, key: str, value: object) -> None:
        """Set ``key`` in ``table`` to ``value`` (None removes it), in one locked update."""
        with self._update() as data:
            entries = data.setdefault(table, {})
            if not isinstance(entries, dict):
                entries = data[table] = {}
            if value is None:
                entries.pop(key, None)
            else:
                entries[key] = value

    def device_kept(self, backend: str, profile: str) -> str | None:
        """The MFA device (an ARN or serial) the item of ``profile``'s key names, as seen
        the last time the key was read from ``backend``: ``""`` when it names none, None
        when not known (never read, or unreadable the last time)."""
        value = self._table("key_devices").get(f"{backend}/{profile}")
        return value if isinstance(value, str) else None

    def mark_device(self, backend: str, profile: str, serial: str | None) -> None:
        """Remember the MFA device the item of ``profile``'s key names (``""``: none);
        None forgets it (the key could not be read)."""
        if self.device_kept(backend, profile) != serial:  # else nothing to write
            self._mark("key_devices", f"{backend}/{profile}", serial)
