"""An emulator of the 1Password SDK's native core, for tests without 1Password.

The ``onepassword-sdk`` package is a Python layer (pydantic types, one class per
API) over a native library, ``onepassword.lib.<arch>.op_uniffi_core``, that takes
JSON invocations and answers JSON::

    await core.init_client('{"serviceAccountToken": "ops_...", ...}')  -> '1'
    await core.invoke('{"invocation": {"clientId": 1, "parameters":
                        {"name": "ItemsGet", "parameters": {"vault_id": ..., ...}}}}')
    core.invoke_sync('{"invocation": {"parameters": {"name": "ValidateSecretReference", ...}}}')
    core.release_client('1')

Errors are exceptions whose ``msg`` is compact JSON ``{"name": ..., "message": ...}``,
which the SDK's ``errors.raise_typed_exception`` turns into
``RateLimitExceededException``, ``DesktopSessionExpiredException`` or a plain
``Exception(message)``. This module replaces *only* that native module (and, for
desktop-app authentication, the app's IPC library that ``onepassword.desktop_core``
loads with ctypes), so the SDK's real Python layer and types run unchanged.

State lives in a JSON file (vaults, items, accepted tokens, per-operation counters of
calls and of requests as 1Password counts them, injected faults, the desktop app's
state), locked and replaced atomically, so separate processes share one fake account.

Activation: importing this module puts a router in place of the native core; the
router sends calls to the emulator while a state file is active — pinned with
:func:`install` / :func:`installed`, or named by ``BROKER_OP_EMULATOR`` — and to
the real core otherwise. For subprocesses, put ``broker/testing/_op_site`` on
``PYTHONPATH`` and set ``BROKER_OP_EMULATOR=<state file>``: its sitecustomize
imports this module. A fresh state file accepts :data:`DEFAULT_TOKEN` and holds
one shared vault, :data:`DEFAULT_VAULT` (plus a personal "Private" vault and the
default "Shared" vault that, as
in 1Password, service accounts cannot see).

Error *messages* are the native core's own (read from the library and observed);
the error *names* other than the typed ones are not all known and are marked as
guesses below: the Python layer only looks at ``RateLimitExceeded`` and
``DesktopSessionExpired``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import secrets
import struct
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

ENV = "BROKER_OP_EMULATOR"
CORE_MODULES = ("onepassword.lib.x86_64.op_uniffi_core", "onepassword.lib.aarch64.op_uniffi_core")
DESKTOP_MODULE = "onepassword.desktop_core"
#: What the emulated ``find_1password_lib_path`` returns when the "app" is installed.
FAKE_LIBRARY_PATH = "/opt/1Password/libop_sdk_ipc_client.so"
DEFAULT_VAULT = "Broker"
PERSONAL_VAULT = "Private"
SHARED_VAULT = "Shared"
#: Vault types a service account never sees (see _visible_vaults).
SA_INVISIBLE = frozenset({"personal", "everyone"})
#: Operations the real core runs offline (no server, no rate limit).
OFFLINE = frozenset({"ValidateSecretReference", "GeneratePassword"})
#: The counter for sign-ins (``init_client``).
SIGN_IN = "init_client"
_TOKEN_KEYS = (
    "signInAddress", "userAuth", "email", "srpX", "muk", "secretKey", "throttleSecret",
    "deviceUuid",
)
_SUPPORT = "please contact 1Password at support@1password.com or https://developer.1password.com/joinslack"
_REFERENCE_FORMAT = (
    'secret reference has invalid format - must be '
    '"op://<vault>/<item>/[section/]field[?attribute=<attribute-value>]"'
)
#: Query parameters the core's reference parser takes. It refuses ?attribute=type, value,
#: id and purpose (which the SDK's documentation once listed), ssh-format together with
#: attribute=totp, and a trailing "?"; it accepts empty path segments. Source: the SDK
#: 0.4.2 native core's ValidateSecretReference (``Secrets.validate_secret_reference``),
#: run offline: "measured" below means observed from that core.
_ATTRIBUTES = {"attribute": {"totp", "otp"}, "ssh-format": {"openssh"}}
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
#: Integration name and version limits checked by the core before any request
#: ("integration version was too long. Max allowed: 20 chars"; the SDK's test_client.py
#: for the empty ones; measured).
MAX_INTEGRATION_NAME, MAX_INTEGRATION_VERSION = 40, 20
#: Name guesses: the native core's error enum has more variants than we can observe.
_GUESSED_NAME = "Internal"


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


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class CoreError(Exception):
    """What the native core raises: ``msg`` is JSON (or a bare message)."""

    def __init__(self, msg: str) -> None:
        super().__init__(f"msg={msg!r}")
        self.msg = msg

    @classmethod
    def of(cls, name: str, message: str) -> CoreError:
        return cls(json.dumps({"name": name, "message": message}, separators=(",", ":")))


class _ErrorNamespace:
    """Mirrors the generated ``Error`` class, whose variant is ``Error.Error``."""

    Error = CoreError


# -- the state file ------------------------------------------------------------------


def fresh_state() -> dict[str, Any]:
    now = _now()

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
def _locked(path: Path) -> Iterator[dict[str, Any]]:
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


# -- TOTP ----------------------------------------------------------------------------


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


# -- the engine: one invocation against the state ------------------------------------


class _Clients:
    """Signed-in clients of this process (the native core keeps them in memory)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.next_id = 1
        self.table: dict[int, dict[str, Any]] = {}

    def add(self, info: dict[str, Any]) -> int:
        with self.lock:
            client_id = self.next_id
            self.next_id += 1
            self.table[client_id] = info
            return client_id

    def get(self, client_id: Any) -> dict[str, Any]:
        with self.lock:
            info = self.table.get(client_id) if isinstance(client_id, int) else None
        if info is None:
            raise CoreError.of("Internal",
                               f"an internal error occurred, {_SUPPORT}: invalid client id")
        return info

    def drop(self, client_id: Any) -> None:
        with self.lock:
            if self.table.pop(client_id, None) is None:
                raise CoreError.of("Internal", f"an internal error occurred, {_SUPPORT}: internal "
                                   "error: Could not drop SDK client. Invalid client ID")


