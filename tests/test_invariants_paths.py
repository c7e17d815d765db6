"""Invariants of broker's files: atomic writes that are durable (the file and its
directory fsynced, in that order, around the rename), private modes, and locks that
exclude across processes and give up at their timeout."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import locale
import os
import re
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from broker import paths
from broker.errors import BrokerError


class FsyncSpy:
    """Records what os.fsync was given (as inode, kind), and when relative to os.replace."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, int, str]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            info = os.fstat(fd)
            kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
            self.events.append(("fsync", info.st_ino, kind))
            real_fsync(fd)

        def replace(src, dst, *args, **kwargs):
            self.events.append(("replace", os.stat(src).st_ino, "file"))
            real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("private_dir", [True, False])
def test_atomic_write_fsyncs_the_file_then_the_directory(tmp_path, monkeypatch, private_dir):
    target = tmp_path / "d" / "state.json"
    spy = FsyncSpy(monkeypatch)
    paths.atomic_write(target, b"content", private_dir=private_dir)
    file_ino, dir_ino = target.stat().st_ino, target.parent.stat().st_ino
    assert ("fsync", file_ino, "file") in spy.events, spy.events
    assert ("fsync", dir_ino, "dir") in spy.events, spy.events
    order = [e[0] + ":" + e[2] for e in spy.events]
    assert order.index("fsync:file") < order.index("replace:file") < order.index("fsync:dir")
    assert target.read_bytes() == b"content"


def test_atomic_write_is_private_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "new" / "deeper" / "file"
    paths.atomic_write(target, b"x")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(target.parent.parent.stat().st_mode) == 0o700
    assert os.listdir(target.parent) == ["file"]
    paths.atomic_write(target, b"y", mode=0o640)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_atomic_write_tightens_a_loose_private_directory(tmp_path):
    directory = tmp_path / "loose"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    paths.atomic_write(directory / "f", b"x")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_atomic_write_into_a_directory_it_does_not_own_keeps_its_mode(tmp_path):
    aws = tmp_path / ".aws"
    aws.mkdir()
    aws.chmod(0o755)
    paths.atomic_write(aws / "config", b"[default]\n", 0o644, private_dir=False)
    assert stat.S_IMODE(aws.stat().st_mode) == 0o755
    assert stat.S_IMODE((aws / "config").stat().st_mode) == 0o644


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "f"
    paths.atomic_write(target, b"old")

    def broken(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="No space"):
        paths.atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_an_interrupt_right_after_the_rename_stays_an_interrupt(tmp_path, monkeypatch):
    real_replace = os.replace

    def replace_then_ctrl_c(src, dst):
        real_replace(src, dst)
        raise KeyboardInterrupt  # Ctrl-C lands just after the rename

    monkeypatch.setattr(os, "replace", replace_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):  # not a FileNotFoundError from the clean-up
        paths.atomic_write(tmp_path / "f", b"new")
    assert (tmp_path / "f").read_bytes() == b"new"


def test_a_reader_never_sees_a_partial_file(tmp_path):
    target = tmp_path / "f"
    paths.atomic_write(target, b"a" * 100_000)
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(len(target.read_bytes()))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(50):
            paths.atomic_write(target, (b"a" if i % 2 else b"b") * 100_000)
    finally:
        stop.set()
        reader.join()
    assert seen == {100_000}


def test_the_temporary_is_a_hidden_sibling_of_the_target(tmp_path, monkeypatch):
    """Renamed within one directory (one filesystem: atomic), never under the real name."""
    moved: list[tuple[str, str]] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (moved.append((a, b)), real_replace(a, b)))
    target = tmp_path / "d" / "config.toml"
    paths.atomic_write(target, b"x")
    ((source, destination),) = moved
    assert Path(source).parent == target.parent and Path(destination) == target
    assert Path(source).name.startswith(".config.toml.")


def test_a_directory_that_cannot_be_fsynced_is_no_failure(tmp_path, monkeypatch):
    # some filesystems refuse fsync on a directory (EINVAL): the data is written anyway
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    paths.atomic_write(tmp_path / "f", b"kept")
    assert (tmp_path / "f").read_bytes() == b"kept"


# --- directories ---------------------------------------------------------------------------


def test_ensure_dir_tightens_only_what_others_can_reach(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o640)  # readable by the group, owner cannot even enter: still too open
    paths.ensure_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    strict = tmp_path / "strict"
    strict.mkdir()
    strict.chmod(0o500)  # private already: left as it is
    paths.ensure_dir(strict)
    assert stat.S_IMODE(strict.stat().st_mode) == 0o500
    strict.chmod(0o700)


