"""Hardening for a broker process that outlives its command (``exec --server``).

Such a process holds credentials for hours. Two settings, made before any secret is read:

* ``prctl(PR_SET_DUMPABLE, 0)``: the process leaves no core dump, and other processes of
  the same user can no longer read its memory, environment or descriptors
  (``/proc/PID/mem``, ``environ``, ``fd``) nor attach a debugger; only root (or a
  process with CAP_SYS_PTRACE) can. The kernel sets the flag back when a program is
  exec'd, so the command broker starts is not affected.
* the soft core-size limit (``RLIMIT_CORE``) set to 0: no core file even where the
  system would write one for a non-dumpable process (``fs.suid_dumpable = 2``). The hard
  limit is kept, so the command broker starts, which inherits the soft limit of 0 (the
  default on most systems anyway), can raise it again with ``ulimit -c``.

Python cannot wipe a string from memory; what broker can do is drop its references to
secrets it no longer needs (:meth:`broker.services.context.Context.forget_secrets`) and
keep its memory out of other processes' reach, which this module does.
"""

from __future__ import annotations

import os
import sys

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def _prctl(option: int, argument: int = 0) -> int:
    """prctl(2) through ctypes; raises OSError on failure."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.restype = ctypes.c_int  # int prctl(int option, ...): the variadic rest as unsigned long
    result = int(prctl(ctypes.c_int(option), ctypes.c_ulong(argument), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0)))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def dumpable() -> bool | None:
    """Whether this process is dumpable (None: cannot tell here)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return _prctl(PR_GET_DUMPABLE) != 0
    except (OSError, AttributeError):
        return None


def harden() -> list[str]:
    """Make this process non-dumpable and core-less; what could not be done (one short
    line each), empty when everything was."""
    problems: list[str] = []
    try:
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
    except (ImportError, OSError, ValueError) as exc:
        problems.append(f"cannot set the core-size limit to 0 ({exc})")
    if sys.platform.startswith("linux"):
        try:
            _prctl(PR_SET_DUMPABLE, 0)
        except (OSError, AttributeError) as exc:
            problems.append(f"cannot make the process non-dumpable ({exc})")
    else:
        problems.append(f"cannot make the process non-dumpable on {sys.platform}")
    return problems
