"""broker's one editor of the AWS INI files: setting or removing one value in
``~/.aws/config``, and removing one section of ``~/.aws/credentials``, without disturbing
the rest.

configparser would drop every comment and reflow the file, so this edits lines: the
value is replaced in place (or added after the section's last setting, or in a new
section at the end), a section goes from its header through its last setting; comments,
blank lines, order, each line's own ending, a UTF-8 byte-order mark and the file's mode
stay as they were. The file is read again under a lock, changed, and replaced atomically
(a symlinked file is written through its link).

configupdater (the comment-keeping INI editor on PyPI) was weighed and not used: in its
4.1 release it writes an added line with ``\\n`` in a ``\\r\\n`` file, does not split
lines at a lone ``\\r`` as text-mode reading does, refuses a file that starts with a
byte-order mark, edits the first of two sections botocore reads the second of, and drops
the comment that follows a removed section (usually the next section's). Each is a rule
below.

The file is read as botocore reads it (it is what the AWS CLI and SDKs use):

- lines end where Python's text-mode reading ends them, at ``\\n``, ``\\r\\n`` or a lone
  ``\\r``, and nowhere else (``str.splitlines`` would also split at ``\\v``, ``\\f``,
  ``\\x1c``-``\\x1e``, ``\\x85``, ``\\u2028`` and ``\\u2029``);
- a line indented deeper than the setting above it continues that setting (nested blocks
  such as ``s3 =`` / ``  max_concurrent_requests = 10`` too), even if it looks like a
  header; this is configparser's own rule, followed step by step;
- a profile's section is the one ``botocore.configloader.build_profile_map`` picks: a
  header that starts with ``profile`` and shell-splits into exactly two words names the
  second (``[profile "my name"]`` is ``my name``, ``[profile\\tdev]`` is ``dev``),
  ``[default]`` is ``default``, and when several sections name one profile the later
  one wins. A bare ``[dev]`` is no profile (a ``[profile dev]`` section is added), and
  ``[DEFAULT]`` holds configparser's defaults for every section.

A new section is ``[default]`` or ``[profile NAME]``, quoted (``[profile "my name"]``)
when the name needs it. Before anything is written the result is parsed again, as
botocore would: the profile must read the new value and nothing else may read
differently, or the edit is refused. A file botocore cannot parse is refused too, except
for a byte-order mark, which this module reads past (botocore does not, see
aws/aws-cli#3419) and keeps.
"""

from __future__ import annotations

import configparser
import copy
import os
import re
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broker import paths
from broker.errors import ConfigError, UsageError

BOM = "\ufeff"
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)")
_SECTCRE = configparser.RawConfigParser.SECTCRE
_OPTCRE = configparser.RawConfigParser.OPTCRE
_COMMENT_PREFIXES = ("#", ";")
_DEFAULT_SECTION = configparser.DEFAULTSECT

# What configparser makes of a line, given the lines before it.
BLANK, COMMENT, HEADER, OPTION, CONTINUATION, ERROR = (
    "blank", "comment", "header", "option", "continuation", "error"
)


def split_lines(text: str) -> list[str]:
    """``text`` in lines as text-mode reading splits it, each with its own ending."""
    lines = _LINE.findall(text)
    rest = text[sum(map(len, lines)):]
    return [*lines, rest] if rest else lines


def line_ending(line: str) -> str:
    """``line``'s own ending: CR LF, LF or CR, or ``""`` for a last line without one."""
    if line.endswith("\r\n"):
        return "\r\n"
    return line[-1] if line.endswith(("\n", "\r")) else ""


def profile_name(section: str) -> str | None:
    """The profile a section names for botocore (``build_profile_map``), or None."""
    if section.startswith("profile"):
        try:
            parts = shlex.split(section)
        except ValueError:
            return None
        return parts[1] if len(parts) == 2 else None
    return "default" if section == "default" else None


@dataclass(frozen=True)
class Line:
    """One line of the file and what configparser makes of it."""

    text: str  # with its ending
    kind: str
    name: str = ""  # a header's section name, an option's (lower-cased) name

    @property
    def content(self) -> str:
        """The line's text without its ending."""
        return self.text[: len(self.text) - len(line_ending(self.text))]


