"""Backend administration: list, show, set the default; clearing sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from broker import config
from broker.backend import Backend, Item
from broker.errors import BackendUnavailable, ConfigError, UsageError
from broker.services.context import Context


@dataclass
class BackendInfo:
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
    return [describe(ctx, name) for name in ctx.registry.names()]


def set_default(ctx: Context, name: str) -> Path:
    ctx.registry.backend_class(name)  # raises for unknown, disabled or broken plugins
    availability = ctx.registry.availability(name)
    if not availability.ok:
        raise ConfigError(
            f"backend {name!r} is not available here: {availability.reason}",
            "fix that first; `broker backend list` shows every backend's state",
        )
    return config.set_value("backend", name, ctx.settings.path)


def clear_sessions(ctx: Context, profile: str | None = None) -> int:
    if profile is not None and profile not in ctx.aws.profiles:
        ctx.aws.get(profile)  # an unknown profile is an error naming close matches
    return ctx.sessions.clear(profile)


def token_name(backend: str) -> str:
    """Where `backend login` keeps a backend's token: ``keyctl:<this name>``."""
    return f"{backend}-token"


def login(ctx: Context, name: str, secret: str, ttl: int) -> tuple[str, datetime]:
    """Keep ``secret`` (a backend's access token) in the kernel keyring for ``ttl`` seconds.

    The backend then finds it through the secret reference ``keyctl:<name>-token``.
    """
    ctx.registry.backend_class(name)  # an unknown backend is an error before anything
    if not secret.strip():
        raise UsageError("the token is empty", "paste it again")
    keyring = _keyring(ctx)
    expires = datetime.now(timezone.utc) + timedelta(seconds=ttl)
    keyring.set(token_name(name), Item(secret=secret.strip()), expires_at=expires)
    return f"keyctl:{token_name(name)}", expires


def logout(ctx: Context, name: str) -> bool:
    return _keyring(ctx).delete(token_name(name))


def _keyring(ctx: Context) -> Backend:
    if "keyctl" not in ctx.registry.names():
        raise BackendUnavailable(
            "the kernel keyring backend (keyctl) is not installed",
            "provide the token through the environment instead",
        )
    keyring = ctx.backend("keyctl", "secrets")
    availability = keyring.availability()
    if not availability.ok:
        raise BackendUnavailable(
            f"cannot keep the token in the kernel keyring: {availability.reason}",
            "provide the token through the environment instead",
        )
    return keyring
