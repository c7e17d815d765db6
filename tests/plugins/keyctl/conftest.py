"""Fixtures for the keyctl backend: real kernel keyrings, one throwaway name per test.

Every test works in keyrings named ``broker-test-XXXXXXXX:<namespace>`` under
@u and purges them at teardown; the session ends by checking that no
``broker-test-*`` keyring is left in @u.
"""

from __future__ import annotations

import errno
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import broker_keyctl
import pytest
from broker_keyctl import KEY_SPEC_USER_KEYRING, KeyctlBackend, _native

from tests.conftest import KEYRING_PREFIX as TEST_PREFIX


def _unavailable_reason() -> str | None:
    """Why the real kernel keyring cannot be used here, or None."""
    availability = KeyctlBackend().availability()
    return None if availability.ok else availability.reason


def _user_keyring_children() -> list[int]:
    """Serials linked directly in @u."""
    try:
        return _native.load().keyring_serials(KEY_SPEC_USER_KEYRING)
    except OSError as exc:
        if exc.errno == errno.ENOKEY:
            return []
        raise


def leftover_test_keyrings() -> list[tuple[int, str]]:
    """(serial, description) of every keyring of this test session linked directly in @u."""
    ops = _native.load()
    found = []
    for serial in _user_keyring_children():
        try:
            key_type, _, _, _, description = ops.describe(serial).split(";", 4)
        except OSError:
            continue
        if key_type == "keyring" and description.startswith(TEST_PREFIX):
            found.append((serial, description))
    return found


# Prefixes whose tests used parent = "persistent" (so teardown purges there too).
_persistent_used: dict[str, bool] = {}


@pytest.fixture(scope="session")
def keyring_available() -> None:
    """Skip (saying why) only when the kernel keyring truly cannot be used."""
    reason = _unavailable_reason()
    if reason is not None:
        pytest.skip(f"the kernel keyring is not usable here: {reason}")


@pytest.fixture(scope="session", autouse=True)
def nothing_left_in_user_keyring() -> Iterator[None]:
    """After the whole session, no keyring this session made may remain in @u."""
    yield
    if _unavailable_reason() is not None:
        return
    leftovers = leftover_test_keyrings()
    for serial, _ in leftovers:  # clean up anyway, then fail loudly
        ops = _native.load()
        ops.clear(serial)
        ops.unlink(serial, KEY_SPEC_USER_KEYRING)
    assert not leftovers, f"tests left keyrings in @u: {[d for _, d in leftovers]}"


@pytest.fixture
def keyring_prefix(keyring_available: None) -> Iterator[str]:
    """A unique keyring prefix; every namespace under it is purged at teardown."""
    prefix = f"{TEST_PREFIX}{uuid.uuid4().hex[:8]}"
    linked_before = set(_user_keyring_children())
    yield prefix
    KeyctlBackend(settings={"keyring": prefix}).purge(every_namespace=True)
    # Only touch the persistent keyring when a test asked for it.
    if _persistent_used.pop(prefix, False):
        KeyctlBackend(settings={"keyring": prefix, "parent": "persistent"}).purge(
            every_namespace=True
        )
        # parent = "persistent" links the persistent keyring into @u; undo that
        # if the test was the one to do it, so @u looks as it did before.
        ops = _native.load()
        for serial in set(_user_keyring_children()) - linked_before:
            try:
                if ops.describe(serial).split(";", 4)[4].startswith("_persistent."):
                    ops.unlink(serial, KEY_SPEC_USER_KEYRING)
            except OSError:
                continue


@pytest.fixture
def make_backend(keyring_prefix: str) -> Callable[..., KeyctlBackend]:
    """``make_backend(namespace="credentials", **settings)`` over this test's keyrings."""

    def make(namespace: str = "credentials", **settings: Any) -> KeyctlBackend:
        if settings.get("parent") == "persistent":
            _persistent_used[keyring_prefix] = True
        return KeyctlBackend(
            settings={"keyring": keyring_prefix, **settings}, namespace=namespace
        )

    return make


@pytest.fixture(params=["libkeyutils", "syscall"])
def ops_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once through libkeyutils and once through the raw syscalls."""
    ops: _native.KeyOps | None
    if request.param == "libkeyutils":
        ops = _native.load_library()
        if ops is None:
            pytest.skip(f"{_native.LIBRARY} is not installed")
    else:
        try:
            ops = _native.load_syscalls()
        except _native.NoKeyOps as exc:
            pytest.skip(str(exc))
    monkeypatch.setattr(broker_keyctl, "_OPS", ops)
    return str(request.param)


@pytest.fixture
def backend(make_backend: Callable[..., KeyctlBackend]) -> KeyctlBackend:
    """A fresh, empty backend in the credentials namespace."""
    return make_backend()
