"""The ids broker has learnt, so that a read costs one 1Password call.

``$XDG_STATE_HOME/broker/onepassword.json`` (0600, written atomically under a
lock shared by every broker process of the user)::

    {"version": 1,
     "vaults": {"service-account|Broker": "<vault id>"},
     "items": {"<vault id>": {"AWS dev": "<item id>"}}}

Ids and titles are not secret. A wrong or stale id costs one failed call, after
which broker looks the item up again and rewrites the entry. An item a profile names
with ``broker_item`` is kept the same way: its vault under ``"<auth>|<vault as
named>"``, the item under its title as named (not when named by id: nothing to learn).
"""

from __future__ import annotations

import json
from pathlib import Path

from broker import paths
from broker.errors import BrokerError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FILE_NAME = "onepassword.json"
VERSION = 1


def state_path() -> Path:
    """``$XDG_STATE_HOME/broker/onepassword.json`` (:func:`broker.paths.state_dir`)."""
    return paths.state_dir() / FILE_NAME


class IdState:
    """Vault ids by (auth, vault setting) and item ids by (vault id, title)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_path()
        self._data: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict) or data.get("version") != VERSION:
            data = {}
        vaults = data.get("vaults")
        items = data.get("items")
        return {
            "version": VERSION,
            "vaults": vaults if isinstance(vaults, dict) else {},
            "items": items if isinstance(items, dict) else {},
        }

    @property
    def data(self) -> dict[str, Any]:
        """The state as read on first use (``{"version", "vaults", "items"}``; a missing,
        unreadable or other-version file reads as empty), kept until :meth:`update`."""
        if self._data is None:
            self._data = self._read()
        return self._data

    def vault_id(self, key: str) -> str | None:
        """The vault id learnt for ``key`` (``"<auth>|<vault setting>"``), else None."""
        value = self.data["vaults"].get(key)
        return value if isinstance(value, str) and value else None

    def item_id(self, vault_id: str, title: str) -> str | None:
        """The id learnt for the item titled ``title`` in vault ``vault_id``, else None."""
        table = self.data["items"].get(vault_id)
        value = table.get(title) if isinstance(table, dict) else None
        return value if isinstance(value, str) and value else None

    def item_ids(self, vault_id: str) -> dict[str, str]:
        """Every item id learnt in vault ``vault_id``: a dict of title -> item id (entries
        that are not non-empty strings are left out)."""
        table = self.data["items"].get(vault_id)
        if not isinstance(table, dict):
            return {}
        return {k: v for k, v in table.items() if isinstance(v, str) and v}

    def update(
        self,
        *,
        vaults: dict[str, str | None] | None = None,
        items: dict[str, str | None] | None = None,
        vault_id: str = "",
        replace_items: bool = False,
        drop_vault_items: str = "",
    ) -> None:
        """Merge changes into the file (a None value removes an entry).

        ``items`` are titles of ``vault_id``; ``replace_items`` makes them the whole
        table of that vault (after a full listing). Nothing is written when nothing
        changes; a file that cannot be written only costs lookups later.
        """
        def apply(data: dict[str, Any]) -> bool:
            before = json.dumps(data, sort_keys=True)
            for key, value in (vaults or {}).items():
                if value is None:
                    data["vaults"].pop(key, None)
                else:
                    data["vaults"][key] = value
            if drop_vault_items:
                data["items"].pop(drop_vault_items, None)
            if vault_id and (items is not None or replace_items):
                table = {} if replace_items else dict(data["items"].get(vault_id) or {})
                for title, value in (items or {}).items():
                    if value is None:
                        table.pop(title, None)
                    else:
                        table[title] = value
                if table:
                    data["items"][vault_id] = table
                else:
                    data["items"].pop(vault_id, None)
            return json.dumps(data, sort_keys=True) != before

        if not apply(self.data):
            return
        try:
            with paths.file_lock("onepassword-state", timeout=10):
                fresh = self._read()
                apply(fresh)
                paths.atomic_write(
                    self.path, json.dumps(fresh, indent=1, sort_keys=True).encode("utf-8")
                )
                self._data = fresh
        except (OSError, BrokerError):
            pass  # a read-only state dir only costs lookups later
