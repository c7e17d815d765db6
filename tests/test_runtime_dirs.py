"""Runtime, state and lock files under a shared or hostile directory.

With ``XDG_RUNTIME_DIR`` pointing at a directory other users can write (``/tmp``),
broker used to trust it: another user's symlink ``$XDG_RUNTIME_DIR/broker -> ~/project``
made the victim's project 0700 and planted lock files in it; lock files were opened
following symlinks; a held lock blocked for 300 s; and where no lock could be made, the
MFA reuse guard and the keyring lock went on unlocked without a word. The cross-user
tests plant the symlinks as a throwaway unprivileged uid (tests/support/other_user.py).
"""

from __future__ import annotations

import inspect
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import paths
from broker.aws.mfa import MfaCodes
from broker.aws.mfa_ledger import MfaLedger
from broker.aws.profiles import parse, resolve_chain
from broker.errors import BrokerError, ConfigError
from tests.support.other_user import PYTHON, command, throwaway_uid

SERIAL = "arn:aws:iam::1:mfa/me"


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """A home of our own; no XDG variable set."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory other users can pass through (pytest's own tmp_path is 0700)."""
    place = Path(tempfile.mkdtemp(prefix="broker-world-", dir="/tmp"))
    place.chmod(0o755)
    try:
        yield place
    finally:
        shutil.rmtree(place, ignore_errors=True)


def _shared(base: Path, name: str) -> Path:
    """A directory anyone may write, like /tmp (sticky, 1777)."""
    shared = base / name
    shared.mkdir()
    shared.chmod(0o1777)
    return shared


# --- which runtime directory is trusted ------------------------------------------------------


@pytest.mark.parametrize("mode", [0o1777, 0o755, 0o750, 0o701])
def test_a_runtime_dir_others_can_enter_is_not_used(env, tmp_path, monkeypatch, mode):
    runtime = tmp_path / "run"
    runtime.mkdir()
    runtime.chmod(mode)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert paths.runtime_dir() == env / ".local" / "state" / "broker" / "run"
    with paths.file_lock("x"):
        pass
    assert not (runtime / "broker").exists()  # nothing made in the untrusted directory


def test_a_runtime_dir_that_is_a_symlink_is_not_used(env, tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "link"))
    assert paths.runtime_dir() == env / ".local" / "state" / "broker" / "run"


def test_a_runtime_dir_of_another_user_is_not_used(env, tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("giving a directory to another uid needs root (chown)")
    runtime = tmp_path / "theirs"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, 61_999, 61_999)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert paths.runtime_dir() == env / ".local" / "state" / "broker" / "run"


def test_a_private_runtime_dir_is_used(env, tmp_path, monkeypatch):
    runtime = tmp_path / "mine"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert paths.runtime_dir() == runtime / "broker"
    with paths.file_lock("x"):
        pass
    assert _mode(runtime / "broker") == _mode(runtime / "broker" / "locks") == 0o700
    assert _mode(runtime / "broker" / "locks" / "x.lock") == 0o600


# --- symlinks planted by another user --------------------------------------------------------


