"""The Backend interface every credential store implements.

A backend stores :class:`Item` objects (small mappings of named string fields)
under names, in its own native shape, so the store's own tools can still read
them. Built-in and third-party backends are found through the
``broker.backends`` entry-point group (see :mod:`broker.registry`) and must pass
the contract suite in :mod:`broker.testing.contract`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, Sequence

# This module is on the cached fast path: typing, dataclasses and datetime cost
# milliseconds to import, and annotations are strings here, so they stay out.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, ClassVar

    from broker._check import Check as Check
    from broker.errors import BrokerError

# Field names with a meaning to broker. Backends may keep other fields as they are.
ACCESS_KEY_ID = "aws_access_key_id"
SECRET_ACCESS_KEY = "aws_secret_access_key"  # noqa: S105 - a field name, not a secret
SESSION_TOKEN = "aws_session_token"  # noqa: S105
EXPIRATION = "expiration"
MFA_SERIAL = "mfa_serial"
TOTP = "totp"

#: Fields whose values are secret: never shown in repr, logs or errors.
SECRET_FIELDS = frozenset({SECRET_ACCESS_KEY, SESSION_TOKEN, TOTP, "secret"})


class Capability(enum.Flag):
    """What a backend can do, declared as a class attribute, never found by trial."""

    NONE = 0
    #: ``list()`` enumerates stored names.
    LIST = enum.auto()
    #: Suitable as the STS session cache: memory-only or cheap writes, no history.
    STORE_SESSIONS = enum.auto()
    #: Items survive a reboot.
    PERSISTENT = enum.auto()
    #: Reading may prompt the user (pinentry, desktop-app approval).
    INTERACTIVE = enum.auto()
    #: ``set(..., expires_at=)`` makes the store itself forget the item at that time.
    EXPIRY = enum.auto()
    #: Items can be seen from other machines (a synced vault).
    SHARED = enum.auto()
    #: ``store_secret()`` keeps a value for ``ttl_seconds`` that ``resolve()`` then serves
    #: through :meth:`Backend.secret_reference`: where ``broker backend login`` keeps a
    #: token (forgotten by the store itself when its time is up).
    SECRET_STORE = enum.auto()
    #: Reads the token ``broker backend login NAME`` keeps for it
    #: (:meth:`Backend.login_reference`); `backend login` refuses a backend without it.
    LOGIN_TOKEN = enum.auto()


#: What the default session cache must declare: fit for STS sessions, and forgetting each
#: one by itself when it expires.
SESSION_CACHE = Capability.STORE_SESSIONS | Capability.EXPIRY


class Availability:
    """Whether a backend can work here, and if not, why, in words a human can act on."""

    __slots__ = ("ok", "reason")

    def __init__(self, ok: bool, reason: str = "") -> None:
        self.ok = ok
        self.reason = reason

    def __bool__(self) -> bool:
        return self.ok

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Availability):
            return (self.ok, self.reason) == (other.ok, other.reason)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.ok, self.reason))

    def __repr__(self) -> str:
        return f"Availability(ok={self.ok!r}, reason={self.reason!r})"


def unnamed(name: str, reason: str) -> str:
    """``reason`` without its leading ``"NAME: "``: backends start their reasons and
    messages with their name, so a line that names the backend already would say it twice
    ("backend 'pass' is not available here: pass: ...")."""
    prefix = f"{name}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason


class Item(Mapping[str, str]):
    """An immutable mapping of field name to string value whose repr hides secrets."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, str] | None = None, **kwargs: str) -> None:
        merged = dict(fields or {})
        merged.update(kwargs)
        for key, value in merged.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError("Item fields must be str -> str")
        self._fields: dict[str, str] = merged

    def __getitem__(self, key: str) -> str:
        return self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._fields) == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._fields.items())))

    def __repr__(self) -> str:
        shown = {k: ("***" if k in SECRET_FIELDS else v) for k, v in self._fields.items()}
        return f"Item({shown!r})"

    def replace(self, **changes: str | None) -> Item:
        """A copy with fields changed; a value of None removes the field."""
        fields = dict(self._fields)
        for key, value in changes.items():
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        return Item(fields)

    def differing_fields(self, other: Mapping[str, str]) -> list[str]:
        """Names (never values) of the fields that differ from ``other``."""
        keys = set(self._fields) | set(other)
        return sorted(k for k in keys if self._fields.get(k) != other.get(k))


#: Resolves a secret reference (``op://...``, ``env:NAME``) to its value.
Resolver = Callable[[str], str]
# Inside the class, `list` is the method of that name.
_Checks = list["Check"]


def __getattr__(name: str) -> Any:
    # ``Check`` is a dataclass, and importing dataclasses costs the cached fast path
    # milliseconds (it imports inspect): it is defined in broker._check and only
    # imported when a check is made (`broker doctor`, a plugin's ``checks()``).
    if name == "Check":
        from broker._check import Check

        return Check
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _plain(text: str) -> bool:
    """A name or path as references hold them: printable, no blank at either end."""
    return bool(text) and text.isprintable() and text == text.strip()