def classify(lines: list[str]) -> list[Line]:
    """Each line as configparser's ``_read`` sees it (no inline comments, empty lines
    allowed in values, ``=`` and ``:`` as delimiters)."""
    result: list[Line] = []
    in_section = False
    option: str | None = None  # the setting a deeper-indented line would continue
    indent_level = 0
    for text in lines:
        stripped = text.strip()
        if not stripped or stripped.startswith(_COMMENT_PREFIXES):
            result.append(Line(text, BLANK if not stripped else COMMENT))
            continue
        indent = len(text) - len(text.lstrip())
        if in_section and option and indent > indent_level:
            result.append(Line(text, CONTINUATION))
            continue
        indent_level = indent
        header = _SECTCRE.match(stripped)
        if header:
            in_section, option = True, None
            result.append(Line(text, HEADER, header.group("header")))
        elif not in_section:
            result.append(Line(text, ERROR))
        else:
            match = _OPTCRE.match(stripped)
            if match:
                option = match.group("option").rstrip().lower()
                result.append(Line(text, OPTION if option else ERROR, option))
            else:
                result.append(Line(text, ERROR))
    return result


def set_profile_value(
    text: str, profile: str, key: str, value: str, *, source: str = "~/.aws/config"
) -> str:
    """``text`` with ``key = value`` in ``profile``'s section (created if missing).

    ``text`` itself when botocore already reads that value for the profile. ``source``
    names the file in errors.
    """
    _check(profile, key, value)
    bom = BOM if text.startswith(BOM) else ""
    body = text[len(bom):]
    before = _read(body, source)
    option = key.lower()
    if _profiles(before).get(profile, {}).get(option) == value:
        return text
    lines = split_lines(body)
    newline = _dominant_ending(lines)
    parsed = classify(lines)
    start = _winning_section(parsed, profile)
    if start is None:
        header = _new_header(profile)
        edited = _with_new_section(lines, parsed, header, f"{key} = {value}", newline)
        target = header
    else:
        edited = _with_setting(lines, parsed, start, option, key, value, newline)
        target = parsed[start].name
    result = "".join(edited)
    _verify(before, _read(result, source), target, profile, option, value)
    return bom + result


def _section_end(parsed: list[Line], start: int) -> int:
    """The index of the header after the section whose header is at ``start`` (the
    number of lines when it is the last section)."""
    return next((i for i in range(start + 1, len(parsed)) if parsed[i].kind == HEADER),
                len(parsed))


def _join_after_removal(lines: list[str], cut: int, rest: list[str]) -> str:
    """``lines[:cut]`` followed by ``rest`` (what is kept after a removed run of lines),
    as text. After a lone "\r" line ending, a blank line's "\n" would only turn it into
    "\r\n", so ``rest``'s first line then starts with "\r" instead."""
    if cut and rest and _merge(line_ending(lines[cut - 1]), rest[0]):
        rest = ["\r" + rest[0][1:], *rest[1:]]
    return "".join([*lines[:cut], *rest])


def without_profile_value(
    text: str, profile: str, key: str, *, source: str = "~/.aws/config"
) -> str:
    """``text`` without ``key``'s setting in the section botocore reads ``profile`` from:
    its line and its continuation lines (comments among them stay). ``text`` itself when
    that section has no such setting (or there is no section).

    ``source`` names the file in errors. Raises ConfigError when the file cannot be parsed,
    or when the profile would still read a value afterwards (a ``[DEFAULT]`` one) or any
    other setting would read differently.
    """
    _check_profile(profile)
    bom = BOM if text.startswith(BOM) else ""
    body = text[len(bom):]
    before = _read(body, source)
    option = key.lower()
    lines = split_lines(body)
    parsed = classify(lines)
    start = _winning_section(parsed, profile)
    if start is None:
        return text
    end = _section_end(parsed, start)
    found = next(
        (i for i in range(start + 1, end)
         if parsed[i].kind == OPTION and parsed[i].name == option), None
    )
    if found is None:
        return text
    following = found + 1  # its continuation lines go, comments among them stay
    while following < end and parsed[following].kind in (CONTINUATION, BLANK, COMMENT):
        following += 1
    kept = [lines[i] for i in range(found + 1, following) if parsed[i].kind != CONTINUATION]
    rest = [*kept, *lines[following:]]
    result = _join_after_removal(lines, found, rest)
    section = parsed[start].name
    expected = copy.deepcopy(before)
    expected[0][section].pop(option, None)
    after = _read(result, source)
    if after != expected or option in _profiles(after).get(profile, {}):
        raise ConfigError(
            f"cannot remove {option} from the section of profile {profile!r} in {source} "
            "without changing how other settings are read",
            f"remove the `{option}` line from the [{section}] section by hand",
        )
    return bom + result


