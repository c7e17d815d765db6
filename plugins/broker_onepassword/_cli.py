"""The second way to 1Password: the 1Password CLI, signed in through the desktop app.

With the app's CLI integration on (Settings > Developer > Integrate with 1Password
CLI), ``op`` asks the app, which asks the user (Windows Hello, Touch ID, the system
password) once per terminal session, and no token lives anywhere
(https://developer.1password.com/docs/cli/app-integration). Inside WSL2 the Linux
side cannot load the app's SDK library, but it can run the Windows ``op.exe``
through WSL interop, and that one talks to the Windows app: the user story's
"on WSL2 with the Windows app, nothing else to set".

:func:`choose` picks the transport (the ``transport`` setting: ``sdk``, ``cli`` or
``auto``); :class:`CliSession` runs ``op`` for the backend, through the client in
:mod:`broker_onepassword._cli_items`, and turns ``op``'s errors into broker's with
``op``'s own words and the next step. Values never appear in an argument: they are
read from ``op``'s stdout (``--format json``) and written on its stdin.

This module is imported on the slow path only (a cold read, ``backend show``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from broker.backend import Availability
from broker.errors import (
    AmbiguousMatch,
    AppLocked,
    AuthenticationError,
    BackendError,
    BackendUnavailable,
    BrokerError,
    ConfigError,
    NetworkError,
    NotFound,
    RateLimited,
)
from broker_onepassword import _platform

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from broker_onepassword import OnePasswordBackend
    from broker_onepassword._cli_items import OpClient

TRANSPORTS = ("auto", "sdk", "cli")
TOKEN_VARIABLE = "OP_SERVICE_ACCOUNT_TOKEN"  # noqa: S105 - a variable name
#: Variables that make ``op`` sign in some other way than through the app: dropped
#: from its environment (a service account or Connect server wins over the app).
OTHER_SIGN_INS = (TOKEN_VARIABLE, "OP_CONNECT_HOST", "OP_CONNECT_TOKEN")
#: ``op item edit`` reads the item's JSON on stdin from 2.23.0 (1Password's Terraform
#: provider requires that version for this reason: internal/onepassword/cli/op.go).
MIN_VERSION = (2, 23, 0)
#: Where the 1Password CLI lands on Windows, under the drive root WSL mounts C: in:
#: the manual install (https://developer.1password.com/docs/cli/get-started), winget
#: (``winget install 1Password.1PasswordCLI``: its Links folder, else the package
#: folder), Scoop, Chocolatey.
WINDOWS_LOCATIONS = (
    "c/Program Files/1Password CLI/op.exe",
    "c/Users/*/AppData/Local/Microsoft/WinGet/Links/op.exe",
    "c/Users/*/AppData/Local/Microsoft/WinGet/Packages/AgileBits.1Password.CLI_*/op.exe",
    "c/Users/*/scoop/shims/op.exe",
    "c/ProgramData/chocolatey/bin/op.exe",
)
#: What to turn on in the app, by platform (the CLI's own sign-in help:
#: https://developer.1password.com/docs/cli/reference/commands/signin).
INTEGRATION = "Settings > Developer > Integrate with 1Password CLI"
UNLOCK = {
    "windows": "Settings > Security > Windows Hello",
    "linux": "Settings > Security > Unlock using system authentication",
    "darwin": "Settings > Security > Touch ID",
}
_ERROR_LINE = re.compile(r"^\[ERROR\]\s+(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\s+)?(.*)$")


# -- finding op --------------------------------------------------------------------------


class OpBinary:
    """The ``op`` broker runs: its ``path``, whether it is Windows' ``op.exe``
    (``windows``), and where broker ``found`` it ("PATH", "op_path", "C: drive")."""

    __slots__ = ("found", "path", "windows")

    def __init__(self, path: str, windows: bool, found: str) -> None:
        self.path, self.windows, self.found = path, windows, found

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OpBinary) and (self.path, self.windows, self.found) == (
            other.path, other.windows, other.found)

    def __hash__(self) -> int:
        return hash((self.path, self.windows, self.found))

    def __repr__(self) -> str:
        return f"OpBinary({self.path!r}, windows={self.windows}, found={self.found!r})"


class OpFailure(Exception):
    """``op`` failed: its ``message`` (its own words) and ``kind``, what broker reads it
    as (:func:`classify`, or "timeout", "missing", "totp")."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


