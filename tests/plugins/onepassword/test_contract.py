"""The shared backend contract, on the SDK's real Python layer over the emulator.

Three ways in: a service account with the vault named, a service account that
can see one vault (no vault setting), and the desktop app (DesktopAuth, through
the emulated IPC library). ``reopen`` builds a second instance, which finds the
items again through the id state file; ``neighbour`` one whose item titles follow
another template in the same vault.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from broker_onepassword import OnePasswordBackend
from broker_onepassword.testing import OnePasswordEmulator

from broker.backend import Backend
from broker.testing.contract import BackendContract


def _reopen(backend: Backend) -> Backend:
    again: Backend = OnePasswordBackend(settings=backend.settings, namespace=backend.namespace)
    return again


class OnePasswordFixtures(BackendContract):
    @pytest.fixture
    def neighbour(self) -> Callable[[Backend], Backend | None]:
        return lambda b: OnePasswordBackend(
            settings={**b.settings, "title": "Neighbour {profile}"}, namespace=b.namespace
        )

    @pytest.fixture
    def bad_settings(self) -> list[Mapping[str, Any]]:
        return [
            {"title": "AWS without a placeholder"},
            {"timeout": -1},
            {"token": "env:BROKER_CONTRACT_NO_SUCH_VARIABLE"},
            {"token": 12345},
        ]


class TestOnePasswordContract(OnePasswordFixtures):
    @pytest.fixture
    def backend(self, make_backend: Callable[..., OnePasswordBackend]) -> Backend:
        backend: Backend = make_backend(vault="Broker")
        return backend

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return _reopen


class TestOnePasswordContractOnlyVault(OnePasswordFixtures):
    """No ``vault`` setting: the one vault the service account can see."""

    @pytest.fixture
    def backend(self, make_backend: Callable[..., OnePasswordBackend]) -> Backend:
        backend: Backend = make_backend(vault=None)
        return backend

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return _reopen


class TestOnePasswordContractDesktopApp(OnePasswordFixtures):
    """Desktop-app authentication: the SDK's DesktopCore talks to the emulated app."""

    @pytest.fixture
    def backend(
        self, emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
    ) -> Backend:
        emulator.desktop(installed=True, accounts=["me@example.com"])
        backend: Backend = make_backend(account="me@example.com", vault="Private")
        return backend

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return _reopen
