"""``broker doctor``'s rows for the 1Password CLI transport (``op`` through the app).

:func:`checks` says where ``op`` is (on WSL2: ``op.exe`` on PATH or in the usual
Windows install locations, run through WSL interop), whether it is new enough
(``op --version``), whether the app integration answers (``op account list``:
the accounts the app lends the CLI) and whether this terminal session is approved
(``op whoami``). None of these asks the user to approve anything, and none reads
a vault: doctor stays local. When the integration is off, the fix names the exact
setting to turn on in the app. Rows only appear when broker uses 1Password here, so
what stops every read or write (an ``op`` older than 2.23.0, several accounts and
none chosen) fails; a Linux ``op`` inside WSL, which cannot reach the Windows app,
is a warning.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence

from broker.backend import Check
from broker.errors import ConfigError
from broker_onepassword import _cli, _platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from broker_onepassword import OnePasswordBackend

OK, WARN, FAIL = "ok", "warn", "fail"
CLI_ROW = "1Password CLI"
WSL_ROW = "1Password CLI in WSL"
APP_ROW = "1Password app integration"
SIGNIN_ROW = "1Password CLI sign-in"
#: Seconds one ``op`` may take here (starting ``op.exe`` through interop can be slow).
TIMEOUT = 20.0

#: ``run(argv, timeout)``: (exit code, stdout, stderr). Replaceable in tests.
Run = Callable[[Sequence[str], float], "tuple[int, str, str]"]


def _run(argv: Sequence[str], timeout: float) -> tuple[int, str, str]:
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, env=_cli.op_environment(), check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"[ERROR] no answer within {timeout:g} s"
    except OSError as exc:
        return 126, "", f"[ERROR] cannot run it: {exc.strerror or exc}"
    return (done.returncode, done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"))


def checks(backend: OnePasswordBackend, used: bool, *, run: Run = _run) -> list[Check]:
    """The CLI transport's rows for ``backend`` (``used``: broker uses 1Password here).

    Nothing when the SDK serves a configured service-account token; when no token is
    configured and no ``op`` is installed, one row naming the CLI as the way in without
    a token. Never raises: a bad ``transport`` setting is a failed row.
    """
    if not used:
        return []
    try:
        choice = _cli.choose(backend)
    except ConfigError as exc:
        return [Check("1Password transport", FAIL, exc.message, exc.hint)]
    if choice.transport == "sdk":
        if choice.reason.startswith("no service-account token"):
            return [_missing(backend, WARN)]
        return []
    if choice.binary is None:
        return [_missing(backend, FAIL)]
    rows = [_version(choice.binary, run)]
    if rows[0].summary.endswith(RUNS_NOT):
        return rows
    if _platform.in_wsl() and not choice.binary.windows:
        rows.append(Check(WSL_ROW, WARN, f"{choice.binary.path} is a Linux op: it cannot "
                          "reach the Windows 1Password app, only accounts signed in to it "
                          "on its own (`op account add`)", _cli.LINUX_OP_FIX))
    rows.append(_accounts(backend, choice.binary, run))
    if rows[-1].status != FAIL:
        rows.append(_signed_in(backend, choice.binary, run))
    return rows


def uses_cli(backend: OnePasswordBackend) -> bool:
    """Whether ``backend`` reaches 1Password through the CLI (False if it cannot tell)."""
    try:
        return _cli.choose(backend).transport == "cli"
    except ConfigError:
        return False


def _missing(backend: OnePasswordBackend, status: str) -> Check:
    setting = backend._setting("op_path")
    if setting:
        return Check(CLI_ROW, FAIL, _cli.op_path_problem(setting) or f"op_path = {setting!r}",
                     _cli.fix_op_path())
    wsl = _platform.in_wsl()
    if wsl:
        root = _cli.drives_root()
        where = ("op.exe and op on PATH, and "
                 + ", ".join(str(root / p) for p in _cli.WINDOWS_LOCATIONS))
        fix = ("in Windows: `winget install 1Password.1PasswordCLI` (WSL finds op.exe on the "
               "Windows PATH while appendWindowsPath is on); then in the Windows 1Password "
               f"app turn on {_cli.UNLOCK['windows']} and {_cli.INTEGRATION}; or set "
               "op_path = \"/mnt/c/.../op.exe\" under "
               "[backends.onepassword] (docs/wsl2.md)"
               + ("" if backend._setting("transport") == "cli" else "; or use a "
                  "service-account token: `broker backend login onepassword`"))
    else:
        where = "op on PATH"
        fix = ("install the 1Password CLI (https://developer.1password.com/docs/cli/"
               f"get-started) and turn on {_cli.INTEGRATION} in the 1Password app")
    summary = f"not found (looked for {where})"
    if status == WARN:
        summary += ": with it, and the app's CLI integration, no token is needed"
    return Check(CLI_ROW, status, summary, fix)


#: How the version row's summary ends when ``op`` does not run (no other row follows).
RUNS_NOT = "(is it the 1Password CLI?)"


def _version(binary: _cli.OpBinary, run: Run) -> Check:
    shown = f"{binary.path}{' (through WSL interop)' if binary.windows else ''}"
    code, out, err = run([binary.path, "--version"], TIMEOUT)
    version = _cli.parse_version(out) if code == 0 else None
    if version is None:
        said = (_cli.error_message(err) if code
                else f"it printed {_cli.excerpt(out)!r} for --version")
        return Check(CLI_ROW, FAIL, f"{shown} does not run: {said} {RUNS_NOT}",
                     "reinstall the 1Password CLI, or set op_path under "
                     "[backends.onepassword]")
    text = ".".join(map(str, version))
    if version < _cli.MIN_VERSION:
        needed = ".".join(map(str, _cli.MIN_VERSION))
        return Check(CLI_ROW, FAIL, f"{shown} is version {text}: broker writes items only "
                     f"with {needed} or newer (older ones ignore the item given to `op item "
                     "edit` on stdin and change nothing), so it refuses to write with it",
                     _cli.upgrade_hint(binary, doctor=False))
    return Check(CLI_ROW, OK, f"{shown}, version {text}")


def _matching(accounts: list[dict[str, Any]], wanted: str) -> list[dict[str, Any]]:
    low = wanted.lower().removeprefix("https://").rstrip("/")
    return [a for a in accounts if low in {
        str(a.get(k, "")).lower().removeprefix("https://").rstrip("/")
        for k in ("shorthand", "url", "email", "account_uuid", "user_uuid")}]


def _accounts(backend: OnePasswordBackend, binary: _cli.OpBinary,
              run: Run) -> Check:
    import json

    hint = _cli.integration_hint(binary)
    code, out, err = run([binary.path, "account", "list", "--format", "json"], TIMEOUT)
    if code != 0:
        return Check(APP_ROW, FAIL, f"the 1Password CLI cannot reach the app: "
                     f"{_cli.error_message(err)}", hint)
    try:
        accounts = [a for a in json.loads(out or "[]") if isinstance(a, dict)]
    except (ValueError, TypeError):
        accounts = []
    if not accounts:
        return Check(APP_ROW, FAIL, "the 1Password CLI sees no account: the app integration "
                     "is off (or the app has no account)", hint)
    shown = ", ".join(str(a.get("url") or a.get("email") or "?") for a in accounts)
    account, where = _chosen_account(backend)
    if account:
        if not _matching(accounts, account):
            return Check(APP_ROW, FAIL, f"{where} = {account!r} matches none of the app's "
                         f"accounts ({shown})", f"set {where} to one of them"
                         + (" under [backends.onepassword]" if where == "account" else ""))
        return Check(APP_ROW, OK, f"on; broker uses the app's account {account}")
    if len(accounts) > 1:
        return Check(APP_ROW, FAIL, f"on; the app has {len(accounts)} accounts ({shown}) and "
                     "none is chosen: op will not guess which, so every read fails",
                     ACCOUNT_FIX)
    return Check(APP_ROW, OK, f"on; the app's account {shown}")


#: How to choose one of several accounts of the app.
ACCOUNT_FIX = ('set account = "<one of them>" under [backends.onepassword], or export '
               "OP_ACCOUNT=<one of them> (`op account list` shows them)")


def _chosen_account(backend: OnePasswordBackend) -> tuple[str | None, str]:
    """(the account ``op`` acts as, where it is chosen): the ``account`` setting, else
    OP_ACCOUNT, which broker passes as ``--account`` to ``op.exe`` and a Linux ``op``
    reads itself."""
    setting = backend._setting("account")
    if setting:
        return setting, "account"
    return os.environ.get("OP_ACCOUNT", "").strip() or None, "OP_ACCOUNT"


def _signed_in(backend: OnePasswordBackend, binary: _cli.OpBinary,
               run: Run) -> Check:
    argv = [binary.path, "whoami", "--format", "json"]
    account = _cli.account_for(backend, binary)
    if account:
        argv += ["--account", account]
    code, _, err = run(argv, TIMEOUT)
    if code == 0:
        return Check(SIGNIN_ROW, OK, "approved in this terminal session (until 10 idle "
                     "minutes pass or the app locks)")
    said = _cli.error_message(err)
    kind = _cli.classify(said)
    if kind == "signin":
        return Check(SIGNIN_ROW, OK, "not approved in this terminal session yet: the first "
                     "command that reads 1Password asks once (Windows Hello, Touch ID or "
                     "the system password)")
    if kind == "accounts":
        return Check(SIGNIN_ROW, FAIL, f"`op whoami` says: {said}", ACCOUNT_FIX)
    return Check(SIGNIN_ROW, WARN, f"`op whoami` says: {said}", _cli.integration_hint(binary))