def drives_root(wsl_conf: str = "/etc/wsl.conf") -> Path:
    """Where WSL mounts Windows drives: ``[automount] root`` in /etc/wsl.conf, else /mnt."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(wsl_conf, encoding="utf-8")
        root = parser.get("automount", "root", fallback="/mnt/").strip().strip('"')
    except (configparser.Error, OSError, UnicodeDecodeError):
        root = "/mnt/"
    return Path(root or "/mnt/")


def windows_candidates(root: Path | None = None) -> list[Path]:
    """Installed ``op.exe`` files in the usual Windows locations, in that order."""
    base = root if root is not None else drives_root()
    found: list[Path] = []
    for pattern in WINDOWS_LOCATIONS:
        try:
            matches = sorted(base.glob(pattern))
        except OSError:
            continue
        found += [m for m in matches if m.is_file() and m not in found]
    return found


def locate(
    setting: str | None = None,
    *,
    wsl: bool | None = None,
    which: Callable[[str], str | None] = shutil.which,
    root: Path | None = None,
) -> OpBinary | None:
    """The 1Password CLI to run, or None: the ``op_path`` setting; else on PATH (inside
    WSL ``op.exe`` first: the Linux ``op`` cannot reach the Windows app); else, inside
    WSL, the usual Windows install locations (:data:`WINDOWS_LOCATIONS`)."""
    if setting:
        path = Path(setting).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return OpBinary(str(path), path.suffix.lower() == ".exe", "op_path")
        return None
    inside = _platform.in_wsl() if wsl is None else wsl
    for name in ("op.exe", "op") if inside else ("op",):
        found = which(name)
        if found:
            return OpBinary(found, name == "op.exe", "PATH")
    if inside:
        for path in windows_candidates(root):
            if os.access(path, os.X_OK):
                return OpBinary(str(path), True, "C: drive")
    return None


# -- which transport ---------------------------------------------------------------------


class Choice:
    """The ``transport`` a backend uses (``"sdk"`` or ``"cli"``), the ``reason``, and the
    CLI found (``binary``, for the CLI)."""

    __slots__ = ("binary", "reason", "transport")

    def __init__(self, transport: str, reason: str, binary: OpBinary | None = None) -> None:
        self.transport, self.reason, self.binary = transport, reason, binary

    def __repr__(self) -> str:
        return f"Choice({self.transport!r}, {self.reason!r})"


def choose(backend: OnePasswordBackend) -> Choice:
    """How ``backend`` reaches 1Password.

    ``transport = "sdk"`` or ``"cli"`` decides. ``auto`` (the default) keeps the SDK
    whenever a service-account token is configured (the ``token`` setting,
    ``OP_SERVICE_ACCOUNT_TOKEN``, a token kept by ``broker backend login``) or the
    desktop app's SDK library serves the ``account`` setting, and otherwise uses the
    1Password CLI when one is installed. Whether the app integration is on is learnt
    from ``op``'s first answer (checking first would cost a process per read).
    Raises ConfigError for an unknown ``transport``.
    """
    from broker_onepassword import KEPT_TOKEN

    setting = backend._setting("transport") or "auto"
    if setting not in TRANSPORTS:
        raise ConfigError(
            f"onepassword: [backends.onepassword] transport = {setting!r} is not one of "
            f"{', '.join(TRANSPORTS)}",
            'e.g. transport = "cli" (the 1Password CLI through the app), "sdk" or "auto"',
        )
    if setting == "sdk":
        return Choice("sdk", "transport = sdk")
    if setting == "cli":
        return Choice("cli", "transport = cli", locate(backend._setting("op_path")))
    if backend._setting("token") is not None:
        return Choice("sdk", "the token setting names a service-account token")
    if os.environ.get(TOKEN_VARIABLE, "").strip():
        return Choice("sdk", f"{TOKEN_VARIABLE} is set")
    if backend._setting("account") is not None and not _platform.in_wsl() \
            and _platform.desktop_library() is not None:
        return Choice("sdk", "account is set and the desktop app's SDK library is here")
    binary = locate(backend._setting("op_path"))
    if binary is None:
        return Choice("sdk", "no service-account token and no 1Password CLI")
    if backend._kept(KEPT_TOKEN):
        return Choice("sdk", "a service-account token is kept in the kernel keyring")
    return Choice("cli", "no service-account token; the 1Password CLI is installed", binary)


def availability(backend: OnePasswordBackend) -> Availability:
    """Offline: whether the 1Password CLI is there (that it can sign in shows on use)."""
    setting = backend._setting("op_path")
    if locate(setting) is not None:
        return Availability(True)
    if setting:
        return Availability(False, f"onepassword: op_path = {setting!r} is not an "
                            "executable file — fix it, or remove it to look on PATH")
    where = (" — install it in Windows (winget install 1Password.1PasswordCLI) and WSL "
             "finds op.exe" if _platform.in_wsl() else " — install it (see "
             "https://developer.1password.com/docs/cli/get-started)")
    return Availability(False, "onepassword: transport = cli but the 1Password CLI (op) "
                        f"is not installed here{where}, or set op_path")


def account_for(backend: OnePasswordBackend, binary: OpBinary | None) -> str | None:
    """The ``--account`` to pass: the setting; for ``op.exe`` also OP_ACCOUNT, which WSL
    does not hand to Windows programs."""
    account = backend._setting("account")
    if account is None and binary is not None and binary.windows:
        account = os.environ.get("OP_ACCOUNT", "").strip() or None
    return account


def describe_auth(backend: OnePasswordBackend) -> str:
    """``backend show``'s ``auth`` line for the CLI transport."""
    binary = locate(backend._setting("op_path"))
    account = account_for(backend, binary)
    where = ("not found" if binary is None else
             f"{binary.path}{' through WSL interop' if binary.windows else ''}")
    return (f"1Password CLI ({where}), signed in through the 1Password app"
            + (f", account {account}" if account else ""))