CLIENTS = _Clients()


#: Requests 1Password's rate limits count, per SDK operation: (reads, writes), the
#: ``n`` variants per id or reference in the call. Rate limits count requests, not
#: calls ("Service account rate limits", developer.1password.com/docs/service-accounts/
#: rate-limits: hourly reads and writes per token, a daily total per account), and
#: "Use service accounts with 1Password CLI" (developer.1password.com/docs/service-
#: accounts/use-with-1password-cli, "Commands that make multiple requests") documents
#: `op item get` as 3 reads and `op item list` as 1 + 1 per vault (2 given the vault's
#: id); every other command makes one request. Each SDK operation is counted as the CLI
#: command that does the same; marked "estimate" where no command matches.
REQUESTS: dict[str, tuple[int, int]] = {
    "VaultsList": (1, 0),  # op vault list: one request
    "VaultsGet": (1, 0),  # op vault get
    "VaultsGetOverview": (1, 0),
    "VaultsCreate": (0, 1),  # op vault create
    "ItemsList": (2, 0),  # op item list --vault <id>: 2
    "ItemsGet": (3, 0),  # op item get: 3 reads
    "ItemsCreate": (0, 1),  # op item create: one request
    "ItemsPut": (0, 1),  # op item edit: one request
    "ItemsDelete": (0, 1),  # op item delete
    "ItemsArchive": (0, 1),  # op item delete --archive
    "SecretsResolve": (3, 0),  # op read: the look-up op item get makes (estimate)
}
#: Per id or reference in the call (estimates: as that many single operations).
REQUESTS_EACH: dict[str, tuple[int, int]] = {
    "ItemsGetAll": (3, 0),
    "ItemsCreateAll": (0, 1),
    "ItemsDeleteAll": (0, 1),
    "SecretsResolveAll": (3, 0),
}
#: A service account's sign-in (SRP: start and verify; not documented, an estimate).
SIGN_IN_REQUESTS = (2, 0)


def _count(state: dict[str, Any], name: str, params: dict[str, Any] | None = None) -> None:
    calls = state.setdefault("calls", {})
    calls[name] = calls.get(name, 0) + 1
    if name in OFFLINE:
        return
    if name == SIGN_IN:
        reads, writes = SIGN_IN_REQUESTS
    elif name in REQUESTS_EACH:
        listed: Any = next((v for k, v in (params or {}).items()
                            if k in ("item_ids", "params", "secret_references")), [])
        many = len(listed) if isinstance(listed, list) else 1
        reads, writes = (n * many for n in REQUESTS_EACH[name])
    else:
        reads, writes = REQUESTS.get(name, (1, 0))
    requests = state.setdefault("requests", {})
    requests[name] = requests.get(name, 0) + reads + writes
    requests["read"] = requests.get("read", 0) + reads
    requests["write"] = requests.get("write", 0) + writes


