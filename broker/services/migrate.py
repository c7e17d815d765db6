"""Moving credential items between backends: copy, verify, and only then delete.

For each item the order is fixed: read it from the source, write it to the
target, read it back from the target and compare every field, and only then
(with ``delete_source``) delete it from the source. A crash at any point,
``kill -9`` included, therefore leaves every item in the source, in the
target, or in both, never in neither; running the same command again finishes
the job, because an item already in the target with the same fields counts as
done: with ``delete_source`` such a run deletes a source copy still there and, as for
an item it moves itself, makes the profile name the target (below).

Before writing anything the whole run is planned: an item already in the
target with *different* fields stops the run there, naming the fields (never
their values), unless ``overwrite`` is given; a profile named with ``profiles`` whose
key is in neither backend stops it too. Only the ``credentials`` namespace moves; STS
sessions are caches and are never migrated.

With ``delete_source``, each profile of ~/.aws/config whose key moves gets
``broker_backend = TARGET`` just before its source copy is deleted (or, for a key an
interrupted earlier run deleted, when the run is repeated), where it would otherwise
look elsewhere (it pinned the source, or nothing chose its backend and the default is
another): :func:`broker.services.keys.pin_backend`. With ``set_default`` too, every copy
is verified and the default set before any deletion, so only profiles pinning the
source are rewritten. A crash therefore leaves every profile reading a backend that
holds its key. Without ``delete_source`` the source keeps its copies and no profile is
changed.

A profile whose key the source reads from an item the profile names (``broker_item``,
:mod:`broker.services.items`) keeps reading that item while it exists: the copy is a
second one, which ``broker rotate`` keeps up to date. Once ``delete_source`` has deleted
the item, ``broker_item`` goes from the profile's section of ~/.aws/config (and
``broker_backend`` names the target unless it becomes the default), so that the profile
reads the verified copy instead of naming an item that is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from broker import config, paths
from broker.aws.mfa_ledger import MfaLedger
from broker.backend import TOTP, Backend, Capability, Item, unnamed
from broker.errors import (
    BackendError,
    BackendUnavailable,
    BrokerError,
    CredentialsNotFound,
    UsageError,
)
from broker.services.context import Context

COPIED = "copied"
OVERWRITTEN = "overwritten"
ALREADY_THERE = "already there"
SKIPPED = "skipped"
WOULD_COPY = "would copy"
WOULD_OVERWRITE = "would overwrite"

#: ``progress(done_before, total, profile)``, called before each item is handled.
Progress = Callable[[int, int, str], None]


def checkpoint(step: str, profile: str) -> None:
    """A named point in an item's journey; does nothing.

    The crash-safety tests replace this function in a child process to kill it
    with SIGKILL at each step (``read``, ``written``, ``verified``, ``deleted``)
    and prove that a second run loses nothing. Production code never changes it.
    """


@dataclass
class Outcome:
    """What happened to one item: ``source_deleted`` when this run deleted it from the
    source."""

    profile: str
    action: str
    source_deleted: bool = False
    note: str = ""


@dataclass
class Conflict:
    """An item present in both backends with different fields (names only)."""

    profile: str
    fields: list[str]


@dataclass
class MigrationReport:
    """What ``broker migrate`` did (or, with ``dry_run``, would do): from backend ``source``
    to ``target``, one :class:`Outcome` per profile, the config file changed when the
    target was made the default (``default_set``; None otherwise), and ``notes`` for the
    reader.
    """
    source: str
    target: str
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)
    default_set: Path | None = None
    notes: list[str] = field(default_factory=list)
    #: Profiles given ``broker_backend = TARGET`` so that they read the moved keys.
    pinned: list[str] = field(default_factory=list)


class MigrationConflict(UsageError):
    """Items already in the target differ from the source; nothing was written."""

    def __init__(self, target: str, conflicts: Sequence[Conflict]) -> None:
        listed = "; ".join(f"{c.profile} ({', '.join(c.fields)})" for c in conflicts)
        count = len(conflicts)
        super().__init__(
            f"{count} item{'s' if count != 1 else ''} already in {target} "
            f"differ{'s' if count == 1 else ''} from the source: {listed}",
            f"check them, then run again with --overwrite to replace them in {target}; "
            "nothing was written",
        )
        self.conflicts = list(conflicts)


class VerificationFailed(BackendError):
    """An item read back from the target was not the one written."""


def open_backend(ctx: Context, name: str, role: str) -> Backend:
    """The credential backend ``name``, or an error saying why it cannot be used."""
    backend = ctx.backend(name)
    availability = ctx.registry.availability_of(backend)
    if not availability.ok:
        raise BackendUnavailable(
            f"the {role} backend {name!r} is not available here: "
            f"{unnamed(name, availability.reason)}",
            "fix that first; `broker backend list` shows every backend's state",
        )
    return backend


def write_verified(target: Backend, name: str, item: Item, *, keep_source: str) -> None:
    """Store ``item`` under ``name`` and prove it by reading it back field by field.

    ``keep_source`` says, for the error message, where the original still is.
    """
    target.set(name, item)
    checkpoint("written", name)
    stored = target.get(name)
    if stored is None or dict(stored) != dict(item):
        differing = item.differing_fields(stored or {})
        raise VerificationFailed(
            f"{target.name}: {name!r} read back differently after writing "
            f"(fields: {', '.join(differing)})",
            f"nothing was deleted; the original is still in {keep_source}. "
            f"Check the {target.name} backend, then run the command again",
        )
    checkpoint("verified", name)


@dataclass
class _Step:
    profile: str
    item: Item | None  # from the source; None when the source lacks it
    existing: Item | None  # already in the target
    differing: list[str]


def _names(source: Backend, chosen: list[str]) -> list[str]:
    if chosen:
        return chosen
    if Capability.LIST not in source.capabilities:
        raise UsageError(
            f"backend {source.name!r} cannot list the items it holds",
            "name the profiles to move with --profile NAME (repeatable)",
        )
    return source.list()


def _plan(source: Backend, target: Backend, names: list[str]) -> list[_Step]:
    """Each item as the source and the target hold it, read with one ``get_many`` on each
    side (a 1Password vault answers 50 items per request)."""
    items = source.get_many(names) if names else {}
    present = target.get_many(names) if names else {}
    steps = []
    for name in names:
        item = items.get(name)
        existing = present.get(name)
        differing = (
            item.differing_fields(existing) if item is not None and existing is not None else []
        )
        steps.append(_Step(name, item, existing, differing))
    return steps


def _refuse_missing(ctx: Context, steps: list[_Step], source: str, target: str) -> None:
    """Refuse, before anything is written, profiles the user named whose key is in
    neither backend: a typo, or a key stored elsewhere.

    Raises:
        ProfileNotFound: such a name is not a profile of ~/.aws/config either (exit 4,
            close matches in the hint: :meth:`broker.aws.profiles.AwsConfig.get`).
        CredentialsNotFound: they are profiles with no key in ``source`` or ``target``
            (exit 5).
    """
    missing = [s.profile for s in steps if s.item is None and s.existing is None]
    if not missing:
        return
    for name in missing:
        if name not in ctx.aws.profiles:
            ctx.aws.get(name)  # raises ProfileNotFound, naming close matches
    listed = ", ".join(repr(name) for name in missing)
    several = len(missing) > 1
    raise CredentialsNotFound(
        f"no key stored for profile{'s' if several else ''} {listed} in the source backend "
        f"{source!r}, nor in {target!r}",
        f"check the name{'s' if several else ''}: `broker list` shows where each profile's "
        f"key is; nothing was changed",
    )


def _dry_outcome(step: _Step, delete_source: bool) -> Outcome:
    if step.item is None:
        if step.existing is not None:
            return Outcome(step.profile, ALREADY_THERE, note="not in the source")
        return Outcome(step.profile, SKIPPED, note="in neither backend")
    note = "would delete the source" if delete_source else ""
    if step.existing is None:
        return Outcome(step.profile, WOULD_COPY, note=note)
    if step.differing:
        differs = f"differs: {', '.join(step.differing)}"
        return Outcome(step.profile, WOULD_OVERWRITE, note="; ".join(filter(None, [differs, note])))
    return Outcome(step.profile, ALREADY_THERE, note=note)


def _copy(step: _Step, source: Backend, target: Backend) -> Outcome:
    """Write ``step``'s item to ``target`` and verify it (not when it is there already);
    nothing is deleted."""
    if step.item is None:
        if step.existing is not None:
            # A previous run with --delete-source got this far: only the profile's
            # settings may be left to settle (_settle), as for a key moved now.
            return Outcome(step.profile, ALREADY_THERE, note="not in the source")
        return Outcome(step.profile, SKIPPED, note="in neither backend")
    checkpoint("read", step.profile)
    if step.existing is None or step.differing:
        write_verified(target, step.profile, step.item, keep_source=source.name)
        action = OVERWRITTEN if step.existing is not None else COPIED
        note = f"replaced: {', '.join(step.differing)}" if step.differing else ""
    else:
        action, note = ALREADY_THERE, ""
    # `broker list` shows a seed moved with the key at once, not after the next exec
    MfaLedger().mark_seed(target.name, step.profile, bool(step.item.get(TOTP)))
    return Outcome(step.profile, action, note=note)


def _delete(step: _Step, source: Backend, outcome: Outcome) -> None:
    """Delete ``step``'s item from ``source`` (its copy verified in the target)."""
    if step.item is None:
        return
    source.delete(step.profile)
    checkpoint("deleted", step.profile)
    MfaLedger().mark_seed(source.name, step.profile, False)
    outcome.source_deleted = True


