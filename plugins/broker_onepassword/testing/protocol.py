"""The native core's JSON invocation protocol, answered against the fake account.

The ``onepassword-sdk`` package is a Python layer (pydantic types, one class per API)
over a native library, ``onepassword.lib.<arch>.op_uniffi_core``, that takes JSON
invocations and answers JSON::

    await core.init_client('{"serviceAccountToken": "ops_...", ...}')  -> '1'
    await core.invoke('{"invocation": {"clientId": 1, "parameters":
                        {"name": "ItemsGet", "parameters": {"vault_id": ..., ...}}}}')
    core.invoke_sync('{"invocation": {"parameters": {"name": "ValidateSecretReference", ...}}}')
    core.release_client('1')

:class:`Emulated` is those four functions over one state file; :func:`dispatch` answers
one authenticated invocation (the SDK operations broker uses, by name).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from broker_onepassword.testing.account import (
    bump,
    clean_fields,
    create,
    find_item,
    find_vault,
    item_overview,
    new_id,
    open_state,
    public,
    require_write,
    timestamp,
    vault_overview,
    visible_vaults,
)
from broker_onepassword.testing.costs import SIGN_IN, count_call
from broker_onepassword.testing.errors import GUESSED_NAME, SUPPORT, CoreError
from broker_onepassword.testing.faults import fault_error, take_fault
from broker_onepassword.testing.references import parse_reference, resolve, resolve_error

TOKEN_KEYS = (
    "signInAddress", "userAuth", "email", "srpX", "muk", "secretKey", "throttleSecret",
    "deviceUuid",
)


#: Integration name and version limits checked by the core before any request
#: ("integration version was too long. Max allowed: 20 chars"; the SDK's test_client.py
#: for the empty ones; measured).
MAX_INTEGRATION_NAME, MAX_INTEGRATION_VERSION = 40, 20


class Clients:
    """Signed-in clients of this process (the native core keeps them in memory)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_id = 1
        self.table: dict[int, dict[str, Any]] = {}

    def add(self, info: dict[str, Any]) -> int:
        """Keep a signed-in client's ``info`` (desktop or not, account, token, integration); its
        new id, counting from 1 in this process.
        """
        with self.lock:
            client_id = self.next_id
            self.next_id += 1
            self.table[client_id] = info
            return client_id

    def get(self, client_id: Any) -> dict[str, Any]:
        """The info of client ``client_id``.

        Raises:
            CoreError: no such client (an ``Internal`` error, as the core words it).
        """
        with self.lock:
            info = self.table.get(client_id) if isinstance(client_id, int) else None
        if info is None:
            raise CoreError.of("Internal",
                               f"an internal error occurred, {SUPPORT}: invalid client id")
        return info

    def drop(self, client_id: Any) -> None:
        """Forget client ``client_id`` (the SDK's release at exit or by broker's ``close``).

        Raises:
            CoreError: no such client ("Could not drop SDK client. Invalid client ID").
        """
        with self.lock:
            if self.table.pop(client_id, None) is None:
                raise CoreError.of("Internal", f"an internal error occurred, {SUPPORT}: internal "
                                   "error: Could not drop SDK client. Invalid client ID")


CLIENTS = Clients()


