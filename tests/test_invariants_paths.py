"""Invariants of broker's files: atomic writes that are durable (the file and its
directory fsynced, in that order, around the rename), private modes, and locks that
exclude across processes and give up at their timeout."""

from __future__ import annotations

import os
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
