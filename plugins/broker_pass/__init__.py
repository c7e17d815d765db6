"""A ``pass`` password store as a broker backend (GnuPG through python-gnupg).

Items are entries ``<store>/<prefix>/<name>.gpg`` (prefix ``broker`` by default),
encrypted to the ids of the nearest ``.gpg-id`` exactly as ``pass insert`` would, in
a text format ``pass show`` and pass-otp read (see :mod:`broker_pass.entry`). When
the store is a git repository every change is committed, as pass does.

The GPG passphrase comes from gpg-agent and its pinentry (broker sets ``GPG_TTY``
for it), or from a secret reference in the ``passphrase`` setting, resolved by
whichever plugin claims its scheme; it reaches gpg on a pipe, never in argv.

This module is imported on the cached fast path (the registry loads the class),
so it imports only what is already loaded there: python-gnupg, the entry format
and subprocess come in with the first real operation.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from broker.backend import Availability, Backend, Capability, Item, Resolver
from broker.errors import AuthenticationError, BackendError, ConfigError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, ClassVar

    from broker.backend import Check
    from broker_pass._gpg import Decrypted, Gpg

__all__ = ["PassBackend"]

DEFAULT_PREFIX = "broker"
CREDENTIALS = "credentials"
SESSIONS = "sessions"
#: Where `broker backend show` and the errors send people who lost their key.
RECOVERY_DOCS = "docs/backends/pass.md, 'Recovering from a lost GPG key'"
_INIT_HINT = "run `pass init <gpg-id>`"
#: Tries a passphrase typed at a ``prompt:`` gets, as pinentry gives.
_PROMPT_TRIES = 3
# Inside the class, `list` is the method of that name.
_Names = list[str]
_CheckList = list["Check"]


def _check_path(path: str, what: str) -> list[str]:
    """The components of a relative store path; refuses anything that could escape."""
    parts = path.split("/")
    for part in parts:
        if not part or part in (".", "..") or part.startswith(".") or "\0" in part:
            raise BackendError(
                f"pass: {what} {path!r} is not a valid entry name",
                "use names without empty, '.' or '..' parts and without a leading dot "
                "in any part",
            )
    return parts


def _read_gpg_ids(path: Path) -> list[str]:
    """The ids in a ``.gpg-id``: one a line, ``#`` starts a comment (as pass reads it)."""
    ids = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        gpg_id = line.split("#", 1)[0].strip()
        if gpg_id:
            ids.append(gpg_id)
    return ids


