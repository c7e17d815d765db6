"""The 1Password CLI's JSON, in the shapes the backend already works with.

:mod:`broker_onepassword` and :mod:`broker_onepassword._fields` were written
against the SDK's types: an item has ``id``, ``title``, ``fields``, ``sections``,
``tags``, ``notes`` and ``model_copy(update=...)``; a field has ``id``, ``title``,
``section_id``, ``field_type.value`` (``"Text"``, ``"Concealed"``, ``"Totp"``...)
and ``value``. Through the CLI transport the same code runs over the small
stand-ins here, made from the JSON ``op item get --format json`` prints and
turned back into the JSON ``op item create -`` and ``op item edit`` read on
stdin ("Item templates are formatted similarly to the JSON output for op item
get": https://developer.1password.com/docs/cli/item-template-json). Keys of that
JSON this module does not know (a field's ``purpose``, an item's ``urls``) are
carried through an edit unchanged, so the user's own parts of an item survive.

:class:`OpClient` offers the SDK client's calls the backend makes
(``items.get/list/create/put/delete/get_all``, ``vaults.list``,
``secrets.resolve/resolve_all``), each one ``op`` process. No value is ever put
in an argument: values travel on stdin and stdout only. What ``op item create``
and ``op item edit`` answer (the item as stored) is compared with what was sent
(:func:`unwritten`): a write ``op`` did not make is an error, never a success.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from broker.errors import ConfigError
from broker_onepassword._cli import OpFailure

#: The SDK's field type names and the CLI's (its JSON ``type``; the CLI's list:
#: https://developer.1password.com/docs/cli/item-fields, 1Password's op-js types).
OP_FIELD_TYPES = {
    "Text": "STRING",
    "Concealed": "CONCEALED",
    "Totp": "OTP",
    "Email": "EMAIL",
    "Url": "URL",
    "Phone": "PHONE",
    "Date": "DATE",
    "MonthYear": "MONTH_YEAR",
    "Reference": "REFERENCE",
    "Address": "ADDRESS",
    "SshKey": "SSHKEY",
    "Menu": "MENU",
    "CreditCardType": "CREDIT_CARD_TYPE",
    "CreditCardNumber": "CREDIT_CARD_NUMBER",
}
_SDK_FIELD_TYPES = {op: sdk for sdk, op in OP_FIELD_TYPES.items()}
#: The CLI's category names for the SDK's (only the ones broker tells apart).
OP_CATEGORIES = {"ApiCredentials": "API_CREDENTIAL", "Login": "LOGIN", "Password": "PASSWORD",
                 "SecureNote": "SECURE_NOTE"}
_SDK_CATEGORIES = {op: sdk for sdk, op in OP_CATEGORIES.items()}
#: Built-in vaults the CLI creates items in when no vault is named ("your built-in
#: Personal, Private, or Employee vault": https://developer.1password.com/docs/cli/item-create).
#: ``op vault list`` gives names and ids only, so the name tells them.
PERSONAL_VAULTS = ("private", "personal", "employee")
#: The notes of an item are a field with this id in the CLI's JSON.
NOTES_ID = "notesPlain"
#: Keys of a field's JSON the CLI computes when it prints an item: never sent back.
_COMPUTED = ("reference", "totp", "entropy", "password_details")
_FIELD_KEYS = ("id", "type", "label", "value", "section", *_COMPUTED)
_ITEM_KEYS = ("id", "title", "category", "vault", "tags", "sections", "fields", "version",
              "created_at", "updated_at", "last_edited_by", "additional_information")


class FieldType:
    """A field's type: ``value`` as the SDK names it, ``op`` as the CLI's JSON does."""

    __slots__ = ("op", "value")

    def __init__(self, value: str, op: str | None = None) -> None:
        self.value = value
        self.op = op or OP_FIELD_TYPES.get(value, "STRING")

    @classmethod
    def from_op(cls, op: str) -> FieldType:
        """The type for the CLI's name ``op`` (``"CONCEALED"`` -> ``"Concealed"``); a name broker
        does not know becomes ``"Unsupported"``, keeping ``op`` so an edit writes it back.
        """
        return cls(_SDK_FIELD_TYPES.get(op, "Unsupported"), op)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldType) and (self.value, self.op) == (other.value, other.op)

    def __hash__(self) -> int:
        return hash((self.value, self.op))

    def __repr__(self) -> str:
        return f"FieldType({self.value!r})"


class Category(FieldType):
    """An item's category: ``value`` as the SDK names it, ``op`` as the CLI does."""

    __slots__ = ()

    def __init__(self, value: str, op: str | None = None) -> None:
        super().__init__(value, op or OP_CATEGORIES.get(value, value.upper()))

    @classmethod
    def from_op(cls, op: str) -> Category:
        """The category for the CLI's name ``op`` (``"API_CREDENTIAL"`` -> ``"ApiCredentials"``);
        one broker does not tell apart becomes ``"Unsupported"``, keeping ``op``.
        """
        return cls(_SDK_CATEGORIES.get(op, "Unsupported"), op)


