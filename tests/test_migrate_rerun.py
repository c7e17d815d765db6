"""`broker migrate` run again after an interruption, and the errors around a key that is
not where a profile looks for it.

* A run with ``--delete-source`` killed (SIGKILL) at any point leaves every profile
  reading a backend that holds its key (each profile is pinned to the target with
  ``broker_backend`` before its source copy is deleted; with ``--set-default`` the
  default changes before any deletion); running the same command again finishes the job.
* The missing-key error names another backend holding a key under the profile's name,
  and how to use it; backends that cannot say are left out.
* A profile named with ``--profile`` whose key is in neither backend stops the run
  before anything is changed.

The crash runs go through the installed ``broker`` in a child process (the test home's
``run``), between the kernel keyring and a real ``pass`` store; the other tests run the
CLI in process over the in-memory backends.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import ClassVar

import pytest

from broker.backend import Item
from broker.errors import BackendError
from broker.testing.memory import MemoryBackend
from tests.support.backends import REPO, sample_items
from tests.support.stores import Stores, table_rows


def _rows(out: str) -> dict[str, str]:
    """PROFILE -> ACTION and NOTE of the summary table, one space between words."""
    return {name: " ".join(rest.split()) for name, rest in table_rows(out).items()}


@pytest.fixture
def stores(in_home, monkeypatch, capsys, tmp_path) -> Iterator[Stores]:
    made = Stores(in_home, monkeypatch, capsys, tmp_path)
    yield made
    made.close()
    Listing.calls.clear()


def _pin(stores: Stores, profiles: list[str], backend: str) -> None:
    """Sections for ``profiles`` naming ``backend``, as `broker add --backend` writes them."""
    with open(stores.home.aws_config, "a", encoding="utf-8") as handle:
        for profile in profiles:
            handle.write(f"\n[profile {profile}]\nbroker_backend = {backend}\n")


def _pinned(stores: Stores, profile: str) -> str | None:
    return stores.context().aws.profiles[profile].broker_backend


def _read_by(stores: Stores, profile: str) -> tuple[str, Item | None]:
    """(backend, item) where `exec` would look for ``profile``'s key now."""
    ctx = stores.context()
    store = ctx.credential_backend(ctx.aws.profiles[profile])
    return store.name, store.get(profile)


# -- an interrupted --delete-source, then the same command again ------------------------