def _settle(ctx: Context, profile: str, source: str, target: str) -> tuple[str | None, bool]:
    """Make ``profile`` read its key from ``target`` before the source copy goes (or after
    an interrupted run deleted it): a ``broker_item`` naming the source's item is removed
    (:func:`_release_item`), and ``broker_backend = TARGET`` is written where the profile
    would otherwise look elsewhere (:func:`broker.services.keys.pin_backend`). Done before
    the deletion, a crash in between leaves the key in both backends and the profile
    reading the target. Returns the note of a removed ``broker_item`` (else None) and
    whether ``broker_backend`` was written; a name that is no profile of ~/.aws/config
    is left alone.

    Raises:
        ConfigError: ~/.aws/config could not be edited.
    """
    from broker.services.keys import pin_backend

    if profile not in ctx.aws.profiles:
        return None, False
    if _served_item(ctx, source, profile):
        return _release_item(ctx, profile, target), False
    return None, pin_backend(ctx, profile, target) is not None


def _finish(ctx: Context, step: _Step, source: Backend, outcome: Outcome,
            report: MigrationReport) -> int:
    """With --delete-source, after ``step``'s copy is verified: settle its profile
    (:func:`_settle`), then delete the source copy; the cached sessions made from the
    deleted key are ended. Returns how many were."""
    if step.item is None and step.existing is None:
        return 0  # in neither backend: nothing to settle
    note, pinned = _settle(ctx, step.profile, source.name, report.target)
    if note:
        report.notes.append(note)
    if pinned:
        report.pinned.append(step.profile)
    _delete(step, source, outcome)
    return _revoke(ctx, step.profile) if outcome.source_deleted else 0


