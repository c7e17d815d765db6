"""broker Items <-> 1Password items (the SDK's pydantic types, imported lazily).

The layout, documented in docs/backends/onepassword.md so people can make items
by hand:

==========================  =====================  ===========================
broker field                1Password field title  type
==========================  =====================  ===========================
``aws_access_key_id``       access key id          text
``aws_secret_access_key``   secret access key      concealed (password)
``mfa_serial``              mfa serial             text
``totp``                    one-time password      one-time password (TOTP)
any other field ``name``    ``name``               text (concealed if secret)
==========================  =====================  ===========================

The four known fields are found anywhere in the item by title (any case) or by
field id (the broker name, e.g. ``aws_access_key_id``; 1Password stores a
one-time-password field's id as ``TOTP_<id>``); the TOTP seed, failing that, is
the item's first one-time-password field, whatever its title or id. An item with
no access key id field made from the app's API Credential template is read from
its "username" (when it holds an access key id) and "credential", and written back
there (:func:`field_names`). Other fields broker stores live in its own section (id
``broker``). Fields outside that section
that are not known, the notes, tags, websites and files are the user's: broker
never reports, changes or removes them.
"""

from __future__ import annotations

import re
from typing import Any

from broker.backend import (
    ACCESS_KEY_ID,
    MFA_SERIAL,
    SECRET_ACCESS_KEY,
    SECRET_FIELDS,
    TOTP,
    Item,
)

TAG = "broker"
SECTION_ID = "broker"
SECTION_TITLE = "AWS"
EXTRA_ID_PREFIX = "broker-extra-"
#: The prefix 1Password's core gives one-time-password field ids (measured).
TOTP_ID_PREFIX = "TOTP_"
#: The 1Password app's API Credential template keeps a key as "username" and
#: "credential" (its other fields: type, filename, valid from, expires, hostname).
#: Used (read, and written back by an update) when no field labelled "access key id"
#: holds a key, and only when "username" holds an AWS access key id.
TEMPLATE_KEY, TEMPLATE_SECRET = "username", "credential"
_ACCESS_KEY_ID = re.compile(r"^(?:AKIA|ASIA)[A-Z0-9]{16}$")
OTP_TYPE = "Totp"

#: broker name -> (1Password title, field type), in the order broker writes them.
KNOWN: dict[str, tuple[str, str]] = {
    ACCESS_KEY_ID: ("access key id", "Text"),
    SECRET_ACCESS_KEY: ("secret access key", "Concealed"),
    MFA_SERIAL: ("mfa serial", "Text"),
    TOTP: ("one-time password", "Totp"),
}
_BY_TITLE = {title: name for name, (title, _) in KNOWN.items()}
_BY_TITLE.update({name: name for name in KNOWN})
_BY_TITLE.update({name.replace("_", " "): name for name in KNOWN})


def _type(field: Any) -> str:
    kind = field.field_type
    return str(getattr(kind, "value", kind))


def known_name(field: Any) -> str | None:
    """The broker field a 1Password field holds by its id or title, if one of the four."""
    field_id = str(field.id or "")
    if field_id in KNOWN:
        return field_id
    if field_id.startswith(TOTP_ID_PREFIX) and field_id[len(TOTP_ID_PREFIX):] in KNOWN:
        return field_id[len(TOTP_ID_PREFIX):]
    if field_id.startswith(EXTRA_ID_PREFIX):
        return None
    return _BY_TITLE.get(" ".join(str(field.title or "").split()).casefold())


def known_names(fields: list[Any]) -> list[str | None]:
    """``known_name`` of each field; with no field named ``totp``, the first
    one-time-password field (outside broker's extras) is the TOTP seed, by its type."""
    names = [known_name(f) for f in fields]
    if TOTP not in names:
        for index, field in enumerate(fields):
            if names[index] is None and _type(field) == OTP_TYPE and not str(
                field.id or ""
            ).startswith(EXTRA_ID_PREFIX):
                names[index] = TOTP
                break
    return names


def field_names(fields: list[Any]) -> list[str | None]:
    """The broker field each 1Password field holds: :func:`known_names`, and in an item
    made from the app's API Credential template whose known fields hold no access key id,
    "username" (when it holds an AWS access key id) as ``aws_access_key_id`` and
    "credential" as ``aws_secret_access_key`` (unless a known field holds the secret).
    The key is read there and written back there (:func:`apply`), so the app and
    anything else reading the item by its own labels see the same key as broker."""
    names = known_names(fields)
    if _holds(fields, names, ACCESS_KEY_ID):
        return names
    key = _template_index(fields, names, TEMPLATE_KEY)
    if key is None or not _ACCESS_KEY_ID.match(str(fields[key].value).strip()):
        return names
    names = [None if n == ACCESS_KEY_ID else n for n in names]  # empty ones stay the user's
    names[key] = ACCESS_KEY_ID
    if not _holds(fields, names, SECRET_ACCESS_KEY):
        secret = _template_index(fields, names, TEMPLATE_SECRET)
        if secret is not None and fields[secret].value:
            names = [None if n == SECRET_ACCESS_KEY else n for n in names]
            names[secret] = SECRET_ACCESS_KEY
    return names


def _holds(fields: list[Any], names: list[str | None], wanted: str) -> bool:
    return any(n == wanted and f.value != "" for f, n in zip(fields, names, strict=True))


