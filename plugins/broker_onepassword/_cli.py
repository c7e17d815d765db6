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
#: Runs of characters a key, a secret, a token or a seed is made of: masked in what a
#: program printed (:func:`excerpt`) when they hold a digit, ``/``, ``+`` or ``=``.
_SECRET_LIKE = re.compile(r"[A-Za-z0-9/+=_\-]{12,}")
_NOT_A_WORD = re.compile(r"[\d/+=]")
#: Characters of what a program printed that an error message shows.
EXCERPT = 80


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
    as (:func:`classify`, or "timeout", "missing", "totp"; "output": it printed nothing or
    no JSON where the CLI prints JSON; "version": too old to write items; "unwritten": a
    write's answer does not hold what broker sent)."""

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
    which: Callable[[str], str | None] | None = None,
    root: Path | None = None,
) -> OpBinary | None:
    """The 1Password CLI to run, or None.

    The ``op_path`` setting when it is set (a path, or a bare name such as ``op.exe``
    looked up on PATH), whether or not it can run (:func:`op_path_problem` says why
    not). Otherwise, inside WSL, Windows' ``op.exe``: on PATH, then in the usual install
    locations (:data:`WINDOWS_LOCATIONS`), since a Linux ``op`` cannot reach the Windows
    app; then ``op`` on PATH.
    """
    which = which or _which
    if setting:
        named = _op_path(setting, which)
        return None if named is None else OpBinary(named, named.lower().endswith(".exe"),
                                                   "op_path")
    inside = _platform.in_wsl() if wsl is None else wsl
    if inside:
        found = which("op.exe")
        if found:
            return OpBinary(found, True, "PATH")
        for path in windows_candidates(root):
            if os.access(path, os.X_OK):
                return OpBinary(str(path), True, "C: drive")
    found = which("op")
    return OpBinary(found, False, "PATH") if found else None


def _which(name: str) -> str | None:
    """:func:`shutil.which`, imported on first use: shutil loads zlib, bz2 and lzma, which
    `broker list` (it asks whether the CLI is there) has no other use for."""
    import shutil

    return shutil.which(name)


def _op_path(setting: str, which: Callable[[str], str | None] | None = None) -> str | None:
    """The program ``op_path`` names when it can be run: a bare name is looked up on PATH."""
    if "/" not in setting and not setting.startswith("~"):
        return (which or _which)(setting)
    path = Path(setting).expanduser()
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def op_path_problem(setting: str) -> str | None:
    """Why the ``op_path`` setting names no program broker can run, as
    ``"op_path = '...' does not exist"`` (``is a directory``, ``is not executable``, ``is
    not on PATH`` for a bare name); None when it names one."""
    if _op_path(setting) is not None:
        return None
    shown = f"op_path = {setting!r}"
    if "/" not in setting and not setting.startswith("~"):
        windows = (" (inside WSL the Windows PATH is there only with appendWindowsPath on)"
                   if _platform.in_wsl() else "")
        return f"{shown} is not on PATH{windows}"
    path = Path(setting).expanduser()
    if not path.exists():
        return f"{shown} does not exist"
    if path.is_dir():
        return f"{shown} is a directory, not the 1Password CLI"
    if not path.is_file():
        return f"{shown} is not a file"
    return f"{shown} is not executable"


# -- which transport ---------------------------------------------------------------------


