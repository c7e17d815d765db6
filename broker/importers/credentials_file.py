"""``~/.aws/credentials``: read its keys, and remove one section in place.

Removal rewrites the file atomically (a temporary file in the same directory,
fsync, rename), keeps its mode, and touches nothing but the section's own
lines: its header through its last key line. Comments and blank lines after
that, which usually introduce the next section, stay, as does everything in
other sections.
"""

from __future__ import annotations

import configparser
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from broker import paths
from broker.backend import ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN
from broker.errors import ConfigError

_HEADER = re.compile(r"^\[(?P<name>.+)\]$")
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
    parser = configparser.RawConfigParser(strict=True, default_section="\x00none")
    try:
        parser.read_string(text, source=str(path))
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
    path = path or credentials_path()
    return parse(_read_text(path), path)


def _is_header(line: str) -> str | None:
    match = _HEADER.match(line.strip())
    return match.group("name").strip() if match else None


def without_section(text: str, name: str) -> str:
    """``text`` with section ``name`` removed (header through its last key line)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _is_header(line) == name), None)
    if start is None:
        return text
    end = next((i for i in range(start + 1, len(lines)) if _is_header(lines[i])), len(lines))
    last = start
    for index in range(start + 1, end):
        stripped = lines[index].strip()
        if stripped and not stripped.startswith(("#", ";")):
            last = index
    return "".join(lines[:start] + lines[last + 1 :])


def _replace(path: Path, data: str) -> None:
    """Atomically replace ``path``'s contents, keeping its mode and its directory's."""
    mode = stat.S_IMODE(path.stat().st_mode)
    paths.atomic_write(path, data.encode("utf-8"), mode, private_dir=False)


def remove_section(path: Path, name: str, access_key_id: str) -> bool:
    """Remove section ``name`` if it still holds ``access_key_id``; True if removed.

    The file is read again right before the rewrite, so an edit made since the
    import began is kept, and a section whose key changed meanwhile is left alone.
    """
    target = path.resolve()  # rewrite the file a symlink points at, not the link
    text = _read_text(target)
    current = {s.name: s for s in parse(text, path)}.get(name)
    if current is None or current.access_key_id != access_key_id:
        return False
    _replace(target, without_section(text, name))
    return True
