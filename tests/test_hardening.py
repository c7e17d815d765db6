"""A long-lived `exec --server` is not dumpable, leaves no core file, and drops the
secrets it can read again (passphrases, tokens, backend clients) after each use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import pytest

from broker.services import credentials
from broker.services import server as server_service
from broker.testing.memory import MemoryBackend
from tests.conftest import BIN
from tests.support.contexts import default_keys, home_context, keyctl_usable
from tests.support.other_user import PYTHON, command, throwaway_uid

REPO = Path(__file__).resolve().parents[1]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_harden_makes_the_process_non_dumpable_without_a_core_limit():
    done = _python(
        """
        import json, resource
        from broker import hardening
        before = hardening.dumpable(), resource.getrlimit(resource.RLIMIT_CORE)
        problems = hardening.harden()
        after = hardening.dumpable(), resource.getrlimit(resource.RLIMIT_CORE)
        print(json.dumps([before, after, problems]))
        """
    )
    assert done.returncode == 0, done.stderr
    (dumpable_before, limit_before), (dumpable_after, limit_after), problems = json.loads(
        done.stdout
    )
    assert problems == []
    assert dumpable_before is True and dumpable_after is False
    assert limit_after == [0, limit_before[1]]  # soft 0; the hard limit kept


#: As another user: harden (or not), then let a child of the same user read our environ.
PEEK = r"""
import os, subprocess, sys
sys.path.insert(0, sys.argv[1])
os.environ["BROKER_TEST_SECRET"] = "kept in memory"
if sys.argv[2] == "harden":
    from broker import hardening
    assert hardening.harden() == []
child = subprocess.run(
    [sys.executable, "-c",
     "import os; open('/proc/%d/environ' % os.getppid(), 'rb').read(); print('readable')"],
    capture_output=True, text=True,
)
print(child.stdout.strip() or child.stderr.strip().splitlines()[-1])
"""


@pytest.mark.parametrize("mode", ["harden", "plain"])
def test_another_process_of_the_same_user_cannot_read_a_hardened_one(mode):
    uid = throwaway_uid()
    done = subprocess.run(
        command(uid, [PYTHON, "-c", PEEK, str(REPO), mode]), capture_output=True, text=True,
        timeout=60, cwd="/", env={"PATH": "/usr/bin:/bin"}, check=False,
    )
    assert done.returncode == 0, done.stderr
    if mode == "harden":
        assert "PermissionError" in done.stdout, done.stdout
    else:  # the control: without hardening, the same user reads it
        assert done.stdout.strip() == "readable"


LIMITS = "import os; print(open('/proc/%d/limits' % os.getppid()).read())"


def test_exec_server_runs_hardened(home):
    if not keyctl_usable():
        pytest.skip("the kernel keyring is not usable here")
    home.add_key("dev")
    # started with core files allowed (a soft limit of unlimited), as some users have it
    result = subprocess.run(
        ["sh", "-c", 'ulimit -S -c unlimited && exec "$0" "$@"', str(BIN / "broker"),
         "exec", "--server", "dev", "--", sys.executable, "-c", LIMITS],
        env=home.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        start_new_session=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    core = next(line for line in result.stdout.splitlines() if line.startswith("Max core"))
    assert core.split()[4] == "0", core  # broker's own soft limit, as the child sees it
    assert "warning" not in result.stderr


# --- secrets dropped after each use ------------------------------------------------------------


class ClosingMemory(MemoryBackend):
    """The memory backend, holding a "resolved passphrase" until it is closed."""

    opened: ClassVar[list[ClosingMemory]] = []

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.passphrase: str | None = "resolved passphrase"
        ClosingMemory.opened.append(self)

    def close(self) -> None:
        self.passphrase = None


@pytest.fixture
def ctx(in_home, sts):
    ClosingMemory.opened.clear()
    return home_context(in_home, default_keys("dev"), backend=ClosingMemory)


def _credential_backends(ctx) -> list[object]:
    return [b for (name, namespace), b in ctx._backends.items() if namespace == "credentials"]


def test_a_long_lived_process_drops_the_backends_it_read_the_key_with(ctx):
    ctx.long_lived = True
    credentials.obtain(ctx, "dev")
    assert _credential_backends(ctx) == []
    assert ClosingMemory.opened and all(b.passphrase is None for b in ClosingMemory.opened)
    assert ctx.sessions.backend is not None  # the session cache stays open
    assert credentials.cached(ctx, "dev") is not None


def test_each_refresh_drops_them_again(ctx, in_home):
    ctx.long_lived = True
    fetch = server_service.refresher(ctx, "dev")
    credentials.obtain(ctx, "dev")
    ctx.sessions.clear()
    in_home.next_step()
    fetch()  # a refresh through the whole chain: the key is read again, then dropped
    assert len(ClosingMemory.opened) >= 2 and _credential_backends(ctx) == []
    assert all(b.passphrase is None for b in ClosingMemory.opened)


def test_a_short_lived_command_keeps_them_for_its_run(ctx):
    credentials.obtain(ctx, "dev")
    assert _credential_backends(ctx) != []  # closed by the CLI when the command ends
