"""The test-facing handle on a fake account: arrange, inspect, inject faults."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from broker_onepassword.testing.account import (
    DEFAULT_VAULT,
    create,
    fresh_state,
    make_token,
    new_id,
    open_state,
    timestamp,
)
from broker_onepassword.testing.costs import OFFLINE, SIGN_IN
from broker_onepassword.testing.desktop import DESKTOP_MODULE
from broker_onepassword.testing.shim import install, route, uninstall


@contextlib.contextmanager
def installed(path: str | os.PathLike[str]) -> Iterator[OnePasswordEmulator]:
    """``with installed(tmp / "op.json") as emulator:`` the SDK talks to that fake account."""
    install(path)
    try:
        yield OnePasswordEmulator(path)
    finally:
        uninstall(path)


def field(title: str, value: str, field_type: str = "Text", *, id: str | None = None,
          section: str | None = None) -> dict[str, Any]:
    """A field in the core's JSON shape, for :meth:`OnePasswordEmulator.create_item`."""
    return {"id": id or new_id(), "title": title, "sectionId": section,
            "fieldType": field_type, "value": value}


class OnePasswordEmulator:
    """A handle on one fake account (a state file): arrange, inspect, inject faults.

    Changes made here stand for what a person does in the 1Password app: they are
    not counted as SDK calls.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with open_state(self.path):
            pass  # create the file with a fresh account if needed

    def _state(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        return open_state(self.path)

    def snapshot(self) -> dict[str, Any]:
        """A copy of the whole state (vaults, items, tokens, counters, faults)."""
        with self._state() as state:
            return json.loads(json.dumps(state))  # type: ignore[no-any-return]

    def reset(self) -> None:
        """Start over with a fresh account (same file)."""
        with self._state() as state:
            state.clear()
            state.update(fresh_state())

    # tokens
    @property
    def token(self) -> str:
        """The first accepted service-account token."""
        return str(self.snapshot()["tokens"][0])

    def add_token(self) -> str:
        """A new accepted token (another service account); returns it."""
        token = make_token()
        with self._state() as state:
            state["tokens"].append(token)
        return token

    def revoke_token(self, token: str) -> None:
        """Stop accepting ``token``: clients signed in with it fail on their next call."""
        with self._state() as state:
            state["tokens"] = [t for t in state["tokens"] if t != token]

    # vaults
    def add_vault(self, title: str, *, vault_type: str = "userCreated",
                  service_account_access: str = "write") -> str:
        """A new vault (``vault_type``: userCreated, personal or everyone); returns its id.
        ``service_account_access``: ``"write"`` (read_items and write_items) or ``"read"``
        (read_items only, what `op service-account create` grants unless told)."""
        vault_id, now = new_id(), timestamp()
        with self._state() as state:
            state["vaults"][vault_id] = {
                "title": title, "description": "", "vaultType": vault_type, "createdAt": now,
                "updatedAt": now, "contentVersion": 1, "attributeVersion": 1,
                "serviceAccountAccess": service_account_access}
        return vault_id

    def vault_id(self, title: str = DEFAULT_VAULT) -> str:
        """The id of the vault titled ``title``; KeyError when there is none."""
        for vault_id, vault in self.snapshot()["vaults"].items():
            if vault["title"] == title:
                return str(vault_id)
        raise KeyError(title)

    def delete_vault(self, vault_id: str) -> None:
        """Delete a vault and its items."""
        with self._state() as state:
            del state["vaults"][vault_id]
            state["items"] = {k: v for k, v in state["items"].items() if v["vaultId"] != vault_id}

    # items
    def create_item(self, title: str, fields: list[dict[str, Any]], *,
                    vault: str = DEFAULT_VAULT, category: str = "ApiCredentials",
                    sections: list[dict[str, str]] | None = None, tags: list[str] | None = None,
                    notes: str = "") -> str:
        """An item made by hand in the app; returns its id. ``vault``: title or id."""
        with self._state() as state:
            vault_id = vault if vault in state["vaults"] else next(
                k for k, v in state["vaults"].items() if v["title"] == vault)
            wanted = {str(f["sectionId"]) for f in fields if f.get("sectionId")}
            sections = list(sections or []) + [
                {"id": s, "title": ""} for s in sorted(wanted)
                if s not in {x["id"] for x in sections or []}]
            item = create(state, {"desktop": True}, {
                "vaultId": vault_id, "title": title, "category": category, "fields": fields,
                "sections": sections, "tags": tags or [], "notes": notes})
        return str(item["id"])

    def item(self, item_id: str) -> dict[str, Any]:
        """The stored item ``item_id`` (fields as stored, TOTP seeds included); KeyError."""
        return dict(self.snapshot()["items"][item_id])

    def items(self, vault: str | None = None) -> list[dict[str, Any]]:
        """Every item (active and archived), or those of ``vault`` (title or id)."""
        state = self.snapshot()
        vault_id = None if vault is None else (
            vault if vault in state["vaults"] else self.vault_id(vault))
        return [i for i in state["items"].values() if vault_id in (None, i["vaultId"])]

    def find(self, title: str, vault: str | None = None) -> dict[str, Any]:
        """The one item titled ``title`` (in ``vault``); KeyError for none or several."""
        found = [i for i in self.items(vault) if i["title"] == title]
        if len(found) != 1:
            raise KeyError(f"{len(found)} items titled {title!r}")
        return found[0]

    def edit_item(self, item_id: str, **changes: Any) -> None:
        """Change an item as the app would (title, fields, tags...); bumps its version."""
        with self._state() as state:
            item = state["items"][item_id]
            item.update(changes)
            item["version"] += 1
            item["updatedAt"] = timestamp()

    def delete_item(self, item_id: str) -> None:
        """Delete an item, as in the app (not counted as a call)."""
        with self._state() as state:
            del state["items"][item_id]

    def archive_item(self, item_id: str) -> None:
        """Archive an item, as in the app: the SDK no longer finds it."""
        with self._state() as state:
            state["items"][item_id]["state"] = "archived"

    # calls
    def calls(self, *, remote_only: bool = False, sign_ins: bool = True) -> dict[str, int]:
        """Invocations by operation name (``init_client`` counts sign-ins)."""
        calls = dict(self.snapshot().get("calls", {}))
        if remote_only:
            calls = {k: v for k, v in calls.items() if k not in OFFLINE}
        if not sign_ins:
            calls.pop(SIGN_IN, None)
        return calls

    def operations(self) -> int:
        """How many remote operations (not sign-ins, not offline checks) were made."""
        return sum(self.calls(remote_only=True, sign_ins=False).values())

    def requests(self) -> dict[str, int]:
        """Requests as 1Password counts them (see :data:`~.costs.REQUESTS`): ``read``, ``write``
        and per operation (``init_client``: sign-ins)."""
        return dict(self.snapshot().get("requests", {}))

    def request_total(self) -> int:
        """Reads plus writes counted so far (see :meth:`requests`)."""
        counted = self.requests()
        return counted.get("read", 0) + counted.get("write", 0)

    def reset_calls(self) -> None:
        """Forget the calls and requests counted so far."""
        with self._state() as state:
            state["calls"] = {}
            state["requests"] = {}

    # faults
    def inject(self, kind: str, *, op: str = "*", times: int | None = 1,
               seconds: float = 0.0, detail: str | None = None) -> None:
        """Make the next ``times`` calls of ``op`` fail (None: until cleared).

        ``kind``: rate_limit, invalid_token, network, timeout, permission, internal,
        conflict, desktop_expired, or hang (block the call for ``seconds`` before answering).
        ``detail``: more text after a rate-limit message (the real core's wording for
        which limit was hit is not known; the SDK passes the message through).
        """
        fault: dict[str, Any] = {"kind": kind, "op": op, "times": times}
        if kind == "hang":
            fault["seconds"] = seconds
        if detail is not None:
            fault["detail"] = detail
        with self._state() as state:
            state["faults"].append(fault)

    def clear_faults(self) -> None:
        """Drop every injected fault not used up yet."""
        with self._state() as state:
            state["faults"] = []

    # the desktop app
    def desktop(self, *, installed: bool = True, locked: bool = False,
                accounts: list[str] | None = None, block_seconds: float = 30.0,
                expire_sessions: int = 0) -> None:
        """Set the fake desktop app's state (it applies to the SDK's DesktopAuth)."""
        with self._state() as state:
            state["desktop"] = {"installed": installed, "locked": locked,
                                "accounts": list(accounts or []),
                                "blockSeconds": block_seconds,
                                "expireSessions": expire_sessions}
        if installed:
            # The SDK's desktop module must be patched for the fake app to be found.
            importlib.import_module(DESKTOP_MODULE)
            route()