class ItemCategory:
    """The SDK's ``ItemCategory`` members broker names."""

    APICREDENTIALS = Category("ApiCredentials")


@dataclass(frozen=True)
class ItemField:
    """One field; ``extra`` holds the CLI's other keys of it (``purpose``...)."""

    id: str
    title: str
    section_id: str | None = None
    field_type: FieldType = field(default_factory=lambda: FieldType("Text"))
    value: str = field(default="", repr=False)
    details: Any = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def model_copy(self, update: Mapping[str, Any] | None = None) -> ItemField:
        """A copy with the attributes in ``update`` replaced, as pydantic's ``model_copy`` (the
        SDK's types) does.
        """
        return dataclasses.replace(self, **dict(update or {}))


@dataclass(frozen=True)
class ItemSection:
    """A section of an item: its ``id`` and ``title`` (the CLI's ``label``)."""
    id: str
    title: str = ""


@dataclass(frozen=True)
class Item:
    """An item as ``op item get --format json`` describes it (values hidden from repr)."""

    id: str
    title: str
    category: Category
    vault_id: str
    fields: list[ItemField] = field(default_factory=list, repr=False)
    sections: list[ItemSection] = field(default_factory=list, repr=False)
    notes: str = field(default="", repr=False)
    tags: list[str] = field(default_factory=list)
    version: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def model_copy(self, update: Mapping[str, Any] | None = None) -> Item:
        """A copy with the attributes in ``update`` replaced, as pydantic's ``model_copy`` (the
        SDK's types) does.
        """
        return dataclasses.replace(self, **dict(update or {}))


@dataclass(frozen=True)
class ItemCreateParams:
    """What ``op item create`` makes (the SDK's ``ItemCreateParams``)."""

    category: Category
    vault_id: str
    title: str
    fields: list[ItemField] = field(default_factory=list, repr=False)
    sections: list[ItemSection] = field(default_factory=list)
    notes: str = field(default="", repr=False)
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ItemOverview:
    """A row of ``op item list --format json``."""

    id: str
    title: str
    category: Category
    vault_id: str
    tags: list[str] = field(default_factory=list)


class VaultType(FieldType):
    """``personal`` for the built-in Private/Personal/Employee vault, else ``userCreated``."""

    __slots__ = ()


@dataclass(frozen=True)
class Vault:
    """A row of ``op vault list --format json`` (``{"id", "name", ...}``)."""

    id: str
    title: str
    vault_type: VaultType


# -- JSON <-> items --------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def item_from_json(data: Mapping[str, Any]) -> Item:
    """An :class:`Item` from ``op item get --format json``'s object."""
    fields: list[ItemField] = []
    notes = ""
    for raw in data.get("fields") or []:
        if not isinstance(raw, Mapping):
            continue
        if raw.get("id") == NOTES_ID or raw.get("purpose") == "NOTES":
            notes = _text(raw.get("value"))
            continue
        section = raw.get("section")
        fields.append(ItemField(
            id=_text(raw.get("id")),
            title=_text(raw.get("label")),
            section_id=_text(section.get("id")) if isinstance(section, Mapping) else None,
            field_type=FieldType.from_op(_text(raw.get("type")) or "STRING"),
            value=_text(raw.get("value")),
            extra={k: v for k, v in raw.items() if k not in _FIELD_KEYS},
        ))
    sections = [ItemSection(id=_text(s.get("id")), title=_text(s.get("label")))
                for s in data.get("sections") or [] if isinstance(s, Mapping)]
    vault = data.get("vault")
    return Item(
        id=_text(data.get("id")),
        title=_text(data.get("title")),
        category=Category.from_op(_text(data.get("category"))),
        vault_id=_text(vault.get("id")) if isinstance(vault, Mapping) else "",
        fields=fields,
        sections=sections,
        notes=notes,
        tags=[_text(t) for t in data.get("tags") or []],
        version=int(data.get("version") or 0),
        extra={k: v for k, v in data.items() if k not in _ITEM_KEYS},
    )