def with_profile_section(text: str, profile: str, *, source: str = "~/.aws/config") -> str:
    """``text`` with an empty section for ``profile`` at the end, or ``text`` itself when
    botocore already reads a section for it (``[default]`` or ``[profile NAME]``)."""
    _check_profile(profile)
    bom = BOM if text.startswith(BOM) else ""
    body = text[len(bom):]
    before = _read(body, source)
    if profile in _profiles(before):
        return text
    lines = split_lines(body)
    header = _new_header(profile)
    edited = _with_new_section(lines, classify(lines), header, None, _dominant_ending(lines))
    result = "".join(edited)
    after = _read(result, source)
    expected = copy.deepcopy(before)
    inherited = {k: _nested(str(v), "", _DEFAULT_SECTION, k) for k, v in before[1].items()}
    expected[0][header] = inherited
    if after != expected or profile not in _profiles(after):
        raise ConfigError(
            f"cannot add a section for {profile!r} to ~/.aws/config without changing how "
            "other settings are read",
            f"add a [{header}] section by hand",
        )
    return bom + result


def _check_profile(profile: str) -> None:
    if not profile.strip() or any(c in profile for c in "[]\r\n"):
        raise UsageError(f"{profile!r} cannot be a profile name in ~/.aws/config")


def _check(profile: str, key: str, value: str) -> None:
    _check_profile(profile)
    if (
        not key
        or key != key.strip()
        or key.startswith(_COMMENT_PREFIXES)
        or any(c in key for c in "=:[]\r\n")
    ):
        raise UsageError(f"{key!r} cannot be a setting name in ~/.aws/config")
    if any(c in value for c in "\r\n"):
        raise UsageError("a value for ~/.aws/config must fit on one line")
    if value != value.strip():
        raise UsageError("a value for ~/.aws/config cannot start or end with spaces")


def _dominant_ending(lines: list[str]) -> str:
    """The most common line ending (the first seen among equals); ``\\n`` if none."""
    counts = Counter(e for e in map(line_ending, lines) if e)
    if not counts:
        return "\n"
    return max(counts, key=lambda e: counts[e])  # Counter keeps first-seen order


def _winning_section(parsed: list[Line], profile: str) -> int | None:
    """The index of the header botocore takes the profile from: the last that names it."""
    found = None
    for index, line in enumerate(parsed):
        if line.kind == HEADER and profile_name(line.name) == profile:
            found = index
    return found


def _new_header(profile: str) -> str:
    """The section name that botocore reads back as ``profile``."""
    if profile == "default":
        return "default"
    candidates = [f"profile {profile}"]
    if '"' not in profile and "\\" not in profile:
        candidates.append(f'profile "{profile}"')
    candidates.append(f"profile {shlex.quote(profile)}")
    for name in candidates:
        header = _SECTCRE.match(f"[{name}]")
        if profile_name(name) == profile and header and header.group("header") == name:
            return name
    raise UsageError(f"{profile!r} cannot be a profile name in ~/.aws/config")


def _with_new_section(
    lines: list[str], parsed: list[Line], header: str, setting: str | None, newline: str
) -> list[str]:
    lines = list(lines)
    if lines and not line_ending(lines[-1]):
        lines[-1] += newline
    if lines and parsed[-1].kind != BLANK:
        # After a lone "\r", a "\n" would only make it "\r\n": that blank line takes "\r".
        lines.append("\r" if _merge(line_ending(lines[-1]), newline) else newline)
    added = [f"[{header}]{newline}"] + ([f"{setting}{newline}"] if setting is not None else [])
    return [*lines, *added]


