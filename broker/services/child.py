"""The user's command for `exec`: run in broker's place, or as broker's supervised child.

Plain `exec` replaces broker with the command (:func:`replace`): the command's exit is
broker's. `exec --server` keeps broker as the parent (:func:`supervise`): it relays
signals to the child, waits for it, then exits as the child did (:func:`exit_status`).
Both choose the command alike (:func:`command_argv`: $SHELL when none is given) and
refuse one that cannot start with the same errors (:func:`launching`).

The cached fast path runs :func:`replace`: this module imports nothing up front that it
does not need (``signal`` and ``subprocess`` are loaded when a child is supervised).
"""

from __future__ import annotations

import contextlib
import os
import sys

from broker.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs the fast path milliseconds: annotations only
    import signal
    import subprocess
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

#: siginfo.si_code of a signal the kernel sent (the terminal's ^C, ^\, hangup).
_SI_KERNEL = 0x80
#: How long the supervising loop waits for a signal before it polls the child, seconds.
_WAIT_TICK = 0.5


def command_argv(command: list[str], environ: Mapping[str, str]) -> list[str]:
    """``command``, or the user's shell when it is empty: ``$SHELL`` from ``environ``,
    else ``/bin/sh``."""
    return command or [environ.get("SHELL") or "/bin/sh"]


@contextlib.contextmanager
def launching(argv: list[str]) -> Iterator[None]:
    """Around starting ``argv``: a command that is not found or may not be run becomes a
    one-line :class:`UsageError` naming ``argv[0]``, for `exec` and `exec --server` alike.

    Raises:
        UsageError: FileNotFoundError or PermissionError raised inside the block.
    """
    try:
        yield
    except FileNotFoundError:
        raise UsageError(f"command not found: {argv[0]}", "check the command after --") from None
    except PermissionError:
        raise UsageError(f"cannot run {argv[0]}: permission denied", "check its mode") from None


def replace(argv: list[str], env: Mapping[str, str]) -> None:
    """Replace this process with ``argv`` (searched on ``env``'s PATH as execvpe does),
    its environment exactly ``env``; returns only by raising.

    Raises:
        UsageError: as :func:`launching`.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    with launching(argv):
        os.execvpe(argv[0], argv, env)  # noqa: S606 - the user's own command


# --- supervising a child (`exec --server`) -------------------------------------------------


def relayed_signals() -> tuple[signal.Signals, ...]:
    """The signals :func:`supervise` relays to the child. SIGTSTP/SIGCONT keep their
    default: the terminal stops and continues broker and the child together."""
    import signal

    return (
        signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
        signal.SIGUSR2,
    )


def _replayed_signals() -> frozenset[int]:
    """Signals whose default action ends a process without a core dump: a child killed by
    one of these makes broker die by the same signal (:func:`exit_status`)."""
    import signal

    return frozenset(
        {signal.SIGHUP, signal.SIGINT, signal.SIGKILL, signal.SIGPIPE, signal.SIGALRM,
         signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2}
    )


@contextlib.contextmanager
def signals_unblocked() -> Iterator[None]:
    """The relayed signals unblocked in the calling thread for the block (a thread started
    while :func:`supervise` blocks them inherits the block)."""
    import signal

    old = signal.pthread_sigmask(signal.SIG_UNBLOCK, relayed_signals())
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def terminal_foreground() -> Iterator[None]:
    """Make broker the terminal's foreground process group for a prompt, then give
    the terminal back. An interactive shell child puts itself in the foreground;
    a background process reading the terminal would be stopped (or, with SIGTTIN
    ignored, get EIO)."""
    import signal

    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        fd = -1
    moved_from = -1
    # From the background, tcsetpgrp() stops the caller unless SIGTTOU is ignored, as
    # supervise() makes it.
    movable = signal.getsignal(signal.SIGTTOU) == signal.SIG_IGN
    try:
        if fd >= 0 and movable:
            with contextlib.suppress(OSError):
                current = os.tcgetpgrp(fd)
                if current != os.getpgrp():
                    os.tcsetpgrp(fd, os.getpgrp())
                    moved_from = current
        yield
    finally:
        if moved_from >= 0:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(fd, moved_from)
        if fd >= 0:
            os.close(fd)


def _relay(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(signum)


def should_relay(si_code: int, same_group: bool) -> bool:
    """Relay a signal unless the terminal sent it (``si_code`` SI_KERNEL) to the process
    group the child is in: the child got it already."""
    return not (si_code == _SI_KERNEL and same_group)


def _same_group(child: subprocess.Popen[bytes]) -> bool:
    try:
        return os.getpgid(child.pid) == os.getpgrp()
    except OSError:
        return False


def _restore(handlers: dict[signal.Signals, Any]) -> None:
    import signal

    for signum, handler in handlers.items():
        signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def supervise(argv: list[str], env: dict[str, str], start: Callable[[], None]) -> int:
    """Run ``argv`` as a child with environment ``env``, relaying signals, until it exits;
    its return code (negative: killed by that signal).

    ``start`` runs first with the relayed signals blocked, so that the threads it
    starts (the server's) never take a signal meant for the child. The main thread
    then waits with sigtimedwait(), which also says who sent a signal: one the
    terminal sent to the whole process group already reached a child in that group
    and is not sent twice.

    Raises:
        UsageError: the command cannot be started (:func:`launching`).
    """
    import signal
    import subprocess

    relayed = relayed_signals()
    waited = {*relayed, signal.SIGCHLD}
    early: list[int] = []

    def remember(signum: int, frame: object) -> None:
        early.append(signum)

    sys.stdout.flush()  # what broker printed comes before anything the child prints
    sys.stderr.flush()
    previous = {s: signal.signal(s, remember) for s in relayed}
    try:
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
        try:
            start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        with launching(argv):
            child = subprocess.Popen(argv, env=env)
        # Ignored only now, so the child does not inherit it: lets a prompt take the
        # terminal back from the child's foreground job (see terminal_foreground).
        tty_signals = {
            s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTTOU, signal.SIGTTIN)
        }
        signal.pthread_sigmask(signal.SIG_BLOCK, waited)
        try:
            while True:
                while early:
                    _relay(child, early.pop(0))
                code = child.poll()
                if code is not None:
                    return code
                info = signal.sigtimedwait(waited, _WAIT_TICK)
                if info is None or info.si_signo == signal.SIGCHLD:
                    continue
                if should_relay(info.si_code, _same_group(child)):
                    _relay(child, info.si_signo)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            _restore(tty_signals)
    finally:
        _restore(previous)


def exit_status(returncode: int) -> int:
    """The exit code for a child's ``returncode``: its own exit code; a child killed by a
    signal makes broker die by the same signal (when that signal ends a process without a
    core dump), else 128 + signal, as a shell reports it."""
    if returncode >= 0:
        return returncode
    import signal

    signum = -returncode
    if signum in _replayed_signals():
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)
    return 128 + signum
