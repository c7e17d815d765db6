"""GnuPG for the pass backend: python-gnupg for the cryptography, plain gpg for listings.

python-gnupg (imported here, never by the package itself: it costs ~75 ms) runs
each operation as a gpg process. A passphrase reaches gpg only on that process's
stdin, with ``--pinentry-mode loopback --passphrase-fd 0`` (python-gnupg writes it
before the data): never in argv, never in a file. Errors are read from gpg's
machine-readable status lines, because its human messages mislead (a wrong
passphrase ends in "decryption failed: No secret key").
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from broker.errors import AuthenticationError, BackendError, BackendUnavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    import gnupg

# libgpg-error codes (the low 16 bits of the numbers in "ERROR" status lines).
_BAD_PASSPHRASE = 11
_NO_SECKEY = 17
_NO_PINENTRY = 85
#: ENOTTY as libgpg-error numbers it (GPG_ERR_SYSTEM_ERROR | 102): pinentry-curses found no
#: terminal to draw on. gpg then says "Inappropriate ioctl for device" and, last, "decryption
#: failed: No secret key", although the secret key is right here.
_NO_TTY = 32870
_CANCELED = 99
_FULLY_CANCELED = 198
_TIMEOUT = 62
_NOT_CONFIRMED = 114

_INVALID_RECIPIENT = {
    "1": "no public key",
    "2": "ambiguous name",
    "3": "the key cannot encrypt",
    "4": "the key is revoked",
    "5": "the key has expired",
    "10": "the key is not trusted",
    "13": "the key is disabled",
    "14": "not a valid key specification",
}

#: Options pass itself adds to every encryption.
ENCRYPT_OPTIONS = ("--compress-algo=none", "--no-encrypt-to")
#: How long a listing may take (the agent may have to start first).
LIST_TIMEOUT = 20.0


def terminal_name() -> str | None:
    """The device of this process's terminal (``/dev/pts/3``), for ``GPG_TTY``.

    gpg talks to gpg-agent, a daemon without a terminal, so pinentry-curses can
    only draw on the device named in GPG_TTY. python-gnupg gives gpg pipes, so
    gpg cannot find it itself; the user story needed ``GPG_TTY=$(tty)`` in
    .bashrc for this. An SDK running ``credential_process`` replaces all three
    standard streams, so the controlling terminal is found through /proc too.
    """
    for fd in (0, 2, 1):
        try:
            if os.isatty(fd):
                return os.ttyname(fd)
        except OSError:
            continue
    try:
        with open("/proc/self/stat", "rb") as stream:
            stat = stream.read()
        tty_nr = int(stat[stat.rindex(b")") + 2 :].split()[4])
    except (OSError, ValueError, IndexError):
        return None
    if tty_nr == 0:
        return None
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    candidates = []
    if 136 <= major <= 143:  # Unix98 pseudo-terminals
        candidates.append(f"/dev/pts/{(major - 136) * 256 + minor}")
    if major == 4 and minor < 64:  # virtual consoles
        candidates.append(f"/dev/tty{minor}")
    for path in candidates:
        try:
            if os.stat(path).st_rdev == os.makedev(major, minor):
                return path
        except OSError:
            continue
    return None


def gpg_environment() -> dict[str, str]:
    """The environment for gpg (and the gpg-agent it may start, which keeps it for its
    whole life): the short allow-list of :func:`broker.childenv.helper_environment`, never
    a passphrase or token variable broker was given; plus GPG_TTY when there is a terminal.

    Like pass, an exported GPG_TTY wins over what is found here.
    """
    from broker.childenv import helper_environment

    env = helper_environment(os.environ)
    if not env.get("GPG_TTY"):
        tty = terminal_name()
        if tty:
            env["GPG_TTY"] = tty
    return env


def _status(stderr: str) -> list[tuple[str, str]]:
    found = []
    for line in stderr.splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, _, value = line[9:].partition(" ")
            found.append((keyword, value.strip()))
    return found


def _error_codes(status: Sequence[tuple[str, str]]) -> list[int]:
    codes = []
    for keyword, value in status:
        if keyword in ("ERROR", "FAILURE"):
            parts = value.split()
            if len(parts) >= 2 and parts[1].isdigit():
                codes.append(int(parts[1]) & 0xFFFF)
    return codes


def _last_message(stderr: str) -> str:
    """gpg's last human-readable line (no plaintext ever goes to stderr)."""
    lines = [line[5:] for line in stderr.splitlines() if line.startswith("gpg: ")]
    return lines[-1][:200] if lines else "gpg failed"