# -- running op --------------------------------------------------------------------------


def op_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment ``op`` runs with: broker's, less other ways to sign in."""
    env = dict(os.environ if environ is None else environ)
    for name in OTHER_SIGN_INS:
        env.pop(name, None)
    return env


def error_message(stderr: str) -> str:
    """``op``'s own words: its ``[ERROR] <date> <time> ...`` lines without the prefix,
    else what it printed, on one line."""
    lines = [m.group(1) for m in map(_ERROR_LINE.match, stderr.splitlines()) if m]
    text = " ".join(lines) if lines else stderr
    return " ".join(text.split()) or "no message"


#: Substrings of ``op``'s messages, by what broker makes of them; first match wins.
#: From the CLI's messages as users report them (1Password's op-js, terraform and
#: shell-plugins issue trackers) and its documentation.
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("app", ("connecting to desktop app", "couldn't connect to the 1password desktop app",
             "integrate with 1password cli", "no accounts configured for use with 1password cli",
             "desktop app integration")),
    ("dismissed", ("authorization prompt dismissed", "authorization was denied",
                   "authorization timeout", "authorization timed out")),
    ("accounts", ("multiple accounts found",)),
    ("no_account", ("found no accounts for filter", "no account found for filter")),
    ("signin", ("not signed in", "not currently signed in", "session expired",
                "you are not signed in")),
    ("vault_not_found", ("isn't a vault",)),
    ("item_not_found", ("isn't an item", "item not found")),
    ("ambiguous", ("more than one item matches", "more than one vault matches")),
    ("rate", ("rate limit", "too many requests", "(429)")),
    ("denied", ("(403)", "forbidden", "you don't have permission",
                "you do not have permission")),
    ("conflict", ("(409)", "conflict")),
    ("network", ("dial tcp", "no such host", "connection refused", "i/o timeout",
                 "network is unreachable", "tls handshake", "could not reach")),
)


def classify(message: str) -> str:
    low = message.lower()
    for kind, needles in KINDS:
        if any(n in low for n in needles):
            return kind
    return "other"


