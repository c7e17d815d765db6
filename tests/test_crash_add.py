"""kill -9 during `broker add --replace`: the stored key is the old one or the new one,
never missing, never half-written."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest

from broker.testing.gnupg import throwaway_gnupg_home
from tests.conftest import BIN, TEST_SECRET
from tests.support.pass_store import pass_run

OLD = "AKIAOLDOLDOLDOLDOLD1"
NEW = "AKIANEWNEWNEWNEWNEW2"


def stored_key_id(home) -> str:
    """The access key id broker reads back (through the whole chain, no STS)."""
    result = home.run("export", "plain", "--no-session", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["AccessKeyId"]


def kill_add_at_random_points(home, rounds: int) -> set[str]:
    seen = set()
    rng = random.Random(1234)
    for _ in range(rounds):
        key = NEW if rng.random() < 0.5 else OLD
        proc = subprocess.Popen(
            [str(BIN / "broker"), "add", "plain", "--replace"],
            env=home.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(f"{key}\n{TEST_SECRET}\n".encode())
        proc.stdin.close()
        time.sleep(rng.uniform(0.0, 0.6))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        seen.add(stored_key_id(home))
    return seen


@pytest.fixture(params=["keyctl", "pass"])
def backend_home(request, home):
    """The isolated home, with its keys in the kernel keyring or in a real pass store."""
    if request.param == "keyctl":
        yield home, None
        return
    with throwaway_gnupg_home() as gpg:
        store = home.root / ".password-store"
        pass_run(gpg, store, "init", gpg.key.uid)
        home.env.update(GNUPGHOME=str(gpg.path), PASSWORD_STORE_DIR=str(store))
        home.broker_config.write_text(
            home.broker_config.read_text().replace('backend = "keyctl"', 'backend = "pass"')
        )
        yield home, gpg


def test_kill_during_add_loses_nothing(backend_home):
    home, gpg = backend_home
    home.run("add", "plain", input=f"{OLD}\n{TEST_SECRET}\n", check=True)
    seen = kill_add_at_random_points(home, rounds=12)
    assert seen <= {OLD, NEW}
    if gpg is not None:
        store = home.root / ".password-store"
        entries = [p.name for p in (store / "broker").iterdir() if p.name.endswith(".gpg")]
        assert entries == ["plain.gpg"]
        shown = pass_run(gpg, store, "show", "broker/plain")
        assert shown.stdout.decode().splitlines()[0] == TEST_SECRET
