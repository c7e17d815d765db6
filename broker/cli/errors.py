"""The one place where exceptions become messages and exit codes."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from types import TracebackType

import click

from broker.errors import BrokerError, ExitCode

#: click 8.2+ raises this for a group run without a command; its message is the help.
_NO_ARGS_IS_HELP: tuple[type[Exception], ...] = tuple(
    getattr(click.exceptions, name) for name in ("NoArgsIsHelpError",)
    if hasattr(click.exceptions, name)
)


class Declined(BrokerError):
    """The user answered no to a confirmation: nothing was changed. Exit code 1, not
    130: nobody interrupted anything (Ctrl-C at the question is
    :class:`broker.errors.Interrupted`)."""

    exit_code = ExitCode.FAILURE

    def __init__(self, message: str = "nothing was changed", hint: str = "answered no") -> None:
        super().__init__(message, hint)


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
        plugin = _failing_plugin(exc)
        if debug():
            traceback.print_exc()
        elif plugin is not None:
            # a plugin's bug: its message may hold anything the plugin had, a secret too
            report(f"{plugin} failed: {type(exc).__name__} (a bug in the plugin; run again "
                   "with --debug for a traceback and report it to the plugin's authors)")
        else:
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            report(
                f"unexpected error: {type(exc).__name__}: {first} "
                "(run again with --debug for a traceback and report it)"
            )
        return ExitCode.BACKEND_FAILED if plugin is not None else ExitCode.FAILURE


def _failing_plugin(exc: BaseException) -> str | None:
    """``plugin 'NAME' (DISTRIBUTION)`` when the innermost frame of ``exc``'s traceback
    that belongs to a package registered as a backend or reference plugin (the
    ``broker.backends`` and ``broker.references`` entry points) is in a third-party
    plugin's code, else None (broker's own bug, or a library's)."""
    from importlib.metadata import entry_points

    from broker.registry import BACKENDS_GROUP, REFERENCES_GROUP

    owners: dict[str, tuple[str, str]] = {}
    try:
        for group in (BACKENDS_GROUP, REFERENCES_GROUP):
            for point in entry_points(group=group):
                package = point.value.split(":")[0].split(".")[0]
                distribution = point.dist.name if point.dist is not None else ""
                owners.setdefault(package, (point.name, distribution))
    except Exception:
        return None
    own = _own_distribution()
    modules = [tb.tb_frame.f_globals.get("__name__", "") for tb in _tracebacks(exc)]
    for module in reversed(modules):
        found = owners.get(str(module).split(".")[0])
        if found is None:
            continue
        name, distribution = found
        if distribution == own:
            return None  # a built-in plugin: broker's own bug
        return f"plugin {name!r}" + (f" ({distribution})" if distribution else "")
    return None


def _tracebacks(exc: BaseException) -> list[TracebackType]:
    """The traceback entries of ``exc``, outermost first."""
    entries: list[TracebackType] = []
    tb = exc.__traceback__
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    return entries


def _own_distribution() -> str:
    """The name of the distribution broker itself is installed from ("" if unknown)."""
    from importlib.metadata import packages_distributions

    try:
        return (packages_distributions().get("broker") or [""])[0]
    except Exception:
        return ""
