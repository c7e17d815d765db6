"""Backend discovery through the ``broker.backends`` entry-point group.

Scanning every installed distribution's metadata costs ~40 ms, more than a
cached ``broker exec`` may spend in total, so the scan result (names and
``module:attr`` strings only, nothing secret) is kept in a small index under
the cache dir, keyed by the modification times of the ``sys.path`` directories:
installing or removing a distribution changes them and the index is rebuilt.

Only the backend in use is imported. A plugin that fails to import or to
construct is reported as broken, with its distribution and the reason; the
rest of broker keeps working. ``disabled_plugins`` (or
``BROKER_DISABLED_PLUGINS``) switches plugins off by name.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable

from broker import paths
from broker.backend import Availability, Backend, Capability, Resolver
from broker.errors import BackendUnavailable, ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and dataclasses cost import time on the cached path
    from typing import Any

BACKENDS_GROUP = "broker.backends"
REFERENCES_GROUP = "broker.references"
_INDEX_VERSION = 1


class PluginInfo:
    """One entry point: a backend name and where its class lives (``module:attr``)."""

    __slots__ = ("distribution", "name", "value")

    def __init__(self, name: str, value: str, distribution: str = "") -> None:
        self.name = name
        self.value = value
        self.distribution = distribution


class LoadedPlugin:
    """A plugin after its import: the class, or the reason it failed."""

    __slots__ = ("cls", "error", "info")

    def __init__(self, info: PluginInfo, cls: type[Backend] | None = None, error: str = "") -> None:
        self.info = info
        self.cls = cls
        self.error = error

    @property
    def broken(self) -> bool:
        return self.cls is None


def _fingerprint() -> list[list[Any]]:
    stamp = []
    # sys.path[0] is the script's directory or the cwd: it changes between `broker`
    # and `python -m broker` and never holds installed distributions.
    for entry in sys.path[1:]:
        try:
            stamp.append([entry, os.stat(entry or ".").st_mtime_ns])
        except OSError:
            continue
    return stamp


def _scan() -> dict[str, list[dict[str, str]]]:
    from importlib.metadata import distributions

    found: dict[str, list[dict[str, str]]] = {BACKENDS_GROUP: [], REFERENCES_GROUP: []}
    seen: set[tuple[str, str]] = set()
    for dist in distributions():
        dist_name = dist.metadata["Name"] or ""
        for ep in dist.entry_points:
            if ep.group in found and (ep.group, ep.name) not in seen:
                seen.add((ep.group, ep.name))
                found[ep.group].append(
                    {"name": ep.name, "value": ep.value, "distribution": dist_name}
                )
    return found


def _index() -> dict[str, list[dict[str, str]]]:
    index_path = paths.cache_dir() / "plugins.json"
    stamp = _fingerprint()
    try:
        cached = json.loads(index_path.read_text(encoding="utf-8"))
        if cached.get("version") == _INDEX_VERSION and cached.get("stamp") == stamp:
            return dict(cached["groups"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    groups = _scan()
    try:
        payload = {"version": _INDEX_VERSION, "stamp": stamp, "groups": groups}
        paths.atomic_write(index_path, json.dumps(payload).encode("utf-8"))
    except (OSError, paths.UnsafePath):
        pass  # a read-only (or not safely private) cache only costs the scan next time
    return groups


def reference_schemes() -> frozenset[str]:
    """The secret-reference schemes installed plugins resolve (``op``, ``pass``...)."""
    try:
        return frozenset(e["name"] for e in _index().get(REFERENCES_GROUP, []))
    except Exception:
        return frozenset()


class Registry:
    """The backends installed here, loaded lazily by name.

    ``extra`` adds in-process backend classes (tests, embedding) beside the entry points.
    """

    def __init__(
        self,
        settings_for: dict[str, dict[str, Any]] | None = None,
        disabled: frozenset[str] = frozenset(),
        extra: dict[str, type[Backend]] | None = None,
    ) -> None:
        self.settings_for = settings_for or {}
        self.disabled = disabled
        self.extra = extra or {}
        self._infos: dict[str, PluginInfo] | None = None
        self._schemes: dict[str, str] | None = None
        self._loaded: dict[str, LoadedPlugin] = {}

    def _discover(self) -> None:
        if self._infos is not None:
            return
        groups = _index()
        self._infos = {
            e["name"]: PluginInfo(e["name"], e["value"], e.get("distribution", ""))
            for e in groups.get(BACKENDS_GROUP, [])
        }
        self._schemes = {e["name"]: e["value"] for e in groups.get(REFERENCES_GROUP, [])}

    def names(self) -> list[str]:
        """Every installed backend name, disabled ones excluded."""
        self._discover()
        assert self._infos is not None
        names = set(self._infos) | set(self.extra)
        return sorted(n for n in names if n not in self.disabled)

    def info(self, name: str) -> PluginInfo:
        self._discover()
        assert self._infos is not None
        if name in self.extra:
            cls = self.extra[name]
            return PluginInfo(name, f"{cls.__module__}:{cls.__qualname__}", "(in-process)")
        return self._infos[name]

    def load(self, name: str) -> LoadedPlugin:
        """Import a backend's class; a failure is recorded, never raised."""
        if name in self._loaded:
            return self._loaded[name]
        if name in self.extra:
            loaded = LoadedPlugin(self.info(name), self.extra[name])
        else:
            loaded = _import(self.info(name))
        self._loaded[name] = loaded
        return loaded

    def backend_class(self, name: str) -> type[Backend]:
        if name in self.disabled:
            raise BackendUnavailable(
                f"backend {name!r} is disabled",
                "remove it from disabled_plugins or BROKER_DISABLED_PLUGINS",
            )
        if name not in self.names():
            raise ConfigError(
                f"no backend named {name!r}",
                f"installed: {', '.join(self.names()) or 'none'}; see `broker backend list`",
            )
        loaded = self.load(name)
        if loaded.cls is None:
            raise BackendUnavailable(
                f"backend {name!r} ({loaded.info.distribution or loaded.info.value}) is broken: "
                f"{loaded.error}",
                "reinstall or disable that plugin",
            )
        return loaded.cls

    def create(
        self, name: str, *, namespace: str = "credentials", resolver: Resolver | None = None
    ) -> Backend:
        cls = self.backend_class(name)
        try:
            return cls(
                settings=self.settings_for.get(name, {}), namespace=namespace, resolver=resolver
            )
        except Exception as exc:  # a broken plugin weakens broker, never breaks it
            raise BackendUnavailable(
                f"backend {name!r} failed to start: {type(exc).__name__}: {exc}",
                f"check its settings under [backends.{name}] or disable it",
            ) from exc

    def scheme_backend(self, scheme: str) -> str | None:
        """The backend name that resolves references of ``scheme``, if any."""
        self._discover()
        assert self._schemes is not None and self._infos is not None
        value = self._schemes.get(scheme)
        if value is None:
            for name, cls in self.extra.items():
                if scheme in getattr(cls, "schemes", ()):
                    return name
            return None
        for name, info in self._infos.items():
            if info.value == value and name not in self.disabled:
                return name
        return None

    def best_available(
        self, required: Capability, candidates: Iterable[str] | None = None
    ) -> str | None:
        """The first backend, in preference order, with ``required`` that is available."""
        order = list(candidates) if candidates is not None else self.preference_order()
        for name in order:
            if name not in self.names():
                continue
            loaded = self.load(name)
            if loaded.cls is None or (loaded.cls.capabilities & required) != required:
                continue
            try:
                if self.create(name).availability().ok:
                    return name
            except Exception:  # noqa: S112 - an unusable plugin is skipped
                continue
        return None

    def preference_order(self) -> list[str]:
        preferred = ["onepassword", "pass", "keyctl"]
        rest = [n for n in self.names() if n not in preferred]
        return [n for n in preferred if n in self.names()] + rest

    def availability(self, name: str) -> Availability:
        try:
            backend = self.create(name)
        except Exception as exc:
            return Availability(False, str(exc))
        try:
            return backend.availability()
        except Exception as exc:  # the contract says never raises; be safe anyway
            return Availability(False, f"availability check failed: {exc}")


def _import(info: PluginInfo) -> LoadedPlugin:
    import importlib

    module_name, _, attr = info.value.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except Exception as exc:
        _warn(f"plugin {info.name!r} from {info.distribution or '?'} is broken: "
              f"{type(exc).__name__}: {exc}")
        return LoadedPlugin(info, None, f"{type(exc).__name__}: {exc}")
    if not (isinstance(obj, type) and issubclass(obj, Backend)):
        error = f"{info.value} is not a broker.backend.Backend subclass"
        _warn(f"plugin {info.name!r} from {info.distribution or '?'} is broken: {error}")
        return LoadedPlugin(info, None, error)
    return LoadedPlugin(info, obj)


def _warn(message: str) -> None:
    sys.stderr.write(f"broker: warning: {message}\n")


def from_settings(settings: Any) -> Registry:
    """A registry configured from :class:`broker.config.Settings`."""
    return Registry(settings_for=settings.backends, disabled=settings.disabled_plugins)