class PassBackend(Backend):
    """Entries in a password store that the ``pass`` command shares.

    Settings (``[backends.pass]``):

    * ``store``: the password store (default ``$PASSWORD_STORE_DIR``, else
      ``~/.password-store``);
    * ``prefix``: the folder in the store for broker's entries (default ``"broker"``);
    * ``passphrase``: a secret reference for the GPG passphrase (``op://...``,
      ``env:NAME``, ``keyctl:NAME``, ``prompt:``); without it gpg-agent and pinentry ask;
    * ``gpg``: the gpg program (default ``"gpg"``).

    ``PASSWORD_STORE_KEY``, ``PASSWORD_STORE_GPG_OPTS``,
    ``PASSWORD_STORE_SIGNING_KEY`` and ``GNUPGHOME`` mean what they mean to pass.
    STS sessions are never written here.
    """

    name: ClassVar[str] = "pass"
    description: ClassVar[str] = "a pass password store (GnuPG); pass show reads the entries"
    capabilities: ClassVar[Capability] = (
        Capability.LIST | Capability.PERSISTENT | Capability.INTERACTIVE
    )
    #: After onepassword (3), before keyctl (1): keys last, on this machine only.
    priority: ClassVar[float] = 2.0
    schemes: ClassVar[tuple[str, ...]] = ("pass",)

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | None = None,
        namespace: str = CREDENTIALS,
        resolver: Resolver | None = None,
    ) -> None:
        super().__init__(settings=settings, namespace=namespace, resolver=resolver)
        store = self.settings.get("store") or os.environ.get("PASSWORD_STORE_DIR")
        if store is not None and not isinstance(store, str):
            raise ConfigError(
                "pass: the `store` setting must be a path", 'store = "~/.password-store"'
            )
        self.store: Path = Path(store or "~/.password-store").expanduser()
        prefix = self.settings.get("prefix", DEFAULT_PREFIX)
        if not isinstance(prefix, str) or not prefix.strip("/"):
            raise ConfigError(
                "pass: the `prefix` setting must name a folder in the store, never its root",
                f'set e.g. prefix = "{DEFAULT_PREFIX}" under [backends.pass]',
            )
        prefix = prefix.strip("/")
        try:
            _check_path(prefix, "prefix")
        except BackendError as exc:
            raise ConfigError(exc.message, exc.hint) from None
        self.prefix: str = prefix
        passphrase = self.settings.get("passphrase")
        if passphrase is not None and (not isinstance(passphrase, str) or ":" not in passphrase):
            raise ConfigError(
                "pass: the `passphrase` setting must be a secret reference, not a value",
                'e.g. passphrase = "op://AWS/GPG key/password" or "env:NAME"',
            )
        self.passphrase_ref: str | None = passphrase or None
        binary = self.settings.get("gpg", "gpg")
        if not isinstance(binary, str) or not binary:
            raise ConfigError("pass: the `gpg` setting must name a program", 'gpg = "gpg"')
        self.gpg_binary: str = binary
        self._gpg: Gpg | None = None
        # The resolved passphrase, kept for this instance only so that one command
        # asks 1Password (or the user) once, not once per entry.
        self._passphrase: str | None = None

    def __repr__(self) -> str:
        return (
            f"PassBackend(store={str(self.store)!r}, prefix={self.prefix!r}, "
            f"namespace={self.namespace!r})"
        )

    # -- layout ------------------------------------------------------------------

    @property
    def folder(self) -> str:
        """This namespace's folder in the store: the prefix for credentials."""
        if self.namespace == CREDENTIALS:
            return self.prefix
        return f"{self.prefix}-{self.namespace}"

    def entry_name(self, name: str) -> str:
        """The pass name of item ``name`` (``broker/dev``), as `pass show` takes it."""
        _check_path(name, "item name")
        return f"{self.folder}/{name}"

    def _file(self, pass_name: str) -> Path:
        *folders, last = pass_name.split("/")
        return self.store.joinpath(*folders, f"{last}.gpg")

    def recipients(self, pass_name: str) -> tuple[list[str], str]:
        """(gpg ids, where they come from) for entry ``pass_name``, as pass finds them:
        ``PASSWORD_STORE_KEY``, else the nearest ``.gpg-id`` from its folder upwards."""
        override = os.environ.get("PASSWORD_STORE_KEY", "").split()
        if override:
            return override, "PASSWORD_STORE_KEY"
        directory = self._file(pass_name).parent
        while True:
            candidate = directory / ".gpg-id"
            if candidate.is_file():
                return _read_gpg_ids(candidate), str(candidate)
            if directory == self.store or self.store not in directory.parents:
                return [], ""
            directory = directory.parent

    def _gpg_tool(self) -> Gpg:
        if self._gpg is None:
            from broker_pass._gpg import Gpg, environment_options

            self._gpg = Gpg(self.gpg_binary, environment_options(os.environ))
        return self._gpg

    # -- passphrase and decryption -------------------------------------------------

    def _resolve_passphrase(self, reference: str) -> str:
        from broker.secrets import shown

        value = self.resolve_setting(reference)
        reference = shown(reference)  # from here on only for messages
        # A trailing newline is how files and `echo` end a secret, never part of it.
        value = value.rstrip("\r\n")
        if not value:
            raise AuthenticationError(
                f"pass: the GPG passphrase from {reference} is empty",
                "store the passphrase there, or remove the passphrase setting to use pinentry",
            )
        if any(c in value for c in "\r\n\0"):
            raise AuthenticationError(
                f"pass: the GPG passphrase from {reference} contains a line break",
                "gpg reads a passphrase as one line; store it without line breaks",
            )
        return value

    def _decrypt_asking(self, gpg: Gpg, data: bytes, reference: str) -> Decrypted:
        """Decrypt with the passphrase ``reference`` gives. A passphrase typed at a
        ``prompt:`` may be wrong (or empty) twice and asked for again, as pinentry allows
        three tries; any other reference gives the same value again, so it is asked once."""
        typed = reference.partition(":")[0].strip().lower() == "prompt"
        for left in reversed(range(_PROMPT_TRIES if typed else 1)):
            try:
                passphrase = self._resolve_passphrase(reference)
            except AuthenticationError as exc:
                if not left:
                    raise
                _try_again(exc.message, left)
                continue
            outcome = gpg.decrypt(data, passphrase=passphrase)
            if outcome.kind == "ok":
                self._passphrase = passphrase
            if outcome.kind != "bad-passphrase" or not left:
                return outcome
            _try_again("pass: the GPG passphrase was rejected", left)
        raise AssertionError("unreachable")  # pragma: no cover

    def _decrypt(self, data: bytes, what: str) -> bytes:
        gpg = self._gpg_tool()
        reference = self.passphrase_ref
        if self._passphrase is not None:
            outcome = gpg.decrypt(data, passphrase=self._passphrase)
        elif reference is None:
            outcome = gpg.decrypt(data)
        else:
            # gpg-agent's cache first: it may already hold the passphrase (or the key
            # has none), which spares a 1Password round trip or a prompt.
            outcome = gpg.decrypt(data, ask=False)
            if outcome.kind != "ok" and outcome.needs_passphrase:
                outcome = self._decrypt_asking(gpg, data, reference)
        if outcome.kind == "bad-passphrase":
            self._passphrase = None
        if outcome.kind != "ok" or outcome.data is None:
            raise outcome.error(what, reference)
        return outcome.data

    def _read(self, pass_name: str) -> str | None:
        path = self._file(pass_name)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise BackendError(
                f"pass: cannot read {path}: {exc.strerror}", "check the store's permissions"
            ) from None
        # surrogateescape: a byte that is not UTF-8 survives a read and a rewrite.
        return self._decrypt(data, pass_name).decode("utf-8", "surrogateescape")

    # -- git ---------------------------------------------------------------------------

    @property
    def is_git(self) -> bool:
        """Whether the store is a git repository (``.git`` in it): each change is then committed,
        as ``pass git init`` makes ``pass`` itself do.
        """
        return (self.store / ".git").exists()

    def _git(self, *args: str, identity: bool = False) -> tuple[int, str]:
        import subprocess

        from broker.childenv import GIT_PREFIXES, GIT_VARIABLES, helper_environment

        # git, and the hooks it runs from the store, get what they need and nothing else
        env = helper_environment(os.environ, also=GIT_VARIABLES, prefixes=GIT_PREFIXES)
        for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
            env.pop(name, None)
        # As pass does: never find a repository above the store.
        env["GIT_CEILING_DIRECTORIES"] = str(self.store.parent)
        command = ["git", "-C", str(self.store)]
        if identity:
            # Only when git knows no identity at all: a commit must not fail for that.
            command += ["-c", "user.name=broker", "-c", "user.email=broker@localhost"]
        try:
            done = subprocess.run(
                [*command, *args], env=env, stdin=subprocess.DEVNULL,
                capture_output=True, timeout=120, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 1, str(exc)
        return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")

    def _commit(self, pass_name: str, message: str) -> None:
        """Commit the change to ``pass_name`` like pass's git_add_file (that path only)."""
        if not self.is_git:
            return
        relative = os.path.relpath(self._file(pass_name), self.store)
        code, out = self._git("add", "-A", "--", relative)
        if code == 0:
            code, out = self._git("status", "--porcelain", "--", relative)
            if code == 0 and not out.strip():
                return  # nothing changed (already committed)
        if code == 0:
            sign = ["-S"] if self._git("config", "--bool", "--get",
                                       "pass.signcommits")[1].strip() == "true" else []
            args = ["commit", *sign, "-q", "-m", message, "--", relative]
            code, out = self._git(*args)
            lowered = out.lower()
            if code != 0 and ("tell me who you are" in lowered or "ident" in lowered):
                code, out = self._git(*args, identity=True)
        if code != 0:
            last = (out.strip().splitlines() or ["git failed"])[-1][:200]
            sys.stderr.write(
                f"broker: warning: pass: {pass_name} was saved but not committed to git: "
                f"{last} (commit it with `pass git commit`)\n"
            )

    # -- the Backend interface ---------------------------------------------------------

    def availability(self) -> Availability:
        """Cheap and never raises: gpg, the store, its .gpg-id, a usable secret key."""
        try:
            return self._availability()
        except Exception as exc:
            return Availability(False, f"pass: availability check failed: {exc}")

    def _availability(self) -> Availability:
        import shutil

        if shutil.which(self.gpg_binary) is None:
            return Availability(
                False, f"pass: {self.gpg_binary} not found — install GnuPG (`apt install gnupg`)"
            )
        if not self.store.is_dir():
            return Availability(
                False, f"pass: no password store at {self.store} — {_INIT_HINT}"
            )
        ids, source = self.recipients(f"{self.folder}/probe")
        if not source:
            return Availability(
                False, f"pass: no .gpg-id — {_INIT_HINT} (password store {self.store})"
            )
        if not ids:
            return Availability(False, f"pass: {source} names no GPG key — {_INIT_HINT}")
        gpg = self._gpg_tool()
        if not any(gpg.secret_key_ids(ids).values()):
            members = [m for i in ids for m in gpg.groups().get(i, [])]
            if not (members and any(gpg.secret_key_ids(members).values())):
                return Availability(
                    False,
                    f"pass: no usable secret key here for {', '.join(ids)} (from {source}) — "
                    "import it (`gpg --import`), or make a key and run `pass init <gpg-id>`",
                )
        return Availability(True)

    def get(self, name: str) -> Item | None:
        """The item ``name``, decrypted (gpg-agent or the passphrase setting), or None."""
        text = self._read(self.entry_name(name))
        if text is None:
            return None
        from broker_pass.entry import parse_entry

        return Item(parse_entry(text))

    def set(self, name: str, item: Item, *, expires_at: datetime | None = None) -> None:
        """Encrypt ``item`` to the entry's recipients and replace the entry atomically."""
        if self.namespace == SESSIONS:
            raise BackendError(
                "pass: STS sessions are never written into a password store",
                'set session_cache = "keyctl" or "none" in broker\'s config',
            )
        if expires_at is not None:
            raise BackendError(
                "pass: entries cannot expire by themselves",
                "keep expiring items in a backend with expiry (keyctl)",
            )
        from broker import paths
        from broker_pass.entry import format_entry

        pass_name = self.entry_name(name)
        text = format_entry(item, f"{self.prefix}:{name}")
        if not self.store.is_dir():
            raise BackendError(f"pass: no password store at {self.store}", _INIT_HINT)
        ids, source = self.recipients(pass_name)
        if not ids:
            raise BackendError(
                f"pass: no .gpg-id for {pass_name} in {self.store}"
                if not source else f"pass: {source} names no GPG key",
                _INIT_HINT,
            )
        signers = os.environ.get("PASSWORD_STORE_SIGNING_KEY", "").split()
        gpg = self._gpg_tool()
        if signers and source != "PASSWORD_STORE_KEY" and not gpg.verify_signed_file(
            source, signers
        ):
            raise BackendError(
                f"pass: the signature of {source} is missing or not by "
                "PASSWORD_STORE_SIGNING_KEY",
                "re-sign it with `pass init <gpg-id>`, or check who changed it",
            )
        ciphertext = gpg.encrypt(
            text.encode("utf-8", "surrogateescape"), ids, pass_name, source
        )
        path = self._file(pass_name)
        with paths.file_lock(f"pass-{self.store}"):
            try:
                paths.atomic_write(path, ciphertext, 0o600)
            except OSError as exc:
                raise BackendError(
                    f"pass: cannot write {path}: {exc.strerror}", "check the store's permissions"
                ) from None
            self._commit(pass_name, f"Add given password for {pass_name} to store.")

    def delete(self, name: str) -> bool:
        """Remove entry ``name`` (and folders it leaves empty), committing like `pass rm`."""
        from broker import paths

        pass_name = self.entry_name(name)
        path = self._file(pass_name)
        with paths.file_lock(f"pass-{self.store}"):
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise BackendError(
                    f"pass: cannot remove {path}: {exc.strerror}",
                    "check the store's permissions",
                ) from None
            directory = path.parent
            while directory != self.store and self.store in directory.parents:
                try:
                    directory.rmdir()  # only succeeds when empty, like `rmdir -p`
                except OSError:
                    break
                directory = directory.parent
            self._commit(pass_name, f"Remove {pass_name} from store.")
        return True

    def _names(self) -> list[str]:
        root = self.store / self.folder
        names = []
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            relative = os.path.relpath(directory, root)
            for file in files:
                if file.endswith(".gpg") and not file.startswith("."):
                    entry = file[: -len(".gpg")]
                    names.append(entry if relative == "." else f"{relative}/{entry}".replace(
                        os.sep, "/"))
        return sorted(names)

    def list(self) -> list[str]:
        """Names under the prefix (``team/dev`` for a nested entry), sorted."""
        return self._names()

    def resolve(self, reference: str) -> str:
        """``pass:path/in/store``: the first line of that entry (path from the store root)."""
        scheme, _, path = reference.partition(":")
        if scheme.lower() != "pass":
            raise ConfigError(
                "pass: that is not a pass: reference (its value is not shown)",
                "use pass:path/in/store",
            )
        path = path.lstrip("/").removesuffix(".gpg")
        _check_path(path, "reference")
        text = self._read(path)
        if text is None:
            raise NotFound(
                f"pass: no entry {path} in {self.store}",
                "`pass ls` lists the entries; the path is relative to the store root",
            )
        first = text.split("\n", 1)[0].rstrip("\r")
        if not first:
            raise NotFound(f"pass: the first line of {path} is empty", f"`pass edit {path}`")
        return first

    def describe(self) -> dict[str, str]:
        """Store, prefix, recipients and git state; and entries no key here can decrypt."""
        ids, source = self.recipients(f"{self.folder}/probe")
        if self.passphrase_ref:
            from broker.secrets import shown

            passphrase = f"{shown(self.passphrase_ref)} (after gpg-agent's cache)"
        else:
            passphrase = "gpg-agent and pinentry"  # noqa: S105 - a description
        facts = {
            "store": str(self.store),
            "prefix": f"{self.folder}/",
            "recipients": ", ".join(ids) if ids else f"none — {_INIT_HINT}",
            "gpg-id": source or "missing",
            "passphrase": passphrase,
            "git": "commits each change" if self.is_git else "no (not a git repository)",
            "gnupghome": os.environ.get("GNUPGHOME") or "~/.gnupg",
        }
        try:
            names = self._names()
        except OSError as exc:
            facts["entries"] = f"unknown: {exc.strerror}"
            return facts
        facts["entries"] = str(len(names))
        try:
            unreadable, missing = self.undecryptable()
        except Exception as exc:
            facts["unreadable"] = f"unknown: {exc}"
            return facts
        if unreadable:
            facts["unreadable"] = (
                f"{', '.join(unreadable)} — encrypted only to keys without a secret key here "
                f"({', '.join(missing)}); see {RECOVERY_DOCS}"
            )
        return facts

    def undecryptable(self) -> tuple[_Names, _Names]:
        """(names, key ids): entries whose recipients all lack a secret key here.

        Read from each file's packets, without decrypting or asking for anything.
        An entry with a hidden recipient is never counted: it cannot be told.
        """
        from broker_pass._packets import WILDCARD, recipient_key_ids

        available = set(self._gpg_tool().secret_key_ids())
        unreadable: list[str] = []
        missing: set[str] = set()
        for name in self._names():
            try:
                key_ids = recipient_key_ids(self._file(self.entry_name(name)).read_bytes())
            except OSError:
                continue
            if not key_ids or WILDCARD in key_ids:
                continue
            if not available.intersection(key_ids):
                unreadable.append(name)
                missing.update(key_ids)
        return unreadable, sorted(missing)

    def checks(self, used: bool) -> _CheckList:
        """``broker doctor``'s rows for the pass backend: gpg (this backend's ``gpg``
        setting), the pass CLI and GPG_TTY (see :mod:`broker_pass._checks`)."""
        from broker_pass import _checks

        return [*_checks.gnupg(used, self.gpg_binary), *_checks.gpg_tty(used)]

    def close(self) -> None:
        """Forget the resolved passphrase."""
        self._passphrase = None


def _try_again(problem: str, left: int) -> None:
    """Say on the terminal that ``problem`` (a message starting ``pass: ``) is asked for
    again, prefixed ``broker: `` as every message broker writes is (docs/errors.md)."""
    from broker import tty

    tty.write(f"broker: {problem}; try again ({left} {'try' if left == 1 else 'tries'} left)\n")