def _field_json(f: ItemField, section_titles: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(f.extra)
    out.update({"id": f.id, "type": f.field_type.op, "label": f.title, "value": f.value})
    if f.section_id:
        out["section"] = {"id": f.section_id}
        if section_titles.get(f.section_id):
            out["section"]["label"] = section_titles[f.section_id]
    return out


def item_to_json(item: Item | ItemCreateParams) -> dict[str, Any]:
    """The JSON template ``op item create -`` / ``op item edit`` read on stdin."""
    titles = {s.id: s.title for s in item.sections}
    fields = [_field_json(f, titles) for f in item.fields]
    if item.notes:
        fields.append({"id": NOTES_ID, "type": "STRING", "purpose": "NOTES", "label": NOTES_ID,
                       "value": item.notes})
    out: dict[str, Any] = dict(item.extra) if isinstance(item, Item) else {}
    out.update({
        "title": item.title,
        "category": item.category.op,
        "vault": {"id": item.vault_id},
        "tags": list(item.tags),
        "sections": [{"id": s.id, "label": s.title} for s in item.sections],
        "fields": fields,
    })
    if isinstance(item, Item):
        out["id"] = item.id
        if item.version:
            out["version"] = item.version
    return out


def overview_from_json(data: Mapping[str, Any]) -> ItemOverview:
    """An :class:`ItemOverview` from a row of ``op item list --format json``; missing keys
    become empty strings.
    """
    vault = data.get("vault")
    return ItemOverview(
        id=_text(data.get("id")),
        title=_text(data.get("title")),
        category=Category.from_op(_text(data.get("category"))),
        vault_id=_text(vault.get("id")) if isinstance(vault, Mapping) else "",
        tags=[_text(t) for t in data.get("tags") or []],
    )


def vault_from_json(data: Mapping[str, Any]) -> Vault:
    """A :class:`Vault` from a row of ``op vault list``/``op vault get``: ``personal`` when its
    ``type`` is PERSONAL or, without a type, when its name is a built-in one
    (:data:`PERSONAL_VAULTS`), else ``userCreated``.
    """
    name = _text(data.get("name"))
    kind = _text(data.get("type")).upper()  # `op vault get` has it; `op vault list` may not
    personal = kind == "PERSONAL" or (not kind and name.casefold() in PERSONAL_VAULTS)
    return Vault(id=_text(data.get("id")), title=name,
                 vault_type=VaultType("personal" if personal else "userCreated"))


# -- op:// references -------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """``op://vault/item/[section/]field[?attribute=totp]``, split."""

    vault: str
    item: str
    section: str | None
    field: str
    totp: bool


#: Query keys and attribute values a reference may carry: the SDK core refuses
#: ``attribute=type|value|id|purpose``, ``ssh-format`` with ``attribute=totp`` and a
#: trailing ``?`` (measured against onepassword-sdk 0.4.2's core).
_ATTRIBUTES = ("totp", "otp")
_QUERY_KEYS = ("attribute", "ssh-format")


def parse_reference(reference: str) -> Reference:
    """The parts of an ``op://`` reference; ConfigError (in the SDK's words) if malformed."""
    from broker.secrets import shown

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"onepassword: {shown(reference)!r} is not a valid 1Password reference: secret "
            f"reference could not be parsed: {why}",
            "write it as op://vault/item/[section/]field[?attribute=totp], with letters, "
            "digits, spaces, _, . and - in the names",
        )

    if not reference.startswith("op://"):
        raise bad("it must start with op://")
    path, mark, query = reference[len("op://"):].partition("?")
    if mark and not query:
        raise bad("a '?' must be followed by a query")
    parts = path.split("/")
    if len(parts) not in (3, 4):
        raise bad("expected op://<vault>/<item>[/<section>]/<field>")
    options: dict[str, str] = {}
    for pair in query.split("&") if query else []:
        key, _, value = pair.partition("=")
        if key not in _QUERY_KEYS:
            raise bad(f"unknown query parameter {key!r}")
        options[key] = value
    attribute = options.get("attribute")
    if attribute is not None and attribute.lower() not in _ATTRIBUTES:
        raise bad(f"attribute {attribute!r} is not supported (only totp or otp)")
    if attribute is not None and "ssh-format" in options:
        raise bad("ssh-format cannot be combined with attribute=totp")
    section = parts[2] if len(parts) == 4 else None
    return Reference(parts[0], parts[1], section, parts[-1], attribute is not None)


def _matches(wanted: str, *names: Any) -> bool:
    return any(isinstance(n, str) and (n == wanted or n.casefold() == wanted.casefold())
               for n in names)


