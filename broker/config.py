"""broker's own settings: a TOML file plus ``BROKER_*`` environment variables.

The file (``$BROKER_CONFIG`` or ``$XDG_CONFIG_HOME/broker/config.toml``) never
holds a secret: where a setting is secret (a passphrase, a token) it holds a
secret reference such as ``"op://AWS/GPG key/password"`` or ``"env:NAME"``.

    backend = "pass"                # default credential backend
    session_cache = "keyctl"        # or "none"
    session_duration = "8h"         # GetSessionToken lifetime
    refresh_margin = "5m"           # reuse cached sessions while more than this remains
    disabled_plugins = ["foo"]

    [backends.pass]
    prefix = "broker"
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from broker import paths
from broker.errors import ConfigError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs import time on the cached path
    from collections.abc import Mapping
    from typing import Any

DEFAULT_SESSION_DURATION = 8 * 3600
DEFAULT_ROLE_DURATION = 3600
DEFAULT_REFRESH_MARGIN = 300

#: Every ``BROKER_*`` environment variable broker reads, and what it does (those a user
#: sets are in docs/configuration.md's table). This module is the only one that reads
#: them: elsewhere call :func:`environment` (a test scans the code for any other read).
VARIABLES = {
    "BROKER_CONFIG": "path of broker's config file",
    "BROKER_BACKEND": "credential backend, over a profile's broker_backend and the file's",
    "BROKER_SESSION_CACHE": "session cache backend, or none",
    "BROKER_SESSION_DURATION": "overrides session_duration",
    "BROKER_REFRESH_MARGIN": "overrides refresh_margin",
    "BROKER_DISABLED_PLUGINS": "comma- or space-separated backend names to ignore",
    "BROKER_DEBUG": "show tracebacks on errors, as --debug does",
    "BROKER_PROFILE": "set by `broker exec` in the child; its presence refuses nesting",
    "BROKER_FEDERATION_ENDPOINT": "the console sign-in endpoint (tests, proxies)",
    "BROKER_OP_EMULATOR": "state file of the 1Password SDK emulator (tests only)",
}


def environment(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of the ``BROKER_*`` variable ``name`` in ``environ`` (default: this
    process's environment), or None when it is unset or empty (an empty value counts as
    unset everywhere broker reads one).

    Raises KeyError for a name :data:`VARIABLES` does not list: a typo, or a new variable
    that must be documented there first.
    """
    if name not in VARIABLES:
        raise KeyError(f"{name} is not one of broker's environment variables")
    value = (os.environ if environ is None else environ).get(name)
    return value or None


