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
field id (the broker name, e.g. ``aws_access_key_id``); other fields broker
stores live in its own section (id ``broker``). Fields outside that section
that are not known, the notes, tags, websites and files are the user's: broker
never reports, changes or removes them.
"""

from __future__ import annotations

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


def known_name(field: Any) -> str | None:
    """The broker field a 1Password field holds, if it is one of the known four."""
    field_id = str(field.id or "")
    if field_id in KNOWN:
        return field_id
    if field_id.startswith(EXTRA_ID_PREFIX):
        return None
    return _BY_TITLE.get(" ".join(str(field.title or "").split()).casefold())


def to_item(sdk_item: Any) -> Item:
    """The broker Item an SDK item holds (known fields, then broker's other fields)."""
    fields: dict[str, str] = {}
    extras: dict[str, str] = {}
    for field in sdk_item.fields:
        name = known_name(field)
        if name is not None:
            if name not in fields and field.value != "":
                fields[name] = field.value
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
    if name in KNOWN and name not in used_ids:
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

    Known fields are updated where they are (their type corrected); known fields
    ``item`` lacks and broker's stale extra fields are removed; the rest is kept.
    """
    fields: list[Any] = []
    done: set[str] = set()
    for field in existing.fields:
        name = known_name(field)
        if name is None and field.section_id == SECTION_ID:
            name = field.title
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
        # else: removed (not in the item any more, or a duplicate)
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
