"""Managing stored keys: add, remove, list."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from broker.aws.credentials import utcnow
from broker.aws.profiles import resolve_chain
from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, Capability, Item
from broker.errors import BrokerError, ConfigError, ProfileNotFound, UsageError
from broker.services.context import Context
from broker.services.mfa import code_source

_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")


def validate_key(access_key_id: str, secret_access_key: str) -> tuple[str, str]:
    key_id, secret = access_key_id.strip(), secret_access_key.strip()
    if not _KEY_ID.match(key_id):
        raise UsageError(
            "that access key id does not look like one (AKIA... letters and digits)",
            "copy it again from the IAM console or the key's CSV",
        )
    if key_id.startswith("ASIA"):
        raise UsageError(
            "that is a temporary (ASIA...) key, which needs a session token",
            "add the IAM user's long-lived AKIA... key instead",
        )
    if not secret or any(c.isspace() for c in secret):
        raise UsageError(
            "the secret access key is empty or contains spaces", "paste it again, on its own"
        )
    return key_id, secret


def profiles_using_key(ctx: Context, key_profile: str) -> list[str]:
    """Every profile in ~/.aws/config whose credentials are made from ``key_profile``'s
    key (its own, and each role whose chain starts from it), ``key_profile`` included."""
    names = {key_profile}
    for name in ctx.aws.profiles:
        try:
            if resolve_chain(ctx.aws, name).key_profile.name == key_profile:
                names.add(name)
        except BrokerError:
            continue
    return sorted(names)


def revoke_sessions(ctx: Context, key_profile: str) -> int:
    """End every cached session made from ``key_profile``'s key, derived role sessions
    included; how many were ended."""
    return ctx.sessions.revoke(key_profile, profiles_using_key(ctx, key_profile))


@dataclass
class AddResult:
    profile: str
    backend: str
    replaced: bool
    sessions_cleared: int


def add(
    ctx: Context,
    profile: str,
    access_key_id: str,
    secret_access_key: str,
    *,
    backend: str | None = None,
    replace: bool = False,
) -> AddResult:
    key_id, secret = validate_key(access_key_id, secret_access_key)
    known = ctx.aws.profiles.get(profile)
    if known is not None:
        chain = resolve_chain(ctx.aws, profile)
        if chain.key_profile.name != profile:
            raise ConfigError(
                f"profile {profile!r} gets its key from source_profile "
                f"{chain.key_profile.name!r}",
                f"add the key to that profile instead: `broker add {chain.key_profile.name}`",
            )
    store = ctx.credential_backend(known, backend)
    existing = store.get(profile)
    if existing is not None and not replace:
        raise UsageError(
            f"profile {profile!r} already has a key in backend {store.name!r}",
            "pass --replace to overwrite it, or `broker remove` it first",
        )
    fields = dict(existing or {})
    fields.update({ACCESS_KEY_ID: key_id, SECRET_ACCESS_KEY: secret})
    if known is not None and known.mfa_serial:
        fields[MFA_SERIAL] = known.mfa_serial
    store.set(profile, Item(fields))
    # sessions made from the replaced key, the roles built on it included, end with it
    cleared = revoke_sessions(ctx, profile) if existing is not None else 0
    return AddResult(profile, store.name, existing is not None, cleared)


def remove(ctx: Context, profile: str, *, backend: str | None = None) -> tuple[str, int]:
    """Delete ``profile``'s stored key and end every cached session made from it (the
    roles built on it included) and the profile's own; (backend, sessions ended)."""
    store = ctx.credential_backend(ctx.aws.profiles.get(profile), backend)
    if not store.delete(profile):
        raise BrokerError(
            f"no key stored for {profile!r} in backend {store.name!r}",
            "see `broker list` for where keys are",
        )
    return store.name, revoke_sessions(ctx, profile) + ctx.sessions.clear(profile)


@dataclass
class SessionInfo:
    kind: str
    seconds_left: int
    role_arn: str = ""


@dataclass
class ProfileInfo:
    name: str
    chain: list[str]
    key_profile: str
    backend: str
    stored: bool | None  # None: could not tell
    mfa_serial: str | None
    role_arn: str | None
    sessions: list[SessionInfo] = field(default_factory=list)
    error: str = ""
    #: Where MFA codes come from: mfa_process, stored totp, broker_totp, prompt ("": no MFA).
    mfa_source: str = ""
    #: Values in the profile's chain broker cannot use (they fail it when used).
    problems: list[str] = field(default_factory=list)


def list_profiles(ctx: Context, *, backend: str | None = None) -> list[ProfileInfo]:
    """Every profile in ~/.aws/config and every stored key, with chains and sessions."""
    stored_by_backend: dict[str, set[str] | None] = {}

    def stored_names(name: str) -> set[str] | None:
        if name not in stored_by_backend:
            store = ctx.backend(name)
            if Capability.LIST in store.capabilities:
                try:
                    stored_by_backend[name] = set(store.list())
                except BrokerError:
                    stored_by_backend[name] = None
            else:
                stored_by_backend[name] = None
        return stored_by_backend[name]

    sessions: dict[str, list[SessionInfo]] = {}
    now = utcnow()
    for entry in ctx.sessions.entries():
        creds = entry.credentials
        left = int(creds.seconds_left(now))
        if left > 0:
            sessions.setdefault(entry.profile, []).append(
                SessionInfo(entry.kind, left, entry.item.get("role_arn", ""))
            )

    infos: list[ProfileInfo] = []
    for name in sorted(ctx.aws.profiles):
        profile = ctx.aws.profiles[name]
        try:
            chain = resolve_chain(ctx.aws, name)
            backend_name = ctx.credential_backend_name(chain.key_profile, backend)
            names = stored_names(backend_name)
            stored = None if names is None else chain.key_profile.name in names
            problems = [
                problem
                for level in (chain.key_profile, *chain.hops)
                for problem in level.problems
            ]
            info = ProfileInfo(
                name, chain.names, chain.key_profile.name, backend_name, stored,
                chain.mfa_serial, profile.role_arn, sessions.get(name, []),
                mfa_source=code_source(chain, backend_name), problems=problems,
            )
        except (ConfigError, ProfileNotFound, BrokerError) as exc:
            info = ProfileInfo(name, [name], name, "", None, None, None, error=exc.message)
        infos.append(info)
    # keys stored for names that have no section in ~/.aws/config
    default_backend = ctx.credential_backend_name(None, backend)
    for orphan in sorted((stored_names(default_backend) or set()) - set(ctx.aws.profiles)):
        infos.append(
            ProfileInfo(orphan, [orphan], orphan, default_backend, True, None, None,
                        sessions.get(orphan, []))
        )
    return infos
