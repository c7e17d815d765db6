"""Moving keys: `broker migrate` between backends, `broker import` from other tools.

Each command makes one service call; the summary table is formatted here. The
services are imported inside the commands so that other commands do not pay
for them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from broker.cli.base import _context, cli, echo_table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from broker.services.importers import ImportReport


def _progress(done: int, total: int, profile: str) -> None:
    # Short runs finish before anyone looks; long ones say where they are.
    if total >= 5 or sys.stderr.isatty():
        click.echo(f"[{done + 1}/{total}] {profile}", err=True)


def _notes(notes: Sequence[str]) -> None:
    for note in notes:
        click.echo(f"note: {note}", err=True)


@cli.command("migrate")
@click.option("--from", "source", required=True, metavar="BACKEND", help="Move keys from here.")
@click.option("--to", "target", required=True, metavar="BACKEND", help="Move keys to here.")
@click.option(
    "--profile", "profiles", multiple=True, metavar="NAME",
    help="Only this profile's key (repeatable; required when the source cannot list).",
)
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--overwrite", is_flag=True, help="Replace keys already in the target that differ.")
@click.option(
    "--delete-source", is_flag=True, help="Delete each key from the source once verified."
)
@click.option("--set-default", is_flag=True, help="Then make the target the default backend.")
@click.option(
    "--memory-only", is_flag=True,
    help="Allow --delete-source and --set-default with a target that keeps keys in memory "
         "only (keyctl: lost at reboot).",
)
def migrate_command(
    source: str,
    target: str,
    profiles: tuple[str, ...],
    dry_run: bool,
    overwrite: bool,
    delete_source: bool,
    set_default: bool,
    memory_only: bool,
) -> None:
    """Copy stored keys (with MFA serial, TOTP seed, every field) between backends.

    Each key is read back from the target and compared before anything is
    deleted, and deleted from the source only with --delete-source. Running
    the command again after an interruption finishes the job. Cached STS
    sessions are not moved.

    \b
      broker migrate --from pass --to onepassword
      broker migrate --from pass --to onepassword --delete-source --set-default
    """
    from broker.services import migrate

    report = migrate.migrate(
        _context(), source, target, profiles=profiles, dry_run=dry_run, overwrite=overwrite,
        delete_source=delete_source, set_default=set_default, memory_only_ok=memory_only,
        progress=_progress,
    )
    if report.outcomes:
        rows = [("PROFILE", "ACTION", "NOTE")]
        for outcome in report.outcomes:
            action = outcome.action + (", deleted source" if outcome.source_deleted else "")
            rows.append((outcome.profile, action, outcome.note))
        echo_table(rows)
    counts: dict[str, int] = {}
    for outcome in report.outcomes:
        counts[outcome.action] = counts.get(outcome.action, 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in counts.items()) or "no keys"
    prefix = "Dry run, nothing changed" if report.dry_run else f"{source} -> {target}"
    click.echo(f"{prefix}: {summary}.", err=True)
    if report.default_set is not None:
        click.echo(f"Default backend is now {target} (saved in {report.default_set}).", err=True)
    _notes(report.notes)


@cli.group("import")
def import_group() -> None:
    """Bring keys kept by other tools into broker."""


def _import_summary(report: ImportReport, removed: str) -> None:
    click.echo(f"From {report.source}:", err=True)
    if report.outcomes:
        rows = [("PROFILE", "ACTION", "BACKEND", "REGION", "NOTE")]
        for outcome in report.outcomes:
            action = outcome.action + (f", {removed}" if outcome.source_removed else "")
            rows.append(
                (outcome.profile, action, outcome.backend or "-", outcome.region or "-",
                 outcome.note)
            )
        echo_table(rows)
    else:
        click.echo("Nothing to import.", err=True)
    if report.dry_run:
        click.echo("Dry run: nothing was changed.", err=True)
    _notes(report.notes)


@import_group.command("aws-vault")
@click.option(
    "--backend", "kind", type=click.Choice(["pass", "file", "keyctl"]),
    help="aws-vault's backend (default: $AWS_VAULT_BACKEND, else the one holding keys).",
)
@click.option("--pass-dir", help="Its pass store (default: as aws-vault finds it).")
@click.option("--pass-prefix", help="Its pass prefix (default: $AWS_VAULT_PASS_PREFIX or none).")
@click.option("--file-dir", help="Its file store (default: $AWS_VAULT_FILE_DIR, ~/.awsvault/keys).")
@click.option("--keyctl-keyring", help="Its kernel keyring's name (default: aws-vault).")
@click.option("--keyctl-scope", help="Where that keyring hangs (default: user).")
@click.option("--to", metavar="BACKEND", help="broker backend to store the keys in.")
@click.option(
    "--profile", "profiles", multiple=True, metavar="NAME", help="Only this one (repeatable)."
)
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--overwrite", is_flag=True, help="Replace different keys broker already holds.")
@click.option(
    "--delete-source", is_flag=True, help="Remove each key from aws-vault once verified in broker."
)
@click.option(
    "--memory-only", is_flag=True,
    help="Allow --delete-source when the keys go to a backend that keeps them in memory "
         "only (keyctl: lost at reboot).",
)
def import_aws_vault_command(
    kind: str | None,
    pass_dir: str | None,
    pass_prefix: str | None,
    file_dir: str | None,
    keyctl_keyring: str | None,
    keyctl_scope: str | None,
    to: str | None,
    profiles: tuple[str, ...],
    dry_run: bool,
    overwrite: bool,
    delete_source: bool,
    memory_only: bool,
) -> None:
    """Import the access keys aws-vault keeps (its pass, file or keyctl backend).

    Its cached sessions and SSO tokens are left out; mfa_serial comes from
    ~/.aws/config. aws-vault's store is not changed unless --delete-source.
    """
    from broker.services import importers

    where = importers.VaultLocations(pass_dir, pass_prefix, file_dir, keyctl_keyring, keyctl_scope)
    report = importers.import_aws_vault(
        _context(), kind=kind, where=where, to=to, profiles=profiles, dry_run=dry_run,
        overwrite=overwrite, delete_source=delete_source, memory_only_ok=memory_only,
    )
    _import_summary(report, "deleted from aws-vault")


@import_group.command("credentials-file")
@click.option(
    "--profile", "profiles", multiple=True, metavar="NAME", help="Only this one (repeatable)."
)
@click.option(
    "--remove-plaintext", is_flag=True,
    help="Remove each imported section from the file once the key is verified in broker.",
)
@click.option("--to", metavar="BACKEND", help="broker backend to store the keys in.")
@click.option("--dry-run", is_flag=True, help="Show what would happen; change nothing.")
@click.option("--overwrite", is_flag=True, help="Replace different keys broker already holds.")
@click.option(
    "--memory-only", is_flag=True,
    help="Allow --remove-plaintext when the keys go to a backend that keeps them in memory "
         "only (keyctl: lost at reboot).",
)
def import_credentials_file_command(
    profiles: tuple[str, ...],
    remove_plaintext: bool,
    to: str | None,
    dry_run: bool,
    overwrite: bool,
    memory_only: bool,
) -> None:
    """Import plaintext keys from ~/.aws/credentials (or $AWS_SHARED_CREDENTIALS_FILE).

    Sections holding session tokens are skipped. With --remove-plaintext the
    file is rewritten atomically without the imported sections, its mode and
    the rest of its contents kept; each section's other settings (region,
    output...) move to ~/.aws/config first.
    """
    from broker.services import importers

    report = importers.import_credentials_file(
        _context(), profiles=profiles, remove_plaintext=remove_plaintext, to=to,
        dry_run=dry_run, overwrite=overwrite, memory_only_ok=memory_only,
    )
    _import_summary(report, "plaintext removed")
