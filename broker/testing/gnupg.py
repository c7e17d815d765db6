"""A throwaway GnuPG home with a key, for tests of anything that runs gpg (or `pass`).

::

    with throwaway_gnupg_home("me@example.invalid", passphrase="correct horse") as gnupg:
        subprocess.run(["pass", "init", gnupg.key.fingerprint],
                       env={**os.environ, **gnupg.env, "PASSWORD_STORE_DIR": str(store)})

The home is a fresh 0700 directory under ``/tmp`` with a short name: gpg-agent's
socket lives in it, and a Unix socket path is limited to 108 bytes (``sun_path``,
unix(7)), which pytest's ``tmp_path`` can exceed. Its gpg-agent caches no passphrase
(``default-cache-ttl 0``, ``max-cache-ttl 0``), allows loopback pinentry, and protects
keys with a cheap S2K count, so that a protected key is asked for every time and still
unlocks quickly. On exit the agent (and any other GnuPG daemon of that home) is stopped
with ``gpgconf --kill all``, then by its own PID if it outlives that, and the home is
removed. Passphrases reach gpg on stdin (``--passphrase-fd 0``), never in argv.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_UID", "GnupgHome", "GnupgKey", "agent_pid", "stop_agent", "throwaway_gnupg_home",
]

DEFAULT_UID = "broker-test@example.invalid"
#: Seconds one gpg call may take (key generation included).
GPG_TIMEOUT = 60.0
#: Seconds the agent gets to exit after ``gpgconf --kill`` before it is sent SIGKILL.
AGENT_EXIT_WAIT = 5.0
AGENT_CONF = """\
default-cache-ttl 0
max-cache-ttl 0
allow-loopback-pinentry
s2k-count 65536
"""
GPG_CONF = "s2k-count 65536\n"


@dataclass(frozen=True)
class GnupgKey:
    """A key in a throwaway home: its user id, the primary key's fingerprint (40 hex
    digits), the encryption subkey's key id (16 hex digits: what an encrypted file names
    as its recipient) and its passphrase (``""``: unprotected)."""

    uid: str
    fingerprint: str
    subkey_id: str
    passphrase: str


class GnupgHome:
    """A GnuPG home directory made by :func:`throwaway_gnupg_home`.

    ``path``: the directory; ``key``: the key made (or copied) with it; ``env``: the
    environment variables that point gpg, `pass` and broker at it (``GNUPGHOME``).
    """

    def __init__(self, path: Path, key: GnupgKey) -> None:
        self.path = path
        self.key = key

    @property
    def env(self) -> dict[str, str]:
        """``{"GNUPGHOME": path}``: merge it into a subprocess's environment (or monkeypatch it)
        so gpg, `pass` and broker use this home.
        """
        return {"GNUPGHOME": str(self.path)}

    def gpg(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``gpg --homedir HOME --batch ARGS`` (``input`` on stdin, text); raises
        :class:`subprocess.CalledProcessError` on a non-zero exit when ``check``, and
        :class:`subprocess.TimeoutExpired` after :data:`GPG_TIMEOUT` seconds."""
        return subprocess.run(
            ["gpg", "--homedir", str(self.path), "--batch", *args],
            input=input, capture_output=True, text=True, check=check, timeout=GPG_TIMEOUT,
        )

    def add_key(self, uid: str, passphrase: str | None = None) -> GnupgKey:
        """A new ed25519 signing key with a cv25519 encryption subkey, valid forever, in
        this home; ``passphrase`` None leaves it unprotected. Raises
        :class:`subprocess.CalledProcessError` when gpg refuses (say, a duplicate uid)."""
        secret = passphrase or ""

        def unlocked(*args: str) -> None:
            # The passphrase on fd 0, also for an empty one: nothing secret in argv.
            self.gpg("--pinentry-mode", "loopback", "--passphrase-fd", "0", *args,
                     input=secret + "\n")

        unlocked("--quick-generate-key", uid, "ed25519", "cert,sign", "never")
        fingerprint = self._colons(uid, "fpr")[9]
        unlocked("--quick-add-key", fingerprint, "cv25519", "encr", "never")
        return GnupgKey(uid, fingerprint, self._colons(uid, "sub")[4], secret)

    def _colons(self, uid: str, record: str) -> list[str]:
        listing = self.gpg("--with-colons", "--list-keys", f"={uid}").stdout
        return next(line.split(":") for line in listing.splitlines()
                    if line.startswith(f"{record}:"))

    def agent_pid(self) -> int | None:
        """The PID of this home's running gpg-agent, or None (none runs; none is started)."""
        return agent_pid(self.path)

    def stop_agent(self) -> None:
        """Stop this home's gpg-agent and other GnuPG daemons: see :func:`stop_agent`."""
        stop_agent(self.path)