def op_binary(backend: OnePasswordBackend) -> OpBinary | None:
    """:func:`locate` for ``backend``'s ``op_path``, looked up once per backend instance
    (inside WSL the lookup walks PATH entries and globs on the C: drive, slow through
    WSL's file sharing)."""
    if "_op_binary" not in backend.__dict__:
        backend.__dict__["_op_binary"] = locate(backend._setting("op_path"))
    found: OpBinary | None = backend.__dict__["_op_binary"]
    return found


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
    1Password CLI: the one ``op_path`` names (even one that cannot run: its errors then
    say what is wrong with it), else one that is installed. Inside WSL, where the SDK
    cannot reach the Windows app, the CLI is chosen even when none is found, so that
    every error names ``op.exe`` (docs/wsl2.md). Whether the app integration is on is
    learnt from ``op``'s first answer (checking first would cost a process per read).
    Raises ConfigError for an unknown ``transport``.
    """
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
        return Choice("cli", "transport = cli", op_binary(backend))
    if backend._setting("token") is not None:
        return Choice("sdk", "the token setting names a service-account token")
    if os.environ.get(TOKEN_VARIABLE, "").strip():
        return Choice("sdk", f"{TOKEN_VARIABLE} is set")
    if backend._setting("account") is not None and not _platform.in_wsl() \
            and _platform.desktop_library() is not None:
        return Choice("sdk", "account is set and the desktop app's SDK library is here")
    op_path = backend._setting("op_path")
    binary = op_binary(backend)
    if backend._login_token() is not None:
        return Choice("sdk", "a service-account token is kept by `broker backend login`")
    if binary is None and op_path is None and not _platform.in_wsl():
        return Choice("sdk", "no service-account token and no 1Password CLI")
    if op_path is not None:
        return Choice("cli", "no service-account token; op_path names the 1Password CLI",
                      binary)
    if binary is not None:
        return Choice("cli", "no service-account token; the 1Password CLI is installed",
                      binary)
    return Choice("cli", "inside WSL2 only op.exe reaches the Windows 1Password app")


def fix_op_path() -> str:
    """The next step for an ``op_path`` setting that names no program broker can run."""
    interop = ", op.exe through WSL interop" if _platform.in_wsl() else ""
    return (f"fix op_path under [backends.onepassword] (the 1Password CLI{interop}), or "
            "remove it to look on PATH")


def availability(backend: OnePasswordBackend) -> Availability:
    """Offline: whether the 1Password CLI is there (that it can sign in shows on use).
    When it is not, the reason names what ``op_path`` names (:func:`op_path_problem`),
    else what was looked for, and how to install it (inside WSL: ``op.exe``)."""
    setting = backend._setting("op_path")
    if op_binary(backend) is not None:
        return Availability(True)
    if setting:
        return Availability(False, f"onepassword: {op_path_problem(setting)} — "
                            f"{fix_op_path()} (docs/wsl2.md)")
    if _platform.in_wsl():
        token = ("" if backend._setting("transport") == "cli" else "; or use a "
                 "service-account token (`broker backend login onepassword`)")
        return Availability(False, "onepassword: inside WSL2 broker reaches the Windows "
                            "1Password app through op.exe, the 1Password CLI for Windows, "
                            "and found none (on PATH or in the usual install locations) — "
                            "install it in Windows (winget install 1Password.1PasswordCLI; "
                            "WSL finds op.exe on the Windows PATH while appendWindowsPath is "
                            "on), or set op_path = \"/mnt/c/.../op.exe\" under "
                            f"[backends.onepassword] (docs/wsl2.md){token}")
    return Availability(False, "onepassword: transport = cli but the 1Password CLI (op) "
                        "is not installed here — install it (see "
                        "https://developer.1password.com/docs/cli/get-started), or set op_path")


def account_for(backend: OnePasswordBackend, binary: OpBinary | None) -> str | None:
    """The ``--account`` to pass: the setting; for ``op.exe`` also OP_ACCOUNT, which WSL
    does not hand to Windows programs."""
    account = backend._setting("account")
    if account is None and binary is not None and binary.windows:
        account = os.environ.get("OP_ACCOUNT", "").strip() or None
    return account


def describe_auth(backend: OnePasswordBackend) -> str:
    """``backend show``'s ``auth`` line for the CLI transport."""
    binary = op_binary(backend)
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
    """The kind of ``op`` failure ``message`` (its own words, :func:`error_message`) shows:
    the first kind of :data:`KINDS` with one of its substrings in it, case-insensitive
    (``"app"``, ``"signin"``, ``"item_not_found"``, ``"rate"``...), else ``"other"``.
    """
    low = message.lower()
    for kind, needles in KINDS:
        if any(n in low for n in needles):
            return kind
    return "other"