def _template_index(fields: list[Any], names: list[str | None], label: str) -> int | None:
    """The first field not known otherwise whose id or label (any case) is ``label``."""
    for index, field in enumerate(fields):
        if names[index] is None and (str(field.id or "") == label or " ".join(
            str(field.title or "").split()
        ).casefold() == label):
            return index
    return None


def read_indices(fields: list[Any], names: list[str | None]) -> dict[str, int]:
    """broker field -> the index in ``fields`` it is read from and written to: the first
    field ``names`` (:func:`field_names`) gives that name that holds a value, else the
    first one it gives that name (empty). Any other field of the same name (a second key
    pair in another section, an old copy) is the user's: never read, changed or removed.
    """
    chosen: dict[str, int] = {}
    for index, (field, name) in enumerate(zip(fields, names, strict=True)):
        if name is not None and name not in chosen and field.value != "":
            chosen[name] = index
    for index, name in enumerate(names):
        if name is not None and name not in chosen:
            chosen[name] = index
    return chosen


def to_item(sdk_item: Any) -> Item:
    """The broker Item an SDK item holds (the fields :func:`field_names` finds, each read
    from the field :func:`read_indices` picks, then broker's other fields)."""
    fields: dict[str, str] = {}
    extras: dict[str, str] = {}
    fields_ = list(sdk_item.fields)
    known = known_names(fields_)
    names = field_names(fields_)
    chosen = read_indices(fields_, names)
    for index, (field, name, own) in enumerate(zip(fields_, names, known, strict=True)):
        if name is not None:
            if chosen[name] == index and field.value != "":
                # the template's "username" is a general field: blanks around the id go
                fields[name] = field.value.strip() if own is None else field.value
        elif field.section_id == SECTION_ID and field.title and field.title not in extras:
            extras[field.title] = field.value
    for name, value in extras.items():
        fields.setdefault(name, value)
    return Item(fields)


def _field_type(name: str) -> str:
    if name in KNOWN:
        return KNOWN[name][1]
    return "Concealed" if name in SECRET_FIELDS else "Text"


def _new_field(sdk: Any, name: str, value: str, used_ids: set[str]) -> Any:
    if name in KNOWN and name not in used_ids and TOTP_ID_PREFIX + name not in used_ids:
        field_id, title = name, KNOWN[name][0]
    else:
        index = 1
        while f"{EXTRA_ID_PREFIX}{index}" in used_ids:
            index += 1
        field_id, title = f"{EXTRA_ID_PREFIX}{index}", name
    used_ids.add(field_id)
    return sdk.ItemField(
        id=field_id,
        title=title,
        section_id=SECTION_ID,
        field_type=sdk.ItemFieldType(_field_type(name)),
        value=value,
    )


def _ordered(item: Item) -> list[str]:
    return [n for n in KNOWN if n in item] + [n for n in item if n not in KNOWN]


def create_params(sdk: Any, vault_id: str, title: str, item: Item, tags: list[str],
                  notes: str) -> Any:
    """``ItemCreateParams`` for a new API Credentials item holding ``item``."""
    used: set[str] = set()
    return sdk.ItemCreateParams(
        category=sdk.ItemCategory.APICREDENTIALS,
        vault_id=vault_id,
        title=title,
        fields=[_new_field(sdk, name, item[name], used) for name in _ordered(item)],
        sections=[sdk.ItemSection(id=SECTION_ID, title=SECTION_TITLE)],
        tags=tags,
        notes=notes,
    )


def apply(sdk: Any, existing: Any, item: Item, tags: list[str]) -> Any:
    """A copy of ``existing`` that holds exactly ``item``, the user's own parts kept.

    Each known field is updated where broker reads it (:func:`read_indices`), under its own
    label (its type corrected), the template's "username" and "credential" too when they
    hold the key (:func:`field_names`); a known field ``item`` lacks is removed there (the
    template's two are emptied instead), and so are broker's stale extra fields (its own
    section). Every other field is kept as it is: a second field of a known name (another
    key pair in another section) is the user's, never updated, removed or merged.
    """
    fields: list[Any] = []
    done: set[str] = set()
    existing_fields = list(existing.fields)
    known = known_names(existing_fields)
    names = field_names(existing_fields)
    chosen = read_indices(existing_fields, names)
    for index, (field, name, own) in enumerate(zip(existing_fields, names, known, strict=True)):
        if name is not None and chosen[name] != index:
            fields.append(field)  # another field of that name: the user's
            continue
        if name is None and field.section_id == SECTION_ID:
            name = field.title  # broker's extra field
        if name is None:
            fields.append(field)  # the user's own field
            continue
        if name in item and name not in done:
            done.add(name)
            fields.append(field.model_copy(update={
                "value": item[name],
                "field_type": sdk.ItemFieldType(_field_type(name)),
                "details": None,
            }))
        elif own is None and field.section_id != SECTION_ID:
            fields.append(field.model_copy(update={"value": ""}))  # the template's own
        # else: removed (not in the item any more, or a stale copy of broker's extra)
    used = {str(f.id) for f in fields}
    for name in _ordered(item):
        if name not in done:
            fields.append(_new_field(sdk, name, item[name], used))
    sections = list(existing.sections)
    if any(f.section_id == SECTION_ID for f in fields) and not any(
        s.id == SECTION_ID for s in sections
    ):
        sections.append(sdk.ItemSection(id=SECTION_ID, title=SECTION_TITLE))
    all_tags = list(existing.tags) + [t for t in tags if t not in existing.tags]
    return existing.model_copy(update={"fields": fields, "sections": sections, "tags": all_tags})