def _with_setting(
    lines: list[str],
    parsed: list[Line],
    start: int,
    option: str,
    key: str,
    value: str,
    newline: str,
) -> list[str]:
    end = _section_end(parsed, start)
    lines = list(lines)
    for index in range(start + 1, end):
        line = parsed[index]
        if line.kind == OPTION and line.name == option:
            following = index + 1  # its continuation lines go, comments among them stay
            while following < end and parsed[following].kind in (CONTINUATION, BLANK, COMMENT):
                following += 1
            kept = [i for i in range(index + 1, following) if parsed[i].kind != CONTINUATION]
            texts = [_replaced(line, value, line_ending(line.text)), *(lines[i] for i in kept)]
            for n, after in enumerate([*kept, following]):
                if after < len(lines) and _merge(line_ending(texts[n]), lines[after]):
                    # A dropped line stood in between: end as the line before the next did.
                    texts[n] = texts[n][:-1] + line_ending(lines[after - 1])
            lines[index:following] = texts
            return lines

    last = max(
        (i for i in range(start + 1, end) if parsed[i].kind in (OPTION, CONTINUATION)),
        default=start,
    )
    # Indented like the section's last setting, the new line neither continues it nor
    # makes the next line continue it. Under a bare header, it must be as deep as the
    # next header, or that header would become a continuation of the new setting.
    options = [i for i in range(start + 1, end) if parsed[i].kind == OPTION]
    like = options[-1] if options else (end if end < len(parsed) else start)
    content = parsed[like].content
    indent = content[: len(content) - len(content.lstrip())]
    if not line_ending(lines[last]):
        lines[last] += newline
    ending = newline
    if last + 1 < len(lines) and _merge(newline, lines[last + 1]):
        ending = line_ending(lines[last])
    lines.insert(last + 1, f"{indent}{key} = {value}{ending}")
    return lines


def _merge(ending: str, following: str) -> bool:
    """Whether ``following`` after a line ending in ``ending`` would change both lines: a
    lone "\r" and a "\n" read as one "\r\n"."""
    return ending == "\r" and following.startswith("\n")


def _replaced(line: Line, value: str, ending: str) -> str:
    """``line`` (a setting) with its value replaced, keeping its name and spacing."""
    content = line.content
    indent = len(content) - len(content.lstrip())
    stripped = content.strip()
    match = _OPTCRE.match(stripped)
    assert match is not None  # classify() made it an OPTION
    at = indent + match.start("value")
    head = content[:at]
    if not match.group("value") and value and match.end("option") < match.start("vi"):
        head += " "  # "key =" becomes "key = value", as "key =value" would look odd
    return f"{head}{value}{ending}"


# --- reading as botocore reads ----------------------------------------------------------

Sections = dict[str, dict[str, object]]


def _read(text: str, source: str) -> tuple[Sections, dict[str, object]]:
    """The sections (with the defaults applied), as botocore's ``raw_config_parse`` gives
    them for a file holding ``text``, and the raw defaults. Like botocore, a [DEFAULT]
    block is parsed only where a section inherits it."""
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(re.sub(r"\r\n?", "\n", text), source=source)
    except configparser.Error as exc:
        raise ConfigError(
            f"{source} cannot be parsed: {str(exc).splitlines()[0]}",
            "botocore (the AWS CLI, the SDKs) cannot read it either: fix that line, then run "
            "the command again",
        ) from None
    defaults = parser.defaults()
    sections: Sections = {}
    for section in parser.sections():
        values: dict[str, object] = {}
        for option in parser.options(section):
            value = parser.get(section, option)
            where = _DEFAULT_SECTION if defaults.get(option) == value else section
            values[option] = _nested(value, source, where, option)
        sections[section] = values
    return sections, dict(defaults)


def _nested(value: str, source: str, section: str, option: str) -> object:
    """A value as botocore keeps it: an indented block under an empty value is a dict."""
    if not value.startswith("\n"):
        return value
    block: dict[str, str] = {}
    for line in value.splitlines():  # as botocore's _parse_nested splits it
        line = line.strip()
        if not line:
            continue
        name, sep, rest = line.partition("=")
        if not sep:
            raise ConfigError(
                f"{source}: [{section}] {option}: the indented line {line!r} has no '='",
                "fix that line, then run the command again",
            )
        block[name.strip()] = rest.strip()
    return block


def _profiles(read: tuple[Sections, dict[str, object]]) -> dict[str, dict[str, object]]:
    """botocore's ``build_profile_map(...)["profiles"]``: the later section wins."""
    found: dict[str, dict[str, object]] = {}
    for section, values in read[0].items():
        name = profile_name(section)
        if name is not None:
            found[name] = values
    return found


def _verify(
    before: tuple[Sections, dict[str, object]],
    after: tuple[Sections, dict[str, object]],
    section: str,
    profile: str,
    option: str,
    value: str,
) -> None:
    """The edit did what it should and nothing else, as botocore would see it."""
    expected = copy.deepcopy(before)
    inherited = {k: _nested(str(v), "", _DEFAULT_SECTION, k) for k, v in before[1].items()}
    base = expected[0].get(section, inherited)
    expected[0][section] = {**base, option: value}
    if after != expected or _profiles(after).get(profile, {}).get(option) != value:
        raise ConfigError(
            f"cannot set {option} for {profile!r} in ~/.aws/config without changing how "
            "other settings are read",
            f"add `{option} = {value}` to the profile's section by hand",
        )