def _plant(uid: int, link: Path, target: Path) -> None:
    """As user ``uid``: ``ln -s target link``."""
    done = subprocess.run(
        command(uid, [PYTHON, "-c", "import os, sys; os.symlink(sys.argv[1], sys.argv[2])",
                      str(target), str(link)]),
        capture_output=True, text=True, timeout=30, cwd="/", env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert os.lstat(link).st_uid == uid


@pytest.fixture
def project(tmp_path) -> Path:
    """The victim's project directory, which another user would like to see 0700."""
    project = tmp_path / "project"
    project.mkdir()
    project.chmod(0o755)
    (project / "README").write_text("mine\n")
    return project


def test_another_users_symlink_in_a_shared_runtime_dir_changes_nothing(
    env, world, monkeypatch, project
):
    uid = throwaway_uid()
    shared = _shared(world, "shared-run")
    _plant(uid, shared / "broker", project)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    with paths.file_lock("mfa-device-x"):
        pass
    assert _mode(project) == 0o755
    assert sorted(os.listdir(project)) == ["README"]  # no locks/ planted in it
    assert (env / ".local" / "state" / "broker" / "run" / "locks" / "mfa-device-x.lock").exists()


def test_another_users_symlink_in_the_state_fallback_fails_closed(
    env, world, monkeypatch, project
):
    uid = throwaway_uid()
    shared = _shared(world, "shared-state")
    _plant(uid, shared / "broker", project)
    monkeypatch.setenv("XDG_STATE_HOME", str(shared))
    with pytest.raises(paths.UnsafePath) as raised, paths.file_lock("mfa-device-x"):
        pytest.fail("the body ran without its lock")
    error = raised.value
    assert isinstance(error, ConfigError) and error.exit_code == 3
    assert str(shared / "broker") in error.message and "symlink" in error.message
    assert "XDG_STATE_HOME" in error.hint
    assert _mode(project) == 0o755 and sorted(os.listdir(project)) == ["README"]
    ran = []
    with paths.file_lock("session-x", required=False):  # a lock that only spares work
        ran.append(True)
    assert ran and _mode(project) == 0o755


def test_ensure_dir_refuses_another_users_symlink(env, world, project):
    uid = throwaway_uid()
    shared = _shared(world, "shared-cache")
    _plant(uid, shared / "broker", project)
    with pytest.raises(paths.UnsafePath, match="symlink another user made"):
        paths.atomic_write(shared / "broker" / "plugins.json", b"{}")
    assert _mode(project) == 0o755 and sorted(os.listdir(project)) == ["README"]


def test_ensure_dir_follows_the_users_own_symlink(env, tmp_path):
    real = tmp_path / "dotfiles"
    real.mkdir()
    real.chmod(0o755)
    link = tmp_path / "config-broker"
    link.symlink_to(real)
    paths.atomic_write(link / "config.toml", b"x")
    assert _mode(real) == 0o700 and (real / "config.toml").read_bytes() == b"x"


def test_a_lock_file_that_is_a_symlink_is_refused(env, tmp_path, monkeypatch):
    runtime = tmp_path / "mine"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    locks = runtime / "broker" / "locks"
    locks.mkdir(parents=True, mode=0o700)
    target = tmp_path / "victim.txt"
    target.write_text("untouched\n")
    target.chmod(0o644)
    (locks / "x.lock").symlink_to(target)
    with pytest.raises(paths.UnsafePath, match="symlink"), paths.file_lock("x"):
        pytest.fail("the body ran without its lock")
    assert target.read_text() == "untouched\n" and _mode(target) == 0o644


def test_a_broker_directory_of_another_user_is_refused(env, tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("giving a directory to another uid needs root (chown)")
    shared = _shared(tmp_path, "shared-state")  # only root acts here: tmp_path will do
    theirs = shared / "broker"
    theirs.mkdir(mode=0o777)
    theirs.chmod(0o777)
    os.chown(theirs, 61_998, 61_998)
    monkeypatch.setenv("XDG_STATE_HOME", str(shared))
    with pytest.raises(paths.UnsafePath, match="belongs to uid 61998"), paths.file_lock("x"):
        pass
    assert _mode(theirs) == 0o777  # not chmod-ed by us


# --- failing closed ------------------------------------------------------------------------


@pytest.fixture
def no_lock_dir(env, tmp_path, monkeypatch) -> Path:
    """Nowhere to make a lock file: the state directory is a plain file."""
    blocker = tmp_path / "state-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    return blocker


def test_a_lock_that_guards_correctness_fails_closed(no_lock_dir):
    with pytest.raises(paths.UnsafePath) as raised, paths.file_lock("mfa-state"):
        pytest.fail("the body ran without its lock")
    error = raised.value
    assert "cannot make the lock file" in error.message
    assert str(no_lock_dir) in error.message and "XDG_RUNTIME_DIR" in error.hint
    assert "\n" not in str(error)


def test_a_lock_that_only_spares_work_lets_the_body_run(no_lock_dir):
    ran = []
    with paths.file_lock("session-x", required=False):
        ran.append(True)
    assert ran == [True]


def test_the_mfa_reuse_guard_does_not_turn_off_without_locks(no_lock_dir, tmp_path):
    chain = resolve_chain(parse(f"[profile g]\nmfa_serial = {SERIAL}\n", Path("/x")), "g")
    codes = MfaCodes(explicit="123456", sources=[], ledger=MfaLedger(tmp_path / "mfa.json"))
    with pytest.raises(paths.UnsafePath, match="cannot make the lock file"):
        codes.code_for(SERIAL, chain)


def test_the_keyring_creation_lock_does_not_turn_off(no_lock_dir):
    from broker_keyctl import KeyctlBackend

    backend = KeyctlBackend(settings={"keyring": f"broker-test-locks-{os.getpid()}"})
    if not backend.availability().ok:
        pytest.skip("the kernel keyring is not usable here")
    from broker.backend import Item

    try:
        with pytest.raises(BrokerError, match="cannot make the lock file"):
            backend.set("x", Item(a="b"))  # the first write creates the keyring, locked
    finally:
        backend.purge(every_namespace=True)


# --- waiting for a lock --------------------------------------------------------------------


def test_the_lock_wait_is_bounded():
    assert paths.LOCK_TIMEOUT <= 120
    assert inspect.signature(paths.file_lock).parameters["timeout"].default == paths.LOCK_TIMEOUT


def test_a_waiter_is_told_who_holds_the_lock(env, tmp_path, monkeypatch, capfd):
    runtime = tmp_path / "mine"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setattr(paths, "LOCK_NOTICE_AFTER", 0.1)
    held = tmp_path / "held"
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from broker import paths
        with paths.file_lock("busy"):
            Path({str(held)!r}).touch()
            time.sleep(30)
        """
    )
    other = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while not held.exists():
            assert other.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(paths.LockTimeout) as raised, paths.file_lock("busy", timeout=0.5):
            pytest.fail("acquired a held lock")
    finally:
        other.kill()
        other.wait(timeout=30)
    error = raised.value
    lock = runtime / "broker" / "locks" / "busy.lock"
    assert f"pid {other.pid}" in error.message and str(lock) in error.message
    assert f"kill {other.pid}" in error.hint
    notice = capfd.readouterr().err
    assert f"waiting for pid {other.pid}" in notice and str(lock) in notice