def agent_pid(home: Path | str) -> int | None:
    """The PID the gpg-agent of ``home`` reports (``getinfo pid``), or None when none runs
    (``--no-autostart``: asking never starts one) or gpg-connect-agent is missing."""
    try:
        answer = subprocess.run(
            ["gpg-connect-agent", "--homedir", str(home), "--no-autostart",
             "getinfo pid", "/bye"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in answer.splitlines():
        if line.startswith("D ") and line[2:].strip().isdigit():
            return int(line[2:].strip())
    return None


def _is_agent(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False  # gone (or no /proc: nothing we can check, so nothing we kill)
    return b"gpg-agent" in command


def stop_agent(home: Path | str) -> None:
    """Stop the GnuPG daemons of ``home``: ``gpgconf --kill all`` (gpg-agent, dirmngr,
    keyboxd), then, if the agent's own PID (asked before) still runs gpg-agent after
    :data:`AGENT_EXIT_WAIT` seconds, SIGKILL to that PID alone. Never raises."""
    pid = agent_pid(home)
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                       capture_output=True, timeout=30, check=False)
    if pid is None:
        return
    deadline = time.monotonic() + AGENT_EXIT_WAIT
    while _is_agent(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_agent(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _new_home(copy_of: GnupgHome | None, gpg_conf: str, agent_conf: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))  # mkdtemp makes it 0700
    try:
        path.chmod(0o700)
        if copy_of is not None:
            shutil.copytree(copy_of.path, path, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*"))
        else:
            (path / "gpg.conf").write_text(GPG_CONF, encoding="utf-8")
            (path / "gpg-agent.conf").write_text(AGENT_CONF, encoding="utf-8")
        for name, extra in (("gpg.conf", gpg_conf), ("gpg-agent.conf", agent_conf)):
            conf = path / name
            with conf.open("a", encoding="utf-8") as handle:
                handle.write(extra)
            conf.chmod(0o600)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path


@contextlib.contextmanager
def throwaway_gnupg_home(
    uid: str = DEFAULT_UID,
    passphrase: str | None = None,
    *,
    gpg_conf: str = "",
    agent_conf: str = "",
    copy_of: GnupgHome | None = None,
) -> Iterator[GnupgHome]:
    """A fresh 0700 GnuPG home under /tmp with one key (see :meth:`GnupgHome.add_key`),
    removed on exit after its gpg-agent is stopped (:func:`stop_agent`).

    ``passphrase``: the key's (None: unprotected). ``gpg_conf``, ``agent_conf``: lines
    added to the home's ``gpg.conf`` and ``gpg-agent.conf`` (after the defaults in
    :data:`GPG_CONF` and :data:`AGENT_CONF`, or after the copied ones). ``copy_of``:
    instead of making a key, copy that home (its keys, trust and configuration; not its
    agent's sockets and locks) and take its key: much faster than generating keys for
    each test. Raises :class:`subprocess.CalledProcessError` when gpg cannot make the
    key, and :class:`FileNotFoundError` when gpg is not installed.
    """
    path = _new_home(copy_of, gpg_conf, agent_conf)
    try:
        if copy_of is not None:
            home = GnupgHome(path, copy_of.key)
        else:
            home = GnupgHome(path, GnupgKey(uid, "", "", ""))
            home.key = home.add_key(uid, passphrase)
        yield home
    finally:
        stop_agent(path)
        shutil.rmtree(path, ignore_errors=True)
