"""`broker migrate`: every pair of backends, verification, conflicts, and crash safety.

In-process runs go through the real CLI (``broker.cli.app.run``) with a
registry that adds the in-memory backends; crash tests run ``broker`` in a
child process that SIGKILLs itself at each step of an item's journey, between
two backends that outlive it (the kernel keyring and a directory of files).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import config
from broker.backend import SECRET_ACCESS_KEY, TOTP, Item
from broker.testing.memory import MemoryBackend
from tests.support.backends import register_test_plugins, sample_items
from tests.support.stores import Stores
from tests.support.stores import table_rows as _rows

#: The backends of the matrix; pass and onepassword join when their plugins are ready.
MATRIX = ["memory", "keyctl", "pass", "onepassword"]
PAIRS = [(a, b) for a in MATRIX for b in MATRIX if a != b]


@pytest.fixture
def stores(in_home, monkeypatch, capsys, tmp_path) -> Iterator[Stores]:
    made = Stores(in_home, monkeypatch, capsys, tmp_path)
    yield made
    made.close()


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_migrate_every_pair(stores: Stores, source: str, target: str) -> None:
    stores.provide(source)
    stores.provide(target)
    items = sample_items(3, tag=f"{source[:2]}{target[:2]}")
    stores.seed(source, items)

    code, out, err = stores.broker("migrate", "--from", source, "--to", target)
    assert code == 0, err
    assert stores.contents(target, list(items)) == items
    assert stores.contents(source, list(items)) == items  # the source is kept
    assert all(action.startswith("copied") for action in _rows(out).values()), out

    code, out, err = stores.broker("migrate", "--from", source, "--to", target)
    assert code == 0, err
    assert all(a.startswith("already there") for a in _rows(out).values()), out

    delete = ["--delete-source"]
    if persistent(stores, source) and not persistent(stores, target):
        # the only copies would be in memory: refused unless asked for knowingly
        code, out, err = stores.broker("migrate", "--from", source, "--to", target, *delete)
        assert code == 2 and "lost at reboot" in err and "--memory-only" in err, err
        assert stores.contents(source, list(items)) == items
        delete.append("--memory-only")
    code, out, err = stores.broker("migrate", "--from", source, "--to", target, *delete)
    assert code == 0, err
    assert stores.contents(source, list(items)) == dict.fromkeys(items)
    assert stores.contents(target, list(items)) == items
    assert all("deleted source" in a for a in _rows(out).values()), out


def persistent(stores: Stores, name: str) -> bool:
    from broker.backend import Capability

    return Capability.PERSISTENT in stores.context().registry.backend_class(name).capabilities


def test_dry_run_changes_nothing(stores: Stores) -> None:
    stores.provide("memory")
    stores.provide("keyctl")
    items = sample_items(2)
    stores.seed("memory", items)
    code, out, err = stores.broker(
        "migrate", "--from", "memory", "--to", "keyctl", "--dry-run", "--delete-source",
        "--set-default",
    )
    assert code == 0, err
    assert stores.contents("keyctl", list(items)) == dict.fromkeys(items)
    assert stores.contents("memory", list(items)) == items
    assert config.load().backend == "keyctl"  # unchanged: the home's own setting
    assert all(a.startswith("would copy") for a in _rows(out).values()), out
    assert "Dry run" in err


def test_differing_item_stops_the_run_naming_fields_only(stores: Stores) -> None:
    stores.provide("memory")
    stores.provide("keyctl")
    items = sample_items(3)
    stores.seed("memory", items)
    changed = items["prof1"].replace(**{SECRET_ACCESS_KEY: "other-secret-value", TOTP: "ABCDEFGH"})
    stores.seed("keyctl", {"prof1": changed})

    code, out, err = stores.broker("migrate", "--from", "memory", "--to", "keyctl")
    assert code == 2
    assert "prof1 (aws_secret_access_key, totp)" in err
    assert "--overwrite" in err
    for secret in ("other-secret-value", items["prof1"][SECRET_ACCESS_KEY], "ABCDEFGH"):
        assert secret not in err + out
    # nothing was written, not even the items that did not conflict
    assert stores.contents("keyctl", ["prof0", "prof2"]) == {"prof0": None, "prof2": None}
    assert stores.backend("keyctl").get("prof1") == changed

    code, out, err = stores.broker(
        "migrate", "--from", "memory", "--to", "keyctl", "--overwrite", "--dry-run"
    )
    assert code == 0, err
    assert _rows(out)["prof1"] == "would overwrite  differs: aws_secret_access_key, totp"
    assert stores.backend("keyctl").get("prof1") == changed

    code, out, err = stores.broker(
        "migrate", "--from", "memory", "--to", "keyctl", "--overwrite", "--delete-source"
    )
    assert code == 0, err
    assert stores.contents("keyctl", list(items)) == items
    assert _rows(out)["prof1"].startswith("overwritten, deleted source")
    assert stores.contents("memory", list(items)) == dict.fromkeys(items)


def test_source_that_cannot_list_needs_profiles(stores: Stores) -> None:
    stores.provide("nolist")
    stores.provide("memory")
    items = sample_items(2)
    stores.seed("nolist", items)
    code, _, err = stores.broker("migrate", "--from", "nolist", "--to", "memory")
    assert code == 2
    assert "cannot list" in err and "--profile" in err
    code, out, err = stores.broker(
        "migrate", "--from", "nolist", "--to", "memory", "--profile", "prof1",
        "--profile", "missing",
    )
    # a name in neither backend, nor a profile: refused before anything is copied
    assert code == 4 and "no profile named 'missing'" in err, err
    assert stores.contents("memory", list(items)) == dict.fromkeys(items)
    code, out, err = stores.broker(
        "migrate", "--from", "nolist", "--to", "memory", "--profile", "prof1",
    )
    assert code == 0, err
    assert stores.contents("memory", list(items)) == {"prof0": None, "prof1": items["prof1"]}
    assert _rows(out)["prof1"].startswith("copied")


def test_set_default_and_stale_profile_settings(stores: Stores) -> None:
    stores.provide("keyctl")
    stores.provide("memory")
    with open(stores.home.aws_config, "a", encoding="utf-8") as handle:
        handle.write("\n[profile pinned]\nbroker_backend = keyctl\n")
    stores.seed("keyctl", sample_items(1))
    code, _, err = stores.broker(
        "migrate", "--from", "keyctl", "--to", "memory", "--delete-source", "--set-default",
        "--memory-only",  # memory, as keyctl, forgets its keys when it ends
    )
    assert code == 0, err
    assert config.load().backend == "memory"
    assert "Default backend is now memory" in err
    assert "profile 'pinned' sets broker_backend = keyctl" in err


def test_sessions_are_not_migrated(stores: Stores) -> None:
    stores.provide("keyctl")
    stores.provide("memory")
    session = Item({"aws_access_key_id": "ASIASESSION", "aws_session_token": "tok"})
    stores.backend("keyctl", "sessions").set("session:dev", session)
    stores.seed("keyctl", sample_items(1))
    code, _, err = stores.broker(
        "migrate", "--from", "keyctl", "--to", "memory", "--delete-source"
    )
    assert code == 0, err
    assert stores.backend("memory", "sessions").list() == []
    assert stores.backend("memory").list() == ["prof0"]
    assert stores.backend("keyctl", "sessions").get("session:dev") == session


def test_verification_failure_keeps_the_source(stores: Stores) -> None:
    class Lossy(MemoryBackend):
        """Drops the TOTP seed on the way in: a backend with a bug."""

        name = "lossy"

        def set(self, name, item, *, expires_at=None):
            super().set(name, item.replace(totp=None), expires_at=expires_at)

    stores.extra["lossy"] = Lossy
    stores.provide("memory")
    stores.add_config(f'[backends.lossy]\nstore = "{uuid.uuid4().hex}"')
    items = sample_items(2)
    stores.seed("memory", items)
    code, _, err = stores.broker(
        "migrate", "--from", "memory", "--to", "lossy", "--delete-source"
    )
    assert code == 6
    assert "read back differently" in err and "totp" in err
    assert items["prof0"][TOTP] not in err
    assert stores.contents("memory", list(items)) == items


def test_progress_and_refusals(stores: Stores) -> None:
    stores.provide("memory")
    stores.provide("memory2")
    items = sample_items(6)
    stores.seed("memory", items)
    code, _, err = stores.broker("migrate", "--from", "memory", "--to", "memory2")
    assert code == 0, err
    assert "[1/6] prof0" in err and "[6/6] prof5" in err
    code, _, err = stores.broker("migrate", "--from", "memory", "--to", "memory")
    assert code == 2 and "two different backends" in err
    code, _, err = stores.broker("migrate", "--from", "memory", "--to", "nosuch")
    assert code == 3 and "no backend named 'nosuch'" in err


# -- crash safety --------------------------------------------------------------------

STEPS = ["read", "written", "verified", "deleted"]
DIRECTIONS = [
    ("keyctl", "dirstore"), ("dirstore", "keyctl"), ("pass", "keyctl"), ("keyctl", "pass"),
]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(
    ("source", "target"), DIRECTIONS, ids=[f"{a}-to-{b}" for a, b in DIRECTIONS]
)
def test_sigkill_at_each_step_loses_nothing(
    stores: Stores, tmp_path: Path, step: str, source: str, target: str
) -> None:
    stores.provide(source)
    stores.provide(target)
    own = register_test_plugins(tmp_path / "site")
    pythonpath = os.pathsep.join(filter(None, [own, stores.home.env.get("PYTHONPATH")]))
    items = sample_items(3)
    stores.seed(source, items)
    args = ["migrate", "--from", source, "--to", target, "--delete-source"]
    if target == "keyctl":
        args.append("--memory-only")  # the only copies end up in memory, knowingly

    crashed = subprocess.run(
        [sys.executable, "-m", "tests.support.crash", step, "2", *args],
        env={**stores.home.env, "PYTHONPATH": pythonpath},
        capture_output=True, text=True, timeout=60, start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    before = stores.contents(source, list(items))
    after = stores.contents(target, list(items))
    for profile, item in items.items():
        assert item in (before[profile], after[profile]), f"{profile} lost at {step}"
        for found in (before[profile], after[profile]):
            assert found in (None, item), f"{profile} damaged at {step}"
    assert before["prof0"] is None and after["prof0"] == items["prof0"]  # the first finished

    rerun = stores.home.run(*args, env={"PYTHONPATH": pythonpath})
    assert rerun.returncode == 0, rerun.stderr
    assert stores.contents(target, list(items)) == items
    assert stores.contents(source, list(items)) == dict.fromkeys(items)
