"""Bringing keys kept elsewhere into broker: aws-vault's stores and ~/.aws/credentials.

The flow is the one :mod:`broker.services.migrate` follows: read everything
first; stop before writing anything if a profile already has a *different*
key in broker (unless ``overwrite``); write each key, read it back and
compare; only then, and only when asked, remove it from where it came from.
``mfa_serial`` comes from the profile in ``~/.aws/config``; the region is
reported, not stored (broker reads it from the profile at run time).

Every key imported leaves a profile `broker exec` can use: a name with no section in
``~/.aws/config`` gets an empty one, and a section of ``~/.aws/credentials`` removed with
``--remove-plaintext`` first has its other settings (``region``, ``output``...) moved to
``~/.aws/config``. A backend nobody chose that keeps keys in memory only is refused, and
removing a persistent copy so that the only one left is in memory needs ``memory_only_ok``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from broker import paths
from broker.aws.profiles import Profile, resolve_chain
from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, Backend, Item
from broker.errors import AuthenticationError, BrokerError, UsageError
from broker.importers import aws_vault, credentials_file
from broker.services.backends import LOST_AT_REBOOT, key_destination, memory_only
from broker.services.context import Context
from broker.services.keys import ensure_profile, validate_key
from broker.services.migrate import Conflict, MigrationConflict, open_backend, write_verified

IMPORTED = "imported"
OVERWRITTEN = "overwritten"
ALREADY_THERE = "already there"
SKIPPED = "skipped"
WOULD_IMPORT = "would import"
WOULD_OVERWRITE = "would overwrite"

_KEY_FIELDS = (ACCESS_KEY_ID, SECRET_ACCESS_KEY)


@dataclass
class ImportOutcome:
    """What happened to one profile's key."""

    profile: str
    action: str
    backend: str = ""
    region: str = ""
    source_removed: bool = False
    note: str = ""


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do): ``source`` describes where the
    keys came from (aws-vault's backend and its location, or the credentials file), one
    :class:`ImportOutcome` per profile in ``outcomes``, and ``notes`` for the reader (what
    was left behind, what to do next).
    """
    source: str
    dry_run: bool
    outcomes: list[ImportOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    profile: str
    item: Item | None = None
    note: str = ""  # why it is skipped, when item is None
    #: Removes it from the source: True; False: changed meanwhile, left there; a str: why
    #: it was left there.
    remove: Callable[[], bool | str] | None = None


def _profile_facts(
    ctx: Context, name: str, dry_run: bool = False
) -> tuple[Profile | None, str, str]:
    """(the profile, its region, a note) for a key imported under ``name``."""
    profile = ctx.aws.profiles.get(name)
    if profile is None:
        section = "default" if name == "default" else f"profile {name}"
        return None, "", f"no [{section}] in {ctx.aws.path}: {'to be ' if dry_run else ''}added"
    region = profile.region or ctx.aws.default_region() or ""
    try:
        key_profile = resolve_chain(ctx.aws, name).key_profile.name
    except BrokerError:
        return profile, region, ""
    if key_profile != name:
        return profile, region, f"unused: broker takes this profile's key from {key_profile!r}"
    return profile, region, ""


def _key_item(ctx: Context, name: str, key_id: str, secret: str) -> Item:
    fields = {ACCESS_KEY_ID: key_id, SECRET_ACCESS_KEY: secret}
    profile = ctx.aws.profiles.get(name)
    if profile is not None and profile.mfa_serial:
        fields[MFA_SERIAL] = profile.mfa_serial
    return Item(fields)


def _candidate(ctx: Context, name: str, key_id: str, secret: str, token: bool) -> _Candidate:
    if token:
        return _Candidate(name, note="temporary credentials (a session token): not a stored key")
    try:
        key_id, secret = validate_key(key_id, secret)
    except UsageError as exc:
        return _Candidate(name, note=exc.message)
    return _Candidate(name, _key_item(ctx, name, key_id, secret))


def _target(
    ctx: Context, profile: Profile | None, to: str | None, *, remove_source: bool,
    source_persistent: bool, memory_only_ok: bool, removal_flag: str,
) -> str:
    """The backend an imported key goes to; refuses a memory-only one nobody chose, and
    removing a persistent source into one unasked."""
    name = key_destination(ctx, profile, to, knowingly=lambda b: f"run it again with --to {b}")
    if (
        remove_source and source_persistent and not memory_only_ok and memory_only(ctx, name)
    ):
        raise UsageError(
            f"{removal_flag} would leave the keys only in {name}, which keeps keys in "
            f"{LOST_AT_REBOOT}",
            f"import without {removal_flag} so that the source keeps its copy, import --to a "
            "persistent backend, or add --memory-only to do it anyway",
        )
    return name


def _import(
    ctx: Context,
    report: ImportReport,
    candidates: list[_Candidate],
    *,
    to: str | None,
    overwrite: bool,
    remove_source: bool,
    source_persistent: bool = True,
    memory_only_ok: bool = False,
    removal_flag: str = "--delete-source",
) -> None:
    """Plan, check for conflicts, then write, verify and (if asked) remove each key."""
    backends: dict[str, Backend] = {}
    targets: dict[str | None, str] = {}  # a profile's broker_backend -> the backend chosen
    planned: list[tuple[_Candidate, ImportOutcome, Backend | None, Item | None]] = []
    conflicts: list[Conflict] = []
    conflict_backends: set[str] = set()
    for candidate in candidates:
        profile, region, note = _profile_facts(ctx, candidate.profile, report.dry_run)
        if candidate.item is None:
            outcome = ImportOutcome(candidate.profile, SKIPPED, region=region, note=candidate.note)
            planned.append((candidate, outcome, None, None))
            continue
        pinned = profile.broker_backend if profile is not None else None
        if pinned not in targets:
            targets[pinned] = _target(
                ctx, profile, to, remove_source=remove_source and not report.dry_run,
                source_persistent=source_persistent, memory_only_ok=memory_only_ok,
                removal_flag=removal_flag,
            )
        name = targets[pinned]
        if name not in backends:
            backends[name] = open_backend(ctx, name, "target")
            if memory_only(ctx, name):
                report.notes.append(f"{name} keeps the keys in {LOST_AT_REBOOT}")
        backend = backends[name]
        existing = backend.get(candidate.profile)
        item = candidate.item
        write: Item | None = item
        differing = [f for f in _KEY_FIELDS if existing is not None and existing.get(f) != item[f]]
        if existing is None:
            action = IMPORTED
        elif differing:
            conflicts.append(Conflict(candidate.profile, differing))
            conflict_backends.add(name)
            # keep what broker knows beyond the key (a TOTP seed, notes)
            write = Item({**existing, **item})
            action = OVERWRITTEN
            note = "; ".join(filter(None, [f"replaced: {', '.join(differing)}", note]))
        else:
            action, write = ALREADY_THERE, None
        outcome = ImportOutcome(candidate.profile, action, name, region, note=note)
        planned.append((candidate, outcome, backend, write))
    if conflicts and not overwrite:
        raise MigrationConflict(", ".join(sorted(conflict_backends)), conflicts)
    for candidate, outcome, target, write in planned:
        if report.dry_run:
            outcome.action = {IMPORTED: WOULD_IMPORT, OVERWRITTEN: WOULD_OVERWRITE}.get(
                outcome.action, outcome.action
            )
            report.outcomes.append(outcome)
            continue
        if target is not None and ctx.aws.profiles.get(candidate.profile) is None:
            ensure_profile(ctx, candidate.profile)  # `exec` needs a section to find it
        if target is not None and write is not None:
            write_verified(target, candidate.profile, write, keep_source=report.source)
            if outcome.action == OVERWRITTEN:  # as `broker add --replace` does
                from broker.services.keys import revoke_sessions

                revoke_sessions(ctx, candidate.profile)
        if remove_source and target is not None and candidate.remove is not None:
            removed = candidate.remove()
            outcome.source_removed = removed is True
            if removed is not True:
                kept = removed or "changed meanwhile: kept"
                outcome.note = "; ".join(filter(None, [outcome.note, kept]))
        report.outcomes.append(outcome)


# -- aws-vault -----------------------------------------------------------------


@dataclass
class VaultLocations:
    """Where aws-vault's stores are; None means aws-vault's own default."""

    pass_dir: str | None = None
    pass_prefix: str | None = None
    file_dir: str | None = None
    keyctl_keyring: str | None = None
    keyctl_scope: str | None = None


def _vault_store(
    kind: str, where: VaultLocations, passphrase: Callable[[], str]
) -> aws_vault.VaultStore:
    if kind == "pass":
        return aws_vault.PassStore(
            aws_vault.pass_store_dir(where.pass_dir), aws_vault.pass_prefix(where.pass_prefix),
            os.environ.get("AWS_VAULT_PASS_CMD") or "pass",
        )
    if kind == "file":
        return aws_vault.FileStore(aws_vault.file_dir(where.file_dir), passphrase)
    if kind == "keyctl":
        scope = aws_vault.keyctl_scope(where.keyctl_scope)
        return aws_vault.KeyctlStore(where.keyctl_keyring or aws_vault.KEYRING_NAME, scope)
    raise UsageError(
        f"unknown aws-vault backend {kind!r}", f"use one of: {', '.join(aws_vault.KINDS)}"
    )


def _considered(
    ctx: Context, store: aws_vault.VaultStore, names: list[str], wanted: list[str]
) -> tuple[list[str], dict[str, int]]:
    """The credential names to import, and counts of what was left out and why."""
    left_out: dict[str, int] = {}
    chosen = []
    for name in names:
        reason = aws_vault.skip_reason(name)
        if reason is None and wanted and name not in wanted:
            reason = "not asked for"
        # aws-vault's pass items share the top of the store with everything else
        # there: only entries named after a profile are taken to be aws-vault's.
        if (
            reason is None and not wanted and isinstance(store, aws_vault.PassStore)
            and not store.prefix and name not in ctx.aws.profiles
        ):
            reason = "other"
        if reason is None:
            chosen.append(name)
        else:
            left_out[reason] = left_out.get(reason, 0) + 1
    return chosen, left_out


def detect_vault_backends(ctx: Context, where: VaultLocations) -> list[str]:
    """aws-vault backends that hold at least one credential here (nothing is decrypted)."""
    found = []
    for kind in aws_vault.KINDS:
        try:
            store = _vault_store(kind, where, lambda: "")
            names, _ = _considered(ctx, store, store.names(), [])
        except BrokerError:
            continue
        if names:
            found.append(kind)
    return found


def _choose_kind(ctx: Context, kind: str | None, where: VaultLocations) -> str:
    if kind:
        return kind
    from_env = os.environ.get("AWS_VAULT_BACKEND", "")
    if from_env in aws_vault.KINDS:
        return from_env
    found = detect_vault_backends(ctx, where)
    if len(found) == 1:
        return found[0]
    if not found:
        raise UsageError(
            "found no aws-vault credentials in its pass, file or keyctl backends",
            "name the backend and its location: --backend pass --pass-dir DIR --pass-prefix P",
        )
    raise UsageError(
        f"aws-vault credentials are in several backends here: {', '.join(found)}",
        "choose one with --backend",
    )


def _file_passphrase() -> str:
    value = os.environ.get("AWS_VAULT_FILE_PASSPHRASE")
    if value is not None:
        return value
    from broker import tty

    if not tty.has_tty():
        raise AuthenticationError(
            "aws-vault's file store needs its passphrase and there is no terminal to ask on",
            "export AWS_VAULT_FILE_PASSPHRASE, or run from a terminal",
        )
    return tty.prompt_secret("Passphrase of aws-vault's file store: ")


def import_aws_vault(
    ctx: Context,
    *,
    kind: str | None = None,
    where: VaultLocations | None = None,
    passphrase: Callable[[], str] | None = None,
    to: str | None = None,
    profiles: Iterable[str] = (),
    dry_run: bool = False,
    overwrite: bool = False,
    delete_source: bool = False,
    memory_only_ok: bool = False,
) -> ImportReport:
    """Import the long-lived keys aws-vault keeps; its sessions and SSO tokens are skipped."""
    where = where or VaultLocations()
    chosen_kind = _choose_kind(ctx, kind, where)
    store = _vault_store(chosen_kind, where, passphrase or _file_passphrase)
    report = ImportReport(f"aws-vault's {chosen_kind} backend ({store.location()})", dry_run)
    wanted = list(dict.fromkeys(p for p in profiles if p))
    with paths.file_lock("migrate"):
        names, left_out = _considered(ctx, store, store.names(), wanted)
        candidates = []
        for name in names:
            try:
                key = store.read(name)
            except aws_vault.NotAVaultItem as exc:
                candidates.append(_Candidate(name, note=exc.message))
                continue
            candidate = _candidate(
                ctx, name, key.access_key_id, key.secret_access_key, bool(key.session_token)
            )
            candidate.remove = _vault_remover(store, name)
            candidates.append(candidate)
        for missing in [p for p in wanted if p not in names]:
            candidates.append(_Candidate(missing, note="not in aws-vault's store"))
        _import(
            ctx, report, candidates, to=to, overwrite=overwrite, remove_source=delete_source,
            source_persistent=chosen_kind != "keyctl", memory_only_ok=memory_only_ok,
        )
    if left_out.get("session") or left_out.get("oidc"):
        report.notes.append(
            f"left out {left_out.get('session', 0)} cached session(s) and "
            f"{left_out.get('oidc', 0)} SSO token(s): aws-vault's temporary credentials"
        )
    if left_out.get("other"):
        report.notes.append(
            f"left out {left_out['other']} other entr{'ies' if left_out['other'] != 1 else 'y'} "
            f"at the top of the store (not named after a profile in {ctx.aws.path}); "
            "name them with --profile to import them"
        )
    return report


def _vault_remover(store: aws_vault.VaultStore, name: str) -> Callable[[], bool | str]:
    def remove() -> bool | str:
        store.delete(name)
        return True

    return remove


# -- ~/.aws/credentials ------------------------------------------------------------


def import_credentials_file(
    ctx: Context,
    *,
    profiles: Iterable[str] = (),
    remove_plaintext: bool = False,
    to: str | None = None,
    dry_run: bool = False,
    overwrite: bool = False,
    memory_only_ok: bool = False,
) -> ImportReport:
    """Import the plaintext keys of ``~/.aws/credentials`` (or $AWS_SHARED_CREDENTIALS_FILE).

    A section removed with ``remove_plaintext`` first has its other settings moved to
    ``~/.aws/config``, where botocore then reads them as it read them before.
    """
    path = credentials_file.credentials_path()
    if not path.exists():
        raise UsageError(f"{path} does not exist", "nothing to import")
    report = ImportReport(str(path), dry_run)
    wanted = list(dict.fromkeys(p for p in profiles if p))
    with paths.file_lock("migrate"):
        sections = {s.name: s for s in credentials_file.load(path)}
        candidates = []
        for name in wanted or list(sections):
            section = sections.get(name)
            if section is None:
                candidates.append(_Candidate(name, note=f"no [{name}] section in {path}"))
                continue
            if section.has_session_token:
                candidates.append(
                    _Candidate(name, note="holds a session token (temporary credentials)")
                )
                continue
            if not section.access_key_id or not section.secret_access_key:
                candidates.append(_Candidate(name, note="no aws_access_key_id/secret_access_key"))
                continue
            candidate = _candidate(
                ctx, name, section.access_key_id, section.secret_access_key, False
            )
            key_id = section.access_key_id
            candidate.remove = (
                lambda name=name, key_id=key_id: _move_then_remove(ctx, path, name, key_id)
            )
            candidates.append(candidate)
        _import(
            ctx, report, candidates, to=to, overwrite=overwrite, remove_source=remove_plaintext,
            memory_only_ok=memory_only_ok, removal_flag="--remove-plaintext",
        )
    if not dry_run and not remove_plaintext and any(
        o.action in (IMPORTED, OVERWRITTEN, ALREADY_THERE) for o in report.outcomes
    ):
        report.notes.append(
            f"the plaintext keys are still in {path}: once `broker exec` works for these "
            "profiles, run again with --remove-plaintext"
        )
    return report


def _move_then_remove(ctx: Context, path: Path, name: str, key_id: str) -> bool | str:
    """Move the non-secret settings of section ``name`` (``region``, ``output``...) to
    ``~/.aws/config``, then remove the section if it still holds ``key_id``. botocore lays
    the credentials file over the config file, so a value moved replaces the config's.
    A section whose settings cannot be moved (a nested block) is left as it is."""
    from broker.aws.config_writer import ensure_profile_section, write_profile_value

    section = {s.name: s for s in credentials_file.load(path)}.get(name)
    if section is None or section.access_key_id != key_id:
        return False
    nested = sorted(k for k, v in section.settings.items() if "\n" in v)
    if nested:
        return (f"kept: move {', '.join(nested)} to {ctx.aws.path} by hand, then run "
                "again with --remove-plaintext")
    config = ctx.aws.path
    ensure_profile_section(config, name)
    for key, value in section.settings.items():
        write_profile_value(config, name, key, value)
    ctx.__dict__.pop("aws", None)  # the cached parse is stale now
    return credentials_file.remove_section(path, name, key_id)