def _served_item(ctx: Context, source: str, profile: str) -> str | None:
    """The ``broker_item`` ``profile`` reads its key from in backend ``source`` (the one
    :func:`broker.services.items.bind_items` bound it to), else None."""
    known = ctx.aws.profiles.get(profile)
    if known is None or not known.broker_item or "broker_item" in known.problem_by_key:
        return None
    return known.broker_item if ctx.credential_backend_name(known) == source else None


def _release_item(ctx: Context, profile: str, target: str) -> str:
    """Make ``profile``, whose ``broker_item`` names the source's item about to be
    deleted (its key verified in ``target``), read its key from ``target``: one atomic
    edit of ~/.aws/config removes ``broker_item`` and sets ``broker_backend = target``
    where the profile would otherwise look elsewhere (not when ``--set-default`` has made
    the target the default already).
    Returns the note for the report.

    Raises:
        ConfigError: the file cannot be read or edited without changing other settings.
    """
    from broker.aws.config_writer import edit_file, set_profile_value, without_profile_value
    from broker.aws.profiles import Profile

    known = ctx.aws.profiles[profile]
    reference = known.broker_item
    rest = {k: v for k, v in known.values.items() if k != "broker_item"}
    pinned = ctx.credential_backend_name(Profile(profile, rest)) != target
    path = ctx.aws.path

    def change(text: str) -> str:
        text = without_profile_value(text, profile, "broker_item", source=str(path))
        if pinned:
            text = set_profile_value(text, profile, "broker_backend", target, source=str(path))
        return text

    edit_file(path, change)
    ctx.__dict__.pop("aws", None)  # the cached parse is stale now
    said = f" and set broker_backend = {target}" if pinned else ""
    return (
        f"removed broker_item = {reference} from profile {profile!r}{said} in {path}: "
        f"that item is deleted, and {profile!r} now reads its key from {target}"
    )


