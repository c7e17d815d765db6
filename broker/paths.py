"""Where broker keeps its files (XDG base directories), and safe ways to write them.

Everything broker writes is 0600 inside 0700 directories and replaced atomically.
None of these files ever holds a secret.

The runtime directory (lock files, the MFA ledger's key) is ``$XDG_RUNTIME_DIR/broker``
only when ``$XDG_RUNTIME_DIR`` is what the XDG spec promises: a directory of this user's
own, not a symlink, that no one else can enter. Anything else (``/tmp``, a directory
shared with others) is not trusted, and ``$XDG_STATE_HOME/broker/run`` is used instead.
Directories broker makes are entered without following symlinks and checked to be this
user's; files in them are opened with ``O_NOFOLLOW`` and changed through their
descriptor, so a symlink another user planted never redirects a chmod or a write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from broker.errors import BrokerError, ConfigError

#: How long a broker process waits for a lock another one holds: the longest a holder
#: waits on its own (an mfa_process gets 120 s); then an error naming the holder.
LOCK_TIMEOUT = 120.0
#: After this many seconds of waiting, broker says who holds the lock.
LOCK_NOTICE_AFTER = 2.0

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW = os.O_NOFOLLOW


class UnsafePath(ConfigError):
    """A directory or file broker would use is not safely this user's own."""


class LockTimeout(BrokerError):
    """Another broker process held a lock for longer than broker waits."""


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def config_file() -> Path:
    """broker's own TOML config: ``$BROKER_CONFIG`` or ``$XDG_CONFIG_HOME/broker/config.toml``."""
    from broker.config import environment  # broker.config imports this module

    explicit = environment("BROKER_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return _xdg("XDG_CONFIG_HOME", ".config") / "broker" / "config.toml"


def state_dir() -> Path:
    """Non-secret state (ids, last MFA step): ``$XDG_STATE_HOME/broker``."""
    return _xdg("XDG_STATE_HOME", ".local/state") / "broker"


def cache_dir() -> Path:
    """Rebuildable, non-secret caches (the plugin index): ``$XDG_CACHE_HOME/broker``."""
    return _xdg("XDG_CACHE_HOME", ".cache") / "broker"


def private_runtime_base(value: str) -> bool:
    """Whether ``value`` (``$XDG_RUNTIME_DIR``) is a directory of this user's own that no
    one else can enter, and not a symlink: the XDG spec's promise, checked."""
    try:
        info = os.lstat(value)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
        and not info.st_mode & 0o077
    )


def _runtime_root() -> tuple[Path, tuple[str, ...], bool]:
    """(base, the parts broker owns below it, whether the base is $XDG_RUNTIME_DIR)."""
    value = os.environ.get("XDG_RUNTIME_DIR")
    if value and os.path.isabs(value) and private_runtime_base(value):
        return Path(value), ("broker",), True
    return _xdg("XDG_STATE_HOME", ".local/state"), ("broker", "run"), False


def runtime_dir() -> Path:
    """Lock files and the MFA ledger's key: ``$XDG_RUNTIME_DIR/broker`` when that directory
    is private to this user (see the module's docstring), else ``$XDG_STATE_HOME/broker/run``."""
    base, parts, _ = _runtime_root()
    return base.joinpath(*parts)


def _unsafe(path: Path, why: str, runtime: bool | None = None) -> UnsafePath:
    if runtime is None:
        hint = f"remove {path} if it is not yours, and run broker again"
    elif runtime:
        hint = (f"remove {path} if it is not yours, or point XDG_RUNTIME_DIR at a directory "
                "of your own (mode 0700)")
    else:
        hint = (f"remove {path} if it is not yours, or set XDG_STATE_HOME to a directory "
                "of your own")
    return UnsafePath(f"{path} {why}", hint)