def _skipped_reason(stderr: str, who: str) -> str:
    """gpg's reason for skipping recipient ``who`` ("No public key", "No name")."""
    marker = f"gpg: {who}: skipped: "
    for line in stderr.splitlines():
        if line.startswith(marker):
            return line[len(marker) :][:100].lower()
    return "unusable key"


class Decrypted:
    """The outcome of one decryption: the data, or what went wrong (no secrets)."""

    __slots__ = ("data", "key_ids", "kind", "message")

    def __init__(
        self, data: bytes | None, kind: str, key_ids: Sequence[str] = (), message: str = ""
    ) -> None:
        #: The plaintext when ``kind == "ok"``.
        self.data = data
        #: ok, bad-passphrase, no-pinentry, cancelled, no-secret-key or error.
        self.kind = kind
        #: The keys concerned: for bad-passphrase those the data is encrypted to that have
        #: a secret key here, for the other failures those without one.
        self.key_ids = list(key_ids)
        self.message = message

    def __repr__(self) -> str:
        return f"Decrypted(kind={self.kind!r}, key_ids={self.key_ids!r})"

    @property
    def needs_passphrase(self) -> bool:
        """Whether a passphrase supplied through loopback may help."""
        return self.kind in ("no-pinentry", "bad-passphrase", "cancelled")

    def error(self, what: str, passphrase_from: str | None) -> Exception:
        """The user-facing error for a failed decryption of ``what`` (an entry path), given
        where the passphrase came from (``passphrase_from``: the ``passphrase`` setting's
        reference; None: gpg-agent and its pinentry). A passphrase typed at a ``prompt:``
        is said to be the one typed: no stored secret is to blame."""
        if self.kind == "bad-passphrase":
            ids = " ".join(self.key_ids)
            listing = f"`gpg --list-secret-keys {ids}`" if ids else "`gpg --list-secret-keys`"
            typed = (passphrase_from or "").partition(":")[0].strip().lower() == "prompt"
            if typed:
                return AuthenticationError(
                    f"pass: the GPG passphrase typed was rejected while decrypting {what}",
                    "run the command again and type the passphrase of the GPG key "
                    f"{what} is encrypted to ({listing} shows it; .gpg-id names it)",
                )
            if passphrase_from:
                from broker.secrets import shown

                hint = f"check the secret that passphrase = {shown(passphrase_from)!r} points to"
            else:
                hint = "try again, or check which key .gpg-id names"
            return AuthenticationError(
                f"pass: the GPG passphrase was rejected while decrypting {what}", hint
            )
        if self.kind == "no-pinentry":
            return AuthenticationError(
                f"pass: gpg-agent could not ask for the GPG passphrase to decrypt {what} "
                "(no pinentry or no terminal)",
                'run from a terminal, or set passphrase = "op://..." (or "env:NAME") under '
                "[backends.pass] in broker's config",
            )
        if self.kind == "cancelled":
            return AuthenticationError(
                f"pass: the GPG passphrase prompt for {what} was cancelled or timed out",
                "run the command again and enter the passphrase",
            )
        if self.kind == "no-secret-key":
            ids = ", ".join(self.key_ids) or "unknown keys"
            return BackendError(
                f"pass: no secret key here can decrypt {what} (encrypted to {ids})",
                "import that key (`gpg --import`), or if it is lost see "
                "`broker backend show pass` and 'Recovering from a lost GPG key' in the "
                "pass backend docs",
            )
        return BackendError(
            f"pass: gpg could not decrypt {what}: {self.message}",
            f"try `pass show {what}` to see gpg's own messages",
        )


