"""`broker exec` and `broker export`: a profile's temporary credentials, to a command
or to stdout."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from broker.aws.profiles import default_profile_name
from broker.cli.base import (
    _context,
    _credential_options,
    _duration,
    cli,
    complete_profiles,
    given_profile,
    profile_argument,
)
from broker.cli.errors import report
from broker.services import credentials as credential_service
from broker.services import present


def _obtain(profile: str, **options: Any) -> credential_service.Resolved:
    ctx = _context()
    return credential_service.obtain(
        ctx,
        profile,
        region=options["region"],
        duration=_duration(options["duration"]),
        no_session=options["no_session"],
        mfa_code=options["mfa_code"],
        backend=options["backend"],
    )


@cli.command("exec", context_settings={"allow_interspersed_args": False})
@click.argument(
    "profile", metavar="[PROFILE]", shell_complete=complete_profiles,
    callback=lambda _ctx, _param, value: given_profile(value),
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_credential_options
@click.option(
    "--server", is_flag=True,
    help="Serve refreshing credentials from a local endpoint instead of setting keys.",
)
def exec_command(profile: str, command: tuple[str, ...], server: bool, **options: Any) -> None:
    """Run COMMAND (default: $SHELL) with PROFILE's temporary credentials.

    PROFILE defaults to $AWS_DEFAULT_PROFILE, $AWS_PROFILE, then default (write
    `broker exec -- COMMAND` to run a command for it).

    \b
      broker exec dev -- aws sts get-caller-identity
      broker exec dev            # a shell
      broker exec --server dev   # a shell whose SDKs refresh their credentials
    """
    present.refuse_nesting(os.environ)
    argv = list(command)
    if argv[:1] == ["--"]:  # click keeps the separator once positional parsing stopped
        argv = argv[1:]
    ctx = _context()
    if server:  # a process that lives for hours: hardened before any secret is read
        from broker import hardening

        for problem in hardening.harden():
            click.echo(f"broker: warning: {problem}", err=True)
        ctx.long_lived = True
    resolved = _obtain(profile, **options)
    if server:
        exec_with_server(profile, resolved, argv, options)
        return
    from broker.childenv import withheld_variables

    present.run(resolved, argv, withheld_variables(ctx.settings, ctx.aws))


@cli.command("export")
@profile_argument
@click.option(
    "-f", "--format", "fmt", type=click.Choice(present.FORMATS), default="env",
    show_default=True, help="json is the credential_process document.",
)
@_credential_options
def export_command(profile: str, fmt: str, **options: Any) -> None:
    """Print PROFILE's temporary credentials (default: $AWS_DEFAULT_PROFILE, $AWS_PROFILE,
    then default, as for the AWS CLI).

    \b
    In ~/.aws/config:
      credential_process = broker export dev --format json
    """
    resolved = _obtain(profile, **options)
    click.echo(present.render(resolved, fmt), nl=False)


def exec_with_server(
    profile: str, resolved: credential_service.Resolved, argv: list[str], options: Any
) -> None:
    """`exec --server`: run the child against a local credential endpoint; exit as it did."""
    from broker.services import child
    from broker.services import server as server_service

    code = server_service.run(
        _context(),
        resolved,
        argv,
        region=options["region"],
        duration=_duration(options["duration"]),
        no_session=options["no_session"],
        backend=options["backend"],
        report=report,
    )
    # SystemExit, not click's Exit: app.run() drops the code click returns for an Exit.
    sys.exit(child.exit_status(code))


def hoist_exec_options(args: list[str]) -> list[str]:
    """Let `broker exec dev --duration 1h -- bash` work as `broker exec --duration 1h dev ...`.

    `exec` stops option parsing at its first positional argument so that the command's
    own flags stay the command's; options written between the profile and the command
    (aws-vault's order) are moved before the profile. Anything after `--`, or from the
    first non-option word on, is the command and is left alone.
    """
    try:
        at = next(i for i, a in enumerate(args) if not a.startswith("-"))
    except StopIteration:
        return args
    if args[at] != "exec":
        return args
    takes_value = {
        name
        for param in exec_command.params
        if isinstance(param, click.Option) and not param.is_flag
        for name in param.opts
    }

    def option_span(i: int) -> int:
        token = args[i]
        return 2 if token in takes_value and i + 1 < len(args) else 1

    i = at + 1
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += option_span(i)
    if i >= len(args) or args[i] == "--":  # no profile: the AWS CLI's default profile
        return [*args[:i], default_profile_name(), *args[i:]]
    profile_at = i
    i += 1
    moved: list[str] = []
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        span = option_span(i)
        moved += args[i : i + span]
        i += span
    return [*args[:profile_at], *moved, args[profile_at], *args[i:]]
