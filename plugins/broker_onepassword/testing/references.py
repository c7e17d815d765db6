"""``op://`` secret references: parsed as the native core parses them, resolved against
the fake account (``SecretsResolve``, ``SecretsResolveAll``, ``ValidateSecretReference``)."""

from __future__ import annotations

from typing import Any

from broker_onepassword.testing.account import totp_code, visible_vaults
from broker_onepassword.testing.errors import CoreError

REFERENCE_FORMAT = (
    'secret reference has invalid format - must be '
    '"op://<vault>/<item>/[section/]field[?attribute=<attribute-value>]"'
)


#: Query parameters the core's reference parser takes. It refuses ?attribute=type, value,
#: id and purpose (which the SDK's documentation once listed), ssh-format together with
#: attribute=totp, and a trailing "?"; it accepts empty path segments. Source: the SDK
#: 0.4.2 native core's ValidateSecretReference (``Secrets.validate_secret_reference``),
#: run offline: "measured" below means observed from that core.
ATTRIBUTES = {"attribute": {"totp", "otp"}, "ssh-format": {"openssh"}}


def parse_reference(reference: Any) -> tuple[list[str], dict[str, str]]:
    """(path segments, query options) of an ``op://`` reference; CoreError
    (``ParsingSecretReference``) for one the core's parser refuses (see :data:`ATTRIBUTES`)."""
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
        raise fail(REFERENCE_FORMAT)
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        if key not in ATTRIBUTES:
            raise fail("secret reference has invalid query parameter key")
        if value not in ATTRIBUTES[key]:
            raise fail("secret reference has invalid query parameter value}")
        options[key] = value
    if "ssh-format" in options and options.get("attribute") in ("totp", "otp"):
        # The core refuses the two together (measured).
        raise fail("secret reference has invalid query parameter value}")
    return parts, options


def same(a: str, b: str) -> bool:
    """Whether two names match as the core matches titles in secret references
    (case-insensitively: 1Password's "Secret reference syntax",
    developer.1password.com/docs/cli/secret-reference-syntax)."""
    return a.casefold() == b.casefold()


def resolve(state: dict[str, Any], client: dict[str, Any],
             reference: str) -> tuple[str, str, str] | tuple[str, str]:
    """(secret, item id, vault id) or (error type, message)."""
    parts, options = parse_reference(reference)
    vault_q, item_q = parts[0], parts[1]
    section_q = parts[2] if len(parts) == 4 else None
    field_q = parts[-1]
    vaults = [k for k, v in visible_vaults(state, client).items()
              if k == vault_q or same(v["title"], vault_q)]
    if not vaults:
        return "vaultNotFound", "no vault matched the secret reference query"
    if len(vaults) > 1:
        return "tooManyVaults", "more than one vault matched the secret reference query"
    vault_id = vaults[0]
    items = [i for i in state["items"].values() if i["vaultId"] == vault_id
             and i["state"] == "active" and (i["id"] == item_q or same(i["title"], item_q))]
    if not items:
        return "itemNotFound", "no item matched the secret reference query"
    if len(items) > 1:
        return "tooManyItems", "more than one item matched the secret reference query"
    item = items[0]
    fields = item["fields"]
    if section_q is not None:
        sections = [s["id"] for s in item["sections"]
                    if s["id"] == section_q or same(s["title"], section_q)]
        if not sections:
            return "noMatchingSections", "no section matched the secret reference"
        fields = [f for f in fields if f.get("sectionId") in sections]
    elif same(field_q, "notesPlain"):
        return item["notes"], item["id"], vault_id
    matches = [f for f in fields if f["id"] == field_q or same(f["title"], field_q)]
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


def resolve_error(kind: str, message: str) -> dict[str, Any]:
    """The error object ``SecretsResolveAll`` gives for a reference that failed."""
    error: dict[str, Any] = {"type": kind}
    if kind in ("parsing", "unableToGenerateTotpCode"):
        error["message"] = message
    return error