class OpRunner:
    """Runs ``op ARGS [--format json] [--account A]`` with a timeout.

    ``stdin`` (bytes) is written to ``op``'s stdin, else stdin is /dev/null so that
    ``op`` never waits on the terminal. Returns the parsed JSON (None for no output),
    or the text with ``json_out=False``. Raises :class:`OpFailure` with ``op``'s
    message and its kind (:func:`classify`), ``"timeout"`` or ``"missing"``.
    """

    def __init__(self, binary: OpBinary, *, account: str | None, timeout: float) -> None:
        self.binary = binary
        self.account = account
        self.timeout = timeout

    def argv(self, args: Sequence[str], json_out: bool = True) -> list[str]:
        argv = [self.binary.path, *args]
        if json_out:
            argv += ["--format", "json"]
        if self.account:
            argv += ["--account", self.account]
        return argv

    def __call__(self, args: Sequence[str], *, stdin: bytes | None = None,
                 json_out: bool = True) -> Any:
        import subprocess

        argv = self.argv(args, json_out)
        try:
            done = subprocess.run(
                argv, input=stdin, stdin=subprocess.DEVNULL if stdin is None else None,
                capture_output=True, timeout=self.timeout, env=op_environment(), check=False,
            )
        except subprocess.TimeoutExpired:
            raise OpFailure(f"no answer within {self.timeout:g} s", "timeout") from None
        except OSError as exc:
            raise OpFailure(f"cannot run {self.binary.path}: {exc.strerror or exc}",
                            "missing") from None
        if done.returncode != 0:
            message = error_message(done.stderr.decode("utf-8", "replace"))
            raise OpFailure(message, classify(message))
        text = done.stdout.decode("utf-8", "replace")
        if not json_out:
            return text
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise OpFailure("the 1Password CLI printed something that is not JSON",
                            "other") from None


#: Kinds of failure after which ``op`` has shown it is signed in.
_SIGNED_IN = ("item_not_found", "vault_not_found", "ambiguous", "denied", "conflict")


class CliSession:
    """The backend's ``_run`` target for the CLI transport: ``run(operation, what)``
    calls ``operation(client)`` (an :class:`OpClient`) and turns :class:`OpFailure`
    into the broker error for doing ``what``."""

    def __init__(self, runner: OpRunner, *, secrets: Callable[[], list[str]]) -> None:
        from broker_onepassword._cli_items import OpClient

        self.runner = runner
        self.client: OpClient = OpClient(self._op)
        self._secrets = secrets
        self._signed_in = False

    def _op(self, args: Sequence[str], *, stdin: bytes | None = None,
            json_out: bool = True) -> Any:
        if stdin is not None and not self._signed_in:
            # An op that is not signed in may ask questions and read the answers from
            # stdin: item values are only ever written to one that has answered.
            self.runner(["vault", "list"])
        try:
            result = self.runner(args, stdin=stdin, json_out=json_out)
        except OpFailure as failure:
            self._signed_in = self._signed_in or failure.kind in _SIGNED_IN
            raise
        self._signed_in = True
        return result

    def run(self, operation: Callable[[Any], Any], what: str) -> Any:
        try:
            return operation(self.client)
        except OpFailure as failure:
            raise translate(failure, what, binary=self.runner.binary,
                            account=self.runner.account, timeout=self.runner.timeout,
                            secrets=self._secrets()) from None

    def close(self) -> None:
        self.client.fetched.clear()


def open_session(backend: OnePasswordBackend) -> CliSession:
    """A :class:`CliSession` for ``backend``'s settings; BackendUnavailable without ``op``."""
    binary = locate(backend._setting("op_path"))
    if binary is None:
        raise BackendUnavailable(availability(backend).reason,
                                 "see docs/wsl2.md, or run `broker doctor`")
    runner = OpRunner(binary, account=account_for(backend, binary), timeout=backend._timeout())
    return CliSession(runner, secrets=lambda: list(backend._secrets))


# -- op's errors as broker's ---------------------------------------------------------------


def integration_hint(binary: OpBinary | None = None) -> str:
    """What to turn on in the 1Password app for ``op`` to sign in through it."""
    import sys

    system = ("windows" if (binary is not None and binary.windows) or _platform.in_wsl()
              else "darwin" if sys.platform == "darwin" else "linux")
    app = "the Windows 1Password app" if system == "windows" else "the 1Password app"
    return (f"open and unlock {app} and turn on {INTEGRATION} (and {UNLOCK[system]}); "
            "then run the command again (`broker doctor` checks it)")


