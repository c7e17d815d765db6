"""`broker backend ...`: list, choose, inspect, and keep a backend's token."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import click

from broker.backend import unnamed
from broker.cli.base import _context, cli, confirm, prompt
from broker.config import parse_duration
from broker.services import backends as backend_service


@cli.group("backend")
def backend_group() -> None:
    """Credential backends: list, choose the default, inspect."""


@backend_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def backend_list(as_json: bool) -> None:
    """Every installed backend, whether it works here, and why not."""
    infos = backend_service.list_backends(_context())
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    width = max([12, *(len(info.name) for info in infos)])  # the state column lines up
    for info in infos:
        marks = "".join(["*" if info.default else " ", "s" if info.session_cache else " "])
        state = "available" if info.available else f"unavailable: {unnamed(info.name, info.reason)}"
        if info.broken:
            state = info.reason
        click.echo(f"{marks} {info.name:<{width}} {state}")
        click.echo(f"    {info.description or '-'}; capabilities: "
                   f"{', '.join(info.capabilities) or '-'}; from {info.distribution or '?'}")
    click.echo("(* default for keys, s session cache)")


@backend_group.command("set")
@click.argument("name")
@click.option("--yes", is_flag=True,
              help="Do not ask before making a memory-only backend (keyctl: keys lost at "
                   "reboot) the default.")
def backend_set(name: str, yes: bool) -> None:
    """Make NAME the default credential backend (saved in broker's config)."""
    ctx = _context()
    memory_only = backend_service.memory_only(ctx, name)
    if memory_only and not yes and sys.stdin.isatty():
        confirm(
            f"{name} keeps keys in {backend_service.LOST_AT_REBOOT}. Make it the default?")
        yes = True
    outcome = backend_service.set_default(ctx, name, memory_only_ok=yes)
    click.echo(f"Default backend is now {name} (saved in {outcome.path}).", err=True)
    if outcome.kept:
        old = ctx.aws.profiles[outcome.kept[0]].broker_backend
        click.echo(
            f"{', '.join(outcome.kept)} keep their keys in {old} (broker_backend = {old} "
            f"written to their sections); move them with `broker migrate --from {old} "
            f"--to {name} --delete-source`.", err=True,
        )
    if memory_only:
        click.echo(f"warning: keys added to {name} are lost at reboot or `wsl --shutdown`.",
                   err=True)


@backend_group.command("show")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def backend_show(name: str | None, as_json: bool) -> None:
    """Details of NAME (default: the default backend)."""
    ctx = _context()
    info = backend_service.describe(ctx, name or ctx.credential_backend_name(), details=True)
    if as_json:
        click.echo(json.dumps(asdict(info), indent=2))
        return
    click.echo(f"name:          {info.name}")
    click.echo(f"provided by:   {info.distribution} ({info.entry_point})")
    available = "yes" if info.available else f"no: {unnamed(info.name, info.reason)}"
    click.echo(f"available:     {available}")
    click.echo(f"capabilities:  {', '.join(info.capabilities) or '-'}")
    click.echo(f"default:       {'yes' if info.default else 'no'}")
    click.echo(f"session cache: {'yes' if info.session_cache else 'no'}")
    for key, value in info.details.items():
        click.echo(f"{key + ':':<15}{value}")


@backend_group.command("login")
@click.argument("name")
@click.option("--ttl", default="8h", show_default=True, help="How long the token is kept.")
def backend_login(name: str, ttl: str) -> None:
    """Keep NAME's access token in memory for this login session.

    The token is read from a hidden prompt, or from stdin when it is not a terminal,
    and kept by the highest-priority backend that keeps secrets in memory (with the
    built-in plugins, the kernel keyring: keyctl:NAME-token), where backend NAME finds
    it. It is never written to disk: a store that persists or syncs is never used.
    """
    seconds = parse_duration(ttl, what="--ttl")
    if seconds < 60:  # the store would forget it at once, or before a command could use it
        raise click.BadParameter(f"{ttl!r} is shorter than a minute", param_hint="--ttl")
    if sys.stdin.isatty():
        secret = prompt(f"{name} token", hide_input=True)
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    reference, expires = backend_service.login(_context(), name, secret, seconds)
    click.echo(
        f"Token kept until {expires:%Y-%m-%d %H:%M} UTC; found through {reference}.",
        err=True,
    )


@backend_group.command("logout")
@click.argument("name")
def backend_logout(name: str) -> None:
    """Forget NAME's token kept by `broker backend login`."""
    removed = backend_service.logout(_context(), name)
    click.echo("Token removed." if removed else "No token was kept.", err=True)
