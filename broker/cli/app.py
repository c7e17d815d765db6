"""The ``broker`` command line assembled: every command module, then :func:`run`."""

from __future__ import annotations

from broker.cli import (  # noqa: F401 - each module adds its commands to `cli`
    backend_commands,
    key_commands,
    mfa_commands,
    move_commands,
    ops_commands,
    session_commands,
)
from broker.cli.base import Invocation, cli
from broker.cli.errors import guarded
from broker.cli.session_commands import hoist_exec_options
from broker.errors import ExitCode
from broker.services.context import Context

__all__ = ["cli", "hoist_exec_options", "run"]


def run(args: list[str], *, context: Context | None = None) -> int:
    """Run the command line ``args`` (without the program's name); return its exit code.

    Every failure is one line on stderr and a code of :class:`broker.errors.ExitCode`
    (see :func:`broker.cli.errors.guarded`); nothing is raised. ``context`` is the
    Context the command uses instead of loading one from the environment (tests hand in
    one over in-memory backends); either way it is closed when the run ends. The debug
    flag (``--debug``, ``BROKER_DEBUG``) holds for this run only.
    """
    invocation = Invocation(context=context)

    def invoke() -> int:
        try:
            result = cli.main(
                args=hoist_exec_options(args), prog_name="broker", standalone_mode=False,
                obj=invocation,
            )
        finally:  # also when the group never ran (a bad option before the command)
            invocation.close()
        # without standalone mode click returns an Exit's code instead of raising it
        return result if isinstance(result, int) else ExitCode.SUCCESS

    return guarded(invoke, lambda: invocation.debug or "--debug" in args)
