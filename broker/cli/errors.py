"""The one place where exceptions become messages and exit codes."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

import click

from broker.errors import BrokerError, ExitCode

#: click 8.2+ raises this for a group run without a command; its message is the help.
_NO_ARGS_IS_HELP: tuple[type[Exception], ...] = tuple(
    getattr(click.exceptions, name) for name in ("NoArgsIsHelpError",)
    if hasattr(click.exceptions, name)
)


def report(message: str) -> None:
    """``message`` on stderr as one ``broker: ...`` line."""
    sys.stderr.write(f"broker: {message}\n")


def guarded(func: Callable[[], int], debug: Callable[[], bool]) -> int:
    """Run ``func`` and return its exit code; translate every failure into one line on
    stderr and a code of :class:`broker.errors.ExitCode` (a click ``Exit`` keeps its own).

    ``debug`` is asked only once something failed: when true, the traceback is printed too.
    """
    try:
        return func()
    except BrokerError as exc:
        if debug():
            traceback.print_exc()
        report(str(exc))
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        report("aborted")
        return ExitCode.INTERRUPTED
    except click.UsageError as exc:
        if isinstance(exc, _NO_ARGS_IS_HELP):  # `broker`, `broker backend`: the help itself
            sys.stderr.write(exc.format_message().rstrip("\n") + "\n")
            return ExitCode.USAGE
        if debug():
            traceback.print_exc()
        command = exc.ctx.command_path if exc.ctx else "broker"
        report(f"{exc.format_message()} (see `{command} --help`)")
        return ExitCode.USAGE
    except click.ClickException as exc:
        report(exc.format_message())
        return exc.exit_code
    except KeyboardInterrupt:
        report("interrupted")
        return ExitCode.INTERRUPTED
    except Exception as exc:
        if debug():
            traceback.print_exc()
        else:
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            report(
                f"unexpected error: {type(exc).__name__}: {first} "
                "(run again with --debug for a traceback and report it)"
            )
        return ExitCode.FAILURE
