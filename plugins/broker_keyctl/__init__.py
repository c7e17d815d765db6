"""The Linux kernel keyring as a broker backend (memory only, lost on reboot).

Items live as ``user`` keys in a named keyring linked under the user keyring
``@u``: ``broker:credentials``, ``broker:sessions`` and ``broker:secrets`` by
default. A key's description is the item name, its payload the item's fields as
compact JSON, so ``keyctl show @u`` and ``keyctl print <id>`` still read them.

This module sits on the fast path of every cached ``broker exec``, so it
imports nothing heavy: the ctypes layer (:mod:`broker_keyctl._native`) is loaded
on the first keyring operation, and nothing here starts a process.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from collections.abc import Callable, Mapping

from broker.backend import Availability, Backend, Capability, Item, Resolver
from broker.errors import BackendError, BackendUnavailable, ConfigError, NotFound

# On the cached fast path: typing and datetime cost import time, and annotations
# are strings here, so they are imported for the type checker only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, ClassVar, TypeVar

    from broker.backend import Check
    from broker_keyctl._native import KeyOps

    _T = TypeVar("_T")

__all__ = ["KeyctlBackend"]


KEY_SPEC_USER_KEYRING = -4

#: possessor and same user: view, read, write, search, link, setattr; group and other: nothing.
#: The kernel's default gives the user only "view", so a process whose session
#: keyring does not link @u (``keyctl session -``, some login managers) could not read.
KEY_PERM = 0x3F3F0000

#: The kernel's cap on a ``user`` key's payload (bytes).
MAX_PAYLOAD = 32767
#: The kernel's cap on a key description (bytes, without the NUL).
MAX_DESCRIPTION = 4095
#: Below this many free quota bytes not even one STS session fits.
MIN_FREE_BYTES = 2048

SECRETS_NAMESPACE = "secrets"
SECRET_FIELD = "secret"  # noqa: S105 - a field name

# Errors meaning "no such (live) key": absent, expired, revoked or invalidated.
_ABSENT = frozenset({errno.ENOKEY, errno.EKEYEXPIRED, errno.EKEYREVOKED, errno.ENOENT})
# Errors meaning the system calls themselves are refused (seccomp, no kernel support).
_BLOCKED = frozenset({errno.EPERM, errno.ENOSYS})

_SECCOMP_REASON = (
    "keyctl: operation not permitted — running in a container with seccomp? "
    "run with --security-opt seccomp=unconfined or choose another backend "
    "(`broker backend set pass`)"
)
_ENOSYS_REASON = (
    "keyctl: the kernel refused the keyring system calls (not implemented) — running in a "
    "container with seccomp, or under WSL1? run with --security-opt seccomp=unconfined, "
    "use WSL2, or choose another backend (`broker backend set pass`)"
)
_OTHER_BACKEND = "choose another backend (`broker backend set pass`)"
#: Where the kernel says which kernel this is (WSL2's names Microsoft and WSL2).
PROC_VERSION = "/proc/version"

# The loaded ctypes layer, shared by every instance in the process.
_OPS: KeyOps | None = None
# Inside the class, `list` is the method of that name.
_CheckList = list["Check"]


class KeyctlUnavailable(BackendUnavailable):
    """The kernel keyring cannot be used here (not Linux, no library, syscalls blocked)."""


def _key_ops() -> KeyOps:
    """Load libkeyutils (or the raw syscalls) on first use."""
    global _OPS
    if _OPS is None:
        if not sys.platform.startswith("linux"):
            raise KeyctlUnavailable(
                f"keyctl: the kernel keyring exists only on Linux (this is {sys.platform})",
                _OTHER_BACKEND,
            )
        from broker_keyctl import _native

        try:
            _OPS = _native.load()
        except _native.NoKeyOps as exc:
            raise KeyctlUnavailable(
                f"keyctl: {exc}", f"install keyutils (`apt install keyutils`) or {_OTHER_BACKEND}"
            ) from None
    return _OPS


def _blocked_error(exc: OSError) -> KeyctlUnavailable:
    reason = _SECCOMP_REASON if exc.errno == errno.EPERM else _ENOSYS_REASON
    message, _, hint = reason.partition("? ")
    return KeyctlUnavailable(message + "?", hint)


def _quota_error() -> BackendError:
    return BackendError(
        "keyctl: the kernel key quota is exhausted (by default a non-root user may hold "
        "200 keys and 20000 bytes)",
        "remove stale items (`broker clear`), or raise the limits with "
        "`sysctl kernel.keys.maxkeys=... kernel.keys.maxbytes=...`",
    )


def _encode_name(name: str) -> bytes:
    if not isinstance(name, str) or not name:
        raise ValueError("an item name must be a non-empty string")
    encoded = name.encode("utf-8")
    if b"\0" in encoded:
        raise ValueError("an item name cannot contain NUL")
    if len(encoded) > MAX_DESCRIPTION:
        raise BackendError(
            f"keyctl: an item name of {len(encoded)} bytes is over the kernel's limit of "
            f"{MAX_DESCRIPTION} bytes for a key description",
            "use a shorter name",
        )
    return encoded


def _timeout_for(expires_at: datetime | None) -> int | None:
    """Seconds until ``expires_at``, rounded up; None for no expiry, <= 0 if already past."""
    if expires_at is None:
        return None
    remaining = expires_at.timestamp() - time.time()
    if remaining <= 0:
        return 0
    # keyctl_set_timeout takes an unsigned int; 0 there would mean "never expire".
    return min(max(1, int(-(-remaining // 1))), 0xFFFFFFFF)


def _wsl2() -> bool:
    """Whether this is WSL2's kernel (:func:`broker.paths.wsl_version`)."""
    from pathlib import Path

    from broker.paths import wsl_version

    return wsl_version(Path(PROC_VERSION)) == 2


