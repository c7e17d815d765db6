"""One row of ``broker doctor``, public as :class:`broker.backend.Check`.

It lives in a module of its own because it is a dataclass: importing dataclasses costs
the cached fast path milliseconds, and :mod:`broker.backend` is on that path.
"""

from __future__ import annotations

from dataclasses import dataclass

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    """One thing ``broker doctor`` looked at.

    ``name``: a few words naming it (``"gpg"``, ``"profile dev"``); rows are told apart
    by it, so a plugin starts its own with its tool's or store's name. ``status``:
    ``"ok"``, ``"warn"`` or ``"fail"`` (any ``"fail"`` makes doctor exit with 1).
    ``summary``: what was found, one line, never a secret. ``fix``: the next step
    when the status is not ``"ok"`` (a command to run, a setting to change).
    """

    name: str
    status: str
    summary: str
    fix: str = ""
