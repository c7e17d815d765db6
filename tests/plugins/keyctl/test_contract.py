"""The shared backend contract, run against the real kernel keyring.

Once through libkeyutils and once through the raw syscalls, each in its own
throwaway keyring; ``reopen`` builds a second instance over the same keyring.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from broker_keyctl import KeyctlBackend

from broker.backend import Backend
from broker.testing.contract import BackendContract


class TestKeyctlContract(BackendContract):
    @pytest.fixture
    def backend(
        self, ops_kind: str, make_backend: Callable[..., KeyctlBackend]
    ) -> Backend:
        return make_backend()

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return lambda b: KeyctlBackend(settings=b.settings, namespace=b.namespace)


class TestKeyctlContractSessions(BackendContract):
    """The session-cache namespace, under the persistent-keyring parent."""

    @pytest.fixture
    def backend(
        self, make_backend: Callable[..., KeyctlBackend]
    ) -> Backend:
        backend = make_backend("sessions", parent="persistent")
        if not backend.availability().ok:
            pytest.skip(f"no persistent keyring here: {backend.availability().reason}")
        return backend

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return lambda b: KeyctlBackend(settings=b.settings, namespace=b.namespace)
