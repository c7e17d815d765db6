"""Backend administration: list, show, set the default; clearing sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from broker import config
from broker.errors import ConfigError
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
