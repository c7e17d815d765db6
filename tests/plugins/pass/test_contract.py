"""The shared backend contract, run against a real password store and real GnuPG.

Every item goes through gpg: encrypted to the store's .gpg-id, decrypted with the
passphrase from a (test) secret reference; ``reopen`` builds a second instance, so
nothing comes from a cache inside the first one; ``neighbour`` one whose entries
live under another prefix of the same store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from broker.backend import Backend
from broker.testing.contract import BackendContract


class TestPassContract(BackendContract):
    @pytest.fixture
    def backend(self, store: Any) -> Backend:
        return store.backend()

    @pytest.fixture
    def reopen(self, store: Any) -> Callable[[Backend], Backend]:
        return store.reopen  # type: ignore[no-any-return]

    @pytest.fixture
    def neighbour(self, store: Any) -> Callable[[Backend], Backend | None]:
        return lambda b: store.backend(b.namespace, prefix="contract-neighbour")

    @pytest.fixture
    def bad_settings(self, tmp_path: Path) -> list[Mapping[str, Any]]:
        return [
            {"store": str(tmp_path / "no-store")},  # availability: no password store
            {"gpg": "no-such-gpg-program"},  # availability: gpg not found
            {"prefix": "/"},  # refused: the root of the store
            {"passphrase": "not a reference"},  # refused: a value, not a reference
        ]