def _enter(parent: int, name: str, path: Path, runtime: bool | None) -> int:
    """A descriptor of directory ``name`` in ``parent`` (made 0700 when missing), entered
    without following a symlink, this user's own and closed to others."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent)
    try:
        fd = os.open(name, _DIRECTORY | _NOFOLLOW, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _unsafe(path, "is a symlink or not a directory", runtime) from None
        raise
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise _unsafe(path, f"belongs to uid {info.st_uid}, not to you", runtime)
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_runtime_dir(*subdirs: str) -> tuple[int, Path, bool]:
    """(descriptor, path, whether under $XDG_RUNTIME_DIR) of ``runtime_dir()/subdirs``,
    every directory broker owns on the way checked as :func:`_enter` does."""
    base, parts, runtime = _runtime_root()
    if runtime:
        # checked again through the descriptor: it may have changed since runtime_dir()
        fd = os.open(base, _DIRECTORY | _NOFOLLOW)
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            os.close(fd)
            raise _unsafe(base, "is no longer private to you", True)
    else:
        if not base.exists():
            ensure_dir(base)
        fd = os.open(base, _DIRECTORY)
    path = base
    try:
        for name in (*parts, *subdirs):
            path = path / name
            child = _enter(fd, name, path, runtime)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd, path, runtime


def ensure_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents 0700; tighten ``path`` if it is looser.

    The mode is changed through a descriptor, and a symlink at ``path`` is followed only
    when this user made it (a symlink another user planted is refused): a chmod never
    lands on a directory someone else pointed broker at.
    """
    missing = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):  # mkdir(parents=True) would use 0777 & umask
        directory.mkdir(mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, _DIRECTORY | _NOFOLLOW)
    except OSError as exc:
        # a symlink fails with ELOOP, or with ENOTDIR under O_DIRECTORY
        link = os.lstat(path)
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not stat.S_ISLNK(link.st_mode):
            raise
        if link.st_uid != os.geteuid():
            raise _unsafe(path, "is a symlink another user made") from None
        fd = os.open(path, _DIRECTORY)
    try:
        info = os.fstat(fd)
        if info.st_mode & 0o077:
            if info.st_uid != os.geteuid():
                raise _unsafe(path, f"is open to other users and belongs to uid {info.st_uid}")
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
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


def read_private(path: Path, limit: int = 1 << 20) -> bytes:
    """The bytes of ``path``, opened without following a symlink; at most ``limit``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | _NOFOLLOW)
    try:
        chunks = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _open_private_file(directory: int, name: str, path: Path, flags: int) -> int:
    """``name`` in ``directory`` opened with ``flags`` plus O_NOFOLLOW: a regular file of
    this user's, 0600 (tightened through the descriptor when looser)."""
    try:
        fd = os.open(name, flags | os.O_CLOEXEC | _NOFOLLOW, 0o600, dir_fd=directory)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _unsafe(path, "is a symlink") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _unsafe(path, "is not a regular file")
        if info.st_uid != os.geteuid():
            raise _unsafe(path, f"belongs to uid {info.st_uid}, not to you")
        if info.st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def runtime_key(name: str, size: int = 32) -> bytes:
    """``size`` random bytes kept in ``runtime_dir()/name`` (0600), made on first use.

    Under a private ``$XDG_RUNTIME_DIR`` (a tmpfs on systemd machines) the key lives in
    memory only and is gone after a reboot.
    """
    try:
        directory, where, _ = _open_runtime_dir()
    except OSError as exc:
        place = runtime_dir()
        raise UnsafePath(
            f"cannot use {place} for {name}: {exc.strerror or type(exc).__name__}",
            f"make {place} writable by you, or set XDG_RUNTIME_DIR to a directory of your "
            "own (mode 0700)",
        ) from None
    try:
        path = where / name
        for _attempt in range(3):
            try:
                fd = _open_private_file(directory, name, path, os.O_RDONLY)
            except FileNotFoundError:
                pass
            else:
                try:
                    key = os.read(fd, size + 1)
                finally:
                    os.close(fd)
                if len(key) == size:
                    return key
                raise _unsafe(path, "is not a key broker made")
            # made complete under a temporary name, then linked: a reader never sees half
            temp = f".{name}.{os.getpid()}"
            fd = _open_private_file(directory, temp, where / temp,
                                    os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            try:
                os.write(fd, os.urandom(size))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temp, name, src_dir_fd=directory, dst_dir_fd=directory,
                        follow_symlinks=False)
            except FileExistsError:
                pass  # another process made it first: read theirs
            finally:
                os.unlink(temp, dir_fd=directory)
        raise _unsafe(path, "could not be made")
    finally:
        os.close(directory)


