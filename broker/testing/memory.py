"""A complete in-memory backend: the reference implementation of the contract."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import ClassVar

from broker.backend import Availability, Backend, Capability, Item

_LOCK = threading.Lock()
# store name -> namespace -> item name -> (item, expires_at epoch or None)
_STORES: dict[str, dict[str, dict[str, tuple[Item, float | None]]]] = {}


class MemoryBackend(Backend):
    """Items live in this process only. ``settings["store"]`` names a shared store,
    so several instances (as the registry creates them) see the same items."""

    name: ClassVar[str] = "memory"
    description: ClassVar[str] = "in-process memory (tests and plugin development)"
    capabilities: ClassVar[Capability] = (
        Capability.LIST | Capability.STORE_SESSIONS | Capability.EXPIRY
    )

    def _items(self) -> dict[str, tuple[Item, float | None]]:
        store = _STORES.setdefault(str(self.settings.get("store", "default")), {})
        return store.setdefault(self.namespace, {})

    def availability(self) -> Availability:
        return Availability(True)

    def get(self, name: str) -> Item | None:
        with _LOCK:
            entry = self._items().get(name)
            if entry is None:
                return None
            item, expires = entry
            if expires is not None and expires <= time.time():
                del self._items()[name]
                return None
            return item

    def set(self, name: str, item: Item, *, expires_at: datetime | None = None) -> None:
        if not name:
            raise ValueError("empty name")
        with _LOCK:
            self._items()[name] = (
                Item(item),
                expires_at.timestamp() if expires_at is not None else None,
            )

    def delete(self, name: str) -> bool:
        with _LOCK:
            return self._items().pop(name, None) is not None

    def list(self) -> list[str]:
        now = time.time()
        with _LOCK:
            return sorted(
                n for n, (_, exp) in self._items().items() if exp is None or exp > now
            )

    def describe(self) -> dict[str, str]:
        return {"store": str(self.settings.get("store", "default")), "namespace": self.namespace}

    @staticmethod
    def reset() -> None:
        """Empty every in-memory store of this process (all store names and namespaces): call it
        between tests.
        """
        with _LOCK:
            _STORES.clear()