def _scrub(message: str, secrets: list[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        if value and len(value) >= 4:
            message = message.replace(value, "***")
    return message if len(message) <= 300 else message[:297] + "..."


def translate(failure: OpFailure, what: str, *, binary: OpBinary | None = None,
              account: str | None = None, timeout: float = 0.0,
              secrets: list[str] | None = None) -> BrokerError:
    """The broker error for ``op`` failing while doing ``what``, in ``op``'s words."""
    said = _scrub(failure.message, secrets or [])
    kind = failure.kind
    if kind == "timeout":
        return AppLocked(
            f"onepassword: the 1Password CLI did not answer within {timeout:g} s while {what} "
            "(waiting for your approval in the 1Password app, or the app is locked?)",
            "approve the request in the 1Password app (Windows Hello, Touch ID or your system "
            "password); raise [backends.onepassword] timeout if approving takes longer",
        )
    if kind == "missing":
        return BackendUnavailable(f"onepassword: {said}",
                                  "reinstall the 1Password CLI, or fix op_path under "
                                  "[backends.onepassword]")
    if kind == "app":
        return AppLocked(f"onepassword: the 1Password CLI cannot sign in through the "
                         f"1Password app while {what}: {said}", integration_hint(binary))
    if kind == "dismissed":
        return AuthenticationError(
            f"onepassword: the 1Password app's approval was dismissed or timed out while "
            f"{what}: {said}",
            "run the command again and approve it when the 1Password app asks",
        )
    if kind == "accounts":
        return AmbiguousMatch(
            f"onepassword: the 1Password app has several accounts and none was chosen while "
            f"{what}: {said}",
            'set account = "<sign-in address or account id>" under [backends.onepassword] '
            "(`op account list` shows them)",
        )
    if kind == "no_account":
        return NotFound(
            f"onepassword: the 1Password app has no account matching {account!r} while "
            f"{what}: {said}",
            "fix account under [backends.onepassword] (`op account list` shows the app's "
            "accounts: sign-in address, email or account id)",
        )
    if kind == "signin":
        return AuthenticationError(
            f"onepassword: the 1Password CLI is not signed in while {what}: {said}",
            integration_hint(binary),
        )
    if kind == "vault_not_found":
        return NotFound(f"onepassword: not found while {what}: {said}",
                        "fix [backends.onepassword] vault (a name or id shown in the app), "
                        "or the reference's vault")
    if kind == "item_not_found":
        return NotFound(f"onepassword: not found while {what}: {said}",
                        "check the vault, item and field names")
    if kind == "ambiguous":
        return AmbiguousMatch(f"onepassword: several matches while {what}: {said}",
                              "make the names unique in the 1Password app, or use ids")
    if kind == "rate":
        return RateLimited(f"onepassword: 1Password's rate limit was reached while {what}: "
                           f"{said}", "wait a while and run the command again; a cached "
                           "`broker exec` makes no 1Password requests")
    if kind == "denied":
        from broker_onepassword._sdk import AccessDenied

        return AccessDenied(f"onepassword: 1Password refused access while {what}: {said}",
                            "check that your 1Password account may edit the vault")
    if kind == "conflict":
        from broker_onepassword._sdk import VersionConflict

        return VersionConflict(f"onepassword: the item changed while {what}",
                               "run the command again")
    if kind == "network":
        return NetworkError(f"onepassword: the 1Password CLI cannot reach 1Password while "
                            f"{what}: {said}", "check the network connection")
    if kind == "totp":
        return ConfigError(f"onepassword: {said} (while {what})",
                           "?attribute=totp works on one-time password fields only")
    return BackendError(f"onepassword: the 1Password CLI failed while {what}: {said}",
                        "run `broker doctor`; if it persists, try the same `op` command by hand")


# -- the version -------------------------------------------------------------------------


def parse_version(text: str) -> tuple[int, ...] | None:
    """``(2, 30, 3)`` from ``op --version``'s ``2.30.3``; None if it is not a version."""
    found = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not found:
        return None
    return tuple(int(g) for g in found.groups() if g is not None)
