"""What every command module shares: the `cli` group, this invocation's Context,
the PROFILE argument and the option helpers.

Command modules import this one; :mod:`broker.cli.app` imports the command modules
and runs the group. Nothing here imports a command module.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import click.shell_completion

from broker import __version__
from broker.aws.profiles import default_profile_name
from broker.config import parse_duration
from broker.services.context import Context

_DEBUG = {"on": bool(os.environ.get("BROKER_DEBUG"))}
_CONTEXT: dict[str, Context] = {}


def _context() -> Context:
    """The one Context of this invocation, loaded on first use."""
    if "ctx" not in _CONTEXT:
        _CONTEXT["ctx"] = Context.load()
    return _CONTEXT["ctx"]


def default_profile(profile: str | None) -> str:
    """``profile``, or the one the AWS CLI would use: AWS_DEFAULT_PROFILE, AWS_PROFILE,
    then ``default`` (botocore's order)."""
    return profile or default_profile_name()


def complete_profiles(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Shell completion for PROFILE: the profiles of ~/.aws/config (parsed, not run: no
    backend is opened and nothing is asked)."""
    from broker.aws.profiles import load

    try:
        names = load().profiles
    except Exception:  # a broken config completes nothing rather than printing an error
        return []
    return [click.shell_completion.CompletionItem(name) for name in sorted(names)
            if name.startswith(incomplete)]


#: PROFILE for every command that takes one: optional, defaulting as for the AWS CLI.
profile_argument = click.argument(
    "profile", required=False, callback=lambda _ctx, _param, value: default_profile(value),
    shell_complete=complete_profiles,
)


def _duration(value: str | None) -> int | None:
    return None if value is None else parse_duration(value, what="--duration")


def _human(seconds: int) -> str:
    hours, rest = divmod(max(seconds, 0), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(__version__, prog_name="broker")
def cli(debug: bool) -> None:
    """Short-lived AWS credentials from keys that never touch disk in plaintext."""
    if debug:
        _DEBUG["on"] = True


def read_code_line(fd: int = 0, limit: int = 64) -> str:
    """One line from ``fd``, read a byte at a time: nothing after the newline is taken,
    so the rest of stdin is left for the command `exec` runs."""
    data = b""
    while len(data) < limit:
        byte = os.read(fd, 1)
        if not byte or byte == b"\n":
            break
        data += byte
    return data.decode("utf-8", "replace").strip()


def _mfa_code(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--mfa-code -``: the code from stdin (a prompt when stdin is a terminal)."""
    if value != "-":
        return value
    if sys.stdin.isatty():  # a typo is asked again, as the code prompt does
        from broker.aws.mfa import PROMPT_TRIES, check_code, tries_left
        from broker.errors import AuthenticationError

        for left in reversed(range(PROMPT_TRIES)):
            try:
                return check_code(str(click.prompt("MFA code", err=True)), "the prompt")
            except AuthenticationError as exc:
                if not left:
                    raise
                click.echo(f"broker: {exc.message}; {tries_left(left)}", err=True)
    code = read_code_line()
    if not code:
        raise click.UsageError("--mfa-code -: stdin gave no code")
    return code


#: ``--mfa-code`` for every command that takes one.
mfa_code_option = click.option(
    "--mfa-code", callback=_mfa_code,
    help="The current MFA code, or - to read it from stdin (else mfa_process, a stored "
         "seed or a prompt). A code written here is visible to other local users (ps).",
)


def _credential_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option("-d", "--duration", help="Lifetime of the credentials: 1h, 90m, 3600."),
            click.option("--region", help="Region (default: env, profile, [default])."),
            click.option("--no-session", is_flag=True, help="Skip GetSessionToken."),
            mfa_code_option,
            click.option("--backend", help="Credential backend holding the key."),
        ]
    ):
        func = option(func)
    return func
