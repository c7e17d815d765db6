"""The fake account: vaults, items and tokens in a JSON state file.

The state file holds vaults, items, accepted tokens, per-operation counters of calls and
of requests as 1Password counts them (:mod:`.costs`), injected faults (:mod:`.faults`)
and the desktop app's state (:mod:`.desktop`). It is locked and replaced atomically
(:func:`open_state`), so separate processes share one fake account. A fresh one accepts
:data:`DEFAULT_TOKEN` and holds one vault a service account sees, :data:`DEFAULT_VAULT`,
plus a personal "Private" vault and the default "Shared" vault that, as in 1Password,
service accounts cannot see.

Which state file the SDK's calls go to: :func:`active_path`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import struct
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from broker import config
from broker_onepassword.testing.errors import GUESSED_NAME, CoreError

DEFAULT_VAULT = "Broker"


PERSONAL_VAULT = "Private"
SHARED_VAULT = "Shared"
#: Vault types a service account never sees (see visible_vaults).
SA_INVISIBLE = frozenset({"personal", "everyone"})
#: The id prefix the core gives one-time-password fields (``TOTP_<id>``), as items
#: made in the app come back (an item read through the SDK shows
#: ``ItemField(id='TOTP_esfogadaary7lfnv4nflwzzr2e', title='one-time password', ...)``:
#: github.com/1Password/onepassword-sdk-python/issues/59), and the core's own strings.
TOTP_ID_PREFIX = "TOTP_"
#: The core refuses an OTP seed that is not base32 or too short (SecretNotBase32,
#: SecretTooShort; measured). The exact minimum was not measured; it is below
#: pyotp's 112 bits (1Password accepts shorter seeds), so the emulator refuses
#: seeds under 80 bits (16 base32 characters), the smallest AWS or RFC 4226 uses.
MIN_SEED_BITS = 80


def make_token(seed: str | None = None) -> str:
    """A service-account token in the SDK's format (``ops_`` + base64 JSON), fake values."""
    rnd = (hashlib.sha256(seed.encode()).hexdigest() if seed else secrets.token_hex(32))
    salt = base64.urlsafe_b64encode(bytes.fromhex(rnd[:32])).decode().rstrip("=")
    body = {
        "signInAddress": "my.1password.com",
        "userAuth": {"method": "SRPg-4096", "alg": "PBES2g-HS256", "iterations": 650000,
                     "salt": salt},
        "email": f"{rnd[:13]}@1passwordserviceaccounts.com",
        "srpX": rnd,
        "muk": {"alg": "A256GCM", "ext": True, "k": base64.urlsafe_b64encode(
            bytes.fromhex(rnd)).decode().rstrip("="), "key_ops": ["decrypt", "encrypt"],
                "kty": "oct", "kid": "mp"},
        "secretKey": "A3-" + rnd[:6].upper() + "-" + rnd[6:12].upper() + "-EMULATED",
        "throttleSecret": {"seed": rnd, "uuid": rnd[:26]},
        "deviceUuid": rnd[-26:],
    }
    encoded = base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()
    return "ops_" + encoded.rstrip("=")


DEFAULT_TOKEN = make_token("broker-onepassword-emulator")


def new_id() -> str:
    """A 26-character lower-case id like 1Password's."""
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()[:26]


def timestamp() -> str:
    """Now, as the core writes times: ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fresh_state() -> dict[str, Any]:
    """A new account's state: :data:`DEFAULT_TOKEN`, the three vaults, no items,
    no calls counted, no faults, no desktop app."""
    now = timestamp()

    def vault(title: str, kind: str) -> dict[str, Any]:
        return {"title": title, "description": "", "vaultType": kind, "createdAt": now,
                "updatedAt": now, "contentVersion": 1, "attributeVersion": 1}

    return {
        "version": 1,
        "tokens": [DEFAULT_TOKEN],
        "vaults": {new_id(): vault(DEFAULT_VAULT, "userCreated"),
                   new_id(): vault(PERSONAL_VAULT, "personal"),
                   new_id(): vault(SHARED_VAULT, "everyone")},
        "items": {},
        "calls": {},
        "requests": {},
        "faults": [],
        "desktop": {"installed": False, "accounts": [], "locked": False,
                    "blockSeconds": 30.0, "expireSessions": 0},
    }


@contextlib.contextmanager
def open_state(path: Path) -> Iterator[dict[str, Any]]:
    """The state, read under an exclusive lock and written back atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            state = fresh_state()
        yield state
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                os.fchmod(out.fileno(), 0o600)
                json.dump(state, out, indent=1)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    finally:
        os.close(fd)


