"""The STS session cache: a wrapper around any backend that declares STORE_SESSIONS.

Sessions live under names ``<profile>:<kind>:<digest>`` where the digest covers
everything that makes two sessions different (role ARN, external id, session
name, MFA serial, the source session), so profiles, roles and MFA devices never
collide. The kernel keyring is the default store: memory only, with the
kernel's own timeout on each key equal to the session's expiry.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from broker.aws.credentials import Credentials
from broker.backend import Backend, Capability, Item
from broker.errors import BackendError, BrokerError
from broker.paths import file_lock

try:  # CPython's built-in SHA-256: hashlib would load OpenSSL (~3 ms) on the fast path
    from _sha2 import sha256  # type: ignore[import-not-found, unused-ignore]  # 3.12+
except ImportError:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found, no-redef, unused-ignore]
    except ImportError:  # pragma: no cover - other interpreters
        from hashlib import sha256  # type: ignore[assignment, unused-ignore]


def session_name(profile: str, kind: str, *parts: str | None) -> str:
    digest = sha256("\x1f".join(p or "" for p in (profile, kind, *parts)).encode())
    return f"{profile}:{kind}:{digest.hexdigest()[:16]}"


class CachedSession:
    """One cached session as listed: its name, owning profile and kind."""

    def __init__(self, name: str, profile: str, kind: str, item: Item) -> None:
        self.name = name
        self.profile = profile
        self.kind = kind
        self.item = item

    @property
    def credentials(self) -> Credentials:
        return Credentials.from_item(self.item, what=f"cached session {self.name}")


class SessionCache:
    """Fresh sessions from ``backend``; ``None`` as backend means caching is off."""

    def __init__(self, backend: Backend | None, margin: int) -> None:
        if backend is not None and Capability.STORE_SESSIONS not in backend.capabilities:
            raise BackendError(
                f"backend {backend.name!r} cannot hold STS sessions",
                "set session_cache to a backend that can (keyctl) or to \"none\"",
            )
        self.backend = backend
        self.margin = margin

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    def get(self, name: str) -> Credentials | None:
        """The cached session if more than ``margin`` seconds remain, else None."""
        if self.backend is None:
            return None
        try:
            item = self.backend.get(name)
        except BrokerError:
            return None  # an unreadable cache is a miss, never a failure
        if item is None:
            return None
        try:
            creds = Credentials.from_item(item)
        except BrokerError:
            return None
        if creds.seconds_left() <= self._margin_for(item, creds):
            return None
        return creds

    def _margin_for(self, item: Item, creds: Credentials) -> float:
        """The refresh margin, but never more than half a session's lifetime: a margin
        longer than the sessions STS hands out would make every call refresh."""
        issued = item.get("issued")
        if not issued or creds.expiration is None:
            return self.margin
        try:
            lifetime = creds.expiration.timestamp() - float(issued)
        except ValueError:
            return self.margin
        return min(self.margin, max(lifetime, 0) / 2)

    def put(self, name: str, creds: Credentials, **meta: str) -> None:
        if self.backend is None or creds.expiration is None:
            return
        meta.setdefault("issued", str(int(time.time())))
        self.backend.set(name, creds.to_item(**meta), expires_at=creds.expiration)

    def get_or_create(
        self, name: str, create: Callable[[], Credentials], **meta: str
    ) -> Credentials:
        """Serve from the cache, or create under a lock so that concurrent callers
        wait for one refresh instead of making their own."""
        cached = self.get(name)
        if cached is not None:
            return cached
        with file_lock(f"session-{name}"):
            cached = self.get(name)
            if cached is not None:
                return cached
            creds = create()
            try:
                self.put(name, creds, **meta)
            except BrokerError as exc:  # the session is good; only caching it failed
                import sys

                sys.stderr.write(f"broker: warning: session not cached: {exc.message}\n")
            return creds

    def entries(self, profile: str | None = None) -> list[CachedSession]:
        if self.backend is None:
            return []
        found = []
        for name in self.backend.list():
            owner, _, rest = name.partition(":")
            if profile is not None and owner != profile:
                continue
            item = self.backend.get(name)
            if item is None:
                continue
            found.append(CachedSession(name, owner, rest.partition(":")[0], item))
        return found

    def clear(self, profile: str | None = None) -> int:
        if self.backend is None:
            return 0
        count = 0
        for name in self.backend.list():
            if profile is None or name.partition(":")[0] == profile:
                count += bool(self.backend.delete(name))
        return count