def excerpt(text: str, secrets: Sequence[str] = ()) -> str:
    """What a program printed, for an error message: on one line, every value of
    ``secrets`` (4 characters or more) and every run that looks like a key, a secret or
    a seed masked as ``***``, cut to :data:`EXCERPT` characters."""
    from broker_onepassword._sdk import scrub  # on the way to an error message only

    text = scrub(text, list(secrets))
    text = _SECRET_LIKE.sub(
        lambda m: "***" if _NOT_A_WORD.search(m.group()) else m.group(), text)
    return text if len(text) <= EXCERPT else text[:EXCERPT - 3] + "..."


class OpRunner:
    """Runs ``op ARGS [--format json] [--account A]`` with a timeout.

    ``stdin`` (bytes) is written to ``op``'s stdin, else stdin is /dev/null so that
    ``op`` never waits on the terminal. Returns the parsed JSON, or the text with
    ``json_out=False``. Raises :class:`OpFailure` with ``op``'s message and its kind
    (:func:`classify`), ``"timeout"`` or ``"missing"``; ``"output"`` when it printed
    nothing (unless ``empty``: then None) or something that is not JSON (of the
    ``shape`` asked, ``dict`` or ``list``), naming the program and what it printed
    (:func:`excerpt`, with ``secrets()`` masked).
    """

    def __init__(self, binary: OpBinary, *, account: str | None, timeout: float,
                 secrets: Callable[[], list[str]] = list) -> None:
        self.binary = binary
        self.account = account
        self.timeout = timeout
        self.secrets = secrets
        self._version: tuple[str, tuple[int, ...] | None] | None = None

    def argv(self, args: Sequence[str], json_out: bool = True) -> list[str]:
        """The command line: the ``op`` binary, ``args``, ``--format json`` with ``json_out``, and
        ``--account A`` when an account is set. It never holds a secret: values go on stdin.
        """
        argv = [self.binary.path, *args]
        if json_out:
            argv += ["--format", "json"]
        if self.account:
            argv += ["--account", self.account]
        return argv

    def __call__(self, args: Sequence[str], *, stdin: bytes | None = None,
                 json_out: bool = True, shape: type | None = None,
                 empty: bool = False) -> Any:
        text = self._run(self.argv(args, json_out), stdin)
        if not json_out:
            return text
        command = f"`op {' '.join(args[:2])}`"
        if not text.strip():
            if empty:
                return None
            raise OpFailure(f"{self.binary.path} printed nothing where the 1Password CLI "
                            f"prints JSON ({command})", "output")
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if data is None or (shape is not None and not isinstance(data, shape)):
            raise OpFailure(f"{self.binary.path} printed "
                            f"{excerpt(text, self.secrets())!r}, not the JSON the "
                            f"1Password CLI prints ({command})", "output")
        return data

    def _run(self, argv: list[str], stdin: bytes | None) -> str:
        import subprocess

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
        return done.stdout.decode("utf-8", "replace")

    def version(self) -> tuple[int, ...] | None:
        """The version ``op --version`` prints, e.g. ``(2, 30, 3)`` (asked once; None when it
        prints no version). Raises :class:`OpFailure` when it does not run."""
        if self._version is None:
            text = self._run([self.binary.path, "--version"], None)
            self._version = (text, parse_version(text))
        return self._version[1]

    def version_text(self) -> str:
        """``"version 2.30.3"`` for messages, ``"version unknown"`` when it cannot be told;
        never raises."""
        try:
            version = self.version()
        except OpFailure:
            version = None
        return "version " + (".".join(map(str, version)) if version else "unknown")

    def require_writable(self) -> None:
        """Refuse an ``op`` that cannot write items as broker writes them: older than
        :data:`MIN_VERSION`, whose ``op item edit`` ignores the item on stdin and changes
        nothing (kind ``"version"``), or one whose ``--version`` prints no version (kind
        ``"output"``: not the 1Password CLI)."""
        version = self.version()
        if version is None:
            printed = self._version[0] if self._version else ""
            raise OpFailure(f"{self.binary.path} --version printed "
                            f"{excerpt(printed, self.secrets())!r}, not the 1Password CLI's "
                            "version", "output")
        if version < MIN_VERSION:
            raise OpFailure(f"{self.binary.path} is the 1Password CLI version "
                            f"{'.'.join(map(str, version))}", "version")


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
            **options: Any) -> Any:
        if stdin is not None:
            # Before 2.23.0 `op item edit` ignores the item on stdin and answers as if it
            # had stored it: such an op is refused before its first write (the runner
            # asks `op --version` once).
            self.runner.require_writable()
        if stdin is not None and not self._signed_in:
            # An op that is not signed in may ask questions and read the answers from
            # stdin: item values are only ever written to one that has answered.
            self.runner(["vault", "list"], shape=list)
        try:
            result = self.runner(args, stdin=stdin, **options)
        except OpFailure as failure:
            self._signed_in = self._signed_in or failure.kind in _SIGNED_IN
            raise
        self._signed_in = True
        return result

    def require_writable(self, what: str) -> None:
        """Refuse now, before ``what`` (a command that will write) does anything else, an
        ``op`` that cannot write items (older than :data:`MIN_VERSION`, or not the CLI):
        one ``op --version``, asked once.

        Raises:
            BackendError: the error :func:`translate` makes for kind ``"version"`` or
                ``"output"`` (names the version and how to upgrade).
        """
        try:
            self.runner.require_writable()
        except OpFailure as failure:
            raise translate(failure, what, binary=self.runner.binary,
                            account=self.runner.account, timeout=self.runner.timeout,
                            secrets=self._secrets()) from None

    def run(self, operation: Callable[[Any], Any], what: str) -> Any:
        """What ``operation(client)`` returns.

        Raises:
            BrokerError: ``op`` failed while doing ``what``: the error :func:`translate` makes
                (AppLocked, AuthenticationError, NotFound, RateLimited, NetworkError...), with
                every known secret masked.
        """
        try:
            return operation(self.client)
        except OpFailure as failure:
            version = self.runner.version_text() if failure.kind == "unwritten" else ""
            raise translate(failure, what, binary=self.runner.binary,
                            account=self.runner.account, timeout=self.runner.timeout,
                            secrets=self._secrets(), version=version) from None

    def close(self) -> None:
        """Forget the items a reference look-up read ahead; ``op`` keeps no process to stop.
        Calling it again does nothing more.
        """
        self.client.fetched.clear()


