"""The backend contract against real 1Password (opt-in).

Runs only when both are set:

* ``OP_SERVICE_ACCOUNT_TOKEN``: a service-account token with read and write
  access to a vault set aside for tests;
* ``BROKER_TEST_OP_VAULT``: that vault's name or id.

Items are titled ``broker-test-<random> <name>`` and deleted after each test.
A run makes roughly 100 reads and 40 writes (mind the hourly rate limits).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from broker_onepassword import OnePasswordBackend

from broker.backend import Backend
from broker.testing.contract import SAMPLE, BackendContract

# Read at import: the autouse fixture clears these variables for every other test.
TOKEN = os.environ.get("OP_SERVICE_ACCOUNT_TOKEN", "")
VAULT = os.environ.get("BROKER_TEST_OP_VAULT", "")
MISSING = [n for n, v in (("OP_SERVICE_ACCOUNT_TOKEN", TOKEN), ("BROKER_TEST_OP_VAULT", VAULT))
           if not v]

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"live 1Password test: set {' and '.join(MISSING)} to run it (a service-account "
        "token with write access to a test vault, and that vault's name)",
    ),
]


@pytest.fixture
def live_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", TOKEN)
    monkeypatch.delenv("BROKER_OP_EMULATOR", raising=False)  # the real native core
    settings = {"vault": VAULT, "title": f"broker-test-{uuid.uuid4().hex[:8]} {{profile}}"}
    yield settings
    cleaner = OnePasswordBackend(settings=settings)
    try:
        for name in cleaner.list():
            cleaner.delete(name)
    finally:
        cleaner.close()


class TestLiveContract(BackendContract):
    @pytest.fixture
    def backend(self, live_settings: dict[str, str]) -> Iterator[Backend]:
        backend = OnePasswordBackend(settings=live_settings)
        yield backend
        backend.close()

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return lambda b: OnePasswordBackend(settings=b.settings, namespace=b.namespace)


def test_live_totp_reference(live_settings: dict[str, str]) -> None:
    import pyotp

    backend = OnePasswordBackend(settings=live_settings)
    try:
        backend.set("totp", SAMPLE)
        title = live_settings["title"].replace("{profile}", "totp")
        code = backend.resolve(f"op://{VAULT}/{title}/one-time password?attribute=totp")
        totp = pyotp.TOTP(SAMPLE["totp"])
        assert code in {totp.now(), totp.at(time.time() - 30)}
    finally:
        backend.close()
