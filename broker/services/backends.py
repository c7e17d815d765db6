"""Backend administration: list, show, set the default; clearing sessions."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from broker import config
from broker.aws.profiles import Profile
from broker.backend import Backend, Capability, unnamed
from broker.errors import BackendUnavailable, BrokerError, ConfigError, UsageError
from broker.registry import login_token_name
from broker.services.context import Context

#: What a memory-only backend means for a long-lived key; said wherever one lands there.
LOST_AT_REBOOT = "memory only: lost at reboot or `wsl --shutdown`"


@dataclass
class BackendInfo:
    """One row of ``broker backend list`` / ``backend show``: the backend's ``name``, the
    ``distribution`` and ``entry_point`` (``module:attr``) it comes from, whether it is
    ``available`` here and the ``reason`` when not (``"broken: ..."`` for a plugin that
    fails to import, with ``broken`` set), its capability names in lower case, its
    one-line ``description``, whether it is the ``default`` credential backend and the
    ``session_cache``, and ``details`` (name -> text, from :meth:`Backend.describe`, only
    when asked for).
    """
    name: str
    distribution: str
    entry_point: str
    available: bool
    reason: str
    capabilities: list[str]
    description: str
    default: bool
    session_cache: bool
    broken: bool = False
    details: dict[str, str] = field(default_factory=dict)


def _default_name(ctx: Context) -> str | None:
    try:
        return ctx.credential_backend_name()
    except Exception:
        return None


def describe(ctx: Context, name: str, *, details: bool = False) -> BackendInfo:
    """``name``'s row for ``backend list``/``show``; with ``details``, and when it is
    available, also what the backend itself reports (an error there becomes an
    ``"error"`` detail). Never raises for a broken or unavailable plugin: that is the row.

    Raises:
        KeyError: no backend of that name is installed (:meth:`Registry.info`).
    """
    info = ctx.registry.info(name)
    loaded = ctx.registry.load(name)
    cache = ctx.session_cache_name()
    if loaded.cls is None:
        return BackendInfo(
            name, info.distribution, info.value, False, f"broken: {loaded.error}", [], "",
            False, False, broken=True,
        )
    availability = ctx.registry.availability(name)
    caps = [c.name.lower() for c in type(loaded.cls.capabilities) if c in loaded.cls.capabilities
            and c.name]
    extra: dict[str, str] = {}
    if details and availability.ok:
        try:
            extra = ctx.backend(name).describe()
        except Exception as exc:
            extra = {"error": str(exc)}
    return BackendInfo(
        name, info.distribution, info.value, availability.ok, availability.reason, caps,
        loaded.cls.description, _default_name(ctx) == name, cache == name, details=extra,
    )


def list_backends(ctx: Context) -> list[BackendInfo]:
    """A :func:`describe` row, without details, for every installed backend that is not
    disabled, sorted by name.
    """
    return [describe(ctx, name) for name in ctx.registry.names()]


def set_default(ctx: Context, name: str, *, memory_only_ok: bool = False) -> DefaultSet:
    """Make ``name`` the default credential backend. A memory-only backend (no
    ``PERSISTENT`` capability) needs ``memory_only_ok``: keys added there are lost at reboot.
    Keys in the old default stay reachable: their profiles get ``broker_backend``.

    Raises:
        BackendUnavailable: ``name`` is unknown, disabled, broken or unavailable here.
        UsageError: ``name`` is memory-only and ``memory_only_ok`` is not given.
    """
    ctx.registry.backend_class(name)  # raises for unknown, disabled or broken plugins
    require_available(ctx, name)
    if memory_only(ctx, name) and not memory_only_ok:
        raise UsageError(
            f"backend {name!r} keeps keys in {LOST_AT_REBOOT}",
            f"to make it the default anyway: `broker backend set {name} --yes`; for keys "
            f"that last, {persistent_setup(ctx)}",
        )
    kept = _keep_keys_reachable(ctx, name)
    return DefaultSet(config.set_value("backend", name, ctx.settings.path), kept)


@dataclass(frozen=True)
class DefaultSet:
    """``backend set``'s outcome: where the setting was saved, and the profiles whose keys
    stay in the old default (now named by their ``broker_backend``)."""

    path: Path
    kept: list[str]


def require_available(ctx: Context, name: str) -> Backend:
    """Credential backend ``name`` (:meth:`Context.backend`), refused unless it works here
    (:meth:`broker.registry.Registry.availability_of`, so a plugin whose check raises is
    refused too).

    Raises:
        ConfigError: no backend of that name is installed.
        BackendUnavailable: it is disabled, broken, fails to start or is not available here
            (the reason given).
    """
    store = ctx.backend(name)
    availability = ctx.registry.availability_of(store)
    if not availability.ok:
        raise BackendUnavailable(
            f"backend {name!r} is not available here: {unnamed(name, availability.reason)}",
            "fix that first; `broker backend list` shows every backend's state",
        )
    return store


def _keep_keys_reachable(ctx: Context, new: str) -> list[str]:
    """Profiles whose keys sit in the current default backend and that would look for
    them in ``new`` once it is the default: each gets ``broker_backend`` naming the old
    one in ~/.aws/config, so no key goes missing (move them with `broker migrate`)."""
    from broker.aws.config_writer import write_profile_value

    old = ctx.settings.backend
    if not old or old == new or config.environment("BROKER_BACKEND"):
        return []
    try:
        store = ctx.backend(old)
        stored = set(store.list()) if Capability.LIST in store.capabilities else set()
    except BrokerError:
        return []
    kept = []
    for name in sorted(stored):
        profile = ctx.aws.profiles.get(name)
        if profile is not None and not profile.broker_backend:
            write_profile_value(ctx.aws.path, name, "broker_backend", old)
            kept.append(name)
    if kept:
        ctx.__dict__.pop("aws", None)  # the cached parse is stale now
    return kept


def memory_only(ctx: Context, name: str) -> bool:
    """Whether backend ``name`` forgets what it holds at reboot (its class does not declare
    ``Capability.PERSISTENT``). Only imports the plugin; False for one that is broken."""
    try:
        cls = ctx.registry.backend_class(name)
    except Exception:
        return False
    return Capability.PERSISTENT not in cls.capabilities


def lasting_order(ctx: Context) -> list[str]:
    """The installed persistent credential backends in the order a hint suggests them:
    the configured default credential backend (``BROKER_BACKEND``, else broker's config
    ``backend``) first when it is persistent and available here, then the others by
    priority (:meth:`broker.registry.Registry.preference_order`)."""
    order = [name for name in ctx.registry.preference_order() if not memory_only(ctx, name)]
    default = config.environment("BROKER_BACKEND") or ctx.settings.backend
    if default in order and ctx.registry.availability(default).ok:
        order.remove(default)
        order.insert(0, default)
    return order


def persistent_setup(ctx: Context) -> str:
    """How to set up a persistent credential backend here, in words for a hint: the
    first one of :func:`lasting_order` that is available (kept, when it is the configured
    default already), else what the first local one (not ``SHARED``: no account or
    network to set up, say a pass store, one `pass init` away) or else the first
    persistent one says it needs."""
    candidates: list[tuple[str, str]] = []
    default = config.environment("BROKER_BACKEND") or ctx.settings.backend
    for name in lasting_order(ctx):
        availability = ctx.registry.availability(name)
        if availability.ok:
            if name == default:
                return f"keep {name}, the default now"
            return f"use {name}: `broker backend set {name}`"
        candidates.append((name, availability.reason))
    if not candidates:
        return "install a backend plugin that keeps keys on disk or in a vault"
    names = [n for n, _ in candidates]
    name, reason = candidates[names.index(easiest_to_set_up(ctx, names))]
    prefix = f"{name}: "
    reason = reason[len(prefix):] if reason.startswith(prefix) else reason
    reason = re.sub(r"\s*\([^()]*\)$", "", reason)  # "(password store ...)": a detail
    return f"set up {name}: {reason}"


def easiest_to_set_up(ctx: Context, names: list[str]) -> str:
    """The first of ``names`` (persistent backends, in priority order) that keeps items
    on this machine (no ``SHARED`` capability: no account or network to set up), else
    the first. ``names`` must not be empty."""
    for name in names:
        try:
            if Capability.SHARED not in ctx.registry.backend_class(name).capabilities:
                return name
        except Exception:  # noqa: S112 - a broken plugin is no suggestion
            continue
    return names[0]


def key_destination(
    ctx: Context, profile: Profile | None, explicit: str | None,
    *, knowingly: Callable[[str], str],
) -> str:
    """The credential backend a long-lived key is about to be stored in.

    A backend nobody chose (the best available one) that keeps keys in memory only is
    refused: the key would be lost at reboot without the user ever having said so. One
    that was chosen must be available here (:func:`require_available`).
    ``knowingly(name)`` is the command that makes that choice explicit, for the hint.

    Raises:
        BackendUnavailable: no persistent backend is available and none was chosen, or the
            chosen one is disabled, broken or not available here.
        ConfigError: the chosen name is not installed.
    """
    name, origin = ctx.backend_choice(profile, explicit)
    if origin:
        require_available(ctx, name)
    if not origin and memory_only(ctx, name):
        raise BackendUnavailable(
            f"no persistent backend is set up here, and {name}, the one available, keeps "
            f"keys in {LOST_AT_REBOOT}",
            f"{persistent_setup(ctx)}, then run this again; or, to keep the key in memory "
            f"knowingly: {knowingly(name)}",
        )
    return name


def clear_sessions(ctx: Context, profile: str | None = None) -> int:
    """Delete the cached STS sessions of ``profile`` (every profile's when None) from the
    session cache; how many were deleted (0 when caching is off).

    Raises:
        ProfileNotFound: ``profile`` is not in ~/.aws/config (the hint names close matches).
        BackendError: the cache backend failed to list or delete.
    """
    if profile is not None and profile not in ctx.aws.profiles:
        ctx.aws.get(profile)  # an unknown profile is an error naming close matches
    cleared = ctx.sessions.clear(profile)
    from broker.aws.session_cache import SessionCache

    for _, store in ctx.usable_backends(ctx.registry.session_caches(),
                                        skip=ctx.session_cache_name(), namespace="sessions"):
        # sessions a cache in use before kept (a plugin of higher priority installed since,
        # or session_cache changed): the cache would serve them again once chosen again
        with contextlib.suppress(BrokerError):
            cleared += SessionCache(store, ctx.settings.refresh_margin).clear(profile)
    return cleared


def token_name(backend: str) -> str:
    """The name `backend login` keeps ``backend``'s token under in the secret store
    (``onepassword-token``, found again as ``keyctl:onepassword-token`` with the built-in
    plugins): :func:`broker.registry.login_token_name`."""
    return login_token_name(backend)


def login(ctx: Context, name: str, secret: str, ttl: int) -> tuple[str, datetime]:
    """Keep ``secret`` (backend ``name``'s access token) in the secret store for ``ttl``
    seconds (:func:`secret_store`: the kernel keyring where it works, unless a plugin of
    higher priority keeps secrets).

    Returns the secret reference the backend finds it through
    (:meth:`broker.backend.Backend.login_reference`; ``keyctl:<name>-token`` with the
    built-in plugins, as the store says) and when the store forgets it (UTC).

    Raises:
        ConfigError, BackendUnavailable: ``name`` is not an installed, usable backend, or
            no secret store works here.
        UsageError: the token is empty, or backend ``name`` reads no login token (it
            does not declare ``Capability.LOGIN_TOKEN``).
    """
    cls = ctx.registry.backend_class(name)  # an unknown backend is an error before anything
    if Capability.LOGIN_TOKEN not in getattr(cls, "capabilities", Capability.NONE):
        able = ctx.registry.with_capabilities(Capability.LOGIN_TOKEN)
        raise UsageError(
            f"backend {name!r} reads no token from `broker backend login`; nothing was kept",
            f"log in to a backend that does ({', '.join(able) or 'none is installed'}), "
            f"or see `broker backend show {name}` and its guide for how {name} authenticates",
        )
    if not secret.strip():
        raise UsageError("the token is empty", "paste it again")
    store = secret_store(ctx)
    expires = datetime.now(timezone.utc) + timedelta(seconds=ttl)
    store.store_secret(token_name(name), secret.strip(), ttl)
    reference = store.secret_reference(token_name(name))
    try:
        found = ctx.resolver(reference) == secret.strip()
    except BrokerError:
        found = False
    if not found:  # the backend could never find it: keep nothing
        with contextlib.suppress(Exception):
            store.delete_secret(token_name(name))
        raise ConfigError(
            f"{store.name} kept the token as {reference!r}, but no installed backend "
            "resolves that reference, so nothing could use it; it was not kept",
            f"the plugin providing {store.name} must declare its reference scheme in the "
            "broker.references entry points (docs/plugins.md); meanwhile provide the token "
            "through the environment",
        )
    return reference, expires


def logout(ctx: Context, name: str) -> bool:
    """Forget backend ``name``'s token kept by :func:`login`, from the secret store
    :func:`secret_store` chooses and from every other that works here (one chosen before
    a plugin of higher priority was installed); True if one was kept."""
    store = secret_store(ctx)
    forgot = store.delete_secret(token_name(name))
    for _, other in ctx.usable_backends(ctx.registry.secret_stores(), skip=store.name,
                                        namespace="secrets"):
        with contextlib.suppress(BrokerError):
            forgot = other.delete_secret(token_name(name)) or forgot
    return forgot


def secret_store(ctx: Context) -> Backend:
    """Where `backend login` keeps tokens: the highest-priority installed backend that
    declares ``Capability.SECRET_STORE`` and works here, in its ``secrets`` namespace
    (:meth:`broker.registry.Registry.secret_store`, the choice every backend looking for
    its token makes too).

    Raises:
        BackendUnavailable: none is installed, or none works here (the first one's reason).
    """
    return ctx.registry.secret_store(lambda name: ctx.backend(name, "secrets"))
