"""What aws-vault stored, read from its ``pass``, ``file`` and ``keyctl`` backends.

aws-vault keeps secrets through 99designs/keyring. The formats, as that code
writes them:

* A credential is stored under its profile name. Its *data* is the Go SDK's
  ``aws.Credentials`` as JSON: ``{"AccessKeyID", "SecretAccessKey",
  "SessionToken", "Source", "CanExpire", "Expires", ...}``.
* ``pass``: one entry ``<PASSWORD_STORE_DIR>/<prefix>/<name>.gpg`` per item,
  decrypting to the keyring *Item* as JSON, ``{"Key": name, "Data": base64 of
  the data, "Label": ..., ...}``. The prefix is empty unless
  ``AWS_VAULT_PASS_PREFIX`` / ``--pass-prefix`` set one.
* ``file``: one file per item in ``~/.awsvault/keys/`` (``AWS_VAULT_FILE_DIR``),
  named by the item name percent-encoded, holding the same Item JSON as a JWE
  compact serialization (PBES2-HS256+A128KW, A256GCM) under one passphrase
  (``AWS_VAULT_FILE_PASSPHRASE`` or a prompt).
* ``keyctl``: ``user`` keys in a keyring named ``aws-vault`` found from the
  scope's keyring (``user``, i.e. ``@u``, unless ``AWS_VAULT_KEYCTL_SCOPE``
  says otherwise); a key's description is the item name and its payload the
  data itself, with no Item wrapper.

Besides credentials aws-vault keeps STS sessions (``<type>,<base64url
profile>,<base64url mfa serial>,<unix expiry>`` and older shapes) and SSO
tokens (``oidc:<start url>``) in the same store: :func:`skip_reason` names them
so they are never imported.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from broker.errors import AuthenticationError, BackendError, BackendUnavailable, UsageError
from broker.importers._kernel_keys import SCOPES, KernelKeys

KINDS = ("pass", "file", "keyctl")
KEYRING_NAME = "aws-vault"

_SESSION_NAME = re.compile(r"^[^,]+,[^,]+,[^,]*,[0-9]+$")
_OLD_SESSION_NAMES = (
    re.compile(r"^session,[^,]+,[^,]*,[0-9]{2,}$"),
    re.compile(r"^session:[^ ]+:[^ ]*:[^:]+$"),
    re.compile(r"^.+? session \(\d+\)$"),
)


def skip_reason(name: str) -> str | None:
    """Why an entry named ``name`` is not a credential (a session, an SSO token), or None."""
    if name.startswith("oidc:"):
        return "oidc"
    if _SESSION_NAME.match(name) or any(p.match(name) for p in _OLD_SESSION_NAMES):
        return "session"
    return None


@dataclass
class VaultKey:
    """One credential aws-vault holds."""

    name: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


class NotAVaultItem(BackendError):
    """An entry that is not an aws-vault credential (another password, a damaged item)."""


def _malformed(where: str, name: str, what: str) -> NotAVaultItem:
    return NotAVaultItem(
        f"aws-vault {where}: {name!r} is not an aws-vault credential ({what})",
        "check it with aws-vault itself, or leave it out with --profile",
    )


def decode_item(raw: bytes, where: str, name: str) -> bytes:
    """The data inside a keyring Item serialized as JSON (pass and file backends)."""
    try:
        item = json.loads(raw.decode("utf-8"))
        data = item["Data"] if isinstance(item, dict) else None
        if not isinstance(data, str):
            raise TypeError
        return base64.b64decode(data, validate=True)
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise _malformed(where, name, "not a keyring item") from None


def decode_credentials(data: bytes, where: str, name: str) -> VaultKey:
    """An ``aws.Credentials`` JSON document into a :class:`VaultKey`."""
    try:
        creds = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise _malformed(where, name, "its data is not JSON") from None
    if not isinstance(creds, dict):
        raise _malformed(where, name, "its data is not a JSON object")
    key_id = creds.get("AccessKeyID")
    secret = creds.get("SecretAccessKey")
    token = creds.get("SessionToken") or ""
    if not isinstance(key_id, str) or not key_id or not isinstance(secret, str) or not secret:
        raise _malformed(where, name, "no AccessKeyID and SecretAccessKey")
    if not isinstance(token, str):
        raise _malformed(where, name, "SessionToken is not a string")
    return VaultKey(name, key_id.strip(), secret.strip(), token)


class VaultStore:
    """One of aws-vault's backends: list names, read one, delete one."""

    kind = ""

    def location(self) -> str:
        """Where the items are, for messages (never a secret)."""
        raise NotImplementedError

    def names(self) -> list[str]:
        """Every item name, sessions and tokens included; empty if the store is absent."""
        raise NotImplementedError

    def read(self, name: str) -> VaultKey:
        """The credential stored under ``name``, decoded from aws-vault's format (see the module
        docstring).

        Raises:
            NotAVaultItem: the entry is not an aws-vault credential (another secret, damaged).
            AuthenticationError: the file store's passphrase does not decrypt it.
            BackendUnavailable: the store's tool or the kernel keyring is missing here.
            BackendError: ``pass``/gpg or the kernel refused to read it.
        """
        raise NotImplementedError

    def delete(self, name: str) -> None:
        """Remove ``name`` from aws-vault's store, as ``aws-vault remove`` does; a file already
        gone is no error.

        Raises:
            BackendError: ``pass rm`` failed, or the kernel refused to unlink the key.
        """
        raise NotImplementedError


