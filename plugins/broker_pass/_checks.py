"""The pass backend's rows in ``broker doctor``: gpg, the pass CLI, GPG_TTY.

Local and quick: ``gpg --version`` is the one process started (3 s at most); nothing
is decrypted and no passphrase is asked for. The environment, the program lookup and
the terminal are parameters, so tests can set them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping

from broker.backend import Check
from broker_pass._gpg import terminal_name as terminal  # the one broker tells gpg

OK, WARN, FAIL = "ok", "warn", "fail"
#: Seconds ``gpg --version`` may take.
TIMEOUT = 3.0


def version(which: Callable[[str], str | None], tool: str) -> str:
    """``/usr/bin/gpg (gpg (GnuPG) 2.2.40)``: where ``tool`` is and its version's first
    line; just the path when it does not answer; "" when it is not installed."""
    path = which(tool)
    if not path:
        return ""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True,
                             timeout=TIMEOUT, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return path
    first = next((line for line in out.splitlines() if line.strip()), "")
    return f"{path} ({first.strip()[:60]})" if first else path


def gnupg(
    used: bool, gpg_program: str = "gpg", *, which: Callable[[str], str | None] | None = None,
) -> list[Check]:
    """``gpg`` (a failure when the pass backend is in use and gpg is missing) and ``pass``
    (the CLI is optional: broker reads the store itself). ``which`` finds a program
    (default :func:`shutil.which`)."""
    which = which or shutil.which
    gpg, pass_cli = version(which, gpg_program), which("pass")
    checks = []
    if gpg:
        checks.append(Check("gpg", OK, gpg))
    elif used:
        checks.append(Check("gpg", FAIL, "gpg is not installed; the pass backend needs it",
                            "sudo apt install gnupg"))
    else:
        checks.append(Check("gpg", OK, "not installed (only the pass backend needs it)"))
    if pass_cli:
        checks.append(Check("pass", OK, f"{pass_cli} (reads and writes the same store)"))
    else:
        checks.append(Check("pass", OK, "the pass CLI is not installed (optional: broker "
                                        "reads its store itself)"))
    return checks


def gpg_tty(
    used: bool, *, environ: Mapping[str, str] | None = None,
    here: Callable[[], str | None] | None = None,
) -> list[Check]:
    """GPG_TTY as broker uses it: it tells gpg the terminal itself when GPG_TTY is unset
    (the pass backend finds it even under an SDK's credential_process), and an exported
    GPG_TTY wins, so only a stale one can send pinentry to the wrong terminal.
    ``environ`` defaults to the process's, ``here`` (this terminal) to the one broker tells
    gpg (:func:`broker_pass._gpg.terminal_name`)."""
    if not used:
        return [Check("GPG_TTY", OK, "not needed (the pass backend is not in use)")]
    value = (os.environ if environ is None else environ).get("GPG_TTY")
    if not value:
        return [Check("GPG_TTY", OK, "not set: not needed, broker tells gpg this terminal")]
    fix = ("unset GPG_TTY (broker finds the terminal itself), or export it from each "
           "shell: `export GPG_TTY=$(tty)` in ~/.bashrc")
    if not os.path.exists(value):
        return [Check("GPG_TTY", WARN, f"{value} does not exist: pinentry cannot ask there",
                      fix)]
    current = (here or terminal)()
    if current and os.path.realpath(current) != os.path.realpath(value):
        return [Check("GPG_TTY", WARN, f"{value}, but this terminal is {current}: pinentry "
                      "would ask for the passphrase on the other one", fix)]
    return [Check("GPG_TTY", OK, f"{value} (broker would find the terminal without it too)")]