def check_token(token: Any) -> None:
    """The checks the native core makes locally, before any network traffic."""
    if not isinstance(token, str) or not token:
        raise CoreError.of("InvalidConfiguration", "invalid user input: encountered the following "
                           "errors: service account token was not specified")
    if not token.startswith("ops_"):
        raise CoreError.of("InvalidConfiguration", "invalid user input: encountered the following "
                           "errors: service account token had invalid format")
    prefix = ("invalid service account token, please make sure you provide a valid service "
              "account token as parameter:  ")
    body = token[4:]
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")
    try:
        if not set(body) <= alphabet:
            raise ValueError
        decoded = base64.b64decode(body.replace("-", "+").replace("_", "/")
                                   + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise CoreError.of("ServiceAccountTokenParsing", prefix + "service account token base64 "
                           "decoding failed, please create another token") from None
    try:
        parsed = json.loads(decoded)
        if not isinstance(parsed, dict) or any(k not in parsed for k in TOKEN_KEYS):
            raise ValueError
    except ValueError:
        raise CoreError.of("ServiceAccountTokenParsing", prefix + "service account "
                           "deserialization failed, please create another token") from None


def check_integration(config: dict[str, Any]) -> None:
    """The core's local check of the integration name and version (see the limits)."""
    problems = []
    for key, what, limit in (("integrationName", "name", MAX_INTEGRATION_NAME),
                             ("integrationVersion", "version", MAX_INTEGRATION_VERSION)):
        value = config.get(key)
        if not isinstance(value, str) or not value:
            problems.append(f"integration {what} was not specified")
        elif len(value) > limit:
            problems.append(f"integration {what} was too long. Max allowed: {limit} chars")
    if problems:
        raise CoreError.of("InvalidConfiguration", "invalid user input: encountered the "
                           "following errors: " + ", ".join(problems))


def dispatch(state: dict[str, Any], client: dict[str, Any], name: str,
             params: dict[str, Any]) -> Any:
    """One authenticated invocation; the JSON-able answer, or CoreError."""
    if name == "VaultsList":
        return [vault_overview(k, v, state) for k, v in visible_vaults(state, client).items()]
    if name == "VaultsGetOverview":
        return vault_overview(params["vault_id"], find_vault(state, client, params["vault_id"]),
                               state)
    if name == "VaultsGet":
        overview = vault_overview(params["vault_id"], find_vault(state, client, params["vault_id"]),
                                   state)
        return {k: overview[k] for k in ("id", "title", "description", "vaultType",
                                         "activeItemCount", "contentVersion",
                                         "attributeVersion")} | {"access": None}
    if name == "VaultsCreate":
        vault_id, now = new_id(), timestamp()
        spec = params["params"]
        state["vaults"][vault_id] = {
            "title": spec["title"], "description": spec.get("description") or "",
            "vaultType": "userCreated", "createdAt": now, "updatedAt": now,
            "contentVersion": 1, "attributeVersion": 1}
        return dispatch(state, client, "VaultsGet", {"vault_id": vault_id})
    if name == "ItemsList":
        find_vault(state, client, params["vault_id"])
        wanted = {"active"}
        for item_filter in params.get("filters") or []:
            if item_filter.get("type") == "ByState":
                content = item_filter.get("content") or {}
                wanted = {s for s in ("active", "archived") if content.get(s)}
        return [item_overview(i) for i in state["items"].values()
                if i["vaultId"] == params["vault_id"] and i["state"] in wanted]
    if name == "ItemsGet":
        return public(find_item(state, client, params["vault_id"], params["item_id"], active=True))
    if name == "ItemsGetAll":
        find_vault(state, client, params["vault_id"])
        # get_all and delete_all take at most 50 ids: the SDK core's answer, measured
        if len(params["item_ids"]) > 50:
            raise CoreError.of("InvalidConfiguration",
                               "invalid user input: you can only retrieve up to 50 items at once")
        answers = []
        for item_id in params["item_ids"]:
            item = state["items"].get(item_id)
            if item is None or item["vaultId"] != params["vault_id"] \
                    or item["state"] != "active":  # archived: not returned (as ItemsGet)
                answers.append({"content": None, "error": {"type": "itemNotFound"}})
            else:
                answers.append({"content": public(item), "error": None})
        return {"individualResponses": answers}
    if name == "ItemsCreate":
        return public(create(state, client, params["params"]))
    if name == "ItemsCreateAll":
        created = [public(create(state, client, p, params["vault_id"]))
                   for p in params["params"]]
        return {"individualResponses": [{"content": c, "error": None} for c in created]}
    if name == "ItemsPut":
        submitted = params["item"]
        require_write(state, client, submitted["vaultId"])
        item = find_item(state, client, submitted["vaultId"], submitted["id"], update=True)
        if item["state"] != "active":
            raise CoreError.of(GUESSED_NAME, "item update failed: item is not in an active state")
        if submitted["version"] != item["version"]:  # put of a stale version: the core's words
            raise CoreError.of(GUESSED_NAME, "The submitted item is not up to date. Refetch the "
                               "item and retry the request.")
        sections = [{"id": s["id"], "title": s["title"]} for s in submitted.get("sections") or []]
        item.update({
            "title": submitted["title"], "category": submitted["category"],
            "fields": clean_fields(submitted.get("fields"), sections), "sections": sections,
            "notes": submitted.get("notes") or "", "tags": list(submitted.get("tags") or []),
            "websites": list(submitted.get("websites") or []),
            "version": item["version"] + 1, "updatedAt": timestamp()})
        bump(state, item["vaultId"])
        return public(item)
    if name == "ItemsDelete":
        require_write(state, client, params["vault_id"])
        item = find_item(state, client, params["vault_id"], params["item_id"])
        del state["items"][item["id"]]
        bump(state, item["vaultId"])
        return None
    if name == "ItemsDeleteAll":
        require_write(state, client, params["vault_id"])
        if len(params["item_ids"]) > 50:
            raise CoreError.of("InvalidConfiguration",
                               "invalid user input: you can only delete up to 50 items at once")
        responses: dict[str, Any] = {}
        for item_id in params["item_ids"]:
            item = state["items"].get(item_id)
            if item is None or item["vaultId"] != params["vault_id"]:
                responses[item_id] = {"content": None, "error": {"type": "itemNotFound"}}
            else:
                del state["items"][item_id]
                responses[item_id] = {"content": None, "error": None}
        return {"individualResponses": responses}
    if name == "ItemsArchive":
        require_write(state, client, params["vault_id"])
        item = find_item(state, client, params["vault_id"], params["item_id"])
        item["state"] = "archived"
        return None
    if name == "SecretsResolve":
        answer = resolve(state, client, params["secret_reference"])
        if len(answer) == 2:
            raise CoreError.of("ResolvingSecretReference",
                               f"error resolving secret reference: {answer[1]}")
        return answer[0]
    if name == "SecretsResolveAll":
        results: dict[str, Any] = {}
        for reference in params["secret_references"]:
            try:
                answer = resolve(state, client, reference)
            except CoreError as exc:
                message = json.loads(exc.msg)["message"]
                results[reference] = {"content": None, "error": resolve_error("parsing", message)}
                continue
            if len(answer) == 2:
                results[reference] = {"content": None, "error": resolve_error(*answer)}
            else:
                results[reference] = {"content": {"secret": answer[0], "itemId": answer[1],
                                                  "vaultId": answer[2]}, "error": None}
        return {"individualResponses": results}
    raise CoreError(f"unknown variant `{name}` (not emulated): data did not match any variant "
                    "of untagged enum Invocation")


def parse_invocation(text: str) -> tuple[Any, str, dict[str, Any]]:
    """(client id, operation name, parameters) of an invocation's JSON; CoreError as
    the core's for text that is not one."""
    try:
        message = json.loads(text)
        invocation = message["invocation"]
        parameters = invocation["parameters"]
        return invocation.get("clientId"), parameters["name"], parameters.get("parameters") or {}
    except (ValueError, KeyError, TypeError):
        raise CoreError("data did not match any variant of untagged enum Invocation") from None


class Emulated:
    """The native core's four functions over one state file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def init_client(self, config_text: str, *, desktop_account: str | None = None) -> str:
        """The core's ``init_client``: sign in with the JSON ``ClientConfig`` (a service-account
        token, or the desktop app's ``desktop_account``), counted as one sign-in; the new
        client's id as text. Injected faults (a hang, an error) apply.

        Raises:
            CoreError: a malformed config or integration name/version, a token that is
                malformed or not known to the account, or an injected fault.
        """
        try:
            config = json.loads(config_text)
            if not isinstance(config, dict) or "integrationName" not in config:
                raise ValueError
        except ValueError:
            raise CoreError(
                "data did not match any variant of untagged enum ClientConfig") from None
        check_integration(config)
        token = config.get("serviceAccountToken")
        if desktop_account is None:
            check_token(token)
        with open_state(self.path) as state:
            count_call(state, SIGN_IN)
            fault = take_fault(state, SIGN_IN)
            if fault is None and desktop_account is None and token not in state["tokens"]:
                fault = {"kind": "unknown_token"}
            hang = float(fault.get("seconds", 0)) if fault and fault["kind"] == "hang" else 0.0
        if fault is not None and fault["kind"] == "unknown_token":
            raise CoreError.of(GUESSED_NAME, "authentication error: you are not authenticated")
        if hang:
            time.sleep(hang)
        elif fault is not None:
            raise fault_error(fault, SIGN_IN)
        info = {"desktop": desktop_account is not None, "account": desktop_account,
                "token": token, "integration": config.get("integrationName")}
        return str(CLIENTS.add(info))

    def invoke(self, text: str) -> str:
        """The core's ``invoke``: run the JSON invocation (an SDK call such as ``ItemsGet``) on the
        account state, counted per call (failed ones too); its result as JSON text. Injected
        faults apply; a service-account token revoked since sign-in fails.

        Raises:
            CoreError: what the real core raises for that call (not found, rate limited,
                invalid token...), or an injected fault.
        """
        client_id, name, params = parse_invocation(text)
        client = CLIENTS.get(client_id)
        hang = 0.0
        with open_state(self.path) as state:
            count_call(state, name, params)
            fault = take_fault(state, name)
            if fault is not None and fault["kind"] == "hang":
                hang, fault = float(fault.get("seconds", 0)), None
            if fault is None and not hang and not client["desktop"] \
                    and client["token"] not in state["tokens"]:
                fault = {"kind": "invalid_token"}  # revoked since sign-in
            error: CoreError | None = None
            if fault is None and not hang:
                try:
                    result = dispatch(state, client, name, params)
                except CoreError as exc:
                    error = exc  # counted (and any change kept) all the same
        if error is not None:
            raise error
        if hang:
            time.sleep(hang)
            return self.invoke_after_hang(client, name, params)
        if fault is not None:
            raise fault_error(fault, name)
        return json.dumps(result)

    def invoke_after_hang(self, client: dict[str, Any], name: str, params: dict[str, Any]) -> str:
        """Run call ``name`` after an injected hang (the state read again, not counted again);
        its result as JSON text.

        Raises:
            CoreError: as :meth:`invoke`.
        """
        with open_state(self.path) as state:
            return json.dumps(dispatch(state, client, name, params))

    def invoke_sync(self, text: str) -> str:
        """The core's ``invoke_sync``: ``ValidateSecretReference`` (returns "") and
        ``GeneratePassword`` (a random password as JSON), counted as calls.

        Raises:
            CoreError: a malformed reference, or any other invocation.
        """
        _, name, params = parse_invocation(text)
        with open_state(self.path) as state:
            count_call(state, name)
        if name == "ValidateSecretReference":
            parse_reference(params.get("secret_reference"))
            return ""
        if name == "GeneratePassword":
            return json.dumps({"password": secrets.token_urlsafe(24)})
        raise CoreError("data did not match any variant of untagged enum Invocation")

    def release_client(self, text: str) -> None:
        """The core's ``release_client`` for the JSON client id ``text``.

        Raises:
            CoreError: no such client (:meth:`Clients.drop`).
        """
        CLIENTS.drop(json.loads(text))