def field_value(data: Mapping[str, Any], ref: Reference) -> tuple[str | None, str]:
    """(the value ``ref`` points to in the item ``data``, else None; the error kind).

    The field is found by id or label (any case), inside the section named by id or
    label when the reference has one. ``?attribute=totp`` gives the current code the
    CLI computed (its ``totp`` key of a one-time-password field).
    """
    found = []
    for raw in data.get("fields") or []:
        if not isinstance(raw, Mapping) or not _matches(ref.field, raw.get("id"),
                                                        raw.get("label")):
            continue
        section = raw.get("section")
        section = section if isinstance(section, Mapping) else {}
        if ref.section is not None and not _matches(ref.section, section.get("id"),
                                                    section.get("label")):
            continue
        found.append(raw)
    if not found:
        return None, "fieldNotFound"
    if len(found) > 1:
        return None, "tooManyMatchingFields"
    raw = found[0]
    if ref.totp:
        if raw.get("type") != "OTP":
            return None, "totpAttributeOnNonTotpField"
        return (_text(raw["totp"]), "") if raw.get("totp") else (None, "totpNotGenerated")
    return _text(raw.get("value")), ""


# -- the client --------------------------------------------------------------------------


#: Runs ``op ARGS`` and gives its parsed JSON (or text); raises :class:`OpFailure`.
Runner = Callable[..., Any]


@dataclass
class Answer:
    """One answer of a batched call, as the SDK gives it: ``content`` (an :class:`Item` or a
    :class:`Resolved`) or ``error`` (an :class:`ErrorKind`).
    """
    content: Any = None
    error: Any = None


@dataclass
class Response:
    """A batched call's answers, as the SDK gives them: a list of :class:`Answer` in the order
    asked (``items.get_all``), or a dict reference -> :class:`Answer`
    (``secrets.resolve_all``).
    """
    individual_responses: Any


@dataclass(frozen=True)
class ErrorKind:
    """Why one answer of a batch failed, in the SDK's words: ``itemNotFound``,
    ``vaultNotFound``, ``tooManyItems``, or a field's error (``fieldNotFound``...).
    """
    type: str


@dataclass(frozen=True)
class Resolved:
    """A resolved ``op://`` reference: the ``secret`` (hidden from repr) and the vault and
    item ids it came from.
    """
    secret: str = field(repr=False)
    vault_id: str
    item_id: str


def _otp_seed(value: str) -> str:
    """A TOTP seed as 1Password may show it back (an ``otpauth://`` URI, lower case,
    spaces, padding), reduced to its base32 letters."""
    if value.startswith("otpauth://"):
        from urllib.parse import parse_qs, urlsplit

        value = (parse_qs(urlsplit(value).query).get("secret") or [""])[0]
    return value.replace(" ", "").rstrip("=").upper()


def unwritten(sent: Item | ItemCreateParams, answer: Item) -> list[str]:
    """What of ``sent`` the item ``op`` answered a write with does not hold: the names of
    the broker fields that differ (:func:`broker_onepassword._fields.to_item`; a TOTP
    seed compared as 1Password may show it back), then ``"title"`` and ``"tags"``.
    Names only, never a value."""
    from broker.backend import TOTP
    from broker_onepassword._fields import to_item

    want, got = to_item(sent), to_item(answer)
    differ = [name for name in sorted(set(want) | set(got)) if want.get(name) != got.get(name)
              and not (name == TOTP and _otp_seed(want.get(name) or "")
                       == _otp_seed(got.get(name) or "x"))]
    if answer.title != sent.title:
        differ.append("title")
    if not set(sent.tags) <= set(answer.tags):
        differ.append("tags")
    return differ


def _stored(command: str, sent: Item | ItemCreateParams, answer: Item) -> Item:
    """``answer`` when it holds what was ``sent``; else OpFailure ``"unwritten"``."""
    differ = unwritten(sent, answer)
    if differ:
        raise OpFailure(f"`op {command}` answered with an item whose {', '.join(differ)} "
                        "differ from what broker sent", "unwritten")
    return answer


