"""The shared backend contract, run against a real password store and real GnuPG.

Every item goes through gpg: encrypted to the store's .gpg-id, decrypted with the
passphrase from a (test) secret reference; ``reopen`` builds a second instance, so
nothing comes from a cache inside the first one.
"""

from __future__ import annotations

from collections.abc import Callable
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
