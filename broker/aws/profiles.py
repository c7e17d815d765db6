"""Profiles from ``~/.aws/config`` with the AWS CLI's semantics, and role chains.

Pure standard library: this runs on the cached fast path.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path

from broker.errors import ConfigError, ProfileNotFound

_SKIPPED_SECTION_PREFIXES = ("sso-session ", "services ", "plugins")


class Profile:
    """One ``[profile NAME]`` section; unknown keys stay in ``extra``.

    A plain class, not a dataclass: this module is on the cached fast path and
    importing dataclasses costs ~10 ms there.
    """

    def __init__(
        self,
        name: str,
        *,
        region: str | None = None,
        mfa_serial: str | None = None,
        role_arn: str | None = None,
        source_profile: str | None = None,
        credential_source: str | None = None,
        role_session_name: str | None = None,
        external_id: str | None = None,
        duration_seconds: int | None = None,
        mfa_process: str | None = None,
        credential_process: str | None = None,
        broker_backend: str | None = None,
        broker_totp: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.region = region
        self.mfa_serial = mfa_serial
        self.role_arn = role_arn
        self.source_profile = source_profile
        self.credential_source = credential_source
        self.role_session_name = role_session_name
        self.external_id = external_id
        self.duration_seconds = duration_seconds
        self.mfa_process = mfa_process
        self.credential_process = credential_process
        self.broker_backend = broker_backend
        self.broker_totp = broker_totp
        self.extra: Mapping[str, str] = extra or {}

    def __repr__(self) -> str:
        return f"Profile({self.name!r}, role_arn={self.role_arn!r})"


def config_path() -> Path:
    """``$AWS_CONFIG_FILE`` or ``~/.aws/config``."""
    return Path(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config").expanduser()


class AwsConfig:
    """The parsed file: profiles by name."""

    def __init__(self, path: Path, profiles: dict[str, Profile]) -> None:
        self.path = path
        self.profiles = profiles

    def get(self, name: str) -> Profile:
        """The profile ``name``; an unknown name is an error naming close matches."""
        try:
            return self.profiles[name]
        except KeyError:
            pass
        import difflib

        close = difflib.get_close_matches(name, self.profiles, n=3, cutoff=0.5)
        if close:
            hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
        elif self.profiles:
            hint = f"profiles in {self.path}: {', '.join(sorted(self.profiles))}"
        else:
            hint = f"add a [profile {name}] section to {self.path}"
        raise ProfileNotFound(f"no profile named {name!r} in {self.path}", hint)

    def default_profile_name(self) -> str:
        return os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"

    def default_region(self) -> str | None:
        default = self.profiles.get("default")
        return default.region if default else None


_KNOWN = {
    "region", "mfa_serial", "role_arn", "source_profile", "credential_source",
    "role_session_name", "external_id", "duration_seconds", "mfa_process",
    "credential_process", "broker_backend", "broker_totp",
}


def _profile_from(name: str, values: Mapping[str, str], path: Path) -> Profile:
    known = {k: (v.strip() or None) for k, v in values.items() if k in _KNOWN}
    duration = known.pop("duration_seconds", None)
    seconds: int | None = None
    if duration is not None:
        if not (duration.isascii() and duration.isdigit()):
            raise ConfigError(
                f"{path}: [profile {name}] duration_seconds = {duration!r} is not a number",
                "give seconds, e.g. duration_seconds = 3600",
            )
        seconds = int(duration)
    extra = {k: v for k, v in values.items() if k not in _KNOWN}
    return Profile(name=name, duration_seconds=seconds, extra=extra, **known)


def parse(text: str, path: Path) -> AwsConfig:
    parser = configparser.RawConfigParser(strict=True, default_section="\x00none")
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path} is malformed: {first}", f"fix {path}") from None
    profiles: dict[str, Profile] = {}
    explicit: set[str] = set()
    for section in parser.sections():
        if section.startswith(_SKIPPED_SECTION_PREFIXES):
            continue
        if section.startswith("profile "):
            name = section[len("profile ") :].strip()
            explicit.add(name)
        else:
            name = section.strip()
            if name in explicit:
                continue  # [profile X] wins over a bare [X], as in the AWS CLI
        if not name:
            raise ConfigError(f"{path}: a section has an empty profile name", f"fix {path}")
        profiles[name] = _profile_from(name, dict(parser.items(section)), path)
    return AwsConfig(path, profiles)


def load(path: Path | None = None) -> AwsConfig:
    path = path or config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return AwsConfig(path, {})
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})", "check the file") from None
    return parse(text, path)


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
        return [self.key_profile.name] + [h.name for h in self.hops if h is not self.key_profile]


def resolve_chain(config: AwsConfig, name: str) -> Chain:
    target = config.get(name)
    hops: list[Profile] = []
    seen = [target.name]
    current = target
    while current.role_arn:
        hops.insert(0, current)
        if current.credential_source:
            raise ConfigError(
                f"profile {current.name!r} uses credential_source, which broker does not serve",
                "use source_profile pointing at a profile whose key broker holds",
            )
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
            raise ProfileNotFound(
                f"profile {current.name!r} has source_profile = {source!r}, which does not exist",
                exc.hint,
            ) from None
    key_profile = current
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
