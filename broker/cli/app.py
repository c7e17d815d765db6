"""click commands: parse, call one service function, format the result."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from typing import Any

import click

from broker import __version__
from broker.aws.profiles import default_profile_name
from broker.cli.errors import guarded
from broker.config import parse_duration
from broker.services import backends as backend_service
from broker.services import credentials as credential_service
from broker.services import keys, present
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


#: PROFILE for every command that takes one: optional, defaulting as for the AWS CLI.
profile_argument = click.argument(
    "profile", required=False, callback=lambda _ctx, _param, value: default_profile(value)
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
    if sys.stdin.isatty():
        return str(click.prompt("MFA code", err=True))
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
@click.argument("profile")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@_credential_options
@click.option(
    "--server", is_flag=True,
    help="Serve refreshing credentials from a local endpoint instead of setting keys.",
)
def exec_command(profile: str, command: tuple[str, ...], server: bool, **options: Any) -> None:
    """Run COMMAND (default: $SHELL) with PROFILE's temporary credentials.

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
        from broker.cli.ops_commands import exec_with_server

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


def _read_key(from_env: bool) -> tuple[str, str]:
    if from_env:
        key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        if not key_id or not secret:
            raise click.UsageError("--env needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set")
        return key_id, secret
    if sys.stdin.isatty():
        key_id = click.prompt("Access key ID", err=True)
        secret = click.prompt("Secret access key", hide_input=True, err=True)
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
def add_command(profile: str, backend: str | None, from_env: bool, replace: bool) -> None:
    """Store PROFILE's long-lived access key (prompted, the secret hidden; or stdin)."""
    ctx = _context()
    key_id, secret = _read_key(from_env)
    result = keys.add(ctx, profile, key_id, secret, backend=backend, replace=replace)
    verb = "Replaced" if result.replaced else "Added"
    click.echo(f"{verb} the key for {profile} in backend {result.backend}.", err=True)


@cli.command("remove")
@profile_argument
@click.option("--backend", help="Remove from this backend instead of the profile's.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
def remove_command(profile: str, backend: str | None, force: bool) -> None:
    """Delete PROFILE's stored key and its cached sessions."""
    ctx = _context()
    if not force:
        if not sys.stdin.isatty():
            raise click.UsageError("refusing to delete without confirmation: pass --force")
        click.confirm(f"Delete the stored key for {profile}?", abort=True, err=True)
    name, cleared = keys.remove(ctx, profile, backend=backend)
    click.echo(f"Removed the key for {profile} from {name} ({cleared} sessions cleared).", err=True)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--backend", help="Look for keys in this backend.")
def list_command(as_json: bool, backend: str | None) -> None:
    """Profiles, their chains, where their keys are, and cached sessions."""
    infos = keys.list_profiles(_context(), backend=backend)
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    rows = [("PROFILE", "CHAIN", "BACKEND", "KEY", "MFA", "SESSIONS")]
    for info in infos:
        key = {True: "stored", False: "missing", None: "?"}[info.stored]
        if info.key_profile != info.name:
            key = f"via {info.key_profile}"
        sessions = ", ".join(f"{s.kind} {_human(s.seconds_left)}" for s in info.sessions) or "-"
        rows.append((
            info.name, " -> ".join(info.chain), info.backend or "-",
            key if not info.error else f"error: {info.error}",
            info.mfa_source or "-", sessions,
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]))
    for info in infos:
        for problem in info.problems:
            click.echo(f"{info.name}: {problem}", err=True)
    for warning in _context().aws.warnings:
        click.echo(f"warning: {warning}", err=True)


@cli.command("clear")
@click.argument("profile", required=False)
def clear_command(profile: str | None) -> None:
    """Remove cached STS sessions (all, or PROFILE's)."""
    count = backend_service.clear_sessions(_context(), profile)
    click.echo(f"Cleared {count} session{'s' if count != 1 else ''}.", err=True)


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
    for info in infos:
        marks = "".join(["*" if info.default else " ", "s" if info.session_cache else " "])
        state = "available" if info.available else f"unavailable: {info.reason}"
        if info.broken:
            state = info.reason
        click.echo(f"{marks} {info.name:<12} {state}")
        click.echo(f"    {info.description or '-'}; capabilities: "
                   f"{', '.join(info.capabilities) or '-'}; from {info.distribution or '?'}")
    click.echo("(* default for keys, s session cache)")


@backend_group.command("set")
@click.argument("name")
def backend_set(name: str) -> None:
    """Make NAME the default credential backend (saved in broker's config)."""
    path = backend_service.set_default(_context(), name)
    click.echo(f"Default backend is now {name} (saved in {path}).", err=True)


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
    click.echo(f"available:     {'yes' if info.available else 'no: ' + info.reason}")
    click.echo(f"capabilities:  {', '.join(info.capabilities) or '-'}")
    click.echo(f"default:       {'yes' if info.default else 'no'}")
    click.echo(f"session cache: {'yes' if info.session_cache else 'no'}")
    for key, value in info.details.items():
        click.echo(f"{key + ':':<15}{value}")


@backend_group.command("login")
@click.argument("name")
@click.option("--ttl", default="8h", show_default=True, help="How long the token is kept.")
def backend_login(name: str, ttl: str) -> None:
    """Keep NAME's access token in the kernel keyring for this login session.

    The token is read from a hidden prompt, or from stdin when it is not a terminal,
    and found again through the secret reference keyctl:NAME-token (the onepassword
    backend looks there by default). It is never written to disk.
    """
    seconds = parse_duration(ttl, what="--ttl")
    if sys.stdin.isatty():
        secret = click.prompt(f"{name} token", hide_input=True, err=True)
    else:
        secret = sys.stdin.readline().rstrip("\r\n")
    reference, expires = backend_service.login(_context(), name, secret, seconds)
    click.echo(
        f"Token kept in the kernel keyring until {expires:%Y-%m-%d %H:%M} UTC ({reference}).",
        err=True,
    )


@backend_group.command("logout")
@click.argument("name")
def backend_logout(name: str) -> None:
    """Forget NAME's token kept by `broker backend login`."""
    removed = backend_service.logout(_context(), name)
    click.echo("Token removed." if removed else "No token was kept.", err=True)


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


def run(args: list[str]) -> int:
    def invoke() -> int:
        try:
            result = cli.main(
                args=hoist_exec_options(args), prog_name="broker", standalone_mode=False
            )
        finally:
            ctx = _CONTEXT.pop("ctx", None)
            if ctx is not None:
                ctx.close()
        # without standalone mode click returns an Exit's code instead of raising it
        return result if isinstance(result, int) else 0

    return guarded(invoke, lambda: _DEBUG["on"] or "--debug" in args)


# Feature command modules add their commands to `cli` when imported.
from broker.cli import mfa_commands, move_commands, ops_commands  # noqa: E402, F401