def _quota_left(uid: int) -> tuple[int, int] | None:
    """(keys, bytes) this user may still add, from /proc/key-users; None if unknown."""
    try:
        with open("/proc/key-users", encoding="ascii") as stream:
            lines = stream.read().splitlines()
    except OSError:
        return None
    prefix = f"{uid}:"
    for line in lines:
        fields = line.split()
        # "  uid:  usage nkeys/nikeys qnkeys/maxkeys qnbytes/maxbytes"
        if len(fields) == 5 and fields[0] == prefix:
            try:
                keys, max_keys = (int(v) for v in fields[3].split("/"))
                used, max_bytes = (int(v) for v in fields[4].split("/"))
            except ValueError:
                return None
            return max_keys - keys, max_bytes - used
    return None


class KeyctlBackend(Backend):
    """Items as ``user`` keys in a named keyring under ``@u`` (or the persistent keyring).

    Settings (``[backends.keyctl]``):

    * ``keyring``: prefix of the keyring names (default ``"broker"``), giving
      ``broker:credentials``, ``broker:sessions`` and ``broker:secrets``;
    * ``parent``: ``"user"`` (default, ``@u``) or ``"persistent"`` (the
      per-user persistent keyring, which outlives logins for a few days of
      disuse).

    Everything is in kernel memory and lost on reboot. ``set(..., expires_at=)``
    puts a kernel timeout on the key, so an expired session disappears by itself.
    """

    name: ClassVar[str] = "keyctl"
    description: ClassVar[str] = "Linux kernel keyring: memory only, expiring keys, lost on reboot"
    capabilities: ClassVar[Capability] = (
        Capability.LIST | Capability.STORE_SESSIONS | Capability.EXPIRY
        | Capability.SECRET_STORE
    )
    #: After onepassword (3) and pass (2) for keys: memory only, so chosen for them only
    #: when neither works; the default session cache and token store wherever it works.
    priority: ClassVar[float] = 1.0
    schemes: ClassVar[tuple[str, ...]] = ("keyctl",)

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | None = None,
        namespace: str = "credentials",
        resolver: Resolver | None = None,
    ) -> None:
        super().__init__(settings=settings, namespace=namespace, resolver=resolver)
        prefix = self.settings.get("keyring", "broker")
        if not isinstance(prefix, str) or not prefix or "\0" in prefix:
            raise ConfigError(
                "keyctl: the `keyring` setting must be a non-empty string",
                "set e.g. keyring = \"broker\" under [backends.keyctl]",
            )
        parent = self.settings.get("parent", "user")
        if parent not in ("user", "persistent"):
            raise ConfigError(
                f"keyctl: unknown parent {parent!r}",
                'set parent = "user" or parent = "persistent" under [backends.keyctl]',
            )
        self.prefix: str = prefix
        self.parent: str = parent

    def __repr__(self) -> str:
        return f"KeyctlBackend(keyring={self.keyring_name!r}, parent={self.parent!r})"

    @property
    def keyring_name(self) -> str:
        """The description of this namespace's keyring (``broker:credentials``)."""
        return self._ring_name(self.namespace)

    def _ring_name(self, namespace: str) -> str:
        return f"{self.prefix}:{namespace}"

    # -- keyring plumbing -----------------------------------------------------

    def _run(self, action: str, call: Callable[[KeyOps], _T]) -> _T:
        """Run ``call`` with the ctypes layer; OSErrors become one-line broker errors."""
        ops = _key_ops()
        try:
            return call(ops)
        except OSError as exc:
            if exc.errno in _BLOCKED:
                raise _blocked_error(exc) from None
            if exc.errno == errno.EDQUOT:
                raise _quota_error() from None
            if exc.errno == errno.EACCES:
                raise BackendError(
                    f"keyctl: permission denied while trying to {action} in {self.keyring_name}",
                    "inspect the keyring with `keyctl show @u`; if it is not yours, "
                    "unlink it with `keyctl unlink <id> @u`",
                ) from None
            raise BackendError(
                f"keyctl: could not {action} in {self.keyring_name}: "
                f"{os.strerror(exc.errno or 0)}",
                "inspect the keyring with `keyctl show @u`",
            ) from None

    def _parent_id(self, ops: KeyOps) -> int:
        if self.parent == "persistent":
            # Links the persistent keyring into @u (so `keyctl show @u` shows it)
            # and restarts its expiry countdown.
            return ops.get_persistent(KEY_SPEC_USER_KEYRING)
        return KEY_SPEC_USER_KEYRING

    def _find_ring(self, ops: KeyOps, namespace: str, *, create: bool) -> int | None:
        """The serial of ``namespace``'s keyring linked directly in the parent.

        Searching is cheap; creating is not idempotent: add_key("keyring") with
        an existing description makes a new, empty keyring and displaces the old
        one with everything in it. So search first, and create only when absent,
        under a lock, searching again inside it: two first writers at once would
        otherwise each create one and the second would wipe the first.
        """
        found = self._search_ring(ops, namespace)
        if found is not None or not create:
            return found
        from broker.paths import file_lock  # only the very first write gets here

        with file_lock(f"keyctl-ring-{self._ring_name(namespace)}"):
            found = self._search_ring(ops, namespace)
            if found is not None:
                return found
            parent = self._parent_id(ops)
            serial = ops.add_key(
                b"keyring", self._ring_name(namespace).encode("utf-8"), b"", parent
            )
            ops.setperm(serial, KEY_PERM)
            return serial

    def _search_ring(self, ops: KeyOps, namespace: str) -> int | None:
        parent = self._parent_id(ops)
        description = self._ring_name(namespace).encode("utf-8")
        try:
            found: int | None = ops.search(parent, b"keyring", description, 0)
        except OSError as exc:
            if exc.errno not in _ABSENT:
                raise
            found = None
        if found is not None:
            children = ops.keyring_serials(parent)
            if found in children:
                return found
            # The search is recursive and met a same-named keyring deeper down
            # (say in the persistent keyring, linked in @u): look only at direct children.
            for serial in children:
                if self._describe(ops, serial) == ("keyring", description.decode("utf-8")):
                    return serial
        return None

    @staticmethod
    def _describe(ops: KeyOps, serial: int) -> tuple[str, str] | None:
        """(type, description) of a live key, or None when it cannot be seen."""
        try:
            text = ops.describe(serial)
        except OSError as exc:
            if exc.errno in _ABSENT or exc.errno == errno.EACCES:
                return None
            raise
        parts = text.split(";", 4)  # the description itself may contain ';'
        if len(parts) != 5:
            return None
        return parts[0], parts[4]

    def _read(self, namespace: str, name: str) -> Item | None:
        encoded = _encode_name(name)

        def call(ops: KeyOps) -> bytes | None:
            ring = self._find_ring(ops, namespace, create=False)
            if ring is None:
                return None
            try:
                return ops.read(ops.search(ring, b"user", encoded, 0))
            except OSError as exc:
                if exc.errno in _ABSENT:
                    return None
                raise

        payload = self._run("read an item", call)
        if payload is None:
            return None
        try:
            fields = json.loads(payload.decode("utf-8"))
            if not isinstance(fields, dict):
                raise TypeError
            return Item(fields)
        except (ValueError, TypeError):
            raise BackendError(
                f"keyctl: item {name!r} in {self._ring_name(namespace)} is not broker's JSON",
                f"remove it (`keyctl purge -s user {name}` or `broker remove`) and store it again",
            ) from None

    def _write(self, namespace: str, name: str, item: Item, timeout: int | None) -> None:
        """Create or atomically update a key; ``timeout`` None = none, 0 = delete."""
        encoded = _encode_name(name)
        if timeout is not None and timeout <= 0:
            self._remove(namespace, name)
            return
        payload = json.dumps(dict(item), separators=(",", ":"), ensure_ascii=False).encode()
        if len(payload) > MAX_PAYLOAD:
            raise BackendError(
                f"keyctl: item {name!r} is {len(payload)} bytes, over the kernel's limit of "
                f"{MAX_PAYLOAD} bytes for a user key",
                f"store fewer or shorter fields, or {_OTHER_BACKEND}",
            )

        def call(ops: KeyOps) -> None:
            for attempt in (1, 2):
                ring = self._find_ring(ops, namespace, create=True)
                assert ring is not None
                try:
                    # Same type and description in the same keyring: the kernel
                    # updates the existing key in place (same serial), so readers
                    # see the old payload or the new one, never a gap.
                    key = ops.add_key(b"user", encoded, payload, ring)
                except OSError as exc:
                    # The keyring was purged between finding and writing: find it again.
                    if attempt == 1 and exc.errno in _ABSENT:
                        continue
                    raise
                ops.setperm(key, KEY_PERM)
                # An update keeps no promise about the old timeout: always set it (0 = none).
                ops.set_timeout(key, timeout or 0)
                return

        self._run("store an item", call)

    def _remove(self, namespace: str, name: str) -> bool:
        encoded = _encode_name(name)

        def call(ops: KeyOps) -> bool:
            ring = self._find_ring(ops, namespace, create=False)
            if ring is None:
                return False
            try:
                key = ops.search(ring, b"user", encoded, 0)
            except OSError as exc:
                if exc.errno in _ABSENT:
                    return False
                raise
            try:
                # Invalidation destroys the payload now, wherever else the key is linked.
                ops.invalidate(key)
            except OSError as exc:
                if exc.errno in _ABSENT:
                    return False
                ops.unlink(key, ring)
            return True

        return self._run("delete an item", call)

    # -- the Backend interface -------------------------------------------------

    def availability(self) -> Availability:
        """Cheap and never raises: can the kernel keyring be used here, and if not, why."""
        try:
            ops = _key_ops()
        except KeyctlUnavailable as exc:
            return Availability(False, str(exc))
        except Exception as exc:
            return Availability(False, f"keyctl: cannot load the keyring library: {exc}")
        try:
            ops.get_keyring_id(KEY_SPEC_USER_KEYRING, False)
            if self.parent == "persistent":
                ops.get_persistent(KEY_SPEC_USER_KEYRING)
        except OSError as exc:
            if exc.errno == errno.EPERM:
                return Availability(False, _SECCOMP_REASON)
            if exc.errno == errno.ENOSYS:
                return Availability(False, _ENOSYS_REASON)
            if exc.errno == errno.EOPNOTSUPP and self.parent == "persistent":
                return Availability(
                    False,
                    "keyctl: this kernel has no persistent keyrings — set parent = \"user\" "
                    "under [backends.keyctl]",
                )
            if exc.errno != errno.ENOKEY:  # no user keyring yet: created on first write
                return Availability(False, f"keyctl: {os.strerror(exc.errno or 0)}")
        except Exception as exc:
            return Availability(False, f"keyctl: availability check failed: {exc}")
        left = _quota_left(os.getuid())
        if left is not None and (left[0] < 1 or left[1] < MIN_FREE_BYTES):
            return Availability(
                False,
                f"keyctl: key quota exhausted ({left[0]} keys, {left[1]} bytes left; see "
                "/proc/key-users) — remove stale keys (`keyctl show @u`) or raise "
                "kernel.keys.maxkeys / kernel.keys.maxbytes with sysctl",
            )
        return Availability(True)

    def get(self, name: str) -> Item | None:
        """The item, or None when absent, expired or revoked."""
        return self._read(self.namespace, name)

    def set(self, name: str, item: Item, *, expires_at: datetime | None = None) -> None:
        """Store ``item``; with ``expires_at`` the kernel drops the key then (past: delete)."""
        self._write(self.namespace, name, item, _timeout_for(expires_at))

    def delete(self, name: str) -> bool:
        """Invalidate the key; True if a live one was there."""
        return self._remove(self.namespace, name)

    def list(self) -> list[str]:
        """Sorted names of the live ``user`` keys in this namespace's keyring."""

        def call(ops: KeyOps) -> list[str]:
            ring = self._find_ring(ops, self.namespace, create=False)
            if ring is None:
                return []
            try:
                serials = ops.keyring_serials(ring)
            except OSError as exc:
                if exc.errno in _ABSENT:
                    return []
                raise
            names = []
            for serial in serials:
                described = self._describe(ops, serial)
                if described is not None and described[0] == "user":
                    names.append(described[1])
            return sorted(names)

        return self._run("list items", call)

    def describe(self) -> dict[str, str]:
        """Where items live: keyring name, parent and serial (never a payload)."""
        facts = {
            "keyring": self.keyring_name,
            "parent": "persistent keyring (linked in @u)" if self.parent == "persistent"
            else "user keyring @u",
            "storage": "kernel memory only (lost on reboot)",
        }
        try:
            ops = _key_ops()
            serial = self._find_ring(ops, self.namespace, create=False)
            facts["serial"] = str(serial) if serial is not None else "(created on first write)"
            facts["access"] = ops.kind
        except (BackendError, OSError) as exc:
            facts["serial"] = f"(unavailable: {exc})"
        return facts

    # -- secret references ---------------------------------------------------

    def resolve(self, reference: str) -> str:
        """The value of ``keyctl:NAME``: field ``secret`` of NAME in the secrets keyring."""
        scheme, sep, name = reference.partition(":")
        if scheme != "keyctl" or not sep:
            from broker.secrets import shown

            raise ConfigError(
                f"keyctl: not a keyctl reference: {shown(reference)!r}", "write it as keyctl:NAME"
            )
        name = name.removeprefix("//")
        if not name:
            raise ConfigError("keyctl: a reference needs a name", "write it as keyctl:NAME")
        item = self._read(SECRETS_NAMESPACE, name)
        if item is None or SECRET_FIELD not in item:
            raise NotFound(
                f"keyctl: no secret {name!r} in keyring {self._ring_name(SECRETS_NAMESPACE)} "
                "(it may have expired, or the machine rebooted)",
                "store it first, e.g. with `broker backend login onepassword`",
            )
        return item[SECRET_FIELD]

    def store_secret(self, name: str, value: str, ttl_seconds: int | None) -> None:
        """Keep a secret for ``keyctl:NAME`` references, forgotten after ``ttl_seconds``.

        Always in the secrets keyring, whatever this instance's namespace.
        ``ttl_seconds`` None keeps it until deleted or reboot.
        """
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive or None")
        timeout = None if ttl_seconds is None else min(int(ttl_seconds), 0xFFFFFFFF)
        self._write(SECRETS_NAMESPACE, name, Item({SECRET_FIELD: value}), timeout)

    def secret_reference(self, name: str) -> str:
        """``keyctl:NAME``: what :meth:`resolve` answers with the secret kept under NAME."""
        return f"keyctl:{name}"

    def delete_secret(self, name: str) -> bool:
        """Forget a secret stored with :meth:`store_secret`; True if one was there."""
        return self._remove(SECRETS_NAMESPACE, name)

    # -- broker doctor -----------------------------------------------------------------

    def checks(self, used: bool) -> _CheckList:
        """One row, ``keyctl``: the kernel keyring works here (on WSL2: memory only until
        ``wsl --shutdown``), or why not; a failure when broker uses it, else a warning."""
        from broker.backend import Check, unnamed

        availability = self.availability()
        if availability.ok:
            note = " (WSL2: memory only, cleared by `wsl --shutdown`)" if _wsl2() else ""
            return [Check("keyctl", "ok", f"the kernel keyring works here{note}")]
        return [Check(
            "keyctl", "fail" if used else "warn", unnamed(self.name, availability.reason),
            "sessions are not cached without it; use WSL2 or a VM with the keyring, "
            "or `broker backend set pass` for keys",
        )]

    # -- maintenance -------------------------------------------------------------

    def purge(self, *, every_namespace: bool = False) -> int:
        """Wipe and unlink this namespace's keyring (or every ``<keyring>:*`` one).

        Returns how many keyrings were removed. Each key is invalidated first, so
        it is unreadable at once even through another link or a remembered
        serial, rather than when the kernel's garbage collector gets to it.
        """

        def call(ops: KeyOps) -> int:
            parent = self._parent_id(ops)
            if every_namespace:
                prefix = f"{self.prefix}:"
                rings = []
                for serial in ops.keyring_serials(parent):
                    described = self._describe(ops, serial)
                    if described and described[0] == "keyring" and described[1].startswith(prefix):
                        rings.append(serial)
            else:
                ring = self._find_ring(ops, self.namespace, create=False)
                rings = [] if ring is None else [ring]
            for ring in rings:
                for key in ops.keyring_serials(ring):
                    try:
                        ops.invalidate(key)
                    except OSError:  # expired or already gone: the gc has it
                        continue
                ops.clear(ring)
                ops.unlink(ring, parent)
            return len(rings)

        return self._run("purge the keyring", call)
