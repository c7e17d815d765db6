"""Managing stored keys: add and remove (`broker list` is broker.services.listing)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from broker.aws.profiles import resolve_chain
from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, Item
from broker.errors import (
    BrokerError,
    ConfigError,
    CredentialsNotFound,
    UsageError,
)
from broker.services.backends import key_destination, memory_only
from broker.services.context import Context

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
    #: The backend keeps keys in memory only: the key is lost at reboot.
    memory_only: bool = False
    #: ~/.aws/config, when a section for the profile was added to it (`exec` needs one).
    config_written: Path | None = None
    #: ~/.aws/config, when ``broker_backend`` was written into the profile's section so that
    #: `exec`, `list` and `doctor` look for the key where --backend put it.
    backend_pinned: Path | None = None


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
    name = key_destination(
        ctx, known, backend, knowingly=lambda b: f"`broker add {profile} --backend {b}`"
    )
    store = ctx.backend(name)
    existing = store.get(profile)
    if existing is not None and not replace:
        raise UsageError(
            f"profile {profile!r} already has a key in backend {store.name!r}",
            "pass --replace to overwrite it, or `broker remove` it first",
        )
    # `exec` reads profiles from ~/.aws/config: a key stored under a name with no section
    # there would be listed as stored, yet unusable. The section comes first: a failure
    # afterwards leaves only an empty section behind.
    written = ensure_profile(ctx, profile) if known is None else None
    fields = dict(existing or {})
    fields.update({ACCESS_KEY_ID: key_id, SECRET_ACCESS_KEY: secret})
    if known is not None and known.mfa_serial:
        fields[MFA_SERIAL] = known.mfa_serial
    store.set(profile, Item(fields))
    pinned = pin_backend(ctx, profile, store.name)
    # sessions made from the replaced key, the roles built on it included, end with it
    cleared = revoke_sessions(ctx, profile) if existing is not None else 0
    return AddResult(
        profile, store.name, existing is not None, cleared, memory_only(ctx, store.name), written,
        pinned,
    )


def pin_backend(ctx: Context, profile: str, backend: str) -> Path | None:
    """Make ``profile`` name ``backend`` (``broker_backend``) in ~/.aws/config when it would
    otherwise look for its key elsewhere, so a key stored with --backend (or moved there)
    is found by `exec`, `list` and `doctor`, not reported missing; the file's path if it
    was changed."""
    from broker.aws.config_writer import write_profile_value

    known = ctx.aws.profiles.get(profile)
    if ctx.credential_backend_name(known) == backend:
        return None
    path = ctx.aws.path
    if not write_profile_value(path, profile, "broker_backend", backend):
        return None
    ctx.__dict__.pop("aws", None)  # the cached parse is stale now
    return path


def ensure_profile(ctx: Context, profile: str) -> Path | None:
    """Add an empty section for ``profile`` to ~/.aws/config unless it has one; the file's
    path if it was changed."""
    from broker.aws.config_writer import ensure_profile_section

    path = ctx.aws.path
    if not ensure_profile_section(path, profile):
        return None
    ctx.__dict__.pop("aws", None)  # the cached parse is stale now
    return path


def remove(ctx: Context, profile: str, *, backend: str | None = None) -> tuple[str, int]:
    """Delete ``profile``'s stored key and end every cached session made from it (the
    roles built on it included) and the profile's own; (backend, sessions ended)."""
    store = ctx.credential_backend(ctx.aws.profiles.get(profile), backend)
    if not store.delete(profile):
        raise CredentialsNotFound(
            f"no key stored for {profile!r} in backend {store.name!r}",
            "see `broker list` for where keys are",
        )
    from broker.aws.mfa_ledger import MfaLedger  # no key, so no seed kept with it

    MfaLedger().mark_seed(store.name, profile, False)
    return store.name, revoke_sessions(ctx, profile) + ctx.sessions.clear(profile)