def totp_code(value: str, at: float | None = None) -> str:
    """The code a one-time-password field shows: a base32 seed or an otpauth:// URI.

    Any seed length is accepted, as 1Password does (pyotp refuses short ones).
    """
    digits, period, algorithm, secret = 6, 30, "sha1", value
    if value.strip().lower().startswith("otpauth://"):
        parts = urlsplit(value.strip())
        query = {k.lower(): v[0] for k, v in parse_qs(parts.query).items()}
        secret = unquote(query.get("secret", ""))
        digits = int(query.get("digits", "6"))
        period = int(query.get("period", "30"))
        algorithm = query.get("algorithm", "SHA1").lower()
    secret = "".join(secret.split()).upper().rstrip("=")
    if not secret:
        raise ValueError("the seed is empty")
    try:
        key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    except (binascii.Error, ValueError):
        raise ValueError("the seed is not base32") from None
    counter = int((time.time() if at is None else at) // period)
    digest = hmac.new(key, struct.pack(">Q", counter), getattr(hashlib, algorithm)).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def visible_vaults(state: dict[str, Any], client: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Vault id -> vault of the vaults ``client`` may see (a desktop-app client: all)."""
    if client.get("desktop"):
        return dict(state["vaults"])
    # A service account can never use a Personal, Private or Employee vault (type
    # "personal") nor the default Shared vault (type "everyone"): 1Password's "Get started
    # with 1Password Service Accounts", developer.1password.com/docs/service-accounts/get-started.
    return {k: v for k, v in state["vaults"].items() if v["vaultType"] not in SA_INVISIBLE}


def find_vault(state: dict[str, Any], client: dict[str, Any], vault_id: Any) -> dict[str, Any]:
    """The vault ``vault_id`` if ``client`` may see it; else CoreError ("vault couldn't be
    found", as the core says)."""
    vault = visible_vaults(state, client).get(vault_id)
    if vault is None:
        raise CoreError.of(GUESSED_NAME, "vault couldn't be found")
    return vault


def vault_overview(vault_id: str, vault: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """A vault as ``VaultsList`` returns it (with its count of active items)."""
    count = sum(1 for i in state["items"].values()
                if i["vaultId"] == vault_id and i["state"] == "active")
    return {"id": vault_id, "title": vault["title"], "description": vault["description"],
            "vaultType": vault["vaultType"], "activeItemCount": count,
            "contentVersion": vault["contentVersion"],
            "attributeVersion": vault["attributeVersion"],
            "createdAt": vault["createdAt"], "updatedAt": vault["updatedAt"]}


def require_write(state: dict[str, Any], client: dict[str, Any], vault_id: Any) -> None:
    """Refuse a change to vault ``vault_id`` that ``client`` may see but not write: a
    service account holds per-vault permissions fixed when it is made, and `op
    service-account create` grants read_items only unless told (1Password CLI reference,
    developer.1password.com/docs/cli/reference/management-commands/service-account); a
    vault added with ``service_account_access="read"`` is such a vault. The core's words
    are those it answers any permission failure with. A desktop-app client writes as
    the signed-in user."""
    vault = find_vault(state, client, vault_id)
    if not client.get("desktop") and vault.get("serviceAccountAccess", "write") != "write":
        raise CoreError.of(GUESSED_NAME, "you don't have the right permissions to access "
                           "this resource")


def find_item(state: dict[str, Any], client: dict[str, Any], vault_id: Any, item_id: Any,
          *, update: bool = False, active: bool = False) -> dict[str, Any]:
    """The item; ``active``: an archived one is not found (ItemsGet by a remembered id:
    the core does not return archived items, measured)."""
    find_vault(state, client, vault_id)
    item = state["items"].get(item_id)
    if item is None or item["vaultId"] != vault_id or (active and item["state"] != "active"):
        raise CoreError.of(GUESSED_NAME, ("item update failed: " if update else "")
                           + "item couldn't be found")
    found: dict[str, Any] = item
    return found


def public(item: dict[str, Any]) -> dict[str, Any]:
    """An item as the core returns it: TOTP fields carry the current code."""
    out = {k: v for k, v in item.items() if k != "state"}
    fields = []
    for field in item["fields"]:
        field = dict(field)
        field.pop("details", None)
        if field["fieldType"] == "Totp":
            try:
                details = {"code": totp_code(field["value"]), "errorMessage": None}
            except ValueError as exc:
                details = {"code": None, "errorMessage": str(exc)}
            field["details"] = {"type": "Otp", "content": details}
        fields.append(field)
    out["fields"] = fields
    return out


def item_overview(item: dict[str, Any]) -> dict[str, Any]:
    """An item as ``ItemsList`` returns it (no fields)."""
    return {k: item[k] for k in ("id", "title", "category", "vaultId", "websites", "tags",
                                 "createdAt", "updatedAt", "state")}


def clean_fields(fields: Any, sections: Any) -> list[dict[str, Any]]:
    """``fields`` as the core stores them; CoreError for a duplicate field id, a field in
    a section the item lacks, or a bad OTP seed (:func:`check_seed`)."""
    section_ids = {s.get("id") for s in sections or []}
    seen: set[str] = set()
    cleaned = []
    for field in fields or []:
        if field["id"] in seen:
            raise CoreError.of("InvalidConfiguration", "invalid user input: field or file with "
                               "provided field/section ID already exists")
        seen.add(field["id"])
        if field["fieldType"] == "Totp":
            check_seed(field["value"])
        if field.get("sectionId") not in (None, "") and field["sectionId"] not in section_ids:
            raise CoreError.of("InvalidConfiguration", "invalid user input: no section found "
                               "with given section ID")
        field_id = field["id"]
        if field["fieldType"] == "Totp" and not field_id.startswith(TOTP_ID_PREFIX):
            field_id = TOTP_ID_PREFIX + field_id  # how the core stores OTP fields
        cleaned.append({"id": field_id, "title": field["title"],
                        "sectionId": field.get("sectionId"), "fieldType": field["fieldType"],
                        "value": field["value"]})
    return cleaned


def check_seed(value: str) -> None:
    """The core's check of an OTP field's value: base32, long enough (SecretNotBase32,
    SecretTooShort; the error names measured; the messages are guesses)."""
    secret = value.strip()
    if not secret:
        return  # an empty OTP field is allowed (the app makes them)
    if secret.lower().startswith("otpauth://"):
        query = {k.lower(): v[0] for k, v in parse_qs(urlsplit(secret).query).items()}
        secret = unquote(query.get("secret", ""))
    secret = "".join(secret.split()).upper().rstrip("=")
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
    if not secret or not set(secret) <= alphabet:
        raise CoreError.of("SecretNotBase32", "invalid user input: the one-time password "
                           "secret is not valid base32")
    if len(secret) * 5 < MIN_SEED_BITS:
        raise CoreError.of("SecretTooShort", "invalid user input: the one-time password "
                           "secret is too short")


def bump(state: dict[str, Any], vault_id: str) -> None:
    """Count a change to vault ``vault_id`` (its content version and update time)."""
    vault = state["vaults"][vault_id]
    vault["contentVersion"] += 1
    vault["updatedAt"] = timestamp()


def create(state: dict[str, Any], client: dict[str, Any], params: dict[str, Any],
            vault_id: str | None = None) -> dict[str, Any]:
    """A new item in the account from ``ItemsCreate`` parameters (``vault_id``: the vault
    ``ItemsCreateAll`` names for all of them); CoreError when the vault is not one
    ``client`` sees or the fields are refused."""
    vault_id = vault_id or params.get("vaultId")
    require_write(state, client, vault_id)
    if params.get("vaultId") != vault_id:
        raise CoreError.of("InvalidConfiguration", "invalid user input: multiple items can be "
                           "created at once only within the same vault. one of the specified "
                           "items had an inconsistent vault id")
    find_vault(state, client, vault_id)
    now = timestamp()
    sections = [{"id": s["id"], "title": s["title"]} for s in params.get("sections") or []]
    item = {
        "id": new_id(), "title": params["title"], "category": params["category"],
        "vaultId": vault_id, "fields": clean_fields(params.get("fields"), sections),
        "sections": sections, "notes": params.get("notes") or "",
        "tags": list(params.get("tags") or []), "websites": list(params.get("websites") or []),
        "version": 1, "files": [], "document": None, "createdAt": now, "updatedAt": now,
        "state": "active",
    }
    state["items"][item["id"]] = item
    assert vault_id is not None
    bump(state, vault_id)
    return item


# -- which account the calls go to ----------------------------------------------

ENV = "BROKER_OP_EMULATOR"
PINNED: list[str] = []


def active_path() -> str | None:
    """The state file calls go to: the innermost
    :func:`~broker_onepassword.testing.shim.install`, else $BROKER_OP_EMULATOR."""
    if PINNED:
        return PINNED[-1]
    return config.environment(ENV)
