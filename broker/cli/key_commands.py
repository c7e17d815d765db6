"""Keys: `broker add`, `adopt`, `remove`, `list` and `clear`."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict

import click

from broker.cli.base import (
    _context,
    _human,
    cli,
    complete_profiles,
    confirm,
    echo_table,
    given_profile,
    profile_argument,
    prompt,
)
from broker.services import backends as backend_service
from broker.services import keys
from broker.services import listing as list_service
from broker.services.context import Context


def _read_key(from_env: bool) -> tuple[str, str]:
    if from_env:
        key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if not key_id or not secret:
            raise click.UsageError("--env needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set")
        return key_id, secret
    if sys.stdin.isatty():
        key_id = prompt("Access key ID")
        secret = prompt("Secret access key", hide_input=True)
        return key_id, secret
    lines = sys.stdin.read().splitlines()
    if len(lines) < 2:
        raise click.UsageError(
            "expected the access key id and the secret access key on two lines of stdin"
        )
    return lines[0], lines[1]


@cli.command("add")
@profile_argument
@click.option("--backend", help="Store in this backend instead of the default.")
@click.option("--env", "from_env", is_flag=True, help="Read AWS_ACCESS_KEY_ID/SECRET from env.")
@click.option("--replace", is_flag=True, help="Overwrite a key already stored.")
@click.option(
    "--item", "item", metavar="REFERENCE",
    help="Read the key from this existing item instead (op://VAULT/ITEM, or an item's "
    "title): written as broker_item, nothing stored.",
)
def add_command(
    profile: str, backend: str | None, from_env: bool, replace: bool, item: str | None
) -> None:
    """Store PROFILE's long-lived access key (prompted, the secret hidden; or stdin).

    With --item, PROFILE reads its key from an item you already keep (1Password's AWS
    shell plugin item, an API Credential): broker checks it holds a key, then writes
    broker_item into ~/.aws/config and stores nothing.
    """
    ctx = _context()
    if item is not None:
        if from_env:
            raise click.UsageError("--item reads the key from the item: leave out --env")
        _add_item(ctx, profile, item, backend, replace)
        return
    keys.check_add(ctx, profile, backend=backend, replace=replace)  # before the key is read
    key_id, secret = _read_key(from_env)
    result = keys.add(ctx, profile, key_id, secret, backend=backend, replace=replace)
    verb = "Replaced" if result.replaced else "Added"
    click.echo(f"{verb} the key for {profile} in backend {result.backend}.", err=True)
    if result.config_written is not None:
        click.echo(f"Added a section for {profile} to {result.config_written}, where "
                   "`broker exec` finds profiles.", err=True)
    if result.backend_pinned is not None:
        click.echo(f"Set broker_backend = {result.backend} for {profile} in "
                   f"{result.backend_pinned}, so broker looks for the key there.", err=True)
    if result.memory_only:
        click.echo(
            f"warning: {result.backend} keeps this key in {backend_service.LOST_AT_REBOOT}; "
            "keep another copy until `broker migrate --from "
            f"{result.backend} --to BACKEND` has put it in a persistent store.", err=True,
        )


def _add_item(
    ctx: Context, profile: str, reference: str, backend: str | None, replace: bool
) -> None:
    result = keys.add_item(ctx, profile, reference, backend=backend, replace=replace)
    click.echo(f"{profile} reads its key from {result.reference} (backend {result.backend}); "
               "nothing was stored.", err=True)
    if result.section_added is not None:
        click.echo(f"Added a section for {profile} to {result.section_added}.", err=True)
    if result.config_written is not None:
        click.echo(f"Set broker_item = {result.reference} for {profile} in "
                   f"{result.config_written}.", err=True)
    if result.backend_pinned is not None:
        click.echo(f"Set broker_backend = {result.backend} for {profile} in "
                   f"{result.backend_pinned}, so broker looks for the key there.", err=True)
    if result.totp:
        click.echo("MFA codes come from the item's one-time password.", err=True)
    if result.item_mfa_serial:
        click.echo(f"The item's mfa serial, {result.item_mfa_serial}, is the MFA device "
                   "unless the profile sets mfa_serial.", err=True)
    if not result.writable:
        click.echo(f"broker only reads this item; to let `broker rotate` and `broker totp "
                   f"set` update it (in its own fields), run `broker adopt {profile}`.",
                   err=True)


@cli.command("adopt")
@profile_argument
@click.option("--backend", help="The backend holding the item, instead of the profile's.")
def adopt_command(profile: str, backend: str | None) -> None:
    """Let broker manage the item PROFILE reads its key from (its broker_item).

    Adds broker's tag to the item and changes nothing else. From then on `broker add
    --replace`, `rotate`, `totp set`, `remove` and `migrate --delete-source` may change
    the item, keeping its own field labels (so the AWS shell plugin and the app still
    read it).
    """
    result = keys.adopt(_context(), profile, backend=backend)
    if result.changed:
        click.echo(f"broker now manages the item of {profile}'s key (backend "
                   f"{result.backend}).", err=True)
    else:
        click.echo(f"broker already manages the item of {profile}'s key (backend "
                   f"{result.backend}).", err=True)


@cli.command("remove")
@profile_argument
@click.option("--backend", help="Remove from this backend instead of the profile's.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def remove_command(profile: str, backend: str | None, force: bool) -> None:
    """Delete PROFILE's stored key and its cached sessions.

    For a profile that reads its key from an item it names (broker_item, adopted),
    that is the whole item, with its notes, other fields and any TOTP seed; the
    broker_item line is then removed from the profile.
    """
    ctx = _context()
    # refusals come before the question
    plan = keys.plan_remove(ctx, profile, backend=backend, copies=not force)
    if not force:
        if not sys.stdin.isatty():
            raise click.UsageError(
                "refusing to delete without confirmation (stdin is not a terminal): "
                "use --force")
        confirm(_removal_question(plan))
    removed = keys.remove_key(ctx, profile, backend=backend, plan=plan)
    sessions = (f"{removed.sessions_cleared} cached "
                f"session{'s' if removed.sessions_cleared != 1 else ''} cleared")
    if removed.item is not None:
        click.echo(f"Deleted the item {removed.item!r} from {removed.backend}, with the key "
                   f"for {profile} ({sessions}).", err=True)
        if removed.config_written is not None:
            click.echo(f"Removed broker_item from {profile} in {removed.config_written}: it "
                       "named the deleted item.", err=True)
        return
    click.echo(f"Removed the key for {profile} from {removed.backend} ({sessions}).",
               err=True)


def _removal_question(plan: keys.Removal) -> str:
    """The question `broker remove` asks: what goes, from which backend, and, for a key
    whose only copy broker sees is in a memory-only backend, that it cannot be read
    back from anywhere afterwards."""
    if plan.item is not None:
        return (
            f"Delete the whole item {plan.item!r} that {plan.profile} reads its key from, "
            f"from {plan.backend}, with its notes, its other fields and any TOTP seed in it "
            "(that seed may be the only copy of the MFA device's secret: without it, only "
            "an IAM administrator can let you in again)?"
        )
    question = f"Delete the stored key of {plan.profile} from {plan.backend}?"
    if plan.memory_only and plan.copies:
        keeps = "keeps" if len(plan.copies) == 1 else "keep"
        return f"{question[:-1]} ({' and '.join(plan.copies)} {keeps} a copy)?"
    if plan.memory_only:
        return (
            f"The key of {plan.profile} is only in {plan.backend} ({plan.backend} keeps keys "
            "in memory only), as far as broker sees: unless you kept it elsewhere, you will "
            f"need a new access key from IAM. {question}"
        )
    return question


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--backend", help="Look for keys in this backend.")
def list_command(as_json: bool, backend: str | None) -> None:
    """Profiles, their chains, where their keys are, and cached sessions."""
    ctx = _context()
    listing = list_service.list_profiles(ctx, backend=backend)
    infos = listing.profiles
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    rows = [("PROFILE", "CHAIN", "BACKEND", "KEY", "MFA", "SESSIONS")]
    for info in infos:
        sessions = ", ".join(f"{s.kind} {_human(s.seconds_left)}" for s in info.sessions) or "-"
        rows.append((
            info.name, " -> ".join(info.chain), info.backend or "-", _key_cell(info),
            info.mfa_source or "-", sessions,
        ))
    echo_table(rows)
    for line in _notes(ctx, listing):
        click.echo(line, err=True)


def _key_cell(info: list_service.ProfileInfo) -> str:
    if info.error or info.problems:
        return "error"  # the message is a note below the table
    if info.key_profile != info.name:
        return f"via {info.key_profile}"
    if not info.key_needed:
        return "-"
    if info.stored and info.persistent is False:
        return "stored, lost at reboot"
    return {True: "stored", False: "missing", None: "?"}[info.stored]


def _notes(ctx: Context, listing: list_service.Listing) -> list[str]:
    """What the table cannot say in a cell: errors, unusable values, backends that could
    not list, keys lost at reboot; each said once, naming every profile it concerns."""
    said: dict[str, list[str]] = {}
    for info in listing.profiles:
        for problem in [info.error] if info.error else info.problems:
            said.setdefault(problem, []).append(info.name)
    lines = [f"{', '.join(names)}: {problem}" for problem, names in said.items()]
    for name, reason in sorted(listing.unlisted.items()):
        lines.append(f"{name}: keys not listed: {reason}")
    memory: dict[str, list[str]] = {}
    for info in listing.profiles:
        if info.stored and info.persistent is False and info.key_profile == info.name:
            memory.setdefault(info.backend, []).append(info.name)
    for name, profiles in sorted(memory.items()):
        lines.append(f"note: {list_service.lost_at_reboot_note(ctx, name, profiles)}")
    lines += [f"warning: {warning}" for warning in ctx.aws.warnings]
    return lines


@cli.command("clear")
@click.argument("profile", required=False, shell_complete=complete_profiles)
def clear_command(profile: str | None) -> None:
    """Remove cached STS sessions (all, or PROFILE's)."""
    if profile is not None:
        profile = given_profile(profile)  # "" would clear every profile's
    count = backend_service.clear_sessions(_context(), profile)
    click.echo(f"Cleared {count} session{'s' if count != 1 else ''}.", err=True)
