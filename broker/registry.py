"""Backend discovery through the ``broker.backends`` entry-point group.

Scanning every installed distribution's metadata costs ~40 ms, more than a
cached ``broker exec`` may spend in total, so the scan result (names and
``module:attr`` strings only, nothing secret) is kept in a small index under
the cache dir, keyed by the modification times of the ``sys.path`` directories:
installing or removing a distribution changes them and the index is rebuilt.

Automatic choices (the credential backend nobody chose, the default session cache,
where ``backend login`` keeps a token) rank backends by their class's ``priority``
among those with the capabilities the choice needs. Those two class attributes are
kept in the index too, with the modification times of the files that define the
class, so that choosing imports only the backend chosen; a changed file, or a new
index, has the class imported once more to read them.

Only the backend in use is imported. A plugin that fails to import or to
construct, or whose ``priority`` or ``capabilities`` are not what they must be,
is reported as broken, with its distribution and the reason (warned about once
per process); the rest of broker keeps working. Every ``availability()`` call
goes through :meth:`Registry.availability_of`, so that one that raises makes
its backend unavailable instead of failing the command. ``disabled_plugins``
(or ``BROKER_DISABLED_PLUGINS``) switches plugins off by name: never imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable

from broker import paths
from broker.backend import SESSION_CACHE, Availability, Backend, Capability, Resolver, unnamed
from broker.errors import BackendUnavailable, BrokerError, ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and dataclasses cost import time on the cached path
    from typing import Any

    from broker.secrets import ReferenceResolver

BACKENDS_GROUP = "broker.backends"
REFERENCES_GROUP = "broker.references"
_INDEX_VERSION = 2
#: Warnings said in this process: each is said once, however many registries meet the
#: same broken plugin (the cached path's and then the full path's, in one command).
_WARNED: set[str] = set()


def login_token_name(backend: str) -> str:
    """The name `broker backend login BACKEND` keeps ``backend``'s token under in the
    secret store (``onepassword-token``; :meth:`Registry.secret_store` says which store,
    and its :meth:`~broker.backend.Backend.secret_reference` the reference)."""
    return f"{backend}-token"


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
        """Whether the import failed (no class; :attr:`error` says why)."""
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


def _load_index() -> dict[str, Any]:
    """The index: ``{"version", "stamp", "groups": {group: [entry]}, "facts": {name:
    {...}}}``, as kept, or rebuilt (with no facts) when ``sys.path`` changed."""
    index_path = paths.cache_dir() / "plugins.json"
    stamp = _fingerprint()
    try:
        cached = json.loads(index_path.read_text(encoding="utf-8"))
        if (cached.get("version") == _INDEX_VERSION and cached.get("stamp") == stamp
                and isinstance(cached.get("groups"), dict)
                and isinstance(cached.get("facts"), dict)):
            return dict(cached)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    document = {"version": _INDEX_VERSION, "stamp": stamp, "groups": _scan(), "facts": {}}
    _save_index(document)
    return document


def _save_index(document: dict[str, Any]) -> None:
    # a read-only (or not safely private) cache only costs the scan next time
    with contextlib.suppress(OSError, paths.UnsafePath):
        paths.atomic_write(paths.cache_dir() / "plugins.json",
                           json.dumps(document).encode("utf-8"))


def _remember_facts(document: dict[str, Any], name: str, entry: dict[str, Any]) -> None:
    """Add one backend's facts to the index on disk, keeping those another process (or
    registry) added since ``document`` was read, when it is still the same index."""
    try:
        current = json.loads((paths.cache_dir() / "plugins.json").read_text(encoding="utf-8"))
        if (current.get("version"), current.get("stamp")) == (
            document.get("version"), document.get("stamp")
        ) and isinstance(current.get("facts"), dict):
            document = {**document, "facts": {**current["facts"], name: entry}}
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    _save_index(document)


def _index() -> dict[str, list[dict[str, str]]]:
    return dict(_load_index()["groups"])


_REFERENCE_CLASSES: dict[str, type[Backend] | None] = {}


def reference_class(scheme: str) -> type[Backend] | None:
    """The class an installed plugin resolves ``scheme:`` references with (imported, with
    no warning when it cannot be), or None. :func:`broker.secrets.shown` asks it what its
    references look like."""
    if scheme not in _REFERENCE_CLASSES:
        found: type[Backend] | None = None
        try:
            entry = next((e for e in _index().get(REFERENCES_GROUP, []) if e["name"] == scheme),
                         None)
            if entry is not None:
                found = _import(PluginInfo(scheme, entry["value"]), quiet=True).cls
        except Exception:
            found = None
        _REFERENCE_CLASSES[scheme] = found
    return _REFERENCE_CLASSES[scheme]


class PluginFacts:
    """What automatic choices need from a backend class, without importing it."""

    __slots__ = ("capabilities", "priority")

    def __init__(self, priority: float, capabilities: Capability) -> None:
        self.priority = priority
        self.capabilities = capabilities

    @classmethod
    def of(cls, backend: type[Backend]) -> PluginFacts:
        """``backend``'s declared ``priority`` and ``capabilities`` class attributes. A class
        :func:`declaration_problem` finds fault with is broken when it comes from an entry
        point; for an in-process class, a priority that is not a number counts as 0.0 and
        capabilities that are not a :class:`Capability` as ``Capability.NONE``."""
        priority = getattr(backend, "priority", 0.0)
        if not _is_number(priority):
            priority = 0.0
        capabilities = getattr(backend, "capabilities", Capability.NONE)
        if not isinstance(capabilities, Capability):
            capabilities = Capability.NONE
        return cls(float(priority), capabilities)


def _is_number(value: object) -> bool:
    """A real number: an int or a float, not a bool, not NaN (the one number unequal to
    itself)."""
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and value == value)


def declaration_problem(backend: type[Backend]) -> str:
    """What is wrong with ``backend``'s declarations that automatic choices rank by, in
    words for ``broker backend list`` (``"priority '9' is not a number ..."``), or ``""``.

    ``priority`` must be a plain int or float (not a bool, not NaN, not a string: the
    ranking would otherwise silently differ from what the author meant); ``capabilities``
    a :class:`~broker.backend.Capability`. docs/plugins.md states the rule.
    """
    priority = getattr(backend, "priority", 0.0)
    if not _is_number(priority):
        return (f"priority {priority!r} is not a number (declare a plain int or float on "
                "the class)")
    capabilities = getattr(backend, "capabilities", Capability.NONE)
    if not isinstance(capabilities, Capability):
        return (f"capabilities {capabilities!r} is not a broker.backend.Capability "
                "(combine Capability flags with |)")
    return ""


def _files_of(backend: type[Backend]) -> dict[str, int]:
    """Modification times (ns) of the files defining ``backend`` and its bases."""
    files: dict[str, int] = {}
    for klass in backend.__mro__:
        path = getattr(sys.modules.get(klass.__module__), "__file__", None)
        if isinstance(path, str) and path not in files:
            try:
                files[path] = os.stat(path).st_mtime_ns
            except OSError:
                continue
    return files


def _module_file(value: str) -> dict[str, int]:
    """The file of an entry point's module, found without importing it (``{}``: none)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(value.partition(":")[0])
        origin = spec.origin if spec is not None else None
        return {origin: os.stat(origin).st_mtime_ns} if origin else {}
    except Exception:
        return {}


