"""In-process Contexts in the test home: keys in memory, sessions in the kernel keyring.

In-process chain, server and TOTP tests used to cache sessions in the memory backend,
which hides what only the real store does (the kernel's timeout on each key, the
payload limits, names as key descriptions). Here they get the ``home`` fixture's
throwaway keyctl keyring (purged at its teardown) whenever the kernel keyring is
usable, and the memory backend only where it is not. The Context itself is
:func:`broker.testing.context.memory_context`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import pytest

from broker.backend import Backend, Item
from broker.services.context import Context
from broker.testing.context import memory_context
from broker.testing.memory import MemoryBackend
from tests.conftest import TEST_KEY_ID, TEST_SECRET, BrokerHome


@functools.lru_cache(maxsize=1)
def keyctl_usable() -> bool:
    """Whether the kernel keyring works here (checked once per test run)."""
    from broker_keyctl import KeyctlBackend  # part of the project: not importable is a failure

    return KeyctlBackend().availability().ok


def require_keyctl() -> None:
    """Skip the test, saying why, when the kernel keyring is unusable here."""
    from broker_keyctl import KeyctlBackend

    availability = KeyctlBackend().availability()
    if not availability.ok:
        pytest.skip(f"kernel keyring unavailable: {availability.reason}")


def cache_settings(keyring: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """(session_cache, backend settings): keyctl in ``keyring`` if usable, else memory."""
    if keyctl_usable():
        return "keyctl", {"keyctl": {"keyring": keyring}}
    return "memory", {}


def home_context(
    home: BrokerHome,
    keys: Mapping[str, Item | tuple[str, str]] | None = None,
    *,
    backend: type[MemoryBackend] = MemoryBackend,
    more: Mapping[str, type[Backend]] | None = None,
) -> Context:
    """A Context in ``home``: ``keys`` (profile -> Item or (key id, secret)) in an in-memory
    credential backend of class ``backend`` (``"memory"``, plus ``more`` by name), sessions
    in the home's throwaway kernel keyring (the memory backend where that is unusable)."""
    cache, backends = cache_settings(home.keyring)
    return memory_context(home.broker_config, keys, backend=backend, more=more,
                          session_cache=cache, backends=backends)


def default_keys(*names: str) -> dict[str, tuple[str, str]]:
    """The test key (conftest's TEST_KEY_ID, TEST_SECRET) under each profile name."""
    return {name: (TEST_KEY_ID, TEST_SECRET) for name in names}


def store_key(ctx: Context, name: str, **fields: str) -> None:
    """Keep the test key, with ``fields`` beside it, for ``name`` in ``ctx``'s memory backend."""
    ctx.backend("memory").set(
        name, Item(aws_access_key_id=TEST_KEY_ID, aws_secret_access_key=TEST_SECRET, **fields)
    )