def debug_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``BROKER_DEBUG`` asks for tracebacks (any non-empty value does)."""
    return environment("BROKER_DEBUG", environ) is not None


class Settings:
    """The merged settings: file first, ``BROKER_*`` environment on top."""

    def __init__(
        self,
        path: Path,
        backend: str | None = None,  # from the file only: BROKER_BACKEND ranks above profiles
        session_cache: str | None = None,
        session_duration: int = DEFAULT_SESSION_DURATION,
        refresh_margin: int = DEFAULT_REFRESH_MARGIN,
        disabled_plugins: frozenset[str] = frozenset(),
        backends: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.path = path
        self.backend = backend
        self.session_cache = session_cache
        self.session_duration = session_duration
        self.refresh_margin = refresh_margin
        self.disabled_plugins = disabled_plugins
        self.backends: dict[str, dict[str, Any]] = backends or {}

    def backend_settings(self, name: str) -> dict[str, Any]:
        """A copy of the ``[backends.NAME]`` table for backend ``name`` (empty when the file has
        none): what :meth:`broker.registry.Registry.create` hands the backend as ``settings``.
        """
        return dict(self.backends.get(name, {}))


def parse_duration(text: str | int, *, what: str = "duration") -> int:
    """``"1h"``, ``"90m"``, ``"1h30m"``, ``"45s"`` or plain seconds -> seconds."""
    if isinstance(text, int) and text >= 0:
        return text
    raw = str(text).strip().lower()
    if not raw.isascii():  # str.isdigit() also accepts "²" and other digits int() refuses
        raw = "?"
    if raw.isdigit():
        return int(raw)
    total, number = 0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for char in raw:
        if char.isdigit():
            number += char
        elif char in units and number:
            total += int(number) * units[char]
            number = ""
        else:
            break
    else:
        if not number and total > 0:
            return total
    raise UsageError(
        f"{what} {text!r} is not a duration",
        "use seconds (3600) or units like 1h, 90m, 1h30m",
    )


def _parse_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            return dict(tomllib.load(handle))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})", f"fix or remove {path}") from None


def _read(path: Path) -> dict[str, Any]:
    """The file's data, through a JSON copy keyed by its size and mtime.

    tomllib imports typing and its regexes (~7 ms), a third of the cached path's
    budget; json is loaded anyway. The file holds no secrets, so neither does the copy.
    """
    import json

    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read ({exc.strerror})", "check its permissions"
        ) from None
    stamp = [str(path), stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size]
    copy = paths.cache_dir() / "config.json"
    try:
        cached = json.loads(copy.read_text(encoding="utf-8"))
        if cached.get("stamp") == stamp:
            return dict(cached["data"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    try:
        data = _parse_toml(path)
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read ({exc.strerror})", "check its permissions"
        ) from None
    try:
        payload = json.dumps({"stamp": stamp, "data": data})  # a date: TypeError, no copy
        paths.atomic_write(copy, payload.encode("utf-8"))
    except (OSError, TypeError, ValueError, paths.UnsafePath):
        pass  # dates or a read-only (or not safely private) cache only cost the parse next time
    return data


def load(path: Path | None = None) -> Settings:
    """The settings of the file at ``path`` (default: :func:`broker.paths.config_file`)
    with the ``BROKER_*`` variables of this process's environment on top.

    Raises ConfigError for a file that cannot be read or parsed, or a value of the wrong
    type or a malformed duration (in the file or the environment).
    """
    path = path or paths.config_file()
    return _from_mapping(path, _read(path), os.environ)


def _from_mapping(path: Path, data: dict[str, Any], env: Mapping[str, str]) -> Settings:
    def text(key: str) -> str | None:
        value = environment(f"BROKER_{key.upper()}", env) or data.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{path}: {key} must be a string", f"edit {path}")
        return value or None

    def duration(key: str, default: int) -> int:
        variable = f"BROKER_{key.upper()}"
        from_env = environment(variable, env)
        if from_env:  # the variable is named, not the file it overrides
            try:
                return parse_duration(from_env, what=variable)
            except UsageError as exc:
                raise ConfigError(exc.message, f"{exc.hint}; or unset {variable}") from None
        value = data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ConfigError(f"{path}: {key} must be a duration", 'e.g. "1h" or 3600')
        try:
            return parse_duration(value, what=key)
        except UsageError as exc:
            raise ConfigError(f"{path}: {exc.message}", exc.hint) from None

    backends = data.get("backends", {})
    if not isinstance(backends, dict) or not all(isinstance(v, dict) for v in backends.values()):
        raise ConfigError(f"{path}: [backends.NAME] must be tables", f"edit {path}")
    listed = data.get("disabled_plugins", [])
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
        raise ConfigError(
            f"{path}: disabled_plugins must be a list of names", 'e.g. disabled_plugins = ["foo"]'
        )
    disabled = set(listed)
    listed_env = environment("BROKER_DISABLED_PLUGINS", env) or ""
    disabled |= {n for n in listed_env.replace(",", " ").split() if n}
    backend = data.get("backend")  # BROKER_BACKEND is applied at selection, above profiles
    if backend is not None and not isinstance(backend, str):
        raise ConfigError(f"{path}: backend must be a string", f"edit {path}")
    return Settings(
        path=path,
        backend=backend or None,
        session_cache=text("session_cache"),
        session_duration=duration("session_duration", DEFAULT_SESSION_DURATION),
        refresh_margin=duration("refresh_margin", DEFAULT_REFRESH_MARGIN),
        disabled_plugins=frozenset(disabled),
        backends=backends,
    )


def set_value(key: str, value: Any, path: Path | None = None) -> Path:
    """Persist one top-level key, keeping the file's comments and layout."""
    import tomlkit

    path = path or paths.config_file()
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        document = tomlkit.document()
    except Exception as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})", f"fix or remove {path}") from None
    if value is None:
        document.pop(key, None)
    else:
        document[key] = value
    paths.atomic_write(path, tomlkit.dumps(document).encode("utf-8"))
    return path