def _fresh(entry: Any, value: str) -> bool:
    """Whether kept facts still describe entry point ``value``'s class."""
    if not isinstance(entry, dict) or entry.get("value") != value:
        return False
    try:
        return all(os.stat(path).st_mtime_ns == mtime for path, mtime in entry["files"])
    except (OSError, KeyError, TypeError, ValueError):
        return False


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
        self._document: dict[str, Any] = {}
        self._facts: dict[str, PluginFacts | None] = {}
        self._resolver: ReferenceResolver | None = None

    @property
    def resolver(self) -> ReferenceResolver:
        """broker's reference resolver over this registry, given to every backend it
        creates (``env:``, ``prompt:``, and each plugin's own schemes)."""
        if self._resolver is None:
            from broker.secrets import ReferenceResolver

            self._resolver = ReferenceResolver(self)
        return self._resolver

    def _discover(self) -> None:
        if self._infos is not None:
            return
        self._document = _load_index()
        groups = self._document["groups"]
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
        """The entry point of backend ``name`` (disabled or not), or a synthetic one
        (``module:qualname``, distribution ``"(in-process)"``) for an ``extra`` class.

        Raises:
            KeyError: no backend of that name is installed.
        """
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
        """The class of the enabled, installed backend ``name``, imported on first use.

        Raises:
            BackendUnavailable: it is disabled, or its plugin is broken (fails to import).
            ConfigError: no backend of that name is installed.
        """
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

    def facts(self, name: str) -> PluginFacts | None:
        """``name``'s priority and capabilities, from the index while the files defining
        its class are unchanged, else from the class (imported, and the index updated).
        None for a plugin that is broken (or not installed)."""
        if name in self._facts:
            return self._facts[name]
        facts: PluginFacts | None = None
        if name in self.extra:
            facts = PluginFacts.of(self.extra[name])
        elif name in self.names():
            info = self.info(name)
            kept = self._document.get("facts", {}).get(name)
            if _fresh(kept, info.value):
                facts = self._kept_facts(kept)
            else:
                facts = self._learn_facts(name, info)
        self._facts[name] = facts
        return facts

    @staticmethod
    def _kept_facts(kept: dict[str, Any]) -> PluginFacts | None:
        if kept.get("broken"):
            return None  # tried again when its files (or sys.path) change
        try:
            return PluginFacts(float(kept["priority"]), Capability(int(kept["capabilities"])))
        except (KeyError, TypeError, ValueError):
            return None

    def _learn_facts(self, name: str, info: PluginInfo) -> PluginFacts | None:
        loaded = self.load(name)
        entry: dict[str, Any] = {"value": info.value}
        facts: PluginFacts | None = None
        if loaded.cls is None:
            entry.update(broken=True, files=list(_module_file(info.value).items()))
        else:
            facts = PluginFacts.of(loaded.cls)
            entry.update(priority=facts.priority, capabilities=facts.capabilities.value,
                         files=list(_files_of(loaded.cls).items()))
        if self._document:
            self._document.setdefault("facts", {})[name] = entry
            _remember_facts(self._document, name, entry)
        return facts

    def create(
        self, name: str, *, namespace: str = "credentials", resolver: Resolver | None = None
    ) -> Backend:
        """A new instance of backend ``name`` with its settings, for ``namespace``, with
        ``resolver`` (default: :attr:`resolver`, broker's own) for its secret settings.

        Raises:
            ConfigError: no backend is installed under that name.
            BackendUnavailable: it is disabled, broken, or its constructor failed.
        """
        cls = self.backend_class(name)
        try:
            backend = cls(
                settings=self.settings_for.get(name, {}), namespace=namespace,
                resolver=self.resolver if resolver is None else resolver,
            )
        except Exception as exc:  # a broken plugin weakens broker, never breaks it
            raise BackendUnavailable(
                f"backend {name!r} failed to start: {type(exc).__name__}: {exc}",
                f"check its settings under [backends.{name}] or disable it",
            ) from exc
        if name not in self.extra and getattr(backend, "name", None) != name:
            # the entry point's name is the backend's name (what users type, what broker
            # records in broker_backend and its ledger); _import warned about the class's
            with contextlib.suppress(Exception):  # a read-only `name`: left as it is
                setattr(backend, "name", name)  # noqa: B010 - a ClassVar, shadowed on purpose
        return backend

    def availability_of(self, backend: Backend) -> Availability:
        """``backend.availability()``, never raising: an exception, or an answer that is not
        an :class:`Availability`, is a plugin's bug and makes the backend unavailable, with
        a reason naming the plugin, its distribution and the exception's type, not its
        text, which may hold a secret (``"acme: the availability check of plugin 'acme'
        (broker-acme) failed: RuntimeError (a bug in the plugin: ...)"``). Every availability
        check broker makes goes through here, so a buggy plugin is refused the same way
        (exit code 7) whichever command meets it.
        """
        name = str(getattr(backend, "name", "") or type(backend).__name__)
        try:
            answer: object = backend.availability()  # a plugin's, whatever it says
        except Exception as exc:  # the contract says never raises: a plugin's bug
            # its type only: the text may hold anything the plugin had, a secret too
            return Availability(
                False, f"{name}: the availability check of {self._plugin(name)} failed: "
                f"{type(exc).__name__} (a bug in the plugin: report it to its authors)",
            )
        if not isinstance(answer, Availability):
            return Availability(
                False, f"{name}: the availability check of {self._plugin(name)} returned "
                f"{type(answer).__name__}, not an Availability",
            )
        return answer

    def _plugin(self, name: str) -> str:
        """``plugin 'NAME' (DISTRIBUTION)``, for messages about a plugin's bug."""
        try:
            where = self.info(name).distribution
        except Exception:
            where = ""
        return f"plugin {name!r}" + (f" ({where})" if where else "")

    def secret_store(self, open_store: Callable[[str], Backend]) -> Backend:
        """Where `broker backend login` keeps tokens: the highest-priority installed
        backend declaring ``Capability.SECRET_STORE`` that ``open_store(name)`` opens (in
        its ``secrets`` namespace) and that is available here (:meth:`availability_of`).
        The command that keeps a token and every backend looking for it
        (:meth:`broker.secrets.ReferenceResolver.login_reference`) choose through here.

        Raises:
            BackendUnavailable: none is installed, or none works here (the first one's
                reason).
        """
        names = self.secret_stores()
        if not names:
            raise BackendUnavailable(
                "no installed backend can keep a token for this login session (the built-in "
                "kernel keyring backend, keyctl, is not installed)",
                "provide the token through the environment instead",
            )
        reasons = []
        for name in names:
            try:
                store = open_store(name)
            except BrokerError as exc:
                reasons.append((name, exc.message))
                continue
            availability = self.availability_of(store)
            if availability.ok:
                return store
            reasons.append((name, availability.reason))
        name, reason = reasons[0]
        raise BackendUnavailable(
            f"cannot keep the token in {name}: {unnamed(name, reason)}",
            "provide the token through the environment instead",
        )

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

    def secret_stores(self) -> list[str]:
        """Installed backends that may keep `broker backend login`'s tokens, highest
        priority first: those declaring ``SECRET_STORE`` and not ``PERSISTENT`` or
        ``SHARED``. A token is kept for one login session, in memory only: never written
        to disk, never carried to another machine (docs/plugins.md)."""
        unfit = Capability.PERSISTENT | Capability.SHARED
        return [name for name in self.with_capabilities(Capability.SECRET_STORE)
                if not ((facts := self.facts(name)) is None or facts.capabilities & unfit)]

    def session_caches(self) -> list[str]:
        """Installed backends that may be the default session cache, highest priority
        first: those declaring :data:`~broker.backend.SESSION_CACHE` and not ``SHARED``
        (STS sessions stay on the machine that made them)."""
        return [name for name in self.with_capabilities(SESSION_CACHE)
                if not ((facts := self.facts(name)) is None
                        or facts.capabilities & Capability.SHARED)]

    def best_credential_backend(self) -> str | None:
        """The credential backend when nobody chose one: the first backend in
        :meth:`preference_order` that is available here and declares ``PERSISTENT``,
        else the first available one (memory only: commands that store a key then refuse
        it unless chosen knowingly); None when none is available. A persistent plugin
        ranked below a memory-only one is still preferred to it: a key should outlive a
        reboot unless the user says otherwise."""
        fallback = None
        for name in self.preference_order():
            facts = self.facts(name)
            persistent = facts is not None and Capability.PERSISTENT in facts.capabilities
            if fallback is not None and not persistent:
                continue  # cannot beat the fallback: no need to ask it
            if self.availability(name).ok:
                if persistent:
                    return name
                fallback = name
        return fallback

    def with_capabilities(self, required: Capability) -> list[str]:
        """Installed backends declaring every flag of ``required``, highest priority
        first (available here or not; broken ones left out)."""
        return [
            name for name in self.preference_order()
            if (facts := self.facts(name)) is not None
            and (facts.capabilities & required) == required
        ]

    def preference_order(self) -> list[str]:
        """Every installed backend (disabled ones left out), highest ``priority`` first,
        ties by name; broken plugins last."""
        ranked = []
        for name in self.names():
            facts = self.facts(name)
            ranked.append((-facts.priority if facts is not None else float("inf"), name))
        return [name for _, name in sorted(ranked)]

    def availability(self, name: str, *, namespace: str = "credentials") -> Availability:
        """Whether backend ``name`` works here, and if not why, from a throwaway instance
        (:meth:`availability_of`); never raises (a plugin that fails to load or start is
        not available, its error the reason)."""
        try:
            backend = self.create(name, namespace=namespace)
        except Exception as exc:
            return Availability(False, str(exc))
        try:
            return self.availability_of(backend)
        finally:
            with contextlib.suppress(Exception):  # closing a throwaway instance
                backend.close()

    def known_usable(self, name: str) -> bool:
        """Whether backend ``name`` is installed, enabled and not known to be broken, from
        the plugin index alone: nothing is imported, no file is looked at. The cached path
        checks a backend chosen by name with it, and leaves a name it refuses to the full
        path, which says why (:meth:`backend_class`)."""
        if name not in self.names():
            return False
        kept = self._document.get("facts", {}).get(name)
        return not (isinstance(kept, dict) and kept.get("broken"))