def _revoke(ctx: Context, profile: str) -> int:
    """End the cached sessions made from ``profile``'s key, now gone from the source."""
    from broker.services.keys import revoke_sessions

    try:
        return revoke_sessions(ctx, profile)
    except BrokerError:
        return 0  # the move itself is done; the sessions only expire


def _default_notes(ctx: Context, source: str, target: str) -> list[str]:
    """Settings that would keep pointing at the source after the move."""
    notes = []
    for profile in sorted(ctx.aws.profiles.values(), key=lambda p: p.name):
        if profile.broker_backend == source:
            notes.append(
                f"profile {profile.name!r} sets broker_backend = {source} in {ctx.aws.path}; "
                f"change it to {target}"
            )
    if config.environment("BROKER_BACKEND") == source:
        notes.append(f"BROKER_BACKEND={source} is set in this environment; change it to {target}")
    return notes


def _memory_only_target(
    ctx: Context, source: str, target: str, delete_source: bool, set_default: bool,
    memory_only_ok: bool, dry_run: bool,
) -> list[str]:
    """Notes about a target that keeps keys in memory only; refuses (before anything is
    read) to make it the only copy of keys kept persistently, or the default, unasked."""
    from broker.services.backends import LOST_AT_REBOOT, memory_only

    if not memory_only(ctx, target):
        return []
    risky = []
    if delete_source and not memory_only(ctx, source):
        risky.append(f"--delete-source would leave the keys only in {target}")
    if set_default:
        risky.append(f"--set-default would make {target} the default backend for new keys")
    if risky and not memory_only_ok and not dry_run:
        raise UsageError(
            f"{' and '.join(risky)}, which keeps keys in {LOST_AT_REBOOT}",
            f"keep the copies in {source} by leaving out --delete-source and --set-default, "
            "or add --memory-only to do it anyway",
        )
    notes = [f"{target} keeps the keys in {LOST_AT_REBOOT}"]
    if not delete_source:
        notes[0] += f"; the copies in {source} stay"
    if risky and dry_run and not memory_only_ok:
        notes.append("a real run needs --memory-only for " + " and ".join(
            flag for flag in ("--delete-source", "--set-default") if flag in " ".join(risky)
        ))
    return notes