def _holder(fd: int) -> tuple[str, int | None]:
    """Who holds the lock on ``fd``, as the holder wrote it: ("pid 123 (broker)", 123)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        pid = int(text)
    except (OSError, ValueError):
        return "another broker process", None
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as stream:
            command = stream.read().strip()
    except OSError:
        command = ""
    return (f"pid {pid} ({command})" if command else f"pid {pid}"), pid


@contextlib.contextmanager
def file_lock(
    name: str, timeout: float = LOCK_TIMEOUT, *, required: bool = True
) -> Iterator[None]:
    """An exclusive advisory lock shared by every broker process of this user.

    ``name`` is made safe for a file name. The lock dies with the process, so a
    crashed holder never blocks the next one. Waiting longer than
    :data:`LOCK_NOTICE_AFTER` says who holds it; longer than ``timeout`` is an error
    naming the holder.

    A lock that guards correctness (``required``, the default: the MFA reuse guard,
    a keyring's creation, read-modify-write of a file) fails closed when no lock file
    can be made, with an error naming the path; a lock that only spares duplicate
    work (``required=False``) then lets the body run unlocked.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:200]
    filename = f"{safe}.lock"
    try:
        directory, where, _ = _open_runtime_dir("locks")
        path = where / filename
        try:
            fd = _open_private_file(directory, filename, path, os.O_RDWR | os.O_CREAT)
        finally:
            os.close(directory)
    except (OSError, UnsafePath) as exc:
        if not required:
            fd = -1
        elif isinstance(exc, UnsafePath):
            raise
        else:
            place = runtime_dir() / "locks" / filename
            reason = exc.strerror or type(exc).__name__
            raise UnsafePath(
                f"cannot make the lock file {place}: {reason}",
                f"make {place.parent} writable by you, or set XDG_RUNTIME_DIR to a "
                "directory of your own (mode 0700)",
            ) from None
    if fd < 0:  # no lock file could be made, and this lock only spares duplicate work
        yield
        return
    try:
        started = time.monotonic()
        deadline = started + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            now = time.monotonic()
            if now > deadline:
                holder, pid = _holder(fd)
                end = f"end it (`kill {pid}`)" if pid else "end it"
                raise LockTimeout(
                    f"timed out waiting for another broker process ({name}) for "
                    f"{timeout:g} s: {holder} holds {path}",
                    f"if it is stuck (waiting on a prompt in another terminal?), {end}; "
                    "then try again",
                ) from None
            if not told and now - started >= LOCK_NOTICE_AFTER:
                told = True
                holder, _ = _holder(fd)
                sys.stderr.write(
                    f"broker: waiting for {holder}, which holds {path} "
                    f"(giving up after {timeout:g} s)\n"
                )
                sys.stderr.flush()
            time.sleep(0.02)
        with contextlib.suppress(OSError):  # who holds it, for those who wait
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def wsl_version(proc_version: Path = Path("/proc/version")) -> int:
    """0 outside WSL, else 1 or 2, from the kernel's version string (``proc_version``):
    WSL's kernels name Microsoft, and WSL2's also ``WSL2`` or ``microsoft-standard``
    (https://learn.microsoft.com/windows/wsl/compare-versions). 0 when unreadable."""
    try:
        text = proc_version.read_text(encoding="utf-8", errors="replace").lower()
    except OSError:
        return 0
    if "microsoft" not in text:
        return 0
    return 2 if ("wsl2" in text or "microsoft-standard" in text) else 1
