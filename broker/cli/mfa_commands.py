"""`broker totp ...` and `broker mfa enroll`: TOTP seeds kept with keys, enrolment."""

from __future__ import annotations

import sys

import click

from broker.aws.totp import TotpSeed
from broker.cli.base import _context, cli, confirm, profile_argument, prompt
from broker.services import mfa as mfa_service


def _progress(message: str) -> None:
    click.echo(message, err=True)


@cli.group("totp")
def totp_group() -> None:
    """TOTP seeds kept with a profile's key: MFA codes without an authenticator.

    A seed stored next to the key makes MFA a matter of holding the vault; see
    docs/mfa.md for the trade-off and for keeping the seed on a phone instead.
    """


@totp_group.command("set")
@profile_argument
@click.option("--backend", help="The backend holding PROFILE's key (default: the profile's).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="Prove the seed first: AWS must accept a code made from it (one "
                   "GetSessionToken for the profile's MFA device, whose session is cached).")
@click.option("-f", "--force", is_flag=True,
              help="With --no-verify, replace a seed kept already without asking.")
def totp_set(profile: str, backend: str | None, verify: bool, force: bool) -> None:
    """Keep a TOTP seed with PROFILE's key (base32 or an otpauth:// URI).

    The seed is read from a hidden prompt, or from the first line of stdin when it
    is not a terminal; it is never taken from the command line. Unless --no-verify,
    nothing is stored when AWS refuses the code the seed makes. A key that is not
    stored, or an item broker only reads, is refused before the seed is read; with
    --no-verify, replacing a seed kept already asks first (or needs --force).
    """
    ctx = _context()
    if mfa_service.seed_kept(ctx, profile, backend=backend) and not verify and not force:
        if not sys.stdin.isatty():
            raise click.UsageError(
                f"refusing to replace the TOTP seed kept with {profile}'s key with an "
                "unchecked one without confirmation: it may be the only copy of the MFA "
                "device's secret; pass --force, or leave out --no-verify"
            )
        confirm(
            f"Replace the TOTP seed kept with {profile}'s key with one not checked against "
            "AWS? If no phone or other store holds the old one, only an IAM administrator "
            "can let you in again")
    if sys.stdin.isatty():
        text = prompt("TOTP seed or otpauth:// URI", hide_input=True)
    else:
        text = sys.stdin.readline().rstrip("\r\n")
    result = mfa_service.set_seed(ctx, profile, text, backend=backend, verify=verify)
    verb = "Replaced" if result.replaced else "Stored"
    checked = (f"AWS accepted its code for {result.verified}" if result.verified
               else f"not checked against AWS: {result.unchecked}")
    click.echo(f"{verb} the TOTP seed kept with {profile}'s key in {result.backend} "
               f"({checked}).", err=True)
    if result.source and result.source != "stored totp":
        click.echo(f"Note: {profile}'s MFA codes still come from {result.source} first.", err=True)


@totp_group.command("code")
@profile_argument
@click.option("--backend", help="The backend holding PROFILE's key (default: the profile's).")
def totp_code(profile: str, backend: str | None) -> None:
    """Print PROFILE's current MFA code (for the console sign-in page).

    The code goes to stdout, the seconds it has left to stderr. It counts as used: a
    `broker exec` within the same 30 seconds waits for the next one.
    """
    current = mfa_service.current_code(_context(), profile, backend=backend)
    click.echo(current.code)
    click.echo(f"valid for {current.seconds_left} more seconds", err=True)


@totp_group.command("remove")
@profile_argument
@click.option("--backend", help="The backend holding PROFILE's key (default: the profile's).")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def totp_remove(profile: str, backend: str | None, force: bool) -> None:
    """Forget the TOTP seed kept with PROFILE's key (the key stays).

    The seed may be the only copy of an enabled MFA device's secret: without it, only an
    IAM administrator can let the user in again. Asks first (or needs --force).
    """
    if not force:
        if not sys.stdin.isatty():
            raise click.UsageError(
                "refusing to forget the TOTP seed without confirmation: it may be the only "
                "copy of the MFA device's secret; pass --force"
            )
        confirm(
            f"Forget the TOTP seed kept with {profile}'s key? If no phone or other store "
            "holds it, only an IAM administrator can let you in again")
    name = mfa_service.remove_seed(_context(), profile, backend=backend)
    click.echo(f"Removed the TOTP seed kept with {profile}'s key in {name}.", err=True)


@cli.group("mfa")
def mfa_group() -> None:
    """MFA devices of the IAM users whose keys broker holds."""


@mfa_group.command("enroll")
@profile_argument
@click.option("--device-name", help="Name of the virtual MFA device (default: the user name).")
@click.option("--backend", help="The backend holding PROFILE's key (default: the profile's).")
@click.option("--show-seed", is_flag=True, help="Also print the seed and otpauth:// URI.")
@click.option("--show-qr", is_flag=True, help="Also print a QR code (needs segno or qrcode).")
def mfa_enroll(
    profile: str, device_name: str | None, backend: str | None, show_seed: bool, show_qr: bool
) -> None:
    """Create, store and enable a virtual MFA device for PROFILE's IAM user.

    \b
    1. iam:CreateVirtualMFADevice (named after the IAM user)
    2. its seed kept with PROFILE's key, and read back
    3. iam:EnableMFADevice with two consecutive codes (up to 30 s of waiting)
    4. mfa_serial written into PROFILE's section of ~/.aws/config, comments kept

    Interrupted, run it again: it resumes from the stored seed. The seed is printed
    only with --show-seed or --show-qr, to put it on a phone as well.
    """
    result = mfa_service.enroll(
        _context(), profile, device_name=device_name, backend=backend, progress=_progress
    )
    if result.already:
        click.echo(f"{profile} is enrolled already: {result.serial}.", err=True)
    where = "updated" if result.config_changed else "already had it"
    click.echo(f"mfa_serial = {result.serial} ({result.config_path} {where}).", err=True)
    if result.seed is not None and (show_seed or show_qr):
        _show(result.seed, show_seed, show_qr)


def _show(seed: TotpSeed, show_seed: bool, show_qr: bool) -> None:
    if show_qr:
        art = _qr_text(seed.uri())
        if art is None:
            click.echo("No QR library (segno or qrcode) is installed; the URI instead:", err=True)
            show_seed = True
        else:
            click.echo(art)
    if show_seed:
        click.echo(f"seed: {seed.secret}")
        click.echo(f"uri:  {seed.uri()}")


def _qr_text(data: str) -> str | None:
    """An ASCII QR code, if a QR library happens to be installed (none is required)."""
    try:
        import segno  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        pass
    else:
        import io

        buffer = io.StringIO()
        segno.make(data, error="m").terminal(out=buffer, compact=True)
        return buffer.getvalue()
    try:
        import qrcode  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    import io

    code = qrcode.QRCode(border=2)
    code.add_data(data)
    buffer = io.StringIO()
    code.print_ascii(out=buffer, invert=True)
    return buffer.getvalue()
