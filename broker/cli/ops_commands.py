"""Operations: `rotate`, `login` and `doctor`.

The services are imported inside each command: http.server, webbrowser and urllib
would cost every other command ~30 ms of start-up.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click

from broker.cli.base import (
    _context,
    _duration,
    check_region,
    cli,
    mfa_code_option,
    profile_argument,
)
from broker.cli.errors import report
from broker.errors import ExitCode


@cli.command("rotate")
@profile_argument
@click.option("--backend", help="Credential backend holding the key.")
@click.option("--region", callback=check_region,
              help="Region for STS (IAM itself is global).")
@mfa_code_option
@click.option("--force", is_flag=True,
              help="Rotate even when other profiles hold the same key: they stop working.")
def rotate_command(
    profile: str, backend: str | None, region: str | None, mfa_code: str | None,
    force: bool,
) -> None:
    """Replace PROFILE's access key: create, store, verify, delete the old one.

    \b
    The key rotated is the one of the profile at the bottom of PROFILE's chain
    (the key profile). The new key is written to that profile's item (its
    broker_item, or the item broker keeps for it) and to every copy of the same
    key kept under its name in another backend (a copy `migrate` kept); profiles
    built on it with source_profile use it from there.
    No other profile's item is changed: when another profile stores the same key,
    rotate refuses (exit 2), naming it, unless --force (that profile then stops
    working until given the new key). Finding those profiles reads every
    profile's stored key (one batched read per backend).
    A failure at any step leaves a working key stored and says what IAM holds.
    """
    from broker.services import rotate

    result = rotate.rotate(
        _context(), profile, backend=backend, region=region, mfa_code=mfa_code,
        progress=lambda line: click.echo(line, err=True), force=force,
    )
    click.echo(
        f"Rotated the key of {result.profile}: {result.old_key_id} -> {result.new_key_id} "
        f"(IAM user {result.user}; stored in {', '.join(result.backends)}; "
        f"{result.sessions_cleared} cached "
        f"session{'s' if result.sessions_cleared != 1 else ''} cleared).",
        err=True,
    )
    if result.broken:
        click.echo(
            f"warning: {', '.join(result.broken)} still hold the deleted key "
            f"{result.old_key_id} and no longer work: give them the new key (`broker add "
            f"PROFILE --replace`) or point them at {result.profile} (source_profile).",
            err=True,
        )


@cli.command("login")
@profile_argument
@click.option("--stdout", "to_stdout", is_flag=True,
              help="Print the sign-in URL instead of opening a browser. It is a secret for "
                   "15 minutes: whoever has it gets the console session.")
@click.option("--path", help="Console page to open, e.g. s3/home (default: the console home).")
@click.option("-d", "--duration", help="Session lifetime when one is made: 1h, 90m, 3600.")
@click.option("--region", callback=check_region,
              help="Region (default: env, profile, [default]).")
@mfa_code_option
@click.option("--backend", help="Credential backend holding the key.")
def login_command(profile: str, to_stdout: bool, path: str | None, duration: str | None,
                  region: str | None, mfa_code: str | None, backend: str | None) -> None:
    """Sign in to the AWS console with PROFILE's session.

    \b
    A role profile uses its role session; a plain IAM user gets a federation token
    (GetFederationToken, made with the stored key, without MFA context).

    \b
    The browser is started with http://127.0.0.1:PORT/, which redirects once to the
    sign-in link, and only for your own user's processes.
    """
    from broker.services import console

    signin = console.login(
        _context(), profile, browser=not to_stdout, path=path, duration=_duration(duration),
        region=region, mfa_code=mfa_code, backend=backend, report=report,
    )
    if to_stdout:
        click.echo(signin.url)
        return
    until = f" until {signin.expires:%H:%M} UTC" if signin.expires else ""
    click.echo(f"Opened the AWS console for {profile}{until}: your browser has the link.",
               err=True)


_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--online", is_flag=True,
              help="Also list the shared store in use (the 1Password vault: one API "
              "call) to prove it is reachable.")
def doctor_command(as_json: bool, online: bool) -> None:
    """Check the setup: configs, profiles, backends, gpg, keyctl, 1Password, clock, WSL.

    Exits 1 when any check fails.
    """
    from broker.services import doctor

    checks = doctor.run(doctor.Facts(online=online))
    if as_json:
        document = {"ok": not doctor.failed(checks), "checks": [asdict(c) for c in checks]}
        click.echo(json.dumps(document, indent=2))
    else:
        for check in checks:
            click.echo(f"{_MARKS.get(check.status, check.status)}  {check.name}: {check.summary}")
            if check.fix and check.status != doctor.OK:
                click.echo(f"      fix: {check.fix}")
    if doctor.failed(checks):
        sys.exit(ExitCode.FAILURE)
