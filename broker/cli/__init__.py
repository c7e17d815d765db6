"""The ``broker`` command. The only package that imports click.

A cached ``broker exec`` / ``broker export`` is served by :mod:`broker.cli.fast`
without importing click at all; everything else goes through :mod:`broker.cli.app`.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """The ``broker`` console script: run ``argv`` (default ``sys.argv[1:]``) through the
    cached fast path (:func:`broker.cli.fast.try_fast`), else the full command line
    (:func:`broker.cli.app.run`), and exit with the exit code (:class:`ExitCode`). Never
    returns: raises :class:`SystemExit`, or replaces the process (``exec``).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    from broker.cli.fast import try_fast

    code = try_fast(args)
    if code is not None:
        sys.exit(code)
    from broker.cli.app import run

    sys.exit(run(args))