def _import(info: PluginInfo, *, quiet: bool = False) -> LoadedPlugin:
    import importlib

    module_name, _, attr = info.value.partition(":")
    plugin = f"plugin {info.name!r} from {info.distribution or '?'}"
    try:
        obj: Any = importlib.import_module(module_name)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except Exception as exc:
        if not quiet:
            _warn_broken(info, plugin, f"{type(exc).__name__}: {exc}")
        return LoadedPlugin(info, None, f"{type(exc).__name__}: {exc}")
    if not (isinstance(obj, type) and issubclass(obj, Backend)):
        error = f"{info.value} is not a broker.backend.Backend subclass"
        if not quiet:
            _warn_broken(info, plugin, error)
        return LoadedPlugin(info, None, error)
    problem = declaration_problem(obj)
    if problem:
        if not quiet:
            _warn_broken(info, plugin, problem)
        return LoadedPlugin(info, None, problem)
    declared = getattr(obj, "name", "")
    if declared != info.name and not quiet:
        _warn(f"{plugin} declares name = {declared!r}; broker calls it {info.name!r}, its "
              "entry point's name (make them equal)")
    return LoadedPlugin(info, obj)


def _warn(message: str) -> None:
    """``broker: warning: MESSAGE`` on stderr, once per process."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    sys.stderr.write(f"broker: warning: {message}\n")


def _warn_broken(info: PluginInfo, plugin: str, reason: str) -> None:
    """The warning for a plugin that cannot be used, with the way to silence it."""
    _warn(f"{plugin} is broken: {reason} (fix or uninstall it, or add {info.name!r} to "
          "disabled_plugins in broker's config)")


def from_settings(settings: Any) -> Registry:
    """A registry configured from :class:`broker.config.Settings`."""
    return Registry(settings_for=settings.backends, disabled=settings.disabled_plugins)
