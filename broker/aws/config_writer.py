"""Setting one value in ``~/.aws/config`` without disturbing the rest.

configparser would drop every comment and reflow the file, so this edits lines: the
value is replaced in place (or added after the section's last setting, or in a new
section at the end); comments, blank lines, order, line endings and the file's mode
stay as they were. Sections are found the way :mod:`broker.aws.profiles` reads them:
``[profile NAME]`` first, then a bare ``[NAME]``. The file is replaced atomically
(a symlinked config is written through its link) under a lock.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from broker import paths
from broker.errors import ConfigError, UsageError

_HEADER = re.compile(r"\[(?P<header>.+)\]")
_OPTION = re.compile(r"(?P<option>.*?)\s*[=:]")
_COMMENT_PREFIXES = ("#", ";")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_blank_or_comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith(_COMMENT_PREFIXES)


def _header(line: str) -> str | None:
    """The section name if ``line`` is a header (as configparser reads it)."""
    match = _HEADER.match(line.strip())
    return match.group("header") if match else None


def _section_names(profile: str) -> tuple[str, ...]:
    return (f"profile {profile}", profile)


def set_profile_value(text: str, profile: str, key: str, value: str) -> str:
    """``text`` with ``key = value`` set in ``profile``'s section (created if missing)."""
    if any(c in profile for c in "[]\r\n") or not profile.strip():
        raise UsageError(f"{profile!r} cannot be a profile name in ~/.aws/config")
    if any(c in value for c in "\r\n") or any(c in key for c in "=:[]\r\n"):
        raise UsageError("a value for ~/.aws/config must fit on one line")
    newline = "\r\n" if "\r\n" in text.split("\n", 1)[0] + "\n" else "\n"
    lines = text.splitlines(keepends=True)
    setting = f"{key} = {value}{newline}"

    # find the section: [profile NAME] wins over a bare [NAME], as when reading
    sections: dict[str, int] = {}
    in_value_of: int | None = None  # indent of the option whose value may continue
    for index, line in enumerate(lines):
        if in_value_of is not None and line.strip() and _indent(line) > in_value_of:
            continue  # a continuation line, even if it looks like a header
        header = _header(line) if not _is_blank_or_comment(line) else None
        if header is not None:
            in_value_of = None
            name = header[len("profile "):].strip() if header.startswith("profile ") else None
            if name == profile:
                sections.setdefault("profile", index)
            elif header.strip() == profile and name is None:
                sections.setdefault("bare", index)
        elif not _is_blank_or_comment(line):
            in_value_of = _indent(line)
    start = sections.get("profile", sections.get("bare"))

    if start is None:  # a new section at the end
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += newline
        if lines and lines[-1].strip():
            lines.append(newline)
        section = "default" if profile == "default" else f"profile {profile}"
        lines += [f"[{section}]{newline}", setting]
        return "".join(lines)

    last_content = start  # the header, or the section's last setting or continuation
    value_indent: int | None = None  # indent of the setting whose value may continue
    index = start + 1
    while index < len(lines):
        line = lines[index]
        if _is_blank_or_comment(line):
            index += 1
            continue
        if value_indent is not None and _indent(line) > value_indent:
            last_content = index  # a continuation line
            index += 1
            continue
        if _header(line) is not None:
            break
        value_indent = _indent(line)
        match = _OPTION.match(line.strip())
        if match and match.group("option").strip().lower() == key:
            lines[index:] = _replaced(lines[index:], match.end(), value, newline)
            return "".join(lines)
        last_content = index
        index += 1
    if not lines[last_content].endswith(("\n", "\r")):
        lines[last_content] += newline
    lines.insert(last_content + 1, setting)
    return "".join(lines)


def _replaced(lines: list[str], value_at: int, value: str, newline: str) -> list[str]:
    """``lines`` (starting at a setting) with that setting's value replaced and its
    continuation lines dropped; comments and blank lines among them stay."""
    line = lines[0]
    indent = _indent(line)
    end = 1
    kept: list[str] = []
    while end < len(lines):
        following = lines[end]
        if _is_blank_or_comment(following):
            kept.append(following)
        elif _indent(following) <= indent:
            break
        end += 1
    eol = line[len(line.rstrip("\r\n")):] or newline
    body = line[indent:]
    rest = body[value_at:]
    spacing = rest[: len(rest) - len(rest.lstrip(" \t"))]
    return [f"{line[:indent]}{body[:value_at]}{spacing}{value}{eol}", *kept, *lines[end:]]


def write_profile_value(path: Path, profile: str, key: str, value: str) -> bool:
    """Set ``key = value`` in ``profile``'s section of the file at ``path``.

    True if the file changed. The file keeps its mode (a new one is 0600 in a 0700
    directory); a symlink is followed, so dotfile managers keep their link.
    """
    target = Path(os.path.realpath(path))
    with paths.file_lock("aws-config"):
        try:
            text = target.read_text(encoding="utf-8")
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            text, mode = "", 0o600
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read ({exc})", "check the file") from None
        updated = set_profile_value(text, profile, key, value)
        if updated == text:
            return False
        _replace(target, updated.encode("utf-8"), mode)
        return True


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Atomic replace keeping ``mode``; ~/.aws's own mode (often 0755) is left alone."""
    paths.atomic_write(path, data, mode, private_dir=False)
