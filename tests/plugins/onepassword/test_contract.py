"""The shared backend contract, on the SDK's real Python layer over the emulator.

Three ways in: a service account with the vault named, a service account that
can see one vault (no vault setting), and the desktop app (DesktopAuth, through
the emulated IPC library). ``reopen`` builds a second instance, which finds the
items again through the id state file.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from broker_onepassword import OnePasswordBackend

from broker.backend import Backend
from broker.testing.contract import BackendContract
from broker.testing.onepassword_emulator import OnePasswordEmulator


def _reopen(backend: Backend) -> Backend:
    again: Backend = OnePasswordBackend(settings=backend.settings, namespace=backend.namespace)
    return again


class TestOnePasswordContract(BackendContract):
    @pytest.fixture
    def backend(self, make_backend: Callable[..., OnePasswordBackend]) -> Backend:
        backend: Backend = make_backend(vault="Broker")
        return backend

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return _reopen


class TestOnePasswordContractOnlyVault(BackendContract):
    """No ``vault`` setting: the one vault the service account can see."""

    @pytest.fixture
    def backend(self, make_backend: Callable[..., OnePasswordBackend]) -> Backend:
        backend: Backend = make_backend(vault=None)
        return backend

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return _reopen


class TestOnePasswordContractDesktopApp(BackendContract):
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