def _fault(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    for fault in state.get("faults", []):
        if fault["op"] in ("*", name):
            if fault.get("times") is not None:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    state["faults"].remove(fault)
            return dict(fault)
    return None


def _fault_error(fault: dict[str, Any], name: str) -> CoreError:
    kind = fault["kind"]
    signing_in = name == SIGN_IN
    auth = "authentication error: " if signing_in else ""
    if kind == "rate_limit":
        detail = fault.get("detail")
        return CoreError.of("RateLimitExceeded",
                            "rate limit exceeded" + (f": {detail}" if detail else ""))
    if kind == "invalid_token":
        return CoreError.of(_GUESSED_NAME, "authentication error: bad service account token, "
                            "please rotate it: the token was revoked or has expired (emulated)")
    if kind == "network":
        # The real core redacts the URL (measured).
        return CoreError.of(_GUESSED_NAME, f"{auth}request library compatibility issue, check "
                            "that the your environment uses compatible versions: reqwest library: "
                            "error sending request for url (<redacted URL>)")
    if kind == "timeout":
        return CoreError.of(_GUESSED_NAME, f"{auth}request timeout")
    if kind == "permission":
        return CoreError.of(_GUESSED_NAME, f"{auth}you don't have the right permissions to "
                            "access this resource")
    if kind == "conflict":  # a concurrent edit on the server (SDK issue reports)
        return CoreError.of(_GUESSED_NAME, "a conflict occurred on the server; please retry")
    if kind == "desktop_expired":
        return CoreError.of("DesktopSessionExpired", "desktop session expired")
    return CoreError.of("Internal", f"an internal error occurred, {_SUPPORT}: emulated fault")


def _check_token(token: Any) -> None:
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
        if not isinstance(parsed, dict) or any(k not in parsed for k in _TOKEN_KEYS):
            raise ValueError
    except ValueError:
        raise CoreError.of("ServiceAccountTokenParsing", prefix + "service account "
                           "deserialization failed, please create another token") from None


def _check_integration(config: dict[str, Any]) -> None:
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


def _visible_vaults(state: dict[str, Any], client: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if client.get("desktop"):
        return dict(state["vaults"])
    # A service account can never use a Personal, Private or Employee vault (type
    # "personal") nor the default Shared vault (type "everyone"): 1Password's "Get started
    # with 1Password Service Accounts", developer.1password.com/docs/service-accounts/get-started.
    return {k: v for k, v in state["vaults"].items() if v["vaultType"] not in SA_INVISIBLE}


def _vault(state: dict[str, Any], client: dict[str, Any], vault_id: Any) -> dict[str, Any]:
    vault = _visible_vaults(state, client).get(vault_id)
    if vault is None:
        raise CoreError.of(_GUESSED_NAME, "vault couldn't be found")
    return vault


def _vault_overview(vault_id: str, vault: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    count = sum(1 for i in state["items"].values()
                if i["vaultId"] == vault_id and i["state"] == "active")
    return {"id": vault_id, "title": vault["title"], "description": vault["description"],
            "vaultType": vault["vaultType"], "activeItemCount": count,
            "contentVersion": vault["contentVersion"],
            "attributeVersion": vault["attributeVersion"],
            "createdAt": vault["createdAt"], "updatedAt": vault["updatedAt"]}


def _item(state: dict[str, Any], client: dict[str, Any], vault_id: Any, item_id: Any,
          *, update: bool = False, active: bool = False) -> dict[str, Any]:
    """The item; ``active``: an archived one is not found (ItemsGet by a remembered id:
    the core does not return archived items, measured)."""
    _vault(state, client, vault_id)
    item = state["items"].get(item_id)
    if item is None or item["vaultId"] != vault_id or (active and item["state"] != "active"):
        raise CoreError.of(_GUESSED_NAME, ("item update failed: " if update else "")
                           + "item couldn't be found")
    found: dict[str, Any] = item
    return found


def _public(item: dict[str, Any]) -> dict[str, Any]:
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


def _overview(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in ("id", "title", "category", "vaultId", "websites", "tags",
                                 "createdAt", "updatedAt", "state")}


def _clean_fields(fields: Any, sections: Any) -> list[dict[str, Any]]:
    section_ids = {s.get("id") for s in sections or []}
    seen: set[str] = set()
    cleaned = []
    for field in fields or []:
        if field["id"] in seen:
            raise CoreError.of("InvalidConfiguration", "invalid user input: field or file with "
                               "provided field/section ID already exists")
        seen.add(field["id"])
        if field["fieldType"] == "Totp":
            _check_seed(field["value"])
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


def _check_seed(value: str) -> None:
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


def _bump(state: dict[str, Any], vault_id: str) -> None:
    vault = state["vaults"][vault_id]
    vault["contentVersion"] += 1
    vault["updatedAt"] = _now()


def _create(state: dict[str, Any], client: dict[str, Any], params: dict[str, Any],
            vault_id: str | None = None) -> dict[str, Any]:
    vault_id = vault_id or params.get("vaultId")
    if params.get("vaultId") != vault_id:
        raise CoreError.of("InvalidConfiguration", "invalid user input: multiple items can be "
                           "created at once only within the same vault. one of the specified "
                           "items had an inconsistent vault id")
    _vault(state, client, vault_id)
    now = _now()
    sections = [{"id": s["id"], "title": s["title"]} for s in params.get("sections") or []]
    item = {
        "id": new_id(), "title": params["title"], "category": params["category"],
        "vaultId": vault_id, "fields": _clean_fields(params.get("fields"), sections),
        "sections": sections, "notes": params.get("notes") or "",
        "tags": list(params.get("tags") or []), "websites": list(params.get("websites") or []),
        "version": 1, "files": [], "document": None, "createdAt": now, "updatedAt": now,
        "state": "active",
    }
    state["items"][item["id"]] = item
    assert vault_id is not None
    _bump(state, vault_id)
    return item


def _parse_reference(reference: Any) -> tuple[list[str], dict[str, str]]:
    def fail(detail: str) -> CoreError:
        return CoreError.of("ParsingSecretReference",
                            f"the secret reference could not be parsed: {detail}")

    if not isinstance(reference, str) or not reference.startswith("op://"):
        raise fail('secret reference is not prefixed with "op://"')
    path, mark, query = reference[5:].partition("?")
    if mark and not query:  # a trailing "?" (measured)
        raise fail("secret reference has invalid query parameter key")
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.-/")
    if not set(path) <= allowed or not set(query) <= allowed | {"=", "&"}:
        raise fail("invalid character in secret reference: secret references must only "
                   "contain alphanumeric, _, . or - characters")
    parts = path.split("/")
    if len(parts) not in (3, 4):  # empty segments pass the parser (measured)
        raise fail(_REFERENCE_FORMAT)
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        if key not in _ATTRIBUTES:
            raise fail("secret reference has invalid query parameter key")
        if value not in _ATTRIBUTES[key]:
            raise fail("secret reference has invalid query parameter value}")
        options[key] = value
    if "ssh-format" in options and options.get("attribute") in ("totp", "otp"):
        # The core refuses the two together (measured).
        raise fail("secret reference has invalid query parameter value}")
    return parts, options


def _same(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def _resolve(state: dict[str, Any], client: dict[str, Any],
             reference: str) -> tuple[str, str, str] | tuple[str, str]:
    """(secret, item id, vault id) or (error type, message)."""
    parts, options = _parse_reference(reference)
    vault_q, item_q = parts[0], parts[1]
    section_q = parts[2] if len(parts) == 4 else None
    field_q = parts[-1]
    vaults = [k for k, v in _visible_vaults(state, client).items()
              if k == vault_q or _same(v["title"], vault_q)]
    if not vaults:
        return "vaultNotFound", "no vault matched the secret reference query"
    if len(vaults) > 1:
        return "tooManyVaults", "more than one vault matched the secret reference query"
    vault_id = vaults[0]
    items = [i for i in state["items"].values() if i["vaultId"] == vault_id
             and i["state"] == "active" and (i["id"] == item_q or _same(i["title"], item_q))]
    if not items:
        return "itemNotFound", "no item matched the secret reference query"
    if len(items) > 1:
        return "tooManyItems", "more than one item matched the secret reference query"
    item = items[0]
    fields = item["fields"]
    if section_q is not None:
        sections = [s["id"] for s in item["sections"]
                    if s["id"] == section_q or _same(s["title"], section_q)]
        if not sections:
            return "noMatchingSections", "no section matched the secret reference"
        fields = [f for f in fields if f.get("sectionId") in sections]
    elif _same(field_q, "notesPlain"):
        return item["notes"], item["id"], vault_id
    matches = [f for f in fields if f["id"] == field_q or _same(f["title"], field_q)]
    if not matches:
        return "fieldNotFound", "the specified field cannot be found within the item"
    if len(matches) > 1:
        return "tooManyMatchingFields", "more than one field matched the secret reference"
    field = matches[0]
    attribute = options.get("attribute")
    if attribute in ("totp", "otp"):
        if field["fieldType"] != "Totp":
            return ("incompatibleTOTPQueryParameterField",
                    "TOTP attribute can only be applied to TOTP-type fields")
        try:
            return totp_code(field["value"]), item["id"], vault_id
        except ValueError as exc:
            return "unableToGenerateTotpCode", f"TOTP code could not be generated: {exc}"
    return field["value"], item["id"], vault_id


def _resolve_error(kind: str, message: str) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind}
    if kind in ("parsing", "unableToGenerateTotpCode"):
        error["message"] = message
    return error


def dispatch(state: dict[str, Any], client: dict[str, Any], name: str,
             params: dict[str, Any]) -> Any:
    """One authenticated invocation; the JSON-able answer, or CoreError."""
    if name == "VaultsList":
        return [_vault_overview(k, v, state) for k, v in _visible_vaults(state, client).items()]
    if name == "VaultsGetOverview":
        return _vault_overview(params["vault_id"], _vault(state, client, params["vault_id"]),
                               state)
    if name == "VaultsGet":
        overview = _vault_overview(params["vault_id"], _vault(state, client, params["vault_id"]),
                                   state)
        return {k: overview[k] for k in ("id", "title", "description", "vaultType",
                                         "activeItemCount", "contentVersion",
                                         "attributeVersion")} | {"access": None}
    if name == "VaultsCreate":
        vault_id, now = new_id(), _now()
        spec = params["params"]
        state["vaults"][vault_id] = {
            "title": spec["title"], "description": spec.get("description") or "",
            "vaultType": "userCreated", "createdAt": now, "updatedAt": now,
            "contentVersion": 1, "attributeVersion": 1}
        return dispatch(state, client, "VaultsGet", {"vault_id": vault_id})
    if name == "ItemsList":
        _vault(state, client, params["vault_id"])
        wanted = {"active"}
        for item_filter in params.get("filters") or []:
            if item_filter.get("type") == "ByState":
                content = item_filter.get("content") or {}
                wanted = {s for s in ("active", "archived") if content.get(s)}
        return [_overview(i) for i in state["items"].values()
                if i["vaultId"] == params["vault_id"] and i["state"] in wanted]
    if name == "ItemsGet":
        return _public(_item(state, client, params["vault_id"], params["item_id"], active=True))
    if name == "ItemsGetAll":
        _vault(state, client, params["vault_id"])
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
                answers.append({"content": _public(item), "error": None})
        return {"individualResponses": answers}
    if name == "ItemsCreate":
        return _public(_create(state, client, params["params"]))
    if name == "ItemsCreateAll":
        created = [_public(_create(state, client, p, params["vault_id"]))
                   for p in params["params"]]
        return {"individualResponses": [{"content": c, "error": None} for c in created]}
    if name == "ItemsPut":
        submitted = params["item"]
        item = _item(state, client, submitted["vaultId"], submitted["id"], update=True)
        if item["state"] != "active":
            raise CoreError.of(_GUESSED_NAME, "item update failed: item is not in an active state")
        if submitted["version"] != item["version"]:
            raise CoreError.of(_GUESSED_NAME, "The submitted item is not up to date. Refetch the "
                               "item and retry the request.")
        sections = [{"id": s["id"], "title": s["title"]} for s in submitted.get("sections") or []]
        item.update({
            "title": submitted["title"], "category": submitted["category"],
            "fields": _clean_fields(submitted.get("fields"), sections), "sections": sections,
            "notes": submitted.get("notes") or "", "tags": list(submitted.get("tags") or []),
            "websites": list(submitted.get("websites") or []),
            "version": item["version"] + 1, "updatedAt": _now()})
        _bump(state, item["vaultId"])
        return _public(item)
    if name == "ItemsDelete":
        item = _item(state, client, params["vault_id"], params["item_id"])
        del state["items"][item["id"]]
        _bump(state, item["vaultId"])
        return None
    if name == "ItemsDeleteAll":
        _vault(state, client, params["vault_id"])
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
        item = _item(state, client, params["vault_id"], params["item_id"])
        item["state"] = "archived"
        return None
    if name == "SecretsResolve":
        answer = _resolve(state, client, params["secret_reference"])
        if len(answer) == 2:
            raise CoreError.of("ResolvingSecretReference",
                               f"error resolving secret reference: {answer[1]}")
        return answer[0]
    if name == "SecretsResolveAll":
        results: dict[str, Any] = {}
        for reference in params["secret_references"]:
            try:
                answer = _resolve(state, client, reference)
            except CoreError as exc:
                message = json.loads(exc.msg)["message"]
                results[reference] = {"content": None, "error": _resolve_error("parsing", message)}
                continue
            if len(answer) == 2:
                results[reference] = {"content": None, "error": _resolve_error(*answer)}
            else:
                results[reference] = {"content": {"secret": answer[0], "itemId": answer[1],
                                                  "vaultId": answer[2]}, "error": None}
        return {"individualResponses": results}
    raise CoreError(f"unknown variant `{name}` (not emulated): data did not match any variant "
                    "of untagged enum Invocation")


def _parse_invocation(text: str) -> tuple[Any, str, dict[str, Any]]:
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
        try:
            config = json.loads(config_text)
            if not isinstance(config, dict) or "integrationName" not in config:
                raise ValueError
        except ValueError:
            raise CoreError(
                "data did not match any variant of untagged enum ClientConfig") from None
        _check_integration(config)
        token = config.get("serviceAccountToken")
        if desktop_account is None:
            _check_token(token)
        with _locked(self.path) as state:
            _count(state, SIGN_IN)
            fault = _fault(state, SIGN_IN)
            if fault is None and desktop_account is None and token not in state["tokens"]:
                fault = {"kind": "unknown_token"}
            hang = float(fault.get("seconds", 0)) if fault and fault["kind"] == "hang" else 0.0
        if fault is not None and fault["kind"] == "unknown_token":
            raise CoreError.of(_GUESSED_NAME, "authentication error: you are not authenticated")
        if hang:
            time.sleep(hang)
        elif fault is not None:
            raise _fault_error(fault, SIGN_IN)
        info = {"desktop": desktop_account is not None, "account": desktop_account,
                "token": token, "integration": config.get("integrationName")}
        return str(CLIENTS.add(info))

    def invoke(self, text: str) -> str:
        client_id, name, params = _parse_invocation(text)
        client = CLIENTS.get(client_id)
        hang = 0.0
        with _locked(self.path) as state:
            _count(state, name, params)
            fault = _fault(state, name)
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
            raise _fault_error(fault, name)
        return json.dumps(result)

    def invoke_after_hang(self, client: dict[str, Any], name: str, params: dict[str, Any]) -> str:
        with _locked(self.path) as state:
            return json.dumps(dispatch(state, client, name, params))

    def invoke_sync(self, text: str) -> str:
        _, name, params = _parse_invocation(text)
        with _locked(self.path) as state:
            _count(state, name)
        if name == "ValidateSecretReference":
            _parse_reference(params.get("secret_reference"))
            return ""
        if name == "GeneratePassword":
            return json.dumps({"password": secrets.token_urlsafe(24)})
        raise CoreError("data did not match any variant of untagged enum Invocation")

    def release_client(self, text: str) -> None:
        CLIENTS.drop(json.loads(text))


# -- the router that stands in for the native module ---------------------------------

_PINNED: list[str] = []
_REAL: dict[str, types.ModuleType] = {}


def active_path() -> str | None:
    """The state file calls go to: the innermost :func:`install`, else $BROKER_OP_EMULATOR."""
    if _PINNED:
        return _PINNED[-1]
    return os.environ.get(ENV) or None


def _real_core(name: str) -> types.ModuleType:
    """The genuine native module, loaded under a private name so the router keeps its place."""
    if name not in _REAL:
        package = importlib.import_module(name.rpartition(".")[0])
        for folder in getattr(package, "__path__", []):
            source = Path(folder) / "op_uniffi_core.py"
            if source.exists():
                private = "_broker_real_" + name.replace(".", "_")
                spec = importlib.util.spec_from_file_location(private, source)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                _REAL[name] = module
                break
        else:
            raise ImportError(f"no native core at {name}")
    return _REAL[name]


def _make_router(name: str) -> types.ModuleType:
    module = types.ModuleType(name, "The native core, routed through broker's emulator.")

    async def init_client(client_config: str) -> str:
        path = active_path()
        if path is None:
            return await _real_core(name).init_client(client_config)  # type: ignore[no-any-return]
        return Emulated(path).init_client(client_config)

    async def invoke(invocation: str) -> str:
        path = active_path()
        if path is None:
            return await _real_core(name).invoke(invocation)  # type: ignore[no-any-return]
        return Emulated(path).invoke(invocation)

    def invoke_sync(invocation: str) -> str:
        path = active_path()
        if path is None:
            return _real_core(name).invoke_sync(invocation)  # type: ignore[no-any-return]
        return Emulated(path).invoke_sync(invocation)

    def release_client(client_id: str) -> None:
        path = active_path()
        if path is None:
            _real_core(name).release_client(client_id)
            return
        Emulated(path).release_client(client_id)

    module.__dict__.update(
        init_client=init_client, invoke=invoke, invoke_sync=invoke_sync,
        release_client=release_client, Error=_ErrorNamespace, InternalError=CoreError,
        _broker_router=True,
    )
    return module


# -- the desktop app's IPC library ---------------------------------------------------


class _FakeFunction:
    """A stand-in for a ctypes foreign function (argtypes/restype are accepted)."""

    def __init__(self, func: Any) -> None:
        self.func = func
        self.argtypes: Any = None
        self.restype: Any = None

    def __call__(self, *args: Any) -> Any:
        return self.func(*args)


class FakeDesktopLibrary:
    """``libop_sdk_ipc_client``: base64 JSON in, ``{"success", "payload": [bytes]}`` out.

    Return codes as on Linux: -2 the app is not running (channel closed), -5 the
    connection dropped (here: the app stayed locked for ``blockSeconds``).
    """

    def __init__(self) -> None:
        self._buffers: dict[int, Any] = {}
        self.op_sdk_ipc_send_message = _FakeFunction(self._send)
        self.op_sdk_ipc_free_response = _FakeFunction(self._free)

    def _send(self, msg_ptr: Any, msg_len: int, out_buf: Any, out_len: Any,
              out_cap: Any) -> int:
        import ctypes

        request = json.loads(ctypes.string_at(msg_ptr, msg_len))
        path = active_path()
        if path is None:
            return -2
        emulated = Emulated(path)
        waited = 0.0
        while True:
            with _locked(emulated.path) as state:
                app = state["desktop"]
                installed, locked = app["installed"], app["locked"]
                block = float(app.get("blockSeconds", 30.0))
                accounts = list(app.get("accounts") or [])
                expire = int(app.get("expireSessions") or 0)
                if not locked and expire and request["kind"] == "invoke":
                    app["expireSessions"] = expire - 1
            if not installed:
                return -2
            if not locked:
                break
            if waited >= block:
                return -5
            time.sleep(0.05)
            waited += 0.05
        account = request.get("account_name")
        payload = base64.b64decode(request["payload"]).decode("utf-8")
        try:
            if accounts and account not in accounts:
                raise CoreError.of(_GUESSED_NAME, "account couldn't be found")
            if request["kind"] == "init_client":
                answer = emulated.init_client(payload, desktop_account=str(account))
            elif request["kind"] == "invoke":
                if expire:
                    raise CoreError.of("DesktopSessionExpired", "desktop session expired")
                answer = emulated.invoke(payload)
            elif request["kind"] == "release_client":
                emulated.release_client(payload)
                answer = ""
            else:
                raise CoreError(f"unknown message kind {request['kind']!r}")
            reply = {"success": True, "payload": list(answer.encode("utf-8"))}
        except CoreError as exc:
            reply = {"success": False, "payload": list(exc.msg.encode("utf-8"))}
        data = json.dumps(reply).encode("utf-8")
        buffer = ctypes.create_string_buffer(data, len(data))
        out_buf._obj.contents = ctypes.c_uint8.from_buffer(buffer)
        out_len._obj.value = len(data)
        out_cap._obj.value = len(data)
        self._buffers[ctypes.addressof(buffer)] = buffer
        return 0

    def _free(self, buf: Any, length: Any, capacity: Any) -> None:
        import ctypes

        with contextlib.suppress(Exception):
            self._buffers.pop(ctypes.cast(buf, ctypes.c_void_p).value or 0, None)


class _CtypesProxy:
    """``ctypes`` as ``desktop_core`` sees it: CDLL of the fake path gives the fake app."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def CDLL(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path) == FAKE_LIBRARY_PATH and active_path() is not None:
            return FakeDesktopLibrary()
        return self._real.CDLL(path, *args, **kwargs)


def _patch_desktop(module: types.ModuleType) -> None:
    if getattr(module, "_broker_emulated", False):
        return
    real_find = module.find_1password_lib_path

    def find_1password_lib_path() -> str:
        path = active_path()
        if path is None:
            return str(real_find())
        with _locked(Path(path)) as state:
            installed = state["desktop"]["installed"]
        if installed:
            return FAKE_LIBRARY_PATH
        raise FileNotFoundError("1Password desktop application not found")

    module.__dict__.update(
        find_1password_lib_path=find_1password_lib_path,
        ctypes=_CtypesProxy(module.ctypes),
        _broker_emulated=True,
    )


# -- import-time routing -------------------------------------------------------------


class _RouterLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _make_router(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.inner.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        self.inner.exec_module(module)
        _patch_desktop(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename... for tracebacks
        return getattr(self.inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in CORE_MODULES:
            return importlib.util.spec_from_loader(fullname, _RouterLoader(),
                                                   origin="broker.testing.onepassword_emulator")
        if fullname == DESKTOP_MODULE:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
            return spec
        return None


_FINDER = _Finder()


def _route() -> None:
    """Put the router in place of the native core (idempotent)."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    for name in CORE_MODULES:
        module = sys.modules.get(name)
        if module is not None and not getattr(module, "_broker_router", False):
            _REAL[name] = module
            router = _make_router(name)
            sys.modules[name] = router
            parent = sys.modules.get(name.rpartition(".")[0])
            if parent is not None:
                setattr(parent, name.rpartition(".")[2], router)
    desktop = sys.modules.get(DESKTOP_MODULE)
    if desktop is not None:
        _patch_desktop(desktop)


def install(path: str | os.PathLike[str] | None = None) -> None:
    """Route the SDK's core here; with ``path``, to that state file until :func:`uninstall`."""
    _route()
    if path is not None:
        _PINNED.append(os.fspath(path))


def uninstall(path: str | os.PathLike[str] | None = None) -> None:
    """Undo the innermost :func:`install` of ``path`` (calls go to the env's file or the
    real core again)."""
    if path is None:
        if _PINNED:
            _PINNED.pop()
        return
    target = os.fspath(path)
    for index in range(len(_PINNED) - 1, -1, -1):
        if _PINNED[index] == target:
            del _PINNED[index]
            return


@contextlib.contextmanager
def installed(path: str | os.PathLike[str]) -> Iterator[OnePasswordEmulator]:
    """``with installed(tmp / "op.json") as emulator:`` the SDK talks to that fake account."""
    install(path)
    try:
        yield OnePasswordEmulator(path)
    finally:
        uninstall(path)


_route()


# -- the test-facing handle ----------------------------------------------------------


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
        with _locked(self.path):
            pass  # create the file with a fresh account if needed

    def _state(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        return _locked(self.path)

    def snapshot(self) -> dict[str, Any]:
        with self._state() as state:
            return json.loads(json.dumps(state))  # type: ignore[no-any-return]

    def reset(self) -> None:
        with self._state() as state:
            state.clear()
            state.update(fresh_state())

    # tokens
    @property
    def token(self) -> str:
        return str(self.snapshot()["tokens"][0])

    def add_token(self) -> str:
        token = make_token()
        with self._state() as state:
            state["tokens"].append(token)
        return token

    def revoke_token(self, token: str) -> None:
        with self._state() as state:
            state["tokens"] = [t for t in state["tokens"] if t != token]

    # vaults
    def add_vault(self, title: str, *, vault_type: str = "userCreated") -> str:
        vault_id, now = new_id(), _now()
        with self._state() as state:
            state["vaults"][vault_id] = {
                "title": title, "description": "", "vaultType": vault_type, "createdAt": now,
                "updatedAt": now, "contentVersion": 1, "attributeVersion": 1}
        return vault_id

    def vault_id(self, title: str = DEFAULT_VAULT) -> str:
        for vault_id, vault in self.snapshot()["vaults"].items():
            if vault["title"] == title:
                return str(vault_id)
        raise KeyError(title)

    def delete_vault(self, vault_id: str) -> None:
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
            item = _create(state, {"desktop": True}, {
                "vaultId": vault_id, "title": title, "category": category, "fields": fields,
                "sections": sections, "tags": tags or [], "notes": notes})
        return str(item["id"])

    def item(self, item_id: str) -> dict[str, Any]:
        return dict(self.snapshot()["items"][item_id])

    def items(self, vault: str | None = None) -> list[dict[str, Any]]:
        state = self.snapshot()
        vault_id = None if vault is None else (
            vault if vault in state["vaults"] else self.vault_id(vault))
        return [i for i in state["items"].values() if vault_id in (None, i["vaultId"])]

    def find(self, title: str, vault: str | None = None) -> dict[str, Any]:
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
            item["updatedAt"] = _now()

    def delete_item(self, item_id: str) -> None:
        with self._state() as state:
            del state["items"][item_id]

    def archive_item(self, item_id: str) -> None:
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
        """Requests as 1Password counts them (see :data:`REQUESTS`): ``read``, ``write``
        and per operation (``init_client``: sign-ins)."""
        return dict(self.snapshot().get("requests", {}))

    def request_total(self) -> int:
        counted = self.requests()
        return counted.get("read", 0) + counted.get("write", 0)

    def reset_calls(self) -> None:
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
            _route()