def without_section(
    text: str, names: Callable[[str], bool], *, source: str = "~/.aws/credentials"
) -> str:
    """``text`` without the section whose header name ``names`` accepts: its header
    through its last setting (continuation lines included). Comments and blank lines after
    that stay, as they usually introduce the next section. When several headers match, the
    later one goes (the one a later-wins reading takes); ``text`` itself when none does.

    ``source`` names the file in errors. Raises ConfigError when the file cannot be parsed
    (as botocore would refuse it), when the section is ``[DEFAULT]`` (its values reach every
    section), or when the removal would change how any other section reads.
    """
    bom = BOM if text.startswith(BOM) else ""
    body = text[len(bom):]
    before = _read(body, source)
    lines = split_lines(body)
    parsed = classify(lines)
    headers = [i for i, line in enumerate(parsed) if line.kind == HEADER and names(line.name)]
    if not headers:
        return text
    start = headers[-1]
    section = parsed[start].name
    if section == _DEFAULT_SECTION:
        raise ConfigError(
            f"{source}: the [{section}] section holds defaults for every other section",
            "remove it by hand",
        )
    end = _section_end(parsed, start)
    last = max(
        (i for i in range(start + 1, end) if parsed[i].kind not in (BLANK, COMMENT)),
        default=start,
    )
    kept_after = lines[last + 1:]
    result = _join_after_removal(lines, start, kept_after)
    expected = copy.deepcopy(before)
    del expected[0][section]
    if _read(result, source) != expected:
        raise ConfigError(
            f"cannot remove [{section}] from {source} without changing how other sections "
            "are read",
            f"remove the [{section}] section by hand",
        )
    return bom + result


def write_profile_value(path: Path, profile: str, key: str, value: str) -> bool:
    """Set ``key = value`` in ``profile``'s section of the file at ``path``.

    True if the file changed. The file keeps its mode (a new one is 0600 in a 0700
    directory) and its bytes outside the edit; a symlink is followed, so dotfile managers
    keep their link.
    """
    return edit_file(
        path, lambda text: set_profile_value(text, profile, key, value, source=str(path))
    )


def remove_profile_value(path: Path, profile: str, key: str) -> bool:
    """Remove ``key`` from ``profile``'s section of the file at ``path``
    (:func:`without_profile_value`); True if the file changed. The file is kept as
    :func:`write_profile_value` keeps it."""
    return edit_file(
        path, lambda text: without_profile_value(text, profile, key, source=str(path))
    )


def ensure_profile_section(path: Path, profile: str) -> bool:
    """Add an empty ``[profile NAME]`` (or ``[default]``) section to the file at ``path``
    unless botocore reads one for ``profile`` already; True if the file changed. The file
    is kept as :func:`write_profile_value` keeps it."""
    return edit_file(path, lambda text: with_profile_section(text, profile, source=str(path)))


def edit_file(path: Path, change: Callable[[str], str], *, lock: str = "aws-config") -> bool:
    """Replace the text of the file at ``path`` with ``change(text)``; True if it changed.

    Under the broker lock ``lock``, the file is read right before the write, so ``change``
    sees (and keeps) any edit made meanwhile, and can decline by returning ``text``. The
    text is decoded from the bytes (UTF-8), so every line ending stays as written; a
    missing file reads as "" and is made 0600 in a 0700 directory. The file is replaced
    atomically, keeping its mode; a symlink is followed, so dotfile managers keep their
    link. Raises ConfigError when the file cannot be read or is not UTF-8.
    """
    target = Path(os.path.realpath(path))
    with paths.file_lock(lock):
        try:
            text = target.read_bytes().decode("utf-8")  # bytes: keeps \r\n and lone \r
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            text, mode = "", 0o600
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read ({exc})", "check the file") from None
        updated = change(text)
        if updated == text:
            return False
        _replace(target, updated.encode("utf-8"), mode)
        return True


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Atomic replace keeping ``mode``; ~/.aws's own mode (often 0755) is left alone."""
    paths.atomic_write(path, data, mode, private_dir=False)