class Gpg:
    """One gpg configuration: binary, extra options, environment (with GPG_TTY)."""

    def __init__(self, binary: str = "gpg", options: Sequence[str] = ()) -> None:
        self.binary = binary
        self.options = list(options)
        self._gpg: gnupg.GPG | None = None
        self._env: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"Gpg(binary={self.binary!r}, options={self.options!r})"

    @property
    def env(self) -> dict[str, str]:
        """The environment gpg runs with (:func:`gpg_environment`), computed once per instance."""
        if self._env is None:
            self._env = gpg_environment()
        return self._env

    def _python_gnupg(self) -> gnupg.GPG:
        if self._gpg is None:
            import gnupg

            try:
                # gnupghome stays None: gpg then honours GNUPGHOME like pass does.
                self._gpg = gnupg.GPG(
                    gpgbinary=self.binary,
                    options=self.options or None,
                    env=self.env,
                    encoding="utf-8",
                )
            except (OSError, ValueError) as exc:
                raise BackendUnavailable(
                    f"pass: cannot run {self.binary}: {exc}",
                    "install GnuPG (`apt install gnupg`)",
                ) from None
        return self._gpg

    def decrypt(
        self, data: bytes, *, passphrase: str | None = None, ask: bool = True
    ) -> Decrypted:
        """Decrypt ``data``. Without ``passphrase``: gpg-agent's cache, then pinentry
        unless ``ask`` is False (then a protected key that is not cached fails)."""
        gpg = self._python_gnupg()
        extra = [] if ask or passphrase is not None else ["--pinentry-mode", "error"]
        result = gpg.decrypt(data, passphrase=passphrase, extra_args=extra)
        status = _status(result.stderr or "")
        keywords = {keyword for keyword, _ in status}
        if "DECRYPTION_OKAY" in keywords and result.returncode == 0:
            return Decrypted(bytes(result.data), "ok")
        codes = _error_codes(status)
        no_seckey = [value.split()[0] for keyword, value in status
                     if keyword == "NO_SECKEY" and value]
        message = _last_message(result.stderr or "")
        if _BAD_PASSPHRASE in codes or "BAD_PASSPHRASE" in keywords:
            # the keys whose passphrase was asked for: encrypted to, and held here
            held = [value.split()[0] for keyword, value in status
                    if keyword == "ENC_TO" and value and value.split()[0] not in no_seckey]
            return Decrypted(None, "bad-passphrase", held, message)
        if {_NO_PINENTRY, _NO_TTY} & set(codes) or "MISSING_PASSPHRASE" in keywords:
            return Decrypted(None, "no-pinentry", no_seckey, message)
        if {_CANCELED, _FULLY_CANCELED, _TIMEOUT, _NOT_CONFIRMED} & set(codes):
            return Decrypted(None, "cancelled", no_seckey, message)
        if no_seckey or _NO_SECKEY in codes:
            return Decrypted(None, "no-secret-key", no_seckey, message)
        return Decrypted(None, "error", no_seckey, message)

    def encrypt(self, data: bytes, recipients: Sequence[str], what: str, source: str) -> bytes:
        """``data`` encrypted to ``recipients`` (binary, as pass writes it)."""
        gpg = self._python_gnupg()
        result = gpg.encrypt(
            data, list(recipients), armor=False, extra_args=list(ENCRYPT_OPTIONS)
        )
        if result.ok and result.returncode == 0 and result.data:
            return bytes(result.data)
        for keyword, value in _status(result.stderr or ""):
            if keyword == "INV_RECP":
                code, _, who = value.partition(" ")
                reason = _INVALID_RECIPIENT.get(code) or _skipped_reason(
                    result.stderr or "", who
                )
                if code == "10":
                    hint = f"trust it as pass requires: `gpg --edit-key {who} trust`"
                elif code in ("0", "1"):
                    hint = f"import its public key (`gpg --import`) or correct {source}"
                else:
                    hint = f"renew or replace the key, then `pass init <gpg-id>` ({source})"
                raise BackendError(
                    f"pass: cannot encrypt {what} to {who or 'a recipient'}: {reason}", hint
                )
        raise BackendError(
            f"pass: gpg could not encrypt {what}: {_last_message(result.stderr or '')}",
            f"check the recipients in {source} (`gpg --list-keys <gpg-id>`)",
        )

    # -- listings through plain gpg: no python-gnupg import for cheap checks --------

    def run(self, args: Sequence[str], timeout: float = LIST_TIMEOUT) -> tuple[int, str]:
        """(exit status, stdout) of ``gpg --batch --with-colons ARGS``; stdin is empty."""
        try:
            done = subprocess.run(
                [self.binary, "--batch", "--no-tty", "--with-colons", *self.options, *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                env=self.env,
                check=False,
            )
        except FileNotFoundError:
            raise BackendUnavailable(
                f"pass: {self.binary} not found", "install GnuPG (`apt install gnupg`)"
            ) from None
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"pass: running {self.binary} failed: {exc}") from None
        return done.returncode, done.stdout.decode("utf-8", "replace")

    def secret_key_ids(self, specs: Sequence[str] = ()) -> dict[str, bool]:
        """Key ids (primary and subkeys) whose secret part is here, for ``specs``
        (all keys when empty), each mapped to whether it can encrypt and is usable."""
        _, out = self.run(["--list-secret-keys", "--", *specs])
        found: dict[str, bool] = {}
        usable_key = False
        for line in out.splitlines():
            fields = line.split(":")
            if len(fields) < 15 or fields[0] not in ("sec", "ssb"):
                continue
            if fields[0] == "sec":
                # Upper-case capabilities on the primary line describe the whole key.
                usable_key = "E" in fields[11]
            present = fields[14] != "#"  # "#": only a stub, the secret part is elsewhere
            if present:
                valid = fields[1] not in ("e", "r", "d", "i", "n")
                found[fields[4].upper()] = usable_key and valid and "e" in fields[11]
        return found

    def groups(self) -> dict[str, list[str]]:
        """gpg's ``group`` definitions (a .gpg-id may name a group)."""
        _, out = self.run(["--list-config"])
        groups: dict[str, list[str]] = {}
        for line in out.splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and fields[:2] == ["cfg", "group"]:
                groups[fields[2]] = [m for m in fields[3].split(";") if m]
        return groups

    def verify_signed_file(self, path: str, signers: Sequence[str]) -> bool:
        """Whether ``path + ".sig"`` is a good signature over ``path`` by one of
        ``signers`` (fingerprints), as pass checks with PASSWORD_STORE_SIGNING_KEY."""
        try:
            done = subprocess.run(
                [self.binary, "--batch", "--no-tty", *self.options, "--status-fd=1",
                 "--verify", f"{path}.sig", path],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=LIST_TIMEOUT,
                env=self.env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        wanted = {s.upper() for s in signers}
        for keyword, value in _status(done.stdout.decode("utf-8", "replace")):
            if keyword == "VALIDSIG":
                parts = value.split()
                if parts and (parts[0].upper() in wanted or parts[-1].upper() in wanted):
                    return True
        return False


def environment_options(environ: Mapping[str, str]) -> list[str]:
    """``PASSWORD_STORE_GPG_OPTS`` split on blanks, as pass does."""
    return environ.get("PASSWORD_STORE_GPG_OPTS", "").split()
