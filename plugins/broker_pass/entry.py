"""The text of a ``pass`` entry, as people and pass tools read it.

::

    wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY        <- the secret access key (`pass -c`)
    aws_access_key_id: AKIAIOSFODNN7EXAMPLE
    mfa_serial: arn:aws:iam::123456789012:mfa/me
    region: ap-northeast-1                          <- any other field, as `key: value`
    otpauth://totp/broker:dev?secret=JBSW...&issuer=broker   <- the TOTP seed (pass-otp)
    a line that is not `key: value`                 <- kept in the "notes" field

Rules, chosen so that every :class:`~broker.backend.Item` broker writes reads back
unchanged and every line a person wrote survives a rewrite:

* The first line is the secret access key; an empty first line means there is none.
* A ``key: value`` line (a key without ``:`` or surrounding blanks, then exactly
  ``": "``) is a field, unless the key was already seen or is ``notes``.
* The first ``otpauth://`` line (or ``totp: ...`` line) is the ``totp`` field. broker
  writes a bare seed as ``otpauth://totp/broker:<name>?secret=<seed>&issuer=broker``
  and reads exactly that form back as the bare seed; any other URI is kept as given.
* Every other line (free text, blank lines, repeated keys, ``notes: ...``) belongs to
  the ``notes`` field, one line each, in order. broker writes a notes line as it is
  when it would read back as a notes line, else as ``notes: <line>``.

:func:`format_entry` checks its own output with :func:`parse_entry` and refuses
what would not round-trip (a line break in a value, a ``:`` in a field name), naming
the fields, never their values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, TOTP
from broker.errors import BackendError

#: The field that holds the lines of an entry that are not fields of their own.
NOTES = "notes"
OTPAUTH = "otpauth://"
#: The issuer broker writes into the otpauth URIs it makes from a bare seed.
ISSUER = "broker"

# A field line: the key has no ":" and no blanks at either end; then exactly ": ".
_FIELD_LINE = re.compile(r"([^\s:](?:[^:]*[^\s:])?): (.*)", re.DOTALL)
_FIELD_NAME = re.compile(r"[^\s:](?:[^:]*[^\s:])?", re.DOTALL)
# Fields written right after the secret, in this order, before any other.
_FIRST = (ACCESS_KEY_ID, MFA_SERIAL)


def otpauth_uri(seed: str, label: str) -> str:
    """The URI broker writes for a bare TOTP ``seed`` (pass-otp reads it)."""
    from urllib.parse import quote

    return (
        f"otpauth://totp/{quote(label, safe=':@')}"
        f"?secret={quote(seed, safe='')}&issuer={quote(ISSUER, safe='')}"
    )


def totp_value(uri: str) -> str:
    """The ``totp`` field for an otpauth line: the seed if broker made it, else the URI."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(uri)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return uri
    if parts.netloc != "totp" or len(query) != 2 or query[0][0] != "secret":
        return uri
    seed = query[0][1]
    if otpauth_uri(seed, unquote(parts.path[1:])) == uri:
        return seed
    return uri


def parse_entry(text: str) -> dict[str, str]:
    """The fields of an entry's decrypted text (see the module docstring for the rules)."""
    if text.endswith("\n"):
        text = text[:-1]  # the newline `pass insert` and editors put after the last line
    # Carriage returns end lines written on Windows; a value can never end with one.
    lines = [line.rstrip("\r") for line in text.split("\n")]
    fields: dict[str, str] = {}
    if lines[0]:
        fields[SECRET_ACCESS_KEY] = lines[0]
    notes: list[str] = []
    for line in lines[1:]:
        match = _FIELD_LINE.fullmatch(line)
        if line.startswith(OTPAUTH) and TOTP not in fields:
            fields[TOTP] = totp_value(line)
        elif match and match.group(1) == NOTES:
            notes.append(match.group(2))
        elif match and match.group(1) not in fields:
            key, value = match.groups()
            if key == TOTP and value.startswith(OTPAUTH):
                value = totp_value(value)  # "totp: otpauth://..." means the same line
            fields[key] = value
        else:
            notes.append(line)
    if notes:
        fields[NOTES] = "\n".join(notes)
    return fields


def _reads_as_note(line: str, written: set[str]) -> bool:
    """Whether ``line``, written raw after the fields in ``written``, reads back as a note."""
    if line.startswith(OTPAUTH):
        return TOTP in written
    match = _FIELD_LINE.fullmatch(line)
    return match is None or (match.group(1) != NOTES and match.group(1) in written)


def format_entry(fields: Mapping[str, str], label: str) -> str:
    """The entry text for ``fields``; ``label`` names the TOTP in an authenticator.

    Raises :class:`~broker.errors.BackendError` (naming fields, never values) when
    the fields cannot be written so that they read back exactly.
    """
    bad_names = sorted(
        name for name in fields
        if name not in (SECRET_ACCESS_KEY, TOTP, NOTES) and not _FIELD_NAME.fullmatch(name)
    )
    if bad_names:
        raise BackendError(
            f"pass: field name(s) {', '.join(map(repr, bad_names))} cannot be a "
            "`key: value` line",
            "field names may not contain ':' or line breaks, nor start or end with a blank",
        )
    broken = sorted(
        name for name, value in fields.items()
        if name != NOTES and "\n" in value
    )
    if broken:
        raise BackendError(
            f"pass: the value of {', '.join(broken)} contains a line break",
            "a pass entry holds one line per field; store the value without line breaks",
        )
    lines = [fields.get(SECRET_ACCESS_KEY, "")]
    written = {SECRET_ACCESS_KEY} if SECRET_ACCESS_KEY in fields else set()
    order = [n for n in _FIRST if n in fields]
    order += [n for n in fields if n not in (*_FIRST, SECRET_ACCESS_KEY, TOTP, NOTES)]
    for name in order:
        lines.append(f"{name}: {fields[name]}")
        written.add(name)
    if TOTP in fields:
        value = fields[TOTP]
        lines.append(value if value.startswith(OTPAUTH) else otpauth_uri(value, label))
        written.add(TOTP)
    if NOTES in fields:
        for line in fields[NOTES].split("\n"):
            lines.append(line if _reads_as_note(line, written) else f"{NOTES}: {line}")
    text = "\n".join(lines) + "\n"
    again = parse_entry(text)
    expected = dict(fields)
    if expected.get(TOTP, "").startswith(OTPAUTH):
        # broker's own URI for a seed reads back as that seed: the same TOTP
        expected[TOTP] = totp_value(expected[TOTP])
    differing = sorted(k for k in set(expected) | set(again) if again.get(k) != expected.get(k))
    if differing:
        raise BackendError(
            f"pass: field(s) {', '.join(differing)} would not read back as given",
            "a pass entry cannot hold an empty secret access key, nor a value that ends "
            "with a carriage return",
        )
    return text