def test_ensure_dir_survives_another_process_creating_it_first(tmp_path, monkeypatch):
    target = tmp_path / "a" / "b"
    real_exists = Path.exists
    raced: list[Path] = []

    def exists(self: Path, *args, **kwargs) -> bool:
        if self == target and not raced:  # checked missing, then made by someone else
            raced.append(self)
            target.mkdir(parents=True)
            return False
        return real_exists(self, *args, **kwargs)

    monkeypatch.setattr(Path, "exists", exists)
    assert paths.ensure_dir(target) == target
    assert raced and target.is_dir()


@pytest.fixture
def xdg(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("BROKER_CONFIG", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME",
                 "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_default_locations_under_home(xdg):
    assert paths.config_file() == xdg / ".config" / "broker" / "config.toml"
    assert paths.state_dir() == xdg / ".local" / "state" / "broker"
    assert paths.cache_dir() == xdg / ".cache" / "broker"
    assert paths.runtime_dir() == xdg / ".local" / "state" / "broker" / "run"


def test_xdg_variables_move_each_location(xdg, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "s"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "k"))
    assert paths.config_file() == tmp_path / "c" / "broker" / "config.toml"
    assert paths.state_dir() == tmp_path / "s" / "broker"
    assert paths.cache_dir() == tmp_path / "k" / "broker"
    assert paths.runtime_dir() == tmp_path / "s" / "broker" / "run"
    runtime = tmp_path / "r"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert paths.runtime_dir() == tmp_path / "s" / "broker" / "run"  # not there: not used
    runtime.mkdir(mode=0o755)
    runtime.chmod(0o755)
    assert paths.runtime_dir() == tmp_path / "s" / "broker" / "run"  # others can enter it
    runtime.chmod(0o700)  # what the XDG spec promises: the user's own, mode 0700
    assert paths.runtime_dir() == runtime / "broker"


def test_relative_xdg_variables_are_ignored(xdg, monkeypatch):
    # the XDG spec: a relative path is invalid and must be ignored
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, "relative/dir")
    assert paths.config_file() == xdg / ".config" / "broker" / "config.toml"
    assert paths.state_dir() == xdg / ".local" / "state" / "broker"
    assert paths.cache_dir() == xdg / ".cache" / "broker"
    monkeypatch.setenv("XDG_CONFIG_HOME", "")
    assert paths.config_file() == xdg / ".config" / "broker" / "config.toml"


