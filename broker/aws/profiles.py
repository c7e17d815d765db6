"""Profiles from ``~/.aws/config``, read the way botocore reads them.

The AWS CLI and the SDKs in the child process read the file with botocore, so
broker follows botocore's rules (``botocore.configloader.raw_config_parse`` and
``build_profile_map``, ``botocore.session.Session.full_config``):

- the file is parsed by :class:`configparser.RawConfigParser` with its defaults:
  ``[DEFAULT]`` values apply to every section, option names are lower-cased,
  a repeated section or option is an error for the whole file;
- a section named ``profile ...`` is a profile when its name splits (shell-style,
  :func:`shlex.split`) into exactly ``profile NAME``: ``[profile "my name"]`` is
  ``my name``; ``[default]`` is the profile ``default``; when two sections name
  the same profile, the later one wins; any other section (a bare ``[dev]``,
  ``[sso-session x]``, ``[services x]``) is not a profile;
- a value that starts on the next line (``s3 =`` then indented ``key = value``
  lines) is a nested block;
- the credentials file's sections are profiles too, and their values are laid
  over the config file's (broker keeps the names and non-secret values only).

Values broker cannot use fail only the profile that uses them, when they are used
(:attr:`Profile.problems`), never the whole file. ``include_profile`` (and its old
name ``parent_profile``) is honoured with aws-vault's semantics.

Pure standard library: this runs on the cached fast path.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Mapping
from pathlib import Path

from broker.errors import ConfigError, ProfileNotFound

#: Values of the credentials file that are secrets: never kept in a Profile.
_SECRET_KEYS = frozenset(
    {"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_security_token"}
)
#: Keys botocore takes as a profile's static key (``AssumeRoleProvider._has_static_credentials``).
_STATIC_KEYS = ("aws_access_key_id", "aws_secret_access_key")
#: Keys whose empty value botocore would still use (and then fail on): refused when used.
_NOT_EMPTY = ("role_arn", "source_profile", "mfa_serial", "region", "external_id")
#: Of those, the values that can never contain a space (source_profile can: "my name").
_NO_SPACES = ("role_arn", "mfa_serial", "region")
#: Keys that make botocore get a role's credentials some other way; broker refuses them
#: rather than silently serving its stored key instead.
_REFUSED_ROLE_KEYS = ("credential_source", "web_identity_token_file")
#: With either of these, botocore's SSO provider serves the profile's own credentials.
_SSO_KEYS = ("sso_account_id", "sso_role_name")
#: Keys that look like a profile's, used to warn about a bare ``[NAME]`` section.
_PROFILE_KEYS = frozenset(
    {"region", "role_arn", "source_profile", "mfa_serial", "output", "credential_process"}
)
#: Every key broker reads as text: a nested block there is a problem of the profile.
_READ_KEYS = (
    "broker_backend", "broker_totp", "credential_process", "credential_source",
    "duration_seconds", "external_id", "mfa_process", "mfa_serial", "region", "role_arn",
    "role_session_name", "source_profile",
)
UTF8_BOM = "\ufeff"
#: An inline comment as people write them (`` # note``, `` ; note``), which botocore
#: keeps as part of the value.
_COMMENT = re.compile(r"[ \t][#;]")

Value = str | dict[str, str]


class Profile:
    """One profile: ``values`` as botocore sees them, with aws-vault's ``include_profile``
    merged in; the settings broker uses as attributes; ``problems`` for values it cannot use.

    A plain class, not a dataclass: this module is on the cached fast path and
    importing dataclasses costs ~10 ms there.
    """

    def __init__(
        self,
        name: str,
        values: Mapping[str, Value] | None = None,
        *,
        section: str | None = None,
        path: Path | None = None,
        problems: Mapping[str, str] | None = None,
        static_keys: bool = False,
    ) -> None:
        self.name = name
        self.values: dict[str, Value] = dict(values or {})
        #: the files hold a static key for this profile (botocore then stops a chain here)
        self.static_keys = static_keys
        #: the section header the values came from, e.g. ``profile dev``
        self.section = section or ("default" if name == "default" else f"profile {name}")
        self.path = path
        #: key -> message, for values broker cannot use (raised when the key is used)
        self.problem_by_key: dict[str, str] = dict(problems or {})
        for key in _NOT_EMPTY:
            value = self.values.get(key)
            if not isinstance(value, str):
                continue
            if not value.strip():
                self.problem_by_key.setdefault(
                    key, f"{self.where} {key} is empty; give a value or remove the line"
                )
            elif any(mark in value for mark in (" #", " ;", "\t#", "\t;")):
                self.problem_by_key.setdefault(
                    key, f"{self.where} {key} = {value!r} ends in a comment, which the AWS CLI "
                    "reads as part of the value; put the comment on a line of its own",
                )
            elif key in _NO_SPACES and len(value.split()) > 1:
                self.problem_by_key.setdefault(
                    key, f"{self.where} {key} = {value!r} contains a space, which no valid "
                    f"{key} has; fix the value",
                )
        for key in _READ_KEYS:  # now: unusable() is asked before any of them is read
            if isinstance(self.values.get(key), dict):
                self._text(key)
        item = self.values.get("broker_item")
        if item is not None:
            wrong = (
                "it is a nested block, not a value; put it on one line"
                if isinstance(item, dict) else item_reference_problem(item)
            )
            if wrong is None and isinstance(item, str) and ends_in_comment(item):
                wrong = ITEM_COMMENT_PROBLEM
            if wrong is not None:
                self.problem_by_key.setdefault(
                    "broker_item", f"{self.where} broker_item = {item!r}: {wrong}"
                    if isinstance(item, str) else f"{self.where} broker_item: {wrong}",
                )
        self.duration_seconds: int | None = None
        raw_duration = self._text("duration_seconds")
        if raw_duration is not None:
            try:
                self.duration_seconds = int(raw_duration)  # as botocore's _get_role_config
            except ValueError:
                self.problem_by_key["duration_seconds"] = (
                    f"{self.where} duration_seconds = {raw_duration!r} is not a whole number "
                    "of seconds; give seconds, e.g. duration_seconds = 3600"
                )

    def _text(self, key: str) -> str | None:
        value = self.values.get(key)
        if isinstance(value, dict):
            if key not in self.problem_by_key:
                self.problem_by_key[key] = (
                    f"{self.where} {key} is a nested block, not a value; put it on one line"
                )
            return None
        return value or None

    @property
    def where(self) -> str:
        """``FILE [section]`` for messages."""
        return f"{self.path or '~/.aws/config'} [{self.section}]"

    @property
    def problems(self) -> list[str]:
        """Every recorded problem's message (file, section, key and fix), in the order
        found; empty when every value broker may use is usable."""
        return list(self.problem_by_key.values())

    def problem(self, key: str) -> None:
        """Raise the problem recorded for ``key``, if any.

        Raises:
            ConfigError: naming the file, the section, the key and the fix.
        """
        message = self.problem_by_key.get(key)
        if message is not None:
            text, _, hint = message.rpartition("; ")
            raise ConfigError(text, hint or f"fix {self.path}")

    # the settings broker uses, by botocore's / aws-vault's key names
    @property
    def region(self) -> str | None:
        """``region``: the profile's region (AWS CLI config). Like every setting below,
        None when unset or empty, or when it is a nested block (a problem is recorded)."""
        return self._text("region")

    @property
    def mfa_serial(self) -> str | None:
        """``mfa_serial``: the MFA device (a virtual device's ARN or a hardware serial)
        whose code GetSessionToken/AssumeRole sends as SerialNumber (AWS CLI config)."""
        return self._text("mfa_serial")

    @property
    def role_arn(self) -> str | None:
        """``role_arn``: the role this profile assumes with AssumeRole; None for a profile
        whose credentials are its own key (AWS CLI config)."""
        return self._text("role_arn")

    @property
    def source_profile(self) -> str | None:
        """``source_profile``: the profile whose credentials assume :attr:`role_arn`
        (AWS CLI config)."""
        return self._text("source_profile")

    @property
    def credential_source(self) -> str | None:
        """``credential_source``: botocore's other source for a role's credentials
        (``Environment``, ``Ec2InstanceMetadata``, ``EcsContainer``); broker refuses it on
        a role hop (:meth:`refused_keys`)."""
        return self._text("credential_source")

    @property
    def role_session_name(self) -> str | None:
        """``role_session_name``: the RoleSessionName AssumeRole sends (AWS CLI config);
        None: broker sends ``broker-<seconds since the epoch>``."""
        return self._text("role_session_name")

    @property
    def external_id(self) -> str | None:
        """``external_id``: the ExternalId AssumeRole sends, for a trust policy's
        ``sts:ExternalId`` condition (AWS CLI config)."""
        return self._text("external_id")

    @property
    def mfa_process(self) -> str | None:
        """``mfa_process``: a shell command that prints an MFA code on stdout (aws-vault's
        key; :class:`broker.aws.mfa.MfaProcess` runs it)."""
        return self._text("mfa_process")

    @property
    def credential_process(self) -> str | None:
        """``credential_process``: the command an SDK runs for this profile's credentials
        (AWS CLI config), e.g. ``broker export dev --format json``."""
        return self._text("credential_process")

    @property
    def broker_backend(self) -> str | None:
        """``broker_backend``: the backend holding this profile's key, ahead of broker's
        configured default (broker's own key)."""
        return self._text("broker_backend")

    @property
    def broker_totp(self) -> str | None:
        """``broker_totp``: a secret reference to this profile's TOTP seed or to live codes
        (``op://...?attribute=totp``), broker's own key (see
        :class:`broker.aws.mfa.TotpReference`)."""
        return self._text("broker_totp")

    @property
    def broker_item(self) -> str | None:
        """``broker_item``: the existing item that holds this profile's long-lived key, in
        its credential backend (``SCHEME://VAULT/ITEM``, or an item's title in the backend's
        own vault), broker's own key; None when unset. A malformed one is a problem recorded
        when the file is read (:func:`item_reference_problem`), raised before any backend
        is asked."""
        value = self._text("broker_item")
        return value.strip() if value else None

    def refused_keys(self, *, role: bool) -> list[str]:
        """Keys that make botocore get this profile's credentials another way than broker
        would: for a role hop (``role``), ``credential_source`` and
        ``web_identity_token_file``; for the profile whose own key is used, the SSO keys that
        make botocore's SSO provider serve it (``sso_account_id``, ``sso_role_name``)."""
        keys = [
            k for k in _REFUSED_ROLE_KEYS
            if k in self.values and (role or k == "web_identity_token_file")
        ]
        if not role or not self.source_profile:
            keys += [k for k in _SSO_KEYS if self.values.get(k)]
        return keys

    def unusable(self, *, target: bool = True) -> None:
        """Raise the first problem that makes this profile unusable in a chain: all but
        ``duration_seconds`` (it fails only when a duration is needed) and, for a profile
        that is not the ``target``, ``region`` (only the target's region is used).

        Raises:
            ConfigError: naming the file, section, key and fix.
        """
        for key in self.problem_by_key:
            if key != "duration_seconds" and (target or key != "region"):
                self.problem(key)

    def __repr__(self) -> str:
        return f"Profile({self.name!r}, role_arn={self.role_arn!r})"


#: How a ``broker_item`` is written, for messages.
ITEM_REFERENCE_FIX = (
    "name the item as SCHEME://VAULT/ITEM (e.g. op://AWS/AWS dev) or by its title alone"
)


#: Why a ``broker_item`` with an inline comment is refused, as ``"what; fix"``.
ITEM_COMMENT_PROBLEM = (
    "it ends in a comment, which the AWS CLI reads as part of the value; put the comment "
    "on a line of its own (an item whose title holds ' #' or ' ;' is named by its id: "
    "SCHEME://VAULT/ID)"
)


def ends_in_comment(value: str) -> bool:
    """Whether ``value`` holds an inline comment as people write them (`` # note``,
    `` ; note``), which botocore keeps as part of the value (its config parser has no
    inline comments)."""
    return _COMMENT.search(value) is not None


def item_reference_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a ``broker_item``, as ``"what; fix"``, else None.

    A ``broker_item`` is ``SCHEME://VAULT/ITEM`` (a scheme of letters, digits, ``-`` and
    ``_``; exactly a vault and an item, each non-empty with no blank at either end; no
    field, no ``?query``) or an item's title alone (printable, without ``://``). Only the
    shape is checked, offline and without any plugin (this module is on the cached fast
    path); the profile's backend checks that the scheme is its own when the profile is
    bound to it (:meth:`broker.backend.Backend.bind_item`).
    """
    text = value.strip()
    if not text:
        return f"it is empty; {ITEM_REFERENCE_FIX}, or remove the line"
    if not text.isprintable():
        return f"it holds a control character; {ITEM_REFERENCE_FIX}"
    scheme, sep, path = text.partition("://")
    if not sep:
        return None  # an item's title
    if not scheme or not scheme.replace("-", "").replace("_", "").isalnum():
        return f"{scheme!r} is not a reference scheme; {ITEM_REFERENCE_FIX}"
    if "?" in path or "#" in path:
        return f"an item reference takes no query or fragment; {ITEM_REFERENCE_FIX}"
    parts = path.split("/")
    if len(parts) != 2:
        what = "a field" if len(parts) > 2 else "no item"
        return f"it names {what}, where broker_item names an item; {ITEM_REFERENCE_FIX}"
    if not all(part and part == part.strip() for part in parts):
        return (f"its vault or item is empty or starts or ends with a blank; "
                f"{ITEM_REFERENCE_FIX}")
    return None


def _expand(value: str) -> Path:
    """A path as botocore expands it: ``$VARS`` first, then ``~``."""
    return Path(os.path.expanduser(os.path.expandvars(value)))


def config_path() -> Path:
    """``$AWS_CONFIG_FILE`` (``~`` and ``$VARS`` expanded) or ``~/.aws/config``."""
    return _expand(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config")


def credentials_path() -> Path:
    """``$AWS_SHARED_CREDENTIALS_FILE`` (expanded) or ``~/.aws/credentials``."""
    return _expand(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials")


def default_profile_name() -> str:
    """The profile a command uses when none is named, in botocore's order:
    ``AWS_DEFAULT_PROFILE``, then ``AWS_PROFILE``, then ``default``
    (botocore ``configprovider.BOTOCORE_DEFAUT_SESSION_VARIABLES['profile']``)."""
    for variable in ("AWS_DEFAULT_PROFILE", "AWS_PROFILE"):
        if variable in os.environ:  # set but empty still counts, as in botocore
            return os.environ[variable]
    return "default"


class AwsConfig:
    """The parsed file: profiles by name, and warnings about sections that are not."""

    def __init__(
        self,
        path: Path,
        profiles: dict[str, Profile],
        warnings: list[str] | None = None,
        ignored: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        self.profiles = profiles
        self.warnings: list[str] = warnings or []
        #: profile-like names the AWS CLI does not read as profiles -> why
        self.ignored: dict[str, str] = ignored or {}

    def get(self, name: str) -> Profile:
        """The profile ``name``.

        Raises:
            ProfileNotFound: naming a section that looks like it but is not read as a
                profile, or close matches, or the profiles there are.
        """
        try:
            return self.profiles[name]
        except KeyError:
            pass
        if not name:
            raise ProfileNotFound(
                "the profile name is empty",
                "AWS_DEFAULT_PROFILE or AWS_PROFILE is set but empty: unset it or name a profile",
            )
        if name in self.ignored:
            raise ProfileNotFound(f"no profile named {name!r} in {self.path}", self.ignored[name])
        import difflib

        close = difflib.get_close_matches(name, self.profiles, n=3, cutoff=0.5)
        if close:
            hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
        elif self.profiles:
            hint = f"profiles in {self.path}: {', '.join(sorted(self.profiles))}"
        else:
            section = "default" if name == "default" else f"profile {name}"
            hint = f"add a [{section}] section to {self.path}"
        raise ProfileNotFound(f"no profile named {name!r} in {self.path}", hint)

    def default_profile_name(self) -> str:
        """:func:`default_profile_name`: ``AWS_DEFAULT_PROFILE``, ``AWS_PROFILE`` (set but
        empty counts), else ``default``, as botocore chooses; it may not exist here."""
        return default_profile_name()

    def default_region(self) -> str | None:
        """The ``[default]`` profile's region, or None (no such profile or no region)."""
        default = self.profiles.get("default")
        return default.region if default else None


def _parse_nested(value: str) -> dict[str, str] | None:
    """A nested block as botocore's ``_parse_nested`` reads it; None if it cannot."""
    parsed: dict[str, str] = {}
    for line in value.splitlines():
        line = line.strip()
        if not line:
            continue
        key, sep, inner = line.partition("=")
        if not sep:
            return None
        parsed[key.strip()] = inner.strip()
    return parsed


def _sections(text: str, path: Path) -> dict[str, dict[str, Value]]:
    """Every section's values, as ``botocore.configloader.raw_config_parse`` returns them.

    Raises:
        ConfigError: the whole file cannot be read (as for the AWS CLI).
    """
    if text.startswith(UTF8_BOM):
        raise ConfigError(
            f"{path} starts with a UTF-8 byte-order mark (BOM), which the AWS CLI cannot read",
            "save the file as UTF-8 without BOM (in Notepad: 'UTF-8', not 'UTF-8 with BOM')",
        )
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as exc:
        shown = str(exc.line).strip()
        what = (
            "is a section header without its closing ']'" if shown.startswith("[")
            else "comes before any section header"
        )
        raise ConfigError(
            f"{path} is malformed (line {exc.lineno}): {shown!r} {what}, so the AWS CLI "
            "cannot read the file either",
            f"fix line {exc.lineno} of {path}: every setting belongs under a [default] or "
            "[profile NAME] header",
        ) from None
    except configparser.ParsingError as exc:
        number, shown = exc.errors[0] if getattr(exc, "errors", None) else (0, "''")
        shown = shown.removesuffix("'").removesuffix("\\n").removeprefix("'").strip()  # repr
        raise ConfigError(
            f"{path} is malformed (line {number}): {shown!r} is not a 'key = value' "
            "line, so the AWS CLI cannot read the file either",
            f"fix or remove line {number} of {path}",
        ) from None
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        first = str(exc).splitlines()[0].replace(f"{str(path)!r}", "")
        first = first.split("]: ", 1)[-1].strip().rstrip(".")  # "While reading from [line 3]: "
        where = f" (line {line})" if line else ""
        raise ConfigError(
            f"{path} is malformed{where}: {first}, so the AWS CLI cannot read it either",
            f"fix {path}",
        ) from None
    sections: dict[str, dict[str, Value]] = {}
    for section in parser.sections():
        values: dict[str, Value] = {}
        for option in parser.options(section):
            value = parser.get(section, option)
            if value.startswith("\n"):
                nested = _parse_nested(value)
                if nested is None:
                    raise ConfigError(
                        f"{path} [{section}] {option}: a value starting on the next line must "
                        "be a block of 'key = value' lines",
                        f"put the value of {option} on the same line as '{option} ='",
                    )
                values[option] = nested
            else:
                values[option] = value
        sections[section] = values
    return sections


def _profile_sections(
    sections: Mapping[str, dict[str, Value]],
) -> tuple[dict[str, tuple[str, dict[str, Value]]], list[str], dict[str, str]]:
    """``build_profile_map``: profile name -> (section, values); warnings; ignored names."""
    import shlex

    found: dict[str, tuple[str, dict[str, Value]]] = {}
    warnings: list[str] = []
    ignored: dict[str, str] = {}
    for section, values in sections.items():
        if section.startswith("profile"):
            try:
                parts = shlex.split(section)
            except ValueError:
                parts = []
            if len(parts) == 2:
                found[parts[1]] = (section, values)
                continue
            name = section[len("profile"):].strip().strip("\"'").strip()
        elif section == "default":
            found["default"] = (section, values)
            continue
        elif section.strip().lower().startswith("profile"):  # [Profile dev], [ profile dev ]
            name = section.strip()[len("profile"):].strip().strip("\"'").strip()
        elif section.strip().lower() == "default":  # [Default], [ default ]
            name = "default"
        elif not section.startswith(("sso-session", "services", "plugins")) and (
            _PROFILE_KEYS & set(values)
        ):
            name = section.strip()
        else:
            continue
        why = f"[{section}] is not read as a profile by the AWS CLI: " + (
            f"write {_header_for(name)}" if name else "give it a name: [profile NAME]"
        )
        warnings.append(why)
        if name:
            ignored.setdefault(name, why)
    return found, warnings, ignored


def _header_for(name: str) -> str:
    """The section header botocore reads as the profile ``name``."""
    if name == "default":
        return "[default]"
    if any(c.isspace() for c in name) or any(c in name for c in "\"'#;"):
        quote = "'" if '"' in name else '"'
        return f"[profile {quote}{name}{quote}]"
    return f"[profile {name}]"


def _with_includes(
    name: str, found: Mapping[str, tuple[str, dict[str, Value]]]
) -> tuple[dict[str, Value], dict[str, str]]:
    """``name``'s values with ``include_profile`` (or ``parent_profile``) merged in,
    aws-vault's way: a value set in the profile wins; included profiles fill the rest,
    recursively. Returns the values and problems (a loop, a missing profile)."""
    merged: dict[str, Value] = {}
    problems: dict[str, str] = {}
    seen: list[str] = []
    current: str | None = name
    while current is not None:
        if current in seen:
            problems["include_profile"] = (
                f"include_profile loop: {' -> '.join([*seen, current])}; "
                "remove include_profile from one profile in the loop"
            )
            break
        seen.append(current)
        entry = found.get(current)
        if entry is None:
            problems["include_profile"] = (
                f"profile {seen[-2]!r} has include_profile = {current!r}, which does not exist; "
                f"add [profile {current}] or fix include_profile"
            )
            break
        for key, value in entry[1].items():
            merged.setdefault(key, value)
        include = entry[1].get("include_profile") or entry[1].get("parent_profile")
        current = include if isinstance(include, str) and include else None
    return merged, problems


def _public(values: Mapping[str, Value]) -> dict[str, Value]:
    return {k: v for k, v in values.items() if k not in _SECRET_KEYS}


def parse(
    text: str,
    path: Path,
    credentials_text: str | None = None,
    credentials_file: Path | None = None,
) -> AwsConfig:
    """The profiles in config ``text`` (read from ``path``), plus the profiles of a
    credentials file's ``credentials_text`` (read from ``credentials_file``): names and
    non-secret values, and whether a static key is there. No secret is kept.

    Raises:
        ConfigError: either file cannot be parsed at all (a BOM, a duplicate section or
            option, a broken nested block): the AWS CLI cannot read it either.
    """
    found, warnings, ignored = _profile_sections(_sections(text, path))
    profiles: dict[str, Profile] = {}
    for name, (section, values) in found.items():
        merged, problems = _with_includes(name, found)
        profiles[name] = Profile(
            name, _public(merged), section=section, path=path, problems=problems,
            static_keys=any(k in values for k in _STATIC_KEYS),
        )
    if credentials_text:
        where = credentials_file or path.with_name("credentials")
        for name, values in _sections(credentials_text, where).items():
            static = any(k in values for k in _STATIC_KEYS)
            if name in profiles:
                profiles[name].values.update(_public(values))
                profiles[name].static_keys = profiles[name].static_keys or static
            else:
                profiles[name] = Profile(
                    name, _public(values), section=name, path=where, static_keys=static
                )
            ignored.pop(name, None)
    for name in profiles:
        ignored.pop(name, None)
    return AwsConfig(path, profiles, warnings, ignored)


def _read(path: Path) -> str | None:
    """The file's text with universal newlines (as ``open()`` reads it); None if absent."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})", "check the file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 (byte {exc.start})", "save the file as UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load(path: Path | None = None) -> AwsConfig:
    """The AWS config at ``path`` (default :func:`config_path`) with the credentials file's
    profiles (:func:`credentials_path`) merged as botocore's ``Session.full_config`` does.

    Raises:
        ConfigError: the config file cannot be read or parsed.
    """
    path = path or config_path()
    credentials_file = credentials_path()
    return parse(_read(path) or "", path, _read(credentials_file), credentials_file)


class Chain:
    """How a profile's credentials are made.

    ``key_profile`` holds the long-lived key; ``hops`` are the role profiles
    assumed in order (the last is the target); ``mfa_serial`` is the device used
    for the MFA session (the nearest one walking from the target down).
    """

    def __init__(
        self,
        target: Profile,
        key_profile: Profile,
        hops: tuple[Profile, ...],
        mfa_serial: str | None,
    ) -> None:
        self.target = target
        self.key_profile = key_profile
        self.hops = hops
        self.mfa_serial = mfa_serial

    @property
    def names(self) -> list[str]:
        """The chain's profile names from the key profile up to the target, each once (a
        hop that is the key profile itself, a role assumed with its own key, is not
        repeated)."""
        return [self.key_profile.name] + [h.name for h in self.hops if h is not self.key_profile]


def _refuse(profile: Profile, *, role: bool, target: bool) -> None:
    """Refuse values broker cannot use and keys that change how botocore makes this
    profile's credentials (``role``: the profile is a role hop; ``target``: the profile
    the command runs for)."""
    profile.unusable(target=target)
    refused = profile.refused_keys(role=role)
    if not refused:
        return
    key = refused[0]
    if key == "credential_source":
        hint = "use source_profile pointing at a profile whose key broker holds"
    elif key == "web_identity_token_file":
        hint = "web identity (OIDC) credentials do not need broker: use that profile directly"
    else:
        hint = "IAM Identity Center (SSO) profiles do not need broker: use `aws sso login`"
    raise ConfigError(
        f"{profile.where} uses {key}, so the AWS CLI would not use a stored key for it and "
        "broker does not serve it",
        hint,
    )


def resolve_chain(config: AwsConfig, name: str) -> Chain:
    """The chain that makes ``name``'s credentials: walk ``source_profile`` from the
    target to the profile holding the long-lived key.

    Raises:
        ProfileNotFound: the profile ``name`` does not exist.
        ConfigError: a source_profile names no profile (naming the file, the section
            and close matches; botocore's InvalidConfigError), a loop, a refused key
            (credential_source, web_identity_token_file, sso_*), an include_profile
            problem, or broker asked to call itself.
    """
    target = config.get(name)
    hops: list[Profile] = []
    seen = [target.name]
    current = target
    while current.role_arn:
        hops.insert(0, current)
        _refuse(current, role=True, target=current is target)
        source = current.source_profile
        if not source or source == current.name:
            break  # the role's own key, stored under this profile (aws-vault style)
        if source in seen:
            loop = " -> ".join([*seen, source])
            raise ConfigError(
                f"source_profile loop in {config.path}: {loop}",
                "make one profile in the loop hold the key (no source_profile)",
            )
        seen.append(source)
        try:
            current = config.get(source)
        except ProfileNotFound as exc:
            # a configuration error, as botocore's InvalidConfigError ('The source_profile
            # "X" referenced in the profile "Y" does not exist'): the profile named exists
            raise ConfigError(
                f"{current.where} has source_profile = {source!r}, which does not exist",
                exc.hint,
            ) from None
        if current.static_keys:
            break  # botocore takes a source profile's static key over its own role_arn
    key_profile = current
    if key_profile not in hops:
        _refuse(key_profile, role=False, target=key_profile is target)
    process = key_profile.credential_process or ""
    if process and not key_profile.role_arn and os.path.basename(process.split()[0]) == "broker":
        raise ConfigError(
            f"profile {key_profile.name!r} gets its credentials from broker itself "
            "(credential_process)",
            f"use another profile for broker, e.g. [profile {key_profile.name}-broker] "
            "holding the key, and point credential_process at that",
        )
    mfa_serial = next(
        (p.mfa_serial for p in [target, *reversed(hops), key_profile] if p.mfa_serial), None
    )
    return Chain(target=target, key_profile=key_profile, hops=tuple(hops), mfa_serial=mfa_serial)