class _Items:
    def __init__(self, client: OpClient) -> None:
        self._client = client

    def get(self, vault_id: str, item_id: str) -> Item:
        data = self._client.fetched.pop(item_id, None)
        if data is None:
            data = self._client.op(["item", "get", item_id, "--vault", vault_id], shape=dict)
        return item_from_json(data)

    def get_all(self, vault_id: str, item_ids: list[str]) -> Response:
        answers = []
        for item_id in item_ids:
            try:
                answers.append(Answer(content=self.get(vault_id, item_id)))
            except OpFailure as failure:
                if failure.kind != "item_not_found":
                    raise
                answers.append(Answer(error=ErrorKind("itemNotFound")))
        return Response(answers)

    def list(self, vault_id: str) -> list[ItemOverview]:
        rows = self._client.op(["item", "list", "--vault", vault_id], shape=list, empty=True)
        if rows is None:
            # No output at all: an empty vault, or a program that is not the CLI. The
            # vault list tells them apart (every account has a vault; `op` prints it).
            self._client.vaults.list()
            rows = []
        return [overview_from_json(r) for r in rows if isinstance(r, Mapping)]

    def create(self, params: ItemCreateParams) -> Item:
        # Title, tags, sections and fields all travel in the template, as 1Password's
        # Terraform provider sends them (`op item create -`, the item's JSON on stdin).
        template = json.dumps(item_to_json(params)).encode("utf-8")
        answer = item_from_json(self._client.op(
            ["item", "create", "--vault", params.vault_id, "-"], stdin=template, shape=dict))
        return _stored("item create", params, answer)

    def put(self, item: Item) -> Item:
        template = json.dumps(item_to_json(item)).encode("utf-8")
        data = self._client.op(["item", "edit", item.id, "--vault", item.vault_id],
                               stdin=template, shape=dict)
        return _stored("item edit", item, item_from_json(data))

    def delete(self, vault_id: str, item_id: str) -> None:
        self._client.op(["item", "delete", item_id, "--vault", vault_id], json_out=False)


class _Vaults:
    def __init__(self, client: OpClient) -> None:
        self._client = client

    def list(self) -> list[Vault]:
        rows = self._client.op(["vault", "list"], shape=list)
        return [vault_from_json(r) for r in rows if isinstance(r, Mapping)]


_GET_ERRORS = {"item_not_found": "itemNotFound", "vault_not_found": "vaultNotFound",
               "ambiguous": "tooManyItems"}


class _Secrets:
    def __init__(self, client: OpClient) -> None:
        self._client = client

    def resolve(self, reference: str) -> str:
        answer = self.resolve_all([reference]).individual_responses[reference]
        if answer.content is None:
            kind = answer.error.type
            raise OpFailure(f"cannot resolve {reference}: {kind}",
                            "ambiguous" if kind.startswith("tooMany")
                            else "totp" if kind.startswith("totp") else "item_not_found")
        secret: str = answer.content.secret
        return secret

    def resolve_all(self, references: list[str]) -> Response:
        """One ``op item get`` per item named, its JSON kept for the ``items.get`` that
        usually follows (the backend's first look-up of an item by name)."""
        answers: dict[str, Answer] = {}
        items: dict[tuple[str, str], Any] = {}
        for reference in references:
            ref = parse_reference(reference)
            key = (ref.vault, ref.item)
            if key not in items:
                try:
                    items[key] = self._client.op(["item", "get", ref.item, "--vault", ref.vault],
                                                 shape=dict)
                except OpFailure as failure:
                    if failure.kind not in _GET_ERRORS:
                        raise
                    items[key] = ErrorKind(_GET_ERRORS[failure.kind])
            data = items[key]
            if isinstance(data, ErrorKind):
                answers[reference] = Answer(error=data)
                continue
            self._client.fetched[_text(data.get("id"))] = data
            value, kind = field_value(data, ref)
            vault = data.get("vault") if isinstance(data.get("vault"), Mapping) else {}
            answers[reference] = (
                Answer(error=ErrorKind(kind)) if value is None
                else Answer(content=Resolved(value, _text(vault.get("id")),
                                             _text(data.get("id")))))
        return Response(answers)

    @staticmethod
    def validate_secret_reference(reference: str) -> None:
        parse_reference(reference)


class OpClient:
    """The SDK client's calls the backend makes, each one ``op`` process.

    ``op(args, stdin=None, json_out=True, shape=None, empty=False)`` runs the CLI (see
    ``_cli.OpRunner``).
    ``fetched`` holds items a reference look-up just read, by id, each served once
    to the next ``items.get`` of it: the first read of an item by name is one process.
    """

    def __init__(self, op: Runner) -> None:
        self.op = op
        self.fetched: dict[str, Any] = {}
        self.items = _Items(self)
        self.vaults = _Vaults(self)
        self.secrets = _Secrets(self)


class SdkShapes:
    """What :mod:`broker_onepassword._fields` and the backend take from the SDK module
    (``sdk.ItemField``, ``sdk.ItemFieldType``...), for items the CLI reads and writes."""

    ItemField = ItemField
    ItemFieldType = FieldType
    ItemSection = ItemSection
    ItemCreateParams = ItemCreateParams
    ItemCategory = ItemCategory
    Secrets = _Secrets
