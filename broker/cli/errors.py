"""The one place where exceptions become messages and exit codes."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

import click

from broker.errors import BrokerError

#: click 8.2+ raises this for a group run without a command; its message is the help.
_NO_ARGS_IS_HELP: tuple[type[Exception], ...] = tuple(
    getattr(click.exceptions, name) for name in ("NoArgsIsHelpError",)
    if hasattr(click.exceptions, name)
)


def report(message: str) -> None:
    sys.stderr.write(f"broker: {message}\n")


def guarded(func: Callable[[], int], debug: Callable[[], bool]) -> int:
    """Run ``func``; translate every failure into one line and an exit code."""
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
        return 130
    except click.UsageError as exc:
        if isinstance(exc, _NO_ARGS_IS_HELP):  # `broker`, `broker backend`: the help itself
            sys.stderr.write(exc.format_message().rstrip("\n") + "\n")
            return 2
        if debug():
            traceback.print_exc()
        command = exc.ctx.command_path if exc.ctx else "broker"
        report(f"{exc.format_message()} (see `{command} --help`)")
        return 2
    except click.ClickException as exc:
        report(exc.format_message())
        return exc.exit_code
    except KeyboardInterrupt:
        report("interrupted")
        return 130
    except Exception as exc:
        if debug():
            traceback.print_exc()
        else:
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            report(
                f"unexpected error: {type(exc).__name__}: {first} "
                "(run again with --debug for a traceback and report it)"
            )
        return 1