def test_broker_config_names_the_file_itself(xdg, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", "/elsewhere")
    monkeypatch.setenv("BROKER_CONFIG", "~/my/broker.toml")
    assert paths.config_file() == xdg / "my" / "broker.toml"


# --- locks ---------------------------------------------------------------------------------


@pytest.fixture
def runtime(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    return tmp_path / "broker" / "locks"


def test_a_lock_excludes_another_process_until_released(runtime, tmp_path):
    held = tmp_path / "held"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from broker import paths
        with paths.file_lock("shared-name"):
            Path({str(held)!r}).touch()
            time.sleep(1.0)
        """
    )
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    other = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 30
        while not held.exists():
            assert other.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        started = time.monotonic()
        with paths.file_lock("shared-name"):
            waited = time.monotonic() - started
        assert waited > 0.5  # it waited for the other process to let go
    finally:
        other.wait(timeout=30)


def test_a_lock_gives_up_at_its_timeout(runtime):
    with paths.file_lock("busy"):
        result: list[object] = []

        def second() -> None:
            started = time.monotonic()
            try:
                with paths.file_lock("busy", timeout=0.3):
                    result.append("acquired")
            except BrokerError as exc:
                result.append((exc, time.monotonic() - started))

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=10)
    (outcome,) = result
    assert isinstance(outcome, tuple), outcome
    exc, waited = outcome
    assert isinstance(exc, BrokerError) and exc.hint  # one line with the next step
    assert 0.3 <= waited < 5


def test_locks_with_other_names_do_not_wait(runtime):
    with paths.file_lock("a"):
        started = time.monotonic()
        with paths.file_lock("b", timeout=5):
            pass
        assert time.monotonic() - started < 1


def test_lock_files_are_private_and_named_safely(runtime):
    with paths.file_lock("mfa-device-arn:aws:iam::1:mfa/../x y"):
        pass
    (lock,) = list(runtime.iterdir())
    assert lock.parent == runtime  # no path escapes the lock directory
    assert "/" not in lock.name and " " not in lock.name and ":" not in lock.name
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700


def test_a_lock_is_released_when_its_holder_dies(runtime, tmp_path):
    script = textwrap.dedent(
        """
        import os
        from broker import paths
        with paths.file_lock("crash"):
            os._exit(9)  # no cleanup at all
        """
    )
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    assert subprocess.run([sys.executable, "-c", script], env=env, timeout=30).returncode == 9
    with paths.file_lock("crash", timeout=2):
        pass


# --- what each refusal says ----------------------------------------------------------------

#: The three hints of an unsafe path: a file broker opens; a directory under a private
#: $XDG_RUNTIME_DIR; a directory under the state fallback.
FILE_HINT = "remove {} if it is not yours, and run broker again"
RUNTIME_HINT = ("remove {} if it is not yours, or point XDG_RUNTIME_DIR at a directory of "
                "your own (mode 0700)")
STATE_HINT = "remove {} if it is not yours, or set XDG_STATE_HOME to a directory of your own"
#: A uid no account here uses (the tests that need it give files to it: root only).
OTHER_UID = 61_997


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another uid needs root (chown)")


def _unsafe(call, message: str, hint: str) -> None:
    """``call()`` raises exactly UnsafePath (exit code 3) with this message and hint."""
    with pytest.raises(paths.UnsafePath) as raised:
        call()
    error = raised.value
    assert type(error) is paths.UnsafePath and error.exit_code == 3
    assert (error.message, error.hint) == (message, hint)


def _lock(name: str = "x", **kwargs) -> None:
    with paths.file_lock(name, **kwargs):
        pass


@pytest.fixture
def run(tmp_path, monkeypatch) -> Path:
    """A private $XDG_RUNTIME_DIR (ours, 0700) in a home with no other XDG variable."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(run))
    assert paths.runtime_dir() == run / "broker"
    return run


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    """No runtime directory: $XDG_STATE_HOME (ours) holds broker's runtime files."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    assert paths.runtime_dir() == state / "broker" / "run"
    return state


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_a_broker_entry_that_is_no_directory_is_refused_with_the_runtime_hint(run, tmp_path,
                                                                              kind):
    entry = run / "broker"
    if kind == "symlink":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        entry.symlink_to(elsewhere)
    else:
        entry.write_text("")
    message = f"{entry} is a symlink or not a directory"
    _unsafe(_lock, message, RUNTIME_HINT.format(entry))
    _unsafe(lambda: paths.runtime_key("k"), message, RUNTIME_HINT.format(entry))
    if kind == "symlink":
        assert os.listdir(tmp_path / "elsewhere") == []


def test_under_the_state_fallback_the_hint_names_xdg_state_home(state):
    entry = state / "broker"
    entry.write_text("")
    _unsafe(_lock, f"{entry} is a symlink or not a directory", STATE_HINT.format(entry))


def test_a_broker_directory_of_another_uid_is_refused_and_left_alone(run):
    _as_root()
    theirs = run / "broker"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    message = f"{theirs} belongs to uid {OTHER_UID}, not to you"
    _unsafe(_lock, message, RUNTIME_HINT.format(theirs))
    assert _mode(theirs) == 0o755 and os.listdir(theirs) == []


def test_broker_directories_are_tightened_only_when_others_can_reach_them(run):
    broker, locks = run / "broker", run / "broker" / "locks"
    locks.mkdir(parents=True)
    locks.chmod(0o2700)  # private already (setgid aside): kept as it is
    broker.chmod(0o470)  # the group may write: tightened, though the owner lacks x
    _lock()
    assert _mode(broker) == 0o700
    assert _mode(locks) == 0o2700
    assert _mode(locks / "x.lock") == 0o600


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_what_broker_makes_is_private_from_birth(run, tmp_path, monkeypatch, umask_022):
    """Made 0700 / 0600 by mkdir and open themselves, not tightened a moment later: no
    instant in which another user can open them."""
    born: list[tuple[str, str, int]] = []
    real_mkdir, real_open = os.mkdir, os.open

    def mkdir(path, mode=0o777, *, dir_fd=None):
        real_mkdir(path, mode, dir_fd=dir_fd)
        born.append(("dir", str(path), _mode_at(path, dir_fd)))

    def _mode_at(path, dir_fd) -> int:
        return stat.S_IMODE(os.stat(path, dir_fd=dir_fd, follow_symlinks=False).st_mode)

    def open_(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if flags & os.O_CREAT:
            born.append(("file", str(path), stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)
    _lock()
    paths.runtime_key("k")
    monkeypatch.delenv("XDG_RUNTIME_DIR")  # the state fallback: made with its parents
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "new" / "state"))
    _lock()
    paths.runtime_key("k")
    paths.atomic_write(tmp_path / "a" / "b" / "f", b"x")
    kinds = {kind for kind, _, _ in born}
    names = {Path(name).name for _, name, _ in born}
    assert kinds == {"dir", "file"}
    assert {"broker", "locks", "run", "x.lock", "new", "a", "b"} <= names
    assert [b for b in born if b[2] != (0o700 if b[0] == "dir" else 0o600)] == []


def test_a_runtime_dir_that_stopped_being_private_is_refused(run, monkeypatch):
    """Checked again through the descriptor broker then uses: it may have changed since."""
    run.chmod(0o755)
    monkeypatch.setattr(paths, "private_runtime_base", lambda value: True)  # as checked before
    message = f"{run} is no longer private to you"
    _unsafe(_lock, message, RUNTIME_HINT.format(run))
    _unsafe(lambda: paths.runtime_key("k"), message, RUNTIME_HINT.format(run))
    assert os.listdir(run) == []


def test_a_runtime_dir_replaced_by_a_symlink_is_not_followed(tmp_path, run, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(link))
    monkeypatch.setattr(paths, "private_runtime_base", lambda value: True)  # as checked before
    with pytest.raises(paths.UnsafePath, match=r"^cannot make the lock file "):
        _lock()
    unusable = re.escape(f"cannot use {link}/broker for k: ")
    with pytest.raises(paths.UnsafePath, match=f"^{unusable}"):
        paths.runtime_key("k")
    assert os.listdir(elsewhere) == []


# --- lock files and keys: what is refused --------------------------------------------------


def test_a_lock_file_that_is_a_symlink_says_so(run, tmp_path):
    locks = run / "broker" / "locks"
    locks.mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("mine\n")
    (locks / "x.lock").symlink_to(victim)
    _unsafe(_lock, f"{locks / 'x.lock'} is a symlink", FILE_HINT.format(locks / "x.lock"))
    assert victim.read_text() == "mine\n"


def test_a_lock_file_that_is_no_regular_file_is_refused(run):
    locks = run / "broker" / "locks"
    locks.mkdir(parents=True, mode=0o700)
    os.mkfifo(locks / "x.lock", 0o600)
    _unsafe(_lock, f"{locks / 'x.lock'} is not a regular file",
            FILE_HINT.format(locks / "x.lock"))
    assert stat.S_ISFIFO(os.lstat(locks / "x.lock").st_mode)


def test_a_lock_file_of_another_uid_is_refused_and_left_alone(run):
    _as_root()
    locks = run / "broker" / "locks"
    locks.mkdir(parents=True, mode=0o700)
    lock = locks / "x.lock"
    lock.write_text("")
    lock.chmod(0o644)
    os.chown(lock, OTHER_UID, OTHER_UID)
    _unsafe(_lock, f"{lock} belongs to uid {OTHER_UID}, not to you", FILE_HINT.format(lock))
    assert _mode(lock) == 0o644


@pytest.mark.parametrize(("mode", "after"), [(0o644, 0o600), (0o604, 0o600), (0o460, 0o600),
                                             (0o400, 0o400), (0o600, 0o600)])
def test_a_key_file_is_tightened_only_when_others_can_reach_it(run, mode, after):
    key = run / "broker" / "k"
    key.parent.mkdir(mode=0o700)
    key.write_bytes(b"k" * 32)
    key.chmod(mode)
    assert paths.runtime_key("k") == b"k" * 32
    assert _mode(key) == after


# --- runtime keys --------------------------------------------------------------------------


def test_a_runtime_key_is_made_once_and_then_read(run):
    key = paths.runtime_key("ledger.key")
    assert isinstance(key, bytes) and len(key) == 32
    path = run / "broker" / "ledger.key"
    assert path.read_bytes() == key and _mode(path) == 0o600
    assert paths.runtime_key("ledger.key") == key
    assert os.listdir(path.parent) == ["ledger.key"]  # no temporary left behind
    other = paths.runtime_key("other.key", size=16)
    assert len(other) == 16 and other != key[:16]
    assert paths.runtime_key("other.key", size=16) == other


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_a_key_file_of_the_wrong_size_is_refused(run, size):
    path = run / "broker" / "k"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(b"x" * size)
    path.chmod(0o600)
    _unsafe(lambda: paths.runtime_key("k"), f"{path} is not a key broker made",
            FILE_HINT.format(path))
    assert path.read_bytes() == b"x" * size  # never replaced


def test_a_key_file_that_is_a_symlink_is_refused(run, tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"t" * 32)
    path = run / "broker" / "k"
    path.parent.mkdir(mode=0o700)
    path.symlink_to(target)
    _unsafe(lambda: paths.runtime_key("k"), f"{path} is a symlink", FILE_HINT.format(path))


def test_a_key_another_process_made_first_is_the_one_used(run, monkeypatch):
    """Both make one; the second link fails: the second process reads the first's key."""
    real_link = os.link
    calls: list[str] = []

    def link(src, dst, **kwargs):
        calls.append(dst)
        (run / "broker" / dst).write_bytes(b"t" * 32)  # the other process, just before us
        raise FileExistsError(17, "File exists")

    monkeypatch.setattr(os, "link", link)
    assert paths.runtime_key("k") == b"t" * 32
    assert calls == ["k"] and os.listdir(run / "broker") == ["k"]
    monkeypatch.setattr(os, "link", real_link)


def test_a_key_that_never_stays_is_an_error_after_three_tries(run, monkeypatch):
    calls: list[str] = []

    def link(src, dst, **kwargs):
        calls.append(dst)
        raise FileExistsError(17, "File exists")  # yet gone again when read

    monkeypatch.setattr(os, "link", link)
    path = run / "broker" / "k"
    _unsafe(lambda: paths.runtime_key("k"), f"{path} could not be made", FILE_HINT.format(path))
    assert calls == ["k"] * 3
    assert os.listdir(path.parent) == []  # each temporary removed


def test_a_runtime_dir_broker_cannot_use_is_named_with_the_reason(state, tmp_path,
                                                                   monkeypatch):
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    place = blocker / "broker" / "run"
    hint = (f"make {place} writable by you, or set XDG_RUNTIME_DIR to a directory of your "
            "own (mode 0700)")
    _unsafe(lambda: paths.runtime_key("k"), f"cannot use {place} for k: Not a directory", hint)

    def no_reason(*args, **kwargs):
        raise OSError  # no strerror: the class names it

    monkeypatch.setattr(os, "open", no_reason)
    _unsafe(lambda: paths.runtime_key("k"), f"cannot use {place} for k: OSError", hint)


# --- reading a private file ----------------------------------------------------------------


def test_read_private_reads_up_to_its_limit_exactly(tmp_path):
    path = tmp_path / "f"
    data = bytes(range(256)) * 800  # 204,800 bytes: several reads
    path.write_bytes(data)
    assert paths.read_private(path) == data
    assert paths.read_private(path, limit=1) == data[:1]
    assert paths.read_private(path, limit=100_000) == data[:100_000]
    assert paths.read_private(path, limit=65_537) == data[:65_537]
    assert paths.read_private(path, limit=0) == b""
    big = tmp_path / "big"
    big.write_bytes(b"b" * ((1 << 20) + 5))
    assert paths.read_private(big) == b"b" * (1 << 20)
    (tmp_path / "empty").write_bytes(b"")
    assert paths.read_private(tmp_path / "empty") == b""


def test_read_private_does_not_follow_a_symlink(tmp_path):
    (tmp_path / "target").write_bytes(b"secret")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(OSError) as raised:
        paths.read_private(tmp_path / "link")
    assert raised.value.errno == errno.ELOOP
    with pytest.raises(FileNotFoundError):
        paths.read_private(tmp_path / "missing")


# --- who holds a lock ----------------------------------------------------------------------


@contextlib.contextmanager
def _held_by(run: Path, content: bytes):
    """The lock "busy" held by another open file (as another process would), which wrote
    ``content`` in it."""
    _lock("busy")
    lock = run / "broker" / "locks" / "busy.lock"
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, content, 0)
        yield lock
    finally:
        os.close(fd)


def _timed_out(run: Path, content: bytes) -> tuple[str, str, Path]:
    with (_held_by(run, content) as lock, pytest.raises(paths.LockTimeout) as raised,
          paths.file_lock("busy", timeout=0)):
        pytest.fail("acquired a held lock")
    error = raised.value
    prefix = "timed out waiting for another broker process (busy) for 0 s: "
    assert error.message.startswith(prefix) and error.message.endswith(f" holds {lock}")
    return error.message[len(prefix):-len(f" holds {lock}")], error.hint, lock


def _hint(end: str) -> str:
    return f"if it is stuck (waiting on a prompt in another terminal?), {end}; then try again"


def _comm() -> str:
    with open("/proc/self/comm", encoding="utf-8", errors="replace") as stream:
        return stream.read().strip()


def test_the_holder_is_named_by_pid_and_command(run):
    me = os.getpid()
    assert _timed_out(run, f"{me}\n".encode()) == (
        f"pid {me} ({_comm()})", _hint(f"end it (`kill {me}`)"), run / "broker/locks/busy.lock")


def test_a_holder_that_is_gone_is_named_by_pid_alone(run):
    gone = 999_999_999  # above any pid_max: no /proc entry
    holder, hint, _ = _timed_out(run, f"{gone}\n".encode())
    assert (holder, hint) == (f"pid {gone}", _hint(f"end it (`kill {gone}`)"))


@pytest.mark.parametrize("content", [b"", b"\n", b"not a pid\n", b"12\xff\xfe\n", b"\xe9"])
def test_a_holder_that_wrote_no_pid_is_another_broker_process(run, content):
    holder, hint, _ = _timed_out(run, content)
    assert (holder, hint) == ("another broker process", _hint("end it"))


def test_only_the_first_32_bytes_name_the_holder(run):
    me = os.getpid()
    content = f"{me}\n".encode().ljust(32) + b"7"
    holder, _, _ = _timed_out(run, content)
    assert holder == f"pid {me} ({_comm()})"


@contextlib.contextmanager
def _ascii_locale():
    """LC_CTYPE "C" (ASCII): what open() without an encoding would then use."""
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


@contextlib.contextmanager
def _command_name(name: bytes):
    """This process's command name (/proc/self/comm) is ``name`` for a while."""
    with open("/proc/self/comm", "rb") as stream:
        before = stream.read().rstrip(b"\n")
    try:
        with open("/proc/self/comm", "wb") as stream:
            stream.write(name)
        yield
    finally:
        with open("/proc/self/comm", "wb") as stream:
            stream.write(before)


def test_a_command_name_is_read_as_utf8_whatever_the_locale(run):
    me = os.getpid()
    with _command_name("brök".encode()), _ascii_locale():
        holder, _, _ = _timed_out(run, f"{me}\n".encode())
    assert holder == f"pid {me} (brök)"


def test_a_command_name_that_is_not_utf8_is_shown_replaced(run):
    me = os.getpid()
    with _command_name(b"br\xffker"):
        holder, _, _ = _timed_out(run, f"{me}\n".encode())
    assert holder == f"pid {me} (br\ufffdker)"


# --- ensure_dir's refusals -----------------------------------------------------------------


def test_ensure_dir_names_a_symlink_another_user_made(tmp_path):
    _as_root()
    real = tmp_path / "real"
    real.mkdir()
    real.chmod(0o755)
    link = tmp_path / "link"
    link.symlink_to(real)
    os.lchown(link, OTHER_UID, OTHER_UID)
    _unsafe(lambda: paths.ensure_dir(link), f"{link} is a symlink another user made",
            FILE_HINT.format(link))
    assert _mode(real) == 0o755


def test_ensure_dir_on_a_file_of_another_user_is_not_a_directory(tmp_path):
    _as_root()
    theirs = tmp_path / "theirs"
    theirs.write_text("")
    os.chown(theirs, OTHER_UID, OTHER_UID)
    with pytest.raises(NotADirectoryError):
        paths.ensure_dir(theirs)
    mine = tmp_path / "mine"
    mine.write_text("")
    with pytest.raises(NotADirectoryError):
        paths.ensure_dir(mine)


def test_ensure_dir_names_an_open_directory_of_another_user(tmp_path):
    _as_root()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    theirs.chmod(0o777)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    _unsafe(lambda: paths.ensure_dir(theirs),
            f"{theirs} is open to other users and belongs to uid {OTHER_UID}",
            FILE_HINT.format(theirs))
    assert _mode(theirs) == 0o777
