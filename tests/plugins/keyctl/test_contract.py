"""The shared backend contract, run against the real kernel keyring.

Once through libkeyutils and once through the raw syscalls, each in its own
throwaway keyring; ``reopen`` builds a second instance over the same keyring,
``neighbour`` one over keyrings of another name (purged at teardown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from broker_keyctl import KeyctlBackend

from broker.backend import Backend
from broker.testing.contract import BackendContract

#: Settings the constructor refuses, saying why (the registry: not available, with that).
BAD_SETTINGS: list[Mapping[str, Any]] = [
    {"keyring": ""}, {"keyring": 7}, {"parent": "elsewhere"},
]


class KeyctlFixtures(BackendContract):
    @pytest.fixture
    def neighbour(self) -> Iterator[Callable[[Backend], Backend | None]]:
        """Instances on keyrings named ``<prefix>-neighbour:*``, every one purged after."""
        made: list[KeyctlBackend] = []

        def make(backend: Backend) -> Backend:
            prefix = f"{backend.settings['keyring']}-neighbour"
            made.append(KeyctlBackend(settings={**backend.settings, "keyring": prefix},
                                      namespace=backend.namespace))
            return made[-1]

        yield make
        for backend in made:
            backend.purge(every_namespace=True)

    @pytest.fixture
    def bad_settings(self) -> list[Mapping[str, Any]]:
        return BAD_SETTINGS


class TestKeyctlContract(KeyctlFixtures):
    @pytest.fixture
    def backend(
        self, ops_kind: str, make_backend: Callable[..., KeyctlBackend]
    ) -> Backend:
        return make_backend()

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return lambda b: KeyctlBackend(settings=b.settings, namespace=b.namespace)


class TestKeyctlContractSessions(KeyctlFixtures):
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
