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
from broker.cli.base import _CONTEXT, _DEBUG, cli
from broker.cli.errors import guarded
from broker.cli.session_commands import hoist_exec_options

__all__ = ["cli", "hoist_exec_options", "run"]


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