@pytest.mark.parametrize("step", ["verified", "deleted"])
def test_rerun_after_sigkill_pins_the_profiles_to_the_target(
    stores: Stores, step: str
) -> None:
    """Killed at the second item's ``step``: prof0 is only in pass (its keyctl copy
    deleted), prof1 in both (``verified``) or only in pass (``deleted``), prof2 only in
    keyctl; every profile still says broker_backend = keyctl."""
    stores.provide("keyctl")
    stores.provide("pass")
    items = sample_items(3)
    stores.seed("keyctl", items)
    _pin(stores, list(items), "keyctl")
    args = ["migrate", "--from", "keyctl", "--to", "pass", "--delete-source"]
    args += [f"--profile={name}" for name in items]

    crashed = subprocess.run(
        [sys.executable, "-m", "tests.support.crash", step, "2", *args],
        env=stores.home.env, cwd=REPO, capture_output=True, text=True, timeout=60,
        start_new_session=True, stdin=subprocess.DEVNULL,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert stores.contents("pass", list(items)) == {**items, "prof2": None}
    left = stores.contents("keyctl", list(items))
    assert left["prof0"] is None and left["prof2"] == items["prof2"]
    assert left["prof1"] == (items["prof1"] if step == "verified" else None)
    # each profile was settled just before its source copy went: whatever the moment of
    # the kill, every profile reads a backend that holds its key
    assert _pinned(stores, "prof0") == "pass" and _pinned(stores, "prof2") == "keyctl"
    assert _pinned(stores, "prof1") == ("keyctl" if step == "verified" else "pass")
    for name, item in items.items():
        assert _read_by(stores, name)[1] == item

    rerun = stores.home.run(*args)
    assert rerun.returncode == 0, rerun.stderr
    rows = _rows(rerun.stdout)
    assert rows["prof0"] == "already there not in the source"
    assert rows["prof1"] == (
        "already there, deleted source" if step == "verified"
        else "already there not in the source"
    )
    assert rows["prof2"] == "copied, deleted source"
    repinned = "prof1, prof2" if step == "verified" else "prof2"
    assert f"set broker_backend = pass in ~/.aws/config for {repinned}," in rerun.stderr
    assert "change it to pass" not in rerun.stderr
    assert stores.contents("keyctl", list(items)) == dict.fromkeys(items)
    for name, item in items.items():
        assert _pinned(stores, name) == "pass"
        assert _read_by(stores, name) == ("pass", item)

    again = stores.home.run(*args)  # nothing left to do, nothing more changed
    assert again.returncode == 0, again.stderr
    assert "broker_backend" not in again.stderr


def test_rerun_without_delete_source_changes_no_profile(stores: Stores) -> None:
    """The state an interrupted --delete-source leaves, run again without it: as a copy
    without --delete-source, the profiles are left as they are (the source is kept)."""
    stores.provide("memory")
    stores.provide("memory2")
    items = sample_items(2)
    stores.seed("memory2", items)  # both moved, the source copies deleted
    stores.seed("memory", {"prof1": items["prof1"]})  # ... prof1's not yet
    _pin(stores, list(items), "memory")
    before = stores.home.aws_config.read_text()
    code, out, err = stores.broker(
        "migrate", "--from", "memory", "--to", "memory2", "--profile", "prof0",
        "--profile", "prof1",
    )
    assert code == 0, err
    assert _rows(out) == {
        "prof0": "already there not in the source", "prof1": "already there"
    }
    assert stores.home.aws_config.read_text() == before
    assert stores.backend("memory").get("prof1") == items["prof1"]


def test_set_default_sets_the_default_before_deleting_and_repins_the_source_pins(
    stores: Stores,
) -> None:
    """--set-default: every copy is verified and the target made the default before any
    source copy goes; a profile pinned to the source is pinned to the target (it would
    look for a key that is gone), one that named no backend reads the new default."""
    stores.provide("memory")
    stores.provide("memory2")
    items = sample_items(2)
    stores.seed("memory", items)
    _pin(stores, ["prof0"], "memory")
    with open(stores.home.aws_config, "a", encoding="utf-8") as handle:
        handle.write("\n[profile prof1]\n")
    code, out, err = stores.broker(
        "migrate", "--from", "memory", "--to", "memory2", "--profile", "prof0",
        "--profile", "prof1", "--delete-source", "--set-default", "--memory-only",
    )
    assert code == 0, err
    assert _rows(out) == {"prof0": "copied, deleted source", "prof1": "copied, deleted source"}
    assert _pinned(stores, "prof0") == "memory2" and _pinned(stores, "prof1") is None
    assert "sets broker_backend = memory" not in err
    for name, item in items.items():
        assert _read_by(stores, name) == ("memory2", item)


def test_a_crash_before_the_default_is_set_deleted_nothing(stores: Stores,
                                                           monkeypatch) -> None:
    """--set-default: a failure while copying (the last copy here) leaves every source
    copy and the old default in place."""
    from broker.services import migrate

    stores.provide("memory")
    stores.provide("memory2")
    items = sample_items(2)
    stores.seed("memory", items)

    def stop(step: str, profile: str) -> None:
        if step == "read" and profile == "prof1":
            raise BackendError("the target went away", "try again")

    monkeypatch.setattr(migrate, "checkpoint", stop)
    code, _, err = stores.broker(
        "migrate", "--from", "memory", "--to", "memory2", "--profile", "prof0",
        "--profile", "prof1", "--delete-source", "--set-default", "--memory-only",
    )
    assert code == 6, err
    assert stores.contents("memory", list(items)) == items
    assert stores.context().settings.backend != "memory2"  # the default is not set


# -- the missing-key error names where the key is ------------------------------------------


class Listing(MemoryBackend):
    """The memory backend, recording each list() call."""

    name: ClassVar[str] = "listing"
    calls: ClassVar[list[str]] = []

    def list(self) -> list[str]:
        Listing.calls.append(self.namespace)
        return super().list()


class FailingList(MemoryBackend):
    """A backend whose list() fails (a locked vault, say)."""

    name: ClassVar[str] = "failing"

    def list(self) -> list[str]:
        raise BackendError("failing: the vault is locked", "unlock it")


class Unavailable(MemoryBackend):
    """A backend that is not available here."""

    name: ClassVar[str] = "unavailable"

    def availability(self):  # type: ignore[no-untyped-def]
        from broker.backend import Availability

        return Availability(False, "not here")


def _with_others(stores: Stores) -> dict[str, Item]:
    """memory (empty), listing (prof0's key), failing and unavailable (holding it too,
    but unable to say so); prof0 pinned to memory."""
    stores.extra.update(listing=Listing, failing=FailingList, unavailable=Unavailable)
    stores.provide("memory")
    for name in ("listing", "failing", "unavailable"):
        stores.add_config(f'[backends.{name}]\nstore = "{name}-{id(stores)}"')
    items = sample_items(1)
    for name in ("listing", "failing", "unavailable"):
        store = stores.context().registry.create(name)
        store.set("prof0", items["prof0"])
    _pin(stores, ["prof0"], "memory")
    return items


def test_missing_key_error_names_the_backend_holding_one(stores: Stores) -> None:
    _with_others(stores)
    code, _, err = stores.broker("export", "prof0")
    assert code == 5
    # memory keeps keys in memory only: copying the key there is not advised
    assert err.strip() == (
        "broker: no key stored for profile 'prof0' in backend 'memory'; listing holds one "
        "(set broker_backend = listing in [profile prof0])"
    )
    code, _, err = stores.broker("export", "prof0", "--backend", "memory")
    assert code == 5
    assert err.strip().endswith("listing holds one (use --backend listing)")


def test_the_way_to_move_it_is_offered_into_a_persistent_backend_quoted(
    stores: Stores,
) -> None:
    items = _with_others(stores)
    stores.provide("dirstore")
    with open(stores.home.aws_config, "a", encoding="utf-8") as handle:
        handle.write("\n[profile \"my key\"]\nbroker_backend = dirstore\n")
    stores.context().registry.create("listing").set("my key", items["prof0"])
    code, _, err = stores.broker("export", "my key")
    assert code == 5, err
    assert err.strip().endswith(
        '(set broker_backend = listing in [profile "my key"], or '
        "`broker migrate --from listing --to dirstore --profile 'my key'`)")


def test_missing_key_error_without_another_holder(stores: Stores) -> None:
    stores.provide("memory")
    stores.provide("memory2")
    _pin(stores, ["prof0"], "memory")
    code, _, err = stores.broker("export", "prof0")
    assert code == 5
    assert err.strip() == (
        "broker: no key stored for profile 'prof0' in backend 'memory' "
        "(run `broker add prof0`)"
    )


def test_a_found_key_lists_no_other_backend(stores: Stores) -> None:
    items = _with_others(stores)
    stores.seed("memory", items)
    Listing.calls.clear()
    code, _, err = stores.broker("totp", "code", "prof0")  # reads the key and its seed
    assert code == 0, err
    assert Listing.calls == []


# -- a named profile whose key is in neither backend ----------------------------------------


def test_named_profile_in_neither_backend_is_an_error(stores: Stores) -> None:
    stores.provide("memory")
    stores.provide("memory2")
    items = sample_items(2)
    stores.seed("memory", items)
    _pin(stores, ["prof0", "prof1", "other"], "memory")
    before = stores.home.aws_config.read_text()
    for extra in ([], ["--dry-run"], ["--delete-source"]):
        code, out, err = stores.broker(
            "migrate", "--from", "memory", "--to", "memory2", "--profile", "prof0",
            "--profile", "other", *extra,
        )
        assert code == 5, err
        assert err.strip() == (
            "broker: no key stored for profile 'other' in the source backend 'memory', "
            "nor in 'memory2' (check the name: `broker list` shows where each "
            "profile's key is; nothing was changed)"
        )
        assert out == ""
    # nothing was changed: prof0 was not copied, nor deleted, nor pinned
    assert stores.contents("memory2", list(items)) == dict.fromkeys(items)
    assert stores.contents("memory", list(items)) == items
    assert stores.home.aws_config.read_text() == before


def test_named_name_that_is_no_profile_is_exit_4(stores: Stores) -> None:
    stores.provide("memory")
    stores.provide("memory2")
    items = sample_items(1)
    stores.seed("memory", items)
    _pin(stores, ["prof0"], "memory")
    code, out, err = stores.broker(
        "migrate", "--from", "memory", "--to", "memory2", "--profile", "prof0",
        "--profile", "prof9",
    )
    assert code == 4, err
    assert "no profile named 'prof9'" in err and "did you mean 'prof0'" in err
    assert out == ""
    assert stores.contents("memory2", list(items)) == dict.fromkeys(items)
