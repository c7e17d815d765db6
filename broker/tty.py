"""Prompts on the controlling terminal.

An SDK running ``credential_process`` captures the helper's stdout and stderr,
so every prompt reads and writes ``/dev/tty`` directly, and so does the stderr of the
helpers broker runs for the user (:func:`helper_stderr`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from broker.errors import Interrupted, MFARequired


def has_tty() -> bool:
    """Whether this process has a controlling terminal it can open (``/dev/tty`` read-write),
    which is where every prompt goes; False under cron, systemd or a container without one.
    """
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _open_tty() -> int:
    try:
        return os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        raise MFARequired(
            "no terminal to prompt on",
            "run from a terminal, or supply the value another way",
        ) from None


def prompt(text: str, *, secret: bool = False) -> str:
    """Ask on /dev/tty; with ``secret`` the answer is not echoed."""
    import termios

    fd = _open_tty()
    try:
        old = None
        if secret:  # echo off before the prompt shows (as getpass): no answer is echoed
            with contextlib.suppress(termios.error):
                old = termios.tcgetattr(fd)
                new = termios.tcgetattr(fd)
                new[3] &= ~termios.ECHO
                termios.tcsetattr(fd, termios.TCSAFLUSH, new)
        try:
            os.write(fd, text.encode())
            with open(fd, "rb", buffering=0, closefd=False) as handle:
                line = handle.readline()
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None
        finally:
            if old is not None:
                termios.tcsetattr(fd, termios.TCSAFLUSH, old)
                os.write(fd, b"\n")
        if not line:
            raise Interrupted("no answer (end of input)")
        return line.decode("utf-8", "replace").rstrip("\r\n")
    finally:
        os.close(fd)


def prompt_secret(text: str) -> str:
    """:func:`prompt` with echo off: a passphrase or token typed is never shown.

    Raises:
        MFARequired: there is no terminal to prompt on.
        Interrupted: Ctrl-C, or end of input before a line.
    """
    return prompt(text, secret=True)


@contextlib.contextmanager
def helper_stderr() -> Iterator[int | None]:
    """Where a helper broker runs for the user (``mfa_process``) writes its stderr: the
    terminal when there is one, since an SDK running ``credential_process`` captures
    broker's own stderr; else broker's stderr (None: inherited)."""
    fd: int | None
    try:
        fd = os.open("/dev/tty", os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        fd = None
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def write(text: str) -> None:
    """Write a message to the terminal if there is one, else to stderr."""
    try:
        fd = os.open("/dev/tty", os.O_WRONLY | os.O_NOCTTY)
    except OSError:
        import sys

        sys.stderr.write(text)
        sys.stderr.flush()
        return
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
