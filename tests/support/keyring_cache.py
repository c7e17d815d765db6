"""The session cache in-process tests use: the real kernel keyring where it works.

In-process chain, server and TOTP tests used to cache sessions in the memory backend,
which hides what only the real store does (the kernel's timeout on each key, the
payload limits, names as key descriptions). Here they get a throwaway keyctl keyring
(the ``home`` fixture's, purged at its teardown) whenever the kernel keyring is usable,
and the memory backend only where it is not.
"""

from __future__ import annotations

import functools
import sys
import uuid
from pathlib import Path
from typing import Any

from broker import config
from broker.backend import Item
from broker.registry import Registry
from broker.services.context import Context
from broker.testing.memory import MemoryBackend
from tests.conftest import TEST_KEY_ID, TEST_SECRET

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@functools.lru_cache(maxsize=1)
def keyctl_usable() -> bool:
    from broker_keyctl import KeyctlBackend  # part of the project: not importable is a failure

    return KeyctlBackend().availability().ok


def keyring_of(config_file: Path) -> str:
    """The throwaway keyring the ``home`` fixture wrote into broker's config file."""
    data = tomllib.loads(config_file.read_text(encoding="utf-8"))
    keyring = data.get("backends", {}).get("keyctl", {}).get("keyring")
    if not isinstance(keyring, str) or not keyring.startswith("broker-test-"):
        raise AssertionError(f"{config_file} names no throwaway keyring: {keyring!r}")
    return keyring


def cache_settings(keyring: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """(session_cache, backend settings): keyctl in ``keyring`` if usable, else memory."""
    if keyctl_usable():
        return "keyctl", {"keyctl": {"keyring": keyring}}
    return "memory", {}


def broker_context(
    config_file: Path,
    keys: dict[str, tuple[str, str]] | None = None,
    backend: type[MemoryBackend] = MemoryBackend,
    *,
    keyring: str | None = None,
) -> Context:
    """Keys in an in-memory credential backend, sessions in the kernel keyring (if usable)."""
    cache, backends = cache_settings(keyring or keyring_of(config_file))
    backends = {**backends, "memory": {"store": uuid.uuid4().hex}}
    settings = config.Settings(
        path=config_file, backend="memory", session_cache=cache, backends=backends
    )
    registry = Registry(settings_for=settings.backends, extra={"memory": backend})
    ctx = Context(settings, registry)
    for name, (key_id, secret) in (keys or {}).items():
        ctx.backend("memory").set(
            name, Item(aws_access_key_id=key_id, aws_secret_access_key=secret)
        )
    return ctx


def default_keys(*names: str) -> dict[str, tuple[str, str]]:
    return {name: (TEST_KEY_ID, TEST_SECRET) for name in names}
