"""The CLI transport against a real 1Password CLI signed in through the app (opt-in).

Runs only with ``BROKER_LIVE_OP=1``, on a machine where ``op`` (or, inside WSL2,
``op.exe``) is installed and the 1Password app is running, unlocked, with Settings >
Developer > Integrate with 1Password CLI turned on. The app asks for approval
(Windows Hello, Touch ID, the system password) once for the terminal session.

How to run it, from a terminal (not an IDE runner: the approval is per terminal)::

    BROKER_LIVE_OP=1 BROKER_TEST_OP_VAULT=Private \
        .venv/bin/python -m pytest tests/test_onepassword_cli_live.py -m live -q

``BROKER_TEST_OP_VAULT`` names the vault to use (default: Private);
``BROKER_TEST_OP_ACCOUNT`` the account, when the app has several. What it touches:
it creates API Credential items titled ``broker-test-<random> <name>`` (made-up
keys, never real ones) in that vault and deletes each one after its test; it
reads nothing else. It runs the backend contract suite, an ``op://`` reference with
``?attribute=totp`` (the code 1Password computes from the seed broker stored),
and broker doctor's CLI rows.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from broker_onepassword import OnePasswordBackend, _cli, _cli_checks

from broker.backend import TOTP, Backend
from broker.testing.contract import SAMPLE, BackendContract

LIVE = os.environ.get("BROKER_LIVE_OP") == "1"
VAULT = os.environ.get("BROKER_TEST_OP_VAULT", "Private")
ACCOUNT = os.environ.get("BROKER_TEST_OP_ACCOUNT", "")

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not LIVE, reason="live 1Password CLI test: set BROKER_LIVE_OP=1 (needs "
                       "op with the 1Password app's CLI integration on; see the docstring)"),
]


@pytest.fixture
def live_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    if _cli.locate() is None:
        pytest.skip("the 1Password CLI (op / op.exe) is not installed here")
    monkeypatch.delenv("OP_SERVICE_ACCOUNT_TOKEN", raising=False)
    settings = {"transport": "cli", "vault": VAULT,
                "title": f"broker-test-{uuid.uuid4().hex[:8]} {{profile}}"}
    if ACCOUNT:
        settings["account"] = ACCOUNT
    yield settings
    cleaner = OnePasswordBackend(settings=settings)
    try:
        for name in cleaner.list():
            cleaner.delete(name)
    finally:
        cleaner.close()


class TestLiveCliContract(BackendContract):
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
        totp = pyotp.TOTP(SAMPLE[TOTP])
        assert code in {totp.now(), totp.at(time.time() - 30)}
        assert OnePasswordBackend(settings=live_settings).get("totp") == SAMPLE
    finally:
        backend.close()


def test_live_doctor_rows(live_settings: dict[str, str]) -> None:
    rows = {c.name: c for c in _cli_checks.checks(OnePasswordBackend(settings=live_settings),
                                                  True)}
    assert rows["1Password CLI"].status == "ok", rows["1Password CLI"]
    assert rows["1Password app integration"].status == "ok", rows["1Password app integration"]
