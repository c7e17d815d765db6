"""``~/.aws/credentials``: read its keys, and remove one section in place.

Removal goes through broker's one INI editor, :mod:`broker.aws.config_writer`: the
file is read again under a lock, rewritten atomically (a temporary file in the same
directory, fsync, rename) with its mode, line endings and byte-order mark kept, and
nothing changes but the section's own lines: its header through its last key line.
Comments and blank lines after that, which usually introduce the next section, stay, as
does everything in other sections.
"""

from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from broker.aws import config_writer
from broker.backend import ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN
from broker.errors import ConfigError

#: Keys whose values are secret (botocore reads aws_security_token as the session token).
_SECRET_KEYS = frozenset(
    {ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, "aws_security_token"}
)


def credentials_path() -> Path:
    """``$AWS_SHARED_CREDENTIALS_FILE`` or ``~/.aws/credentials``."""
    return Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials").expanduser()


@dataclass
class Section:
    """One ``[name]`` section; the secret is never shown in repr."""

    name: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    has_session_token: bool = False
    #: The section's other, non-secret settings (``region``, ``output``...), as written; a
    #: nested block's value starts with a newline.
    settings: dict[str, str] = field(default_factory=dict)


def _read_text(path: Path) -> str:
    # newline="" keeps the file's own line endings for the rewrite.
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})", "check the file") from None


def parse(text: str, path: Path) -> list[Section]:
    """The sections of the credentials file ``text`` (read from ``path``, named in errors),
    in file order, names stripped. Lines end where text-mode reading ends them (botocore's
    way), a lone ``\\r`` included; a UTF-8 byte-order mark is read past, as
    :mod:`broker.aws.config_writer` does. Raises ConfigError for a file configparser
    refuses (a duplicate section among them)."""
    parser = configparser.RawConfigParser(strict=True, default_section="\x00none")
    body = re.sub(r"\r\n?", "\n", text.removeprefix(config_writer.BOM))
    try:
        parser.read_string(body, source=str(path))
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path} is malformed: {first}", f"fix {path}") from None
    sections = []
    for name in parser.sections():
        values = dict(parser.items(name))
        sections.append(
            Section(
                name=name.strip(),
                access_key_id=values.get(ACCESS_KEY_ID, "").strip(),
                secret_access_key=values.get(SECRET_ACCESS_KEY, "").strip(),
                has_session_token=bool(values.get(SESSION_TOKEN, "").strip()),
                settings={k: v for k, v in values.items() if k not in _SECRET_KEYS},
            )
        )
    return sections


def load(path: Path | None = None) -> list[Section]:
    """The sections of the file at ``path`` (default: :func:`credentials_path`); none for
    a missing file. Raises ConfigError for a file that cannot be read or parsed."""
    path = path or credentials_path()
    return parse(_read_text(path), path)


def without_section(text: str, name: str, *, source: str = "~/.aws/credentials") -> str:
    """``text`` with section ``name`` (compared stripped, as :func:`parse` names sections)
    removed, header through its last key line; of two such sections, the later (the one
    :func:`parse`'s caller keeps). Raises ConfigError as
    :func:`broker.aws.config_writer.without_section` does."""
    return config_writer.without_section(
        text, lambda header: header.strip() == name, source=source
    )


def remove_section(path: Path, name: str, access_key_id: str) -> bool:
    """Remove section ``name`` if it still holds ``access_key_id``; True if removed.

    The file is read again under the lock right before the rewrite, so an edit made since
    the import began is kept, and a section whose key changed meanwhile is left alone. A
    symlinked file is rewritten where it lives. Raises ConfigError as :func:`load` does.
    """

    def change(text: str) -> str:
        current = {s.name: s for s in parse(text, path)}.get(name)
        if current is None or current.access_key_id != access_key_id:
            return text
        return without_section(text, name, source=str(path))

    return config_writer.edit_file(path, change, lock="aws-credentials")
