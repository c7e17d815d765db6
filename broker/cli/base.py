"""What every command module shares: the `cli` group, this run's :class:`Invocation`
(its Context and debug flag, on click's context object), the PROFILE argument, the option
helpers and the table printer.

Command modules import this one; :mod:`broker.cli.app` imports the command modules
and runs the group. Nothing here imports a command module.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import click
import click.shell_completion

from broker import __version__, config
from broker.aws.profiles import default_profile_name
from broker.config import parse_duration
from broker.errors import Interrupted, UsageError
from broker.services.context import Context


@dataclass
class Invocation:
    """What one run of the command line shares between its group and its command: the
    Context (made on first use, unless the caller handed one in) and whether errors show
    their traceback (``--debug`` or ``BROKER_DEBUG``).

    It lives on click's root context as ``obj``; :meth:`close` runs when that context
    closes, at the end of the command line, and again (doing nothing) when
    :func:`broker.cli.app.run` returns.
    """

    context: Context | None = None
    debug: bool = field(default_factory=config.debug_requested)

    def close(self) -> None:
        """Close the Context's backends (dropping what they hold) and forget it."""
        context, self.context = self.context, None
        if context is not None:
            context.close()


def _invocation() -> Invocation:
    """This run's Invocation, from the click context being invoked (one is made on the
    spot for a command invoked outside :func:`broker.cli.app.run`)."""
    return click.get_current_context().ensure_object(Invocation)


def _context() -> Context:
    """The one Context of this run, loaded on first use."""
    invocation = _invocation()
    if invocation.context is None:
        invocation.context = Context.load()
    return invocation.context


def default_profile(profile: str | None) -> str:
    """``profile`` as given (:func:`given_profile`), or when it is left out (None) the one
    the AWS CLI would use: AWS_DEFAULT_PROFILE, AWS_PROFILE, then ``default`` (botocore's
    order).

    Raises:
        UsageError: ``profile`` is given but empty or blank.
    """
    return default_profile_name() if profile is None else given_profile(profile)


def given_profile(profile: str) -> str:
    """``profile``, a PROFILE written on the command line, unless it is empty or only
    blanks: no profile is named so, and taking it for the default profile would act on
    one nobody named.

    Raises:
        UsageError: ``profile`` is empty or blank (exit code 2).
    """
    if not profile.strip():
        raise UsageError(
            f"the profile name {profile!r} is empty",
            "name a profile (`broker list` shows them), or leave PROFILE out for the "
            "default one",
        )
    return profile


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
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Short-lived AWS credentials from keys that never touch disk in plaintext."""
    invocation = ctx.ensure_object(Invocation)
    invocation.debug = invocation.debug or debug
    ctx.call_on_close(invocation.close)


def echo_table(rows: Sequence[Sequence[str]]) -> None:
    """``rows`` on stdout as columns two spaces apart, each as wide as its widest cell; the
    first row is the header. The last column is not padded, and no line ends in spaces.
    Every row has as many cells as the first."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


#: A region name as botocore accepts one (``botocore.utils.validate_region_name``: a DNS
#: host label, letters, digits and ``-``, not all digits, no ``-`` at either end), which
#: also refuses what ~/.aws/config's ``region`` may not hold (broker.aws.profiles: empty,
#: a space, a trailing comment).
_REGION = re.compile(r"^(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)$")


def check_region(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``--region``, refused (exit code 2) unless it has the shape of a region name
    (:data:`_REGION`): a cached session would otherwise be served, and the bad region
    exported to the command, without botocore ever seeing it.

    Raises:
        UsageError: naming the value and the shape of a region.
    """
    if value is not None and not _REGION.match(value):
        raise UsageError(
            f"--region {value!r} is not a region name", "give one such as us-east-1 or eu-west-1"
        )
    return value


def prompt(text: str, *, hide_input: bool = False) -> str:
    """What the user types at a prompt on stderr (``click.prompt``); Ctrl-C or closed
    input there is :class:`broker.errors.Interrupted` (exit code 130, "interrupted" or
    "no answer (end of input)"), as at broker's MFA prompt."""
    try:
        return str(click.prompt(text, hide_input=hide_input, err=True))
    except click.exceptions.Abort as exc:
        raise _interrupted(exc) from None


def confirm(question: str) -> None:
    """Ask ``question`` (y/N, on stderr) and return on yes. No, an empty answer, or the
    end of input (Ctrl-D: no answer, so the default, no) is
    :class:`broker.cli.errors.Declined` (exit code 1, "nothing was changed (answered
    no)"); Ctrl-C is :class:`broker.errors.Interrupted` (exit code 130).

    Raises:
        Declined: the answer was no, or none came.
        Interrupted: Ctrl-C.
    """
    from broker.cli.errors import Declined

    try:
        yes = click.confirm(question, err=True)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__context__, EOFError):
            raise Declined(hint="no answer (end of input)") from None
        raise _interrupted(exc) from None
    if not yes:
        raise Declined()


def _interrupted(abort: BaseException) -> Interrupted:
    """The error for a prompt click gave up on: ``abort`` keeps the cause in its context."""
    if isinstance(abort.__context__, EOFError):
        return Interrupted("no answer (end of input)")
    return Interrupted("interrupted")


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
    """``--mfa-code``: the code given, or with ``-`` the code from stdin (a prompt when
    stdin is a terminal), blanks removed. A code written or piped in that is not 6
    digits (what STS takes as ``TokenCode``: 6 digits, STS API reference) is a usage
    error (exit code 2) before anything is read or sent; a typo at the prompt is asked
    again, as at the MFA prompt.

    Raises:
        UsageError: the code given or piped in is not 6 digits, or stdin gave none.
        AuthenticationError: the last try at the prompt was not 6 digits either.
    """
    if value is None:
        return None
    from broker.aws.mfa import PROMPT_TRIES, check_code, tries_left
    from broker.errors import AuthenticationError

    if value == "-" and sys.stdin.isatty():  # a typo is asked again, as the code prompt does
        for left in reversed(range(PROMPT_TRIES)):
            try:
                return check_code(prompt("MFA code"), "the prompt")
            except AuthenticationError as exc:
                if not left:
                    raise
                click.echo(f"broker: {exc.message}; {tries_left(left)}", err=True)
    origin = "--mfa-code"
    if value == "-":
        value, origin = read_code_line(), "stdin (--mfa-code -)"
        if not value:
            raise click.UsageError("--mfa-code -: stdin gave no code")
    try:
        return check_code(value, origin)
    except AuthenticationError as exc:  # nothing was sent: the command line is wrong
        raise UsageError(exc.message, exc.hint) from None


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
            click.option("--region", callback=check_region,
                         help="Region (default: env, profile, [default])."),
            click.option("--no-session", is_flag=True, help="Skip GetSessionToken."),
            mfa_code_option,
            click.option("--backend", help="Credential backend holding the key."),
        ]
    ):
        func = option(func)
    return func