def open_session(backend: OnePasswordBackend) -> CliSession:
    """A :class:`CliSession` for ``backend``'s settings; BackendUnavailable without ``op``."""
    binary = op_binary(backend)
    if binary is None:
        raise BackendUnavailable(availability(backend).reason, "`broker doctor` checks it")

    def secrets() -> list[str]:
        return list(backend._secrets)

    runner = OpRunner(binary, account=account_for(backend, binary), timeout=backend._timeout(),
                      secrets=secrets)
    return CliSession(runner, secrets=secrets)


# -- op's errors as broker's ---------------------------------------------------------------


#: The next step when a Linux ``op`` runs inside WSL (docs/wsl2.md).
LINUX_OP_FIX = (
    "install op.exe, the 1Password CLI for Windows (winget install 1Password.1PasswordCLI), "
    "and set op_path = \"/mnt/c/.../op.exe\" under [backends.onepassword] if WSL does not "
    "find it (docs/wsl2.md); or sign this op in on its own (`op account add`)"
)
LINUX_OP_IN_WSL = f"a Linux op inside WSL cannot reach the Windows 1Password app: {LINUX_OP_FIX}"


def upgrade_hint(binary: OpBinary | None, *, doctor: bool = True) -> str:
    """How to get a 1Password CLI new enough to write items (:data:`MIN_VERSION`); with
    ``doctor``, that `broker doctor` checks it."""
    needed = ".".join(map(str, MIN_VERSION))
    how = ("in Windows: `winget upgrade 1Password.1PasswordCLI`"
           if binary is not None and binary.windows else "`op update`, or your package manager")
    return (f"upgrade the 1Password CLI to {needed} or newer ({how})"
            + ("; `broker doctor` checks it" if doctor else ""))