class Backend:
    """Base class for credential stores.

    Subclasses set ``name``, ``capabilities`` and ``priority`` and implement the five
    methods. ``settings`` is the backend's table from broker's config
    (``[backends.NAME]``); ``namespace`` separates long-lived credentials
    (``"credentials"``) from the STS session cache (``"sessions"``); ``resolver`` turns
    secret references in settings (a passphrase, a token) into values without the
    backend knowing which plugin serves them (the registry passes broker's own to every
    backend it creates).
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[Capability] = Capability.NONE
    #: Rank for automatic choices, higher first: the credential backend nobody chose,
    #: the default session cache, where ``backend login`` keeps a token (each among the
    #: available backends with the capabilities that choice needs; ties go by name).
    #: A plain number on the class, never computed: the registry keeps it in its index,
    #: so that a cached ``broker exec`` chooses without importing every plugin. The
    #: built-in backends rank onepassword 3, pass 2, keyctl 1; the default is 0.
    priority: ClassVar[float] = 0.0
    #: One line for ``broker backend list``.
    description: ClassVar[str] = ""
    #: Secret-reference schemes this backend resolves (``"op"`` for ``op://...``).
    #: Installed plugins also declare them in the ``broker.references`` group.
    schemes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | None = None,
        namespace: str = "credentials",
        resolver: Resolver | None = None,
    ) -> None:
        self.settings: Mapping[str, Any] = dict(settings or {})
        self.namespace = namespace
        self._resolver = resolver

    def resolve_setting(self, reference: str) -> str:
        """Resolve a secret reference found in this backend's settings."""
        if self._resolver is None:
            from broker.errors import ConfigError
            from broker.secrets import shown

            raise ConfigError(
                f"{self.name}: cannot resolve secret reference {shown(reference)!r} here",
                "set the value through the environment instead",
            )
        return self._resolver(reference)

    def login_reference(self) -> str | None:
        """The secret reference of the token `broker backend login NAME` keeps for this
        backend (NAME: :attr:`name`), wherever that command keeps it: the highest-priority
        available backend declaring ``SECRET_STORE`` (``keyctl:NAME-token`` with the
        built-in plugins). Resolve it with :meth:`resolve_setting`. Offline, nothing is
        read. None when no secret store works here, or when this instance was made
        without broker's resolver (by hand, in a test, with a plain function): the
        resolver is asked through its ``login_reference(name)`` method, if it has one.
        """
        ask = getattr(self._resolver, "login_reference", None)
        if not callable(ask):
            return None
        try:
            reference = ask(self.name)
        except Exception:  # a resolver's mistake: no kept token, as when none is kept
            return None
        return reference if isinstance(reference, str) and reference else None

    def availability(self) -> Availability:
        """Cheap; never raises. ``ok`` or the reason a human can act on."""
        return Availability(True)

    def get(self, name: str) -> Item | None:
        """The item stored under ``name`` in this namespace, every field as it was set (unknown
        fields kept), or None when there is none (or, with EXPIRY, when it has expired).

        Raises:
            BackendUnavailable: the store cannot be reached here (an app locked, no agent).
            AuthenticationError: a passphrase or token was rejected.
            RateLimited: the store's service refused for its rate limit.
            BackendError: the read failed, or what is stored is not an item this backend wrote.
        """
        raise NotImplementedError

    def set(self, name: str, item: Item, *, expires_at: datetime | None = None) -> None:
        """Store ``item`` under ``name``, replacing any previous one, atomically."""
        raise NotImplementedError

    def delete(self, name: str) -> bool:
        """Remove ``name``; True if something was removed."""
        raise NotImplementedError

    def list(self) -> list[str]:
        """Names stored in this namespace, sorted."""
        raise NotImplementedError

    def list_problems(self) -> dict[str, BrokerError]:
        """Names the last :meth:`list` could not settle (``{name: error}``), such as two
        items sharing one title: ``broker list`` shows the error on that profile's row
        instead of "missing". The default: none."""
        return {}

    def get_many(self, names: Sequence[str]) -> dict[str, Item | None]:
        """Several items at once: ``{name: item or None}`` for every name asked.

        The default calls :meth:`get` for each; a store with a batched read (one request
        for many items) overrides it. ``broker migrate`` reads through it.
        """
        return {name: self.get(name) for name in names}

    def resolve(self, reference: str) -> str:
        """Resolve a secret reference of a scheme this backend claims.

        Backends claim schemes through the ``broker.references`` entry-point group.
        """
        from broker.errors import ConfigError

        raise ConfigError(f"{self.name} does not resolve secret references")

    @classmethod
    def shows_reference(cls, reference: str) -> bool:
        """Whether ``reference``, of a scheme this class claims, has the shape of one of
        its references, so that a message may show it (:func:`broker.secrets.shown`).

        The default accepts ``scheme://path`` and ``scheme:name`` with a printable name
        or path, no blank at either end and no ``//`` inside. A scheme whose references
        are URL-shaped only overrides it to refuse ``scheme:text``: that is a secret
        typed where its reference belongs, and must never be echoed.
        """
        rest = reference.partition(":")[2]
        if rest.startswith("//"):
            return _plain(rest[2:])
        return _plain(rest) and "//" not in rest

    # -- items the user already keeps (a profile's ``broker_item``) -------------------

    def bind_item(self, name: str, reference: str) -> None:
        """Serve ``name`` (a profile) from the existing item ``reference`` names, the
        profile's ``broker_item`` (``SCHEME://VAULT/ITEM`` or an item's title), instead of
        the item this store keeps under ``name``: :meth:`get`, :meth:`get_many`,
        :meth:`list`, :meth:`set` and :meth:`delete` then use that item. Offline: the
        reference is checked, nothing is read.

        Such an item is the user's: until :meth:`adopt` marks it as broker's, broker only
        reads it, and :meth:`check_writable`, :meth:`set` and :meth:`delete` refuse.

        Raises:
            ConfigError: this store cannot serve a key from an item named so (the default),
                or ``reference`` is not one of its own (another scheme).
        """
        from broker.errors import ConfigError

        raise ConfigError(
            f"{self.name} cannot read a key from an existing item (broker_item)",
            "remove broker_item from the profile, or keep the key in a backend that can "
            "(`broker backend list`)",
        )

    def item_identity(self, name: str) -> str | None:
        """What tells apart the item ``name``'s key was last read from by this instance (a
        vault's and an item's ids, say), the same for two names served from one item (two
        profiles whose ``broker_item`` names it by title and by ``SCHEME://`` reference);
        None when not known (not read yet, or a store that cannot tell). Offline: nothing
        is read. `broker rotate` counts a profile served from the rotated key's own item
        as getting the new key, not as a second holder of the old one. The default: None.
        """
        return None

    def check_writable(self, name: str) -> None:
        """Refuse, before anything is changed, a command that would write or delete
        ``name``'s item when broker may not: an item bound with :meth:`bind_item` and not
        adopted. May read the item (once; a later :meth:`get` of it is then free). The
        default: every item of a store is broker's.

        Raises:
            UsageError: naming the item and the next step (`broker adopt PROFILE`).
            BrokerError: the item could not be read.
        """

    def adopt(self, name: str) -> bool:
        """Mark the item ``name`` is served from as managed by broker (one write), so that
        broker may update it from now on, in its own fields. True if it changed, False if
        it already was broker's.

        Raises:
            ConfigError: this store has no items to adopt (the default).
            NotFound: there is no such item.
            BrokerError: the item could not be read or written.
        """
        from broker.errors import ConfigError

        raise ConfigError(
            f"{self.name} keeps only items broker made: there is nothing to adopt",
            "`broker adopt` is for items named by a profile's broker_item",
        )

    # -- secrets kept for references (with Capability.SECRET_STORE) -------------------

    def store_secret(self, name: str, value: str, ttl_seconds: int | None) -> None:
        """Keep ``value`` under ``name`` for :meth:`secret_reference`, forgotten by the
        store itself after ``ttl_seconds`` (None: until deleted or reboot), whatever this
        instance's namespace. Only with ``Capability.SECRET_STORE``.

        Raises:
            NotImplementedError: this backend does not keep secrets for references.
        """
        raise NotImplementedError(f"{self.name} does not keep secrets for references")

    def secret_reference(self, name: str) -> str:
        """The secret reference that :meth:`resolve` answers with the value kept under
        ``name`` by :meth:`store_secret` (``keyctl:NAME``). Only with SECRET_STORE."""
        raise NotImplementedError(f"{self.name} does not keep secrets for references")

    def delete_secret(self, name: str) -> bool:
        """Forget a value kept with :meth:`store_secret`; True if one was there."""
        raise NotImplementedError(f"{self.name} does not keep secrets for references")

    # -- diagnostics -------------------------------------------------------------------

    def checks(self, used: bool) -> _Checks:
        """This store's own rows for ``broker doctor``: the tools it needs, the state of
        its environment, its settings. ``used`` says whether broker uses it here (the
        credential backend of a profile or by default, the session cache, or the store
        of a secret reference in broker's config): a problem of a store in use is a
        ``"fail"``, of one merely installed a ``"warn"`` or ``"ok"``.

        Local and quick: no item is read and nothing leaves the machine (doctor itself
        lists shared stores with ``--online``). Never raises on purpose; doctor turns an
        exception into a warning row. The default has no rows.
        """
        return []

    def describe(self) -> dict[str, str]:
        """Non-secret facts for ``broker backend show`` (where items live, ...)."""
        return {}

    def close(self) -> None:
        """Release resources (agents, clients). Calling it again does nothing more."""