class PassStore(VaultStore):
    """Entries of a ``pass`` store, read and removed with the ``pass`` command itself.

    With an empty prefix (aws-vault's default) items sit at the top of the
    store among the user's other passwords, so only top-level entries are
    listed; under a prefix every entry below it is.
    """

    kind = "pass"

    def __init__(self, store_dir: Path, prefix: str = "", command: str = "pass") -> None:
        self.store_dir = store_dir
        self.prefix = prefix.strip("/")
        self.command = command

    def location(self) -> str:
        return str(self.store_dir / self.prefix) if self.prefix else str(self.store_dir)

    def _entry(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def names(self) -> list[str]:
        base = self.store_dir / self.prefix if self.prefix else self.store_dir
        if not base.is_dir():
            return []
        found = base.rglob("*.gpg") if self.prefix else base.glob("*.gpg")
        names = []
        for path in found:
            if path.is_file() and not any(p.startswith(".") for p in path.relative_to(base).parts):
                names.append(str(path.relative_to(base))[: -len(".gpg")])
        return sorted(names)

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        executable = shutil.which(self.command)
        if executable is None:
            raise BackendUnavailable(
                f"the {self.command!r} command is not installed",
                "install pass (`apt install pass`), which aws-vault's pass backend used too",
            )
        from broker.childenv import (
            GIT_PREFIXES,
            GIT_VARIABLES,
            PASS_PREFIXES,
            helper_environment,
        )

        # pass runs gpg and git: none of them gets a secret broker was given
        env = helper_environment(
            os.environ, also=GIT_VARIABLES, prefixes=(*GIT_PREFIXES, *PASS_PREFIXES)
        )
        env["PASSWORD_STORE_DIR"] = str(self.store_dir)
        # Nothing secret in argv: entry names only; the secret arrives on stdout.
        return subprocess.run([executable, *args], env=env, capture_output=True, check=False)

    def read(self, name: str) -> VaultKey:
        entry = self._entry(name)
        result = self._run("show", entry)
        if result.returncode != 0:
            reason = result.stderr.decode("utf-8", "replace").strip().splitlines()
            raise BackendError(
                f"`pass show {entry}` failed: {reason[-1] if reason else 'no output'}",
                "check that your GPG key is available (`gpg --list-secret-keys`) and, "
                "in a terminal, that GPG_TTY=$(tty) is exported",
            )
        data = decode_item(result.stdout, f"pass store {self.location()}", name)
        return decode_credentials(data, f"pass store {self.location()}", name)

    def delete(self, name: str) -> None:
        entry = self._entry(name)
        result = self._run("rm", "--force", entry)
        if result.returncode != 0:
            reason = result.stderr.decode("utf-8", "replace").strip()
            raise BackendError(f"`pass rm {entry}` failed: {reason}", "remove it by hand")


#: The largest file the file store reads: an aws-vault item is well under 2 KiB, and
#: anything this big is not one (nor something to hand a JWE parser).
MAX_FILE_BYTES = 64 * 1024
#: What keyring's file backend writes (jose.PBES2_HS256_A128KW, jose.A256GCM); no other
#: algorithm is accepted from a file.
JWE_ALGORITHMS = ("PBES2-HS256+A128KW", "A256GCM")


class FileStore(VaultStore):
    """aws-vault's encrypted files, decrypted with jwcrypto under one passphrase.

    The files are untrusted input: at most :data:`MAX_FILE_BYTES` is read, only the
    compact serialization with aws-vault's own algorithms is parsed, compressed
    payloads are refused, and the plaintext may be no larger than the file.
    """

    kind = "file"

    def __init__(self, directory: Path, passphrase: Callable[[], str]) -> None:
        self.directory = directory
        self._ask = passphrase
        self._passphrase: str | None = None
        self._paths: dict[str, Path] = {}

    def location(self) -> str:
        return str(self.directory)

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        self._paths = {
            urllib.parse.unquote(path.name): path
            for path in self.directory.iterdir()
            if path.is_file() and not path.name.startswith(".")
        }
        return sorted(self._paths)

    def _path(self, name: str) -> Path:
        if not self._paths:
            self.names()
        return self._paths.get(name) or self.directory / urllib.parse.quote(name, safe="")

    def read(self, name: str) -> VaultKey:
        from jwcrypto import jwa, jwe, jwk  # only this backend needs it
        from jwcrypto.common import JWException

        where = f"file store {self.location()}"
        try:
            with open(self._path(name), "rb") as stream:
                raw = stream.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise BackendError(f"aws-vault {where}: cannot read {name!r}: {exc}") from None
        if len(raw) > MAX_FILE_BYTES:
            raise _malformed(where, name, f"larger than {MAX_FILE_BYTES // 1024} KiB")
        try:
            token = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise _malformed(where, name, "not a JWE compact serialization") from None
        if token.count(".") != 4 or token.startswith("{"):
            raise _malformed(where, name, "not a JWE compact serialization")
        try:
            envelope = jwe.JWE(algs=list(JWE_ALGORITHMS))
            envelope.deserialize(token)
            header = envelope.jose_header
            iterations = header.get("p2c", 0)
        except (JWException, ValueError, TypeError):
            raise _malformed(where, name, "not a JWE compact serialization") from None
        if (header.get("alg"), header.get("enc")) != JWE_ALGORITHMS or "zip" in header:
            raise _malformed(where, name, "not encrypted the way aws-vault encrypts")
        limit = jwa.default_max_pbkdf2_iterations
        if not isinstance(iterations, int) or iterations > limit:
            # aws-vault's library uses 8192; jwcrypto refuses more than its limit
            raise _malformed(where, name, f"p2c {iterations!r} is over jwcrypto's {limit}")
        if self._passphrase is None:
            self._passphrase = self._ask()
        try:
            envelope.decrypt(jwk.JWK.from_password(self._passphrase), max_plaintext=len(raw))
        except (JWException, ValueError):
            self._passphrase = None
            raise AuthenticationError(
                f"cannot decrypt {name!r} in aws-vault's {where}: wrong passphrase?",
                "use the passphrase aws-vault asked for (AWS_VAULT_FILE_PASSPHRASE)",
            ) from None
        data = decode_item(envelope.payload, where, name)
        return decode_credentials(data, where, name)

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(name).unlink()


class KeyctlStore(VaultStore):
    """``user`` keys in aws-vault's named kernel keyring."""

    kind = "keyctl"

    def __init__(self, keyring: str = KEYRING_NAME, scope: str = "user") -> None:
        if scope not in SCOPES:
            raise UsageError(
                f"unknown keyctl scope {scope!r}", f"use one of: {', '.join(SCOPES)}"
            )
        self.keyring = keyring
        self.scope = scope
        self._serials: dict[str, int] = {}
        self._ring: int | None = None

    def location(self) -> str:
        return f"keyring {self.keyring!r} in the {self.scope} keyring"

    def _keys(self) -> KernelKeys:
        try:
            return KernelKeys()
        except OSError as exc:
            raise BackendUnavailable(f"keyctl: {exc.strerror}", "use another backend") from None

    def _fail(self, exc: OSError, action: str) -> BackendError:
        if exc.errno == errno.EACCES:
            return BackendError(
                f"keyctl: permission denied to {action} aws-vault's {self.location()}",
                "aws-vault's keys are readable by their possessor: run this from the login "
                "session that added them (`keyctl show @u` shows them)",
            )
        return BackendError(f"keyctl: cannot {action} {self.location()}: {exc.strerror}")

    def names(self) -> list[str]:
        keys = self._keys()
        try:
            self._ring = keys.search(SCOPES[self.scope], "keyring", self.keyring)
        except OSError as exc:
            if exc.errno in (errno.ENOKEY, errno.EKEYEXPIRED, errno.EKEYREVOKED, errno.ENOENT):
                return []
            raise self._fail(exc, "find") from None
        serials: dict[str, int] = {}
        try:
            for serial in keys.children(self._ring):
                try:
                    key_type, description = keys.describe(serial)
                except OSError:
                    continue  # expired or revoked since the listing
                if key_type == "user":
                    serials[description] = serial
        except OSError as exc:
            raise self._fail(exc, "list") from None
        self._serials = serials
        return sorted(serials)

    def _serial(self, name: str) -> int:
        if name not in self._serials:
            self.names()
        if name not in self._serials:
            raise BackendError(f"keyctl: no key {name!r} in aws-vault's {self.location()}")
        return self._serials[name]

    def read(self, name: str) -> VaultKey:
        try:
            data = self._keys().read(self._serial(name))
        except OSError as exc:
            raise self._fail(exc, "read") from None
        return decode_credentials(data, f"keyctl {self.location()}", name)

    def delete(self, name: str) -> None:
        serial = self._serial(name)
        assert self._ring is not None
        try:
            self._keys().unlink(serial, self._ring)  # what `aws-vault remove` does
        except OSError as exc:
            raise self._fail(exc, "remove a key from") from None
        self._serials.pop(name, None)


def pass_store_dir(explicit: str | None = None) -> Path:
    """``--pass-dir`` > ``AWS_VAULT_PASS_PASSWORD_STORE_DIR`` > ``PASSWORD_STORE_DIR`` > default."""
    chosen = (
        explicit
        or os.environ.get("AWS_VAULT_PASS_PASSWORD_STORE_DIR")
        or os.environ.get("PASSWORD_STORE_DIR")
        or "~/.password-store"
    )
    return Path(chosen).expanduser()


def pass_prefix(explicit: str | None = None) -> str:
    """``--pass-prefix`` > ``AWS_VAULT_PASS_PREFIX`` > none (aws-vault's default)."""
    if explicit is not None:
        return explicit
    return os.environ.get("AWS_VAULT_PASS_PREFIX", "")


def file_dir(explicit: str | None = None) -> Path:
    """``--file-dir`` > ``AWS_VAULT_FILE_DIR`` > ``~/.awsvault/keys``."""
    return Path(explicit or os.environ.get("AWS_VAULT_FILE_DIR") or "~/.awsvault/keys").expanduser()


def keyctl_scope(explicit: str | None = None) -> str:
    """``--keyctl-scope`` > ``AWS_VAULT_KEYCTL_SCOPE`` (patched aws-vault builds) > ``user``."""
    return explicit or os.environ.get("AWS_VAULT_KEYCTL_SCOPE") or "user"