def stale_token_hint(backend: OnePasswordBackend) -> str | None:
    """The way to the app when ``OP_SERVICE_ACCOUNT_TOKEN`` made ``transport = "auto"``
    take the SDK although the 1Password CLI is installed (a stale token then hides the
    app); None otherwise."""
    if (backend._setting("transport") or "auto") != "auto" or backend._setting("token") \
            or backend.desktop:
        return None
    if not os.environ.get(TOKEN_VARIABLE, "").strip():
        return None
    if op_binary(backend) is None:
        return None
    return (f"unset {TOKEN_VARIABLE} to use the 1Password app through op, or set transport "
            "= \"cli\" under [backends.onepassword]")


def describe_transport(backend: OnePasswordBackend) -> str:
    """``backend show``'s ``transport`` line: which way to 1Password, and why."""
    try:
        choice = choose(backend)
    except ConfigError as exc:
        return exc.message
    way = "the 1Password CLI" if choice.transport == "cli" else "onepassword-sdk"
    return f"{way} ({choice.reason})"


def integration_hint(binary: OpBinary | None = None) -> str:
    """What to turn on in the 1Password app for ``op`` to sign in through it; inside WSL,
    for a Linux ``op``, that it cannot reach the Windows app, and how to use ``op.exe``."""
    import sys

    if binary is not None and not binary.windows and _platform.in_wsl():
        return LINUX_OP_IN_WSL
    system = ("windows" if (binary is not None and binary.windows) or _platform.in_wsl()
              else "darwin" if sys.platform == "darwin" else "linux")
    app = "the Windows 1Password app" if system == "windows" else "the 1Password app"
    return (f"open and unlock {app} and turn on {INTEGRATION} (and {UNLOCK[system]}); "
            "then run the command again (`broker doctor` checks it)")


def translate(failure: OpFailure, what: str, *, binary: OpBinary | None = None,
              account: str | None = None, timeout: float = 0.0,
              secrets: list[str] | None = None, version: str = "") -> BrokerError:
    """The broker error for ``op`` failing while doing ``what``, in ``op``'s words
    (``version``: ``"version 2.20.0"``, for a write ``op`` did not store)."""
    from broker_onepassword._sdk import scrub

    said = scrub(failure.message, secrets or [])
    kind = failure.kind
    if kind == "output":
        return BackendError(
            f"onepassword: {said}, while {what}",
            "check that it is the 1Password CLI (`op --version`): fix op_path under "
            "[backends.onepassword], or PATH (docs/wsl2.md); `broker doctor` checks it",
        )
    if kind == "version":
        needed = ".".join(map(str, MIN_VERSION))
        return BackendError(
            f"onepassword: {said}: it writes items only from {needed} on (older ones ignore "
            f"the item given on stdin and change nothing); nothing was written while {what}",
            upgrade_hint(binary),
        )
    if kind == "unwritten":
        shown = binary.path if binary is not None else "op"
        return BackendError(
            f"onepassword: the 1Password CLI ({shown}, {version or 'version unknown'}) did "
            f"not store what broker wrote while {what}: {said}",
            upgrade_hint(binary),
        )
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
            'set account = "<sign-in address or account id>" under [backends.onepassword], '
            "or export OP_ACCOUNT (`op account list` shows them)",
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
