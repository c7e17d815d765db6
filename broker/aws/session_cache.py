"""The STS session cache: a wrapper around any backend that declares STORE_SESSIONS.

Sessions live under names ``<profile>:<kind>:<digest>`` where the digest covers
everything that makes two sessions different (role ARN, external id, session
name, MFA serial, the source session), so profiles, roles and MFA devices never
collide. A profile name may itself contain colons (``base:ops``): a name is read
from the right (:func:`parse_session_name`), where the kind and the 16 hex digits
never do. The kernel keyring is the default store: memory only, with the
kernel's own timeout on each key equal to the session's expiry.

Each cached item also records ``key_profile``, the profile whose long-lived key the
session was made from (through any number of roles), so that removing, replacing or
rotating that key ends every session built on it (:meth:`SessionCache.revoke`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

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


#: The item field naming the profile whose long-lived key made the session.
KEY_PROFILE = "key_profile"
_DIGEST_LENGTH = 16
_HEX = frozenset("0123456789abcdef")


def session_name(profile: str, kind: str, *parts: str | None) -> str:
    """The cache name ``<profile>:<kind>:<16 hex digits>``, the digits from SHA-256 over
    ``profile``, ``kind`` and ``parts`` (None counts as empty), so that sessions differing
    in any part (role ARN, external id, MFA serial, source session) never share a name.
    :func:`parse_session_name` reads it back.
    """
    digest = sha256("\x1f".join(p or "" for p in (profile, kind, *parts)).encode())
    return f"{profile}:{kind}:{digest.hexdigest()[:_DIGEST_LENGTH]}"


def parse_session_name(name: str) -> tuple[str, str] | None:
    """(profile, kind) of a name :func:`session_name` made, or None for any other name.

    Read from the right: the kind and the digest never contain a colon, the profile may.
    """
    profile, sep, rest = name.rpartition(":")
    owner, sep2, kind = profile.rpartition(":")
    if not sep or not sep2 or not owner or not kind.isalnum():
        return None
    if len(rest) != _DIGEST_LENGTH or not _HEX.issuperset(rest):
        return None
    return owner, kind


class CachedSession:
    """One cached session as listed: its name, owning profile and kind."""

    def __init__(self, name: str, profile: str, kind: str, item: Item) -> None:
        self.name = name
        self.profile = profile
        self.kind = kind
        self.item = item

    @property
    def credentials(self) -> Credentials:
        """The cached item as :class:`Credentials`, whatever time is left on them.

        Raises:
            BackendError: the item lacks a key field or has a malformed expiration
                (:meth:`Credentials.from_item`).
        """
        return Credentials.from_item(self.item, what=f"cached session {self.name}")


class SessionCache:
    """Fresh sessions from ``backend``; ``None`` as backend means caching is off.

    ``key_profile``: the profile whose key the sessions put through this cache are made
    from, recorded with each (see :meth:`for_key`).
    """

    def __init__(
        self, backend: Backend | None, margin: int, *, key_profile: str | None = None
    ) -> None:
        if backend is not None and Capability.STORE_SESSIONS not in backend.capabilities:
            raise BackendError(
                f"backend {backend.name!r} cannot hold STS sessions",
                "set session_cache to a backend that can (keyctl) or to \"none\"",
            )
        self.backend = backend
        self.margin = margin
        self.key_profile = key_profile

    def for_key(self, key_profile: str) -> SessionCache:
        """The same cache, recording ``key_profile`` with every session put through it."""
        return SessionCache(self.backend, self.margin, key_profile=key_profile)

    @property
    def enabled(self) -> bool:
        """Whether sessions are cached at all (False when the cache backend is ``none``)."""
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
        """Cache ``creds`` under ``name`` until their expiration (the backend's own expiry), with
        ``meta`` as item fields plus ``issued`` (seconds since the epoch, UTC, as text) and
        ``key_profile`` when this cache records one. Does nothing when caching is off or
        ``creds`` never expire (a long-lived key is never cached).

        Raises:
            BackendError: the cache backend could not store the item.
        """
        if self.backend is None or creds.expiration is None:
            return
        meta.setdefault("issued", str(int(time.time())))
        if self.key_profile is not None:
            meta.setdefault(KEY_PROFILE, self.key_profile)
        self.backend.set(name, creds.to_item(**meta), expires_at=creds.expiration)

    def get_or_create(
        self, name: str, create: Callable[[], Credentials], *, reuse: bool = True,
        **meta: str,
    ) -> Credentials:
        """Serve from the cache, or create under a lock so that concurrent callers
        wait for one refresh instead of making their own; the created session is cached
        with ``meta`` as item fields. ``reuse=False``: never serve the cached session,
        always create (the new one replaces it)."""
        cached = self.get(name) if reuse else None
        if cached is not None:
            return cached
        # This lock only spares duplicate STS calls (the MFA device lock guards the code):
        # where no lock file can be made, the refresh goes on unlocked.
        with file_lock(f"session-{name}", required=False):
            cached = self.get(name) if reuse else None
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
        """Every cached session, or those of ``profile`` (exact name), expired or not, in the
        backend's list order; names not made by :func:`session_name` are skipped. Empty when
        caching is off.

        Raises:
            BackendError: the cache backend could not list or read its items.
        """
        if self.backend is None:
            return []
        found = []
        for name in self.backend.list():
            parsed = parse_session_name(name)
            if parsed is None or (profile is not None and parsed[0] != profile):
                continue
            item = self.backend.get(name)
            if item is None:
                continue
            found.append(CachedSession(name, parsed[0], parsed[1], item))
        return found

    def clear(self, profile: str | None = None) -> int:
        """Delete every cached session, or those of ``profile`` (by exact name)."""
        if self.backend is None:
            return 0
        count = 0
        for name in self.backend.list():
            parsed = parse_session_name(name)
            if profile is None or (parsed is not None and parsed[0] == profile):
                count += bool(self.backend.delete(name))
        return count

    def revoke(self, key_profile: str, profiles: Collection[str] = ()) -> int:
        """End every cached session made from ``key_profile``'s key; how many were.

        A session counts as made from it when its item records that key profile, or,
        for an item that records none (written before broker recorded it) or cannot be
        read, when its own profile is ``key_profile`` or one of ``profiles`` (the
        profiles whose chain starts from that key, as ~/.aws/config says now). A
        session that records another key profile is left alone.
        """
        if self.backend is None:
            return 0
        owners = {key_profile, *profiles}
        count = 0
        for name in self.backend.list():
            parsed = parse_session_name(name)
            if parsed is None:
                continue
            try:
                item = self.backend.get(name)
            except BrokerError:
                item = None
            recorded = item.get(KEY_PROFILE) if item is not None else None
            if recorded == key_profile or (not recorded and parsed[0] in owners):
                count += bool(self.backend.delete(name))
        return count
