"""A :class:`~broker.services.context.Context` over in-memory backends, for in-process tests.

Use cases (``broker.services``) take a Context; this builds one without a config file
on disk or any installed store::

    ctx = memory_context(tmp_path / "config.toml", {"dev": ("AKIA...", "secret")})
    credentials.obtain(ctx, "dev", mfa_code="123456")

Every in-memory backend it registers gets a store of its own (a fresh name in
``settings["store"]``), so two contexts never see each other's items, while the
instances one context opens (credentials and sessions namespaces, a second
``ctx.backend("memory")``) share it, as instances of a real store do.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broker import config
from broker.backend import ACCESS_KEY_ID, SECRET_ACCESS_KEY, Backend, Item
from broker.registry import Registry
from broker.services.context import Context
from broker.testing.memory import MemoryBackend

__all__ = ["memory_context"]


def memory_context(
    config_file: Path | str,
    keys: Mapping[str, Item | tuple[str, str]] | None = None,
    *,
    backend: type[MemoryBackend] = MemoryBackend,
    more: Mapping[str, type[Backend]] | None = None,
    credential_backend: str | None = "memory",
    session_cache: str | None = "memory",
    backends: Mapping[str, Mapping[str, Any]] | None = None,
) -> Context:
    """A Context whose credential backend is ``backend``, registered as ``"memory"``.

    ``config_file``: what ``ctx.settings.path`` says (commands that write broker's
    config, such as ``backend set``, write there; nothing reads it). ``keys``: profile
    name -> an :class:`~broker.backend.Item`, or ``(access key id, secret access key)``,
    stored in the ``"memory"`` backend's credentials namespace before returning.
    ``more``: further in-process backends by name (say a second
    :class:`~broker.testing.memory.MemoryBackend` subclass as the other end of a
    migration); each memory one gets a fresh store too. ``credential_backend``: the
    config file's ``backend`` setting (None: none chosen, broker picks the best
    available). ``session_cache``: the config file's ``session_cache`` (``"memory"``:
    sessions in the same in-memory store; ``"none"``: no caching; None: broker's
    default, the kernel keyring where usable). ``backends``: per-backend settings, as
    the config file's ``[backends.NAME]`` tables (a ``store`` given here for a memory
    backend is kept).

    Raises :class:`ValueError` when ``more`` names ``"memory"`` (that is ``backend``).
    """
    extra: dict[str, type[Backend]] = {"memory": backend}
    for name, cls in (more or {}).items():
        if name == "memory":
            raise ValueError("'memory' is the credential backend: pass it as backend=")
        extra[name] = cls
    settings_for: dict[str, dict[str, Any]] = {
        name: dict(values) for name, values in (backends or {}).items()
    }
    for name, cls in extra.items():
        if issubclass(cls, MemoryBackend):
            settings_for.setdefault(name, {}).setdefault("store", uuid.uuid4().hex)
    settings = config.Settings(
        path=Path(config_file),
        backend=credential_backend,
        session_cache=session_cache,
        backends=settings_for,
    )
    ctx = Context(settings, Registry(settings_for=settings.backends, extra=extra))
    for name, key in (keys or {}).items():
        item = key if isinstance(key, Item) else Item(
            {ACCESS_KEY_ID: key[0], SECRET_ACCESS_KEY: key[1]}
        )
        ctx.backend("memory").set(name, item)
    return ctx
