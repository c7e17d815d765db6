"""Where broker keeps its files (XDG base directories), and safe ways to write them.

Everything broker writes is 0600 inside 0700 directories and replaced atomically.
None of these files ever holds a secret.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def config_file() -> Path:
    """broker's own TOML config: ``$BROKER_CONFIG`` or ``$XDG_CONFIG_HOME/broker/config.toml``."""
    explicit = os.environ.get("BROKER_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return _xdg("XDG_CONFIG_HOME", ".config") / "broker" / "config.toml"


def state_dir() -> Path:
    """Non-secret state (ids, last MFA step): ``$XDG_STATE_HOME/broker``."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "broker"


def cache_dir() -> Path:
    """Rebuildable, non-secret caches (the plugin index): ``$XDG_CACHE_HOME/broker``."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "broker"


def runtime_dir() -> Path:
    """Lock files: ``$XDG_RUNTIME_DIR/broker`` when set, else under the state dir."""
    value = os.environ.get("XDG_RUNTIME_DIR")
    if value and os.path.isdir(value):
        return Path(value) / "broker"
    return state_dir() / "run"


def ensure_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents 0700; tighten ``path`` if it is looser."""
    missing = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):  # mkdir(parents=True) would use 0777 & umask
        directory.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def atomic_write(path: Path, data: bytes, mode: int = 0o600, *, private_dir: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir, fsync, rename).

    ``private_dir=False`` is for files broker edits but does not own (``~/.aws/config``,
    ``~/.aws/credentials``): their directory is created if missing but an existing one
    keeps its mode, and ``mode`` is usually the file's own.
    """
    import tempfile  # not on the cached path, which writes nothing

    if private_dir or not path.parent.exists():
        ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def file_lock(name: str, timeout: float = 300.0) -> Iterator[None]:
    """An exclusive advisory lock shared by every broker process of this user.

    ``name`` is made safe for a file name. The lock dies with the process, so a
    crashed holder never blocks the next one. Where no lock file can be made, the
    body runs unlocked.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:200]
    try:
        directory = ensure_dir(runtime_dir() / "locks")
        fd = os.open(directory / f"{safe}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        # No writable place for locks (a read-only or missing home): go on unlocked.
        # Locks only spare duplicate work; every write stays atomic without them.
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    from broker.errors import BrokerError

                    raise BrokerError(
                        f"timed out waiting for another broker process ({name})",
                        "check for a stuck broker process waiting on a prompt",
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)