def migrate(
    ctx: Context,
    source_name: str,
    target_name: str,
    *,
    profiles: Iterable[str] = (),
    dry_run: bool = False,
    overwrite: bool = False,
    delete_source: bool = False,
    set_default: bool = False,
    memory_only_ok: bool = False,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy credential items from one backend to another, verified; see the module doc.

    A target that keeps keys in memory only (no ``PERSISTENT`` capability) loses them at
    reboot: deleting them from a persistent source, or making that target the default,
    needs ``memory_only_ok``. With ``delete_source``, a profile whose deleted item it
    named with ``broker_item`` loses that setting (the report's notes say so).

    With ``delete_source``, profiles whose keys move get ``broker_backend = TARGET`` before
    their source copies are deleted, where they would otherwise look elsewhere; with
    ``set_default`` the default changes first (the module doc).

    Raises:
        UsageError: the same backend twice, a conflict (:class:`MigrationConflict`), a
            source that cannot list with no profiles named, an item broker may only read,
            or a memory-only target unasked.
        ProfileNotFound: a name in ``profiles`` whose key is in neither backend is not a
            profile of ~/.aws/config either; nothing was changed.
        CredentialsNotFound: a profile named in ``profiles`` has its key in neither
            backend; nothing was changed.
        BackendUnavailable: either backend cannot be used here.
        VerificationFailed: an item read back differently; nothing of it was deleted.
        ConfigError: ~/.aws/config could not be edited (the key is already moved).
    """
    if source_name == target_name:
        raise UsageError(
            f"--from and --to are both {source_name!r}", "name two different backends"
        )
    from broker.services.keys import check_name

    chosen = list(dict.fromkeys(profiles))
    for name in chosen:  # an empty --profile is no filter, and ../x no key: both refused
        check_name(name)
    source = open_backend(ctx, source_name, "source")
    target = open_backend(ctx, target_name, "target")
    report = MigrationReport(source_name, target_name, dry_run)
    report.notes.extend(
        _memory_only_target(ctx, source_name, target_name, delete_source, set_default,
                            memory_only_ok, dry_run)
    )
    # One migration at a time: two runs interleaving copy and delete could
    # each see the other's half-done state.
    with paths.file_lock("migrate"):
        steps = _plan(source, target, _names(source, chosen))
        if chosen:
            _refuse_missing(ctx, steps, source_name, target_name)
        conflicts = [Conflict(s.profile, s.differing) for s in steps if s.item and s.differing]
        if conflicts and not overwrite:
            raise MigrationConflict(target_name, conflicts)
        if not dry_run:  # items broker may only read: refused before anything is copied
            for step in steps:
                if step.item is not None and (step.existing is None or step.differing):
                    target.check_writable(step.profile)
                if step.item is not None and delete_source:
                    source.check_writable(step.profile)
        if dry_run:
            report.outcomes = [_dry_outcome(s, delete_source) for s in steps]
            report.notes.extend(
                f"would remove broker_item = {reference} from profile {s.profile!r}, "
                f"whose key would then be read from {target_name}"
                for s in steps
                if delete_source and s.item is not None
                and (reference := _served_item(ctx, source_name, s.profile))
            )
        else:
            ended = 0
            total = len(steps)
            # With --set-default every copy is verified and the default set before any
            # source copy goes; otherwise each profile is settled just before its own
            # deletion. Either way a crash leaves each profile reading a backend that
            # holds its key, and running the command again finishes the job.
            copy_first = delete_source and set_default
            outcomes: list[Outcome] = []
            for index, step in enumerate(steps):
                if progress is not None:
                    progress(index, total, step.profile)
                outcome = _copy(step, source, target)
                outcomes.append(outcome)
                report.outcomes.append(outcome)
                if delete_source and not copy_first:
                    ended += _finish(ctx, step, source, outcome, report)
            if copy_first:
                report.default_set = config.set_value("backend", target_name, ctx.settings.path)
                ctx.settings.backend = target_name  # what profiles now read, as the file says
                for step, outcome in zip(steps, outcomes, strict=True):
                    ended += _finish(ctx, step, source, outcome, report)
            if report.pinned:
                report.notes.append(
                    f"set broker_backend = {target_name} in ~/.aws/config for "
                    f"{', '.join(report.pinned)}, so broker looks for their keys there"
                )
            if ended:
                report.notes.append(
                    f"ended {ended} cached session{'s' if ended != 1 else ''} made from the "
                    f"keys deleted from {source_name}"
                )
    if set_default and not report.default_set:
        if dry_run:
            report.notes.append(f"would make {target_name} the default backend")
        else:
            report.default_set = config.set_value("backend", target_name, ctx.settings.path)
    if set_default or delete_source:
        report.notes.extend(_default_notes(ctx, source_name, target_name))
    return report
