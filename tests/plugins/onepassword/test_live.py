"""The backend contract against real 1Password (opt-in).

Runs only when both are set:

* ``OP_SERVICE_ACCOUNT_TOKEN``: a service-account token with read and write
  access to a vault set aside for tests;
* ``BROKER_TEST_OP_VAULT``: that vault's name or id.

Items are titled ``broker-test-<random> <name>`` and deleted after each test.

How to run it::

    OP_SERVICE_ACCOUNT_TOKEN=ops_... BROKER_TEST_OP_VAULT=broker-tests \
        .venv/bin/python -m pytest tests/plugins/onepassword/test_live.py -m live -q

What it costs: one run makes roughly 300 read and 40 write *requests* as 1Password's
rate limits count them (a sign-in and an item read are several requests each; the
emulator's count of this file is 264 and 33): a third of a Teams or Families token's
hourly reads, and a third of the 1,000 requests a day an individual or Families
account shares among all its service accounts. Beyond the backend contract it
covers: the CLI end to end (the token kept with ``broker backend login``, ``add``,
``exec`` and ``export --format json`` as a ``credential_process`` would, against the
local STS), a bad token, an unknown vault,
an item made by hand (the core's ``TOTP_`` field ids, the OTP field found by type),
archived and renamed items (stale remembered ids), and, when the 1Password CLI ``op``
is installed, the requests a cold read costs (``op service-account ratelimit``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from broker_onepassword import OnePasswordBackend
from broker_onepassword.testing import REQUESTS, SIGN_IN_REQUESTS, make_token

from broker.backend import TOTP, Backend
from broker.errors import AuthenticationError, NotFound
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


def _title(settings: dict[str, str], name: str) -> str:
    return settings["title"].replace("{profile}", name)


def test_live_bad_token(live_settings: dict[str, str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_TEST_BAD_TOKEN", make_token("not a real account"))
    backend = OnePasswordBackend(settings=dict(live_settings, token="env:BROKER_TEST_BAD_TOKEN"))
    try:
        with pytest.raises(AuthenticationError) as caught:
            backend.list()
        assert "token was rejected" in caught.value.message
    finally:
        backend.close()


def test_live_unknown_vault(live_settings: dict[str, str]) -> None:
    backend = OnePasswordBackend(settings=dict(live_settings,
                                               vault=f"broker-none-{uuid.uuid4().hex[:8]}"))
    try:
        with pytest.raises(NotFound) as caught:
            backend.get("dev")
        assert "create a new service account" in caught.value.hint
    finally:
        backend.close()


def _create_by_hand(backend: OnePasswordBackend, title: str) -> Any:
    """An item made as the app makes one: a Login, the user's own field ids and titles."""
    import onepassword as op

    params = op.ItemCreateParams(
        category=op.ItemCategory.LOGIN, vault_id=backend._vault(), title=title, tags=["broker"],
        fields=[
            op.ItemField(id="k1", title="access key id", field_type=op.ItemFieldType.TEXT,
                         value=SAMPLE["aws_access_key_id"]),
            op.ItemField(id="otp1", title="MFA code", field_type=op.ItemFieldType.TOTP,
                         value=SAMPLE[TOTP]),
        ])
    return backend._run(lambda c: c.items.create(params), "creating an item by hand")


def test_live_item_made_by_hand(live_settings: dict[str, str]) -> None:
    backend = OnePasswordBackend(settings=live_settings)
    try:
        created = _create_by_hand(backend, _title(live_settings, "hand"))
        otp = [f for f in created.fields if f.field_type.value == "Totp"]
        assert [f.id for f in otp] == ["TOTP_otp1"]  # the rule the emulator follows
        fresh = OnePasswordBackend(settings=live_settings)
        try:
            item = fresh.get("hand")
            assert item is not None and item[TOTP] == SAMPLE[TOTP]  # found by its type
        finally:
            fresh.close()
    finally:
        backend.close()


def test_live_archived_and_renamed_items(live_settings: dict[str, str]) -> None:
    backend = OnePasswordBackend(settings=live_settings)
    vault_id = backend._vault()
    made: list[str] = []
    try:
        for name in ("archived", "renamed"):
            backend.set(name, SAMPLE)
            assert OnePasswordBackend(settings=live_settings).get(name) == SAMPLE  # id kept
            made.append(str(backend.state.item_id(vault_id, _title(live_settings, name))))
        backend._run(lambda c: c.items.archive(vault_id, made[0]), "archiving")
        item = backend._run(lambda c: c.items.get(vault_id, made[1]), "reading")
        renamed = item.model_copy(update={"title": _title(live_settings, "renamed2")})
        backend._run(lambda c: c.items.put(renamed), "renaming")
        for name, expected in (("archived", None), ("renamed", None), ("renamed2", SAMPLE)):
            reader = OnePasswordBackend(settings=live_settings)
            try:
                assert reader.get(name) == expected, name
            finally:
                reader.close()
    finally:
        for item_id in made:  # an archived item is not listed, so not cleaned up otherwise
            with contextlib.suppress(Exception):  # best effort
                backend._run(lambda c, i=item_id: c.items.delete(vault_id, i), "cleaning up")
        backend.close()


def _reads_used() -> int | None:
    """The token's read requests this hour, from `op service-account ratelimit`."""
    result = subprocess.run(["op", "service-account", "ratelimit", "--format", "json"],
                            capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        return None
    rows = json.loads(result.stdout)
    for row in rows if isinstance(rows, list) else []:
        if str(row.get("type")).lower() == "token" and str(row.get("action")).lower() == "read":
            return int(row.get("used", 0))
    return None


@pytest.mark.skipif(shutil.which("op") is None, reason="the 1Password CLI `op` is not installed")
def test_live_request_accounting(live_settings: dict[str, str]) -> None:
    """A cold read costs what the emulator counts: sign-in plus ItemsGet, in requests."""
    writer = OnePasswordBackend(settings=live_settings)
    try:
        writer.set("counted", SAMPLE)
        assert OnePasswordBackend(settings=live_settings).get("counted") == SAMPLE  # ids kept
    finally:
        writer.close()
    first, second = _reads_used(), _reads_used()
    if first is None or second is None:
        pytest.skip("`op service-account ratelimit` gave no token read usage")
    overhead = second - first  # what asking costs, if anything
    reader = OnePasswordBackend(settings=live_settings)
    try:
        assert reader.get("counted") == SAMPLE
    finally:
        reader.close()
    after = _reads_used()
    assert after is not None
    expected = SIGN_IN_REQUESTS[0] + REQUESTS["ItemsGet"][0]
    measured = after - second - overhead
    print(f"a cold read: {measured} read requests (the emulator counts {expected})")
    assert measured == expected


@pytest.fixture
def live_home(home: Any, live_settings: dict[str, str]) -> Any:
    """The end-to-end home (local STS, kernel keyring) with real 1Password."""
    from broker_keyctl import KeyctlBackend

    availability = KeyctlBackend().availability()
    if not availability.ok:
        pytest.skip(f"kernel keyring unavailable: {availability.reason}")
    home.broker_config.write_text(
        'backend = "onepassword"\n\n'
        f'[backends.keyctl]\nkeyring = "{home.keyring}"\n\n'
        f'[backends.onepassword]\nvault = "{VAULT}"\ntitle = "{live_settings["title"]}"\n'
    )
    for variable in ("BROKER_OP_EMULATOR", "OP_SERVICE_ACCOUNT_TOKEN"):
        home.env.pop(variable, None)
    return home


def test_live_cli_end_to_end(live_home: Any, sts: object) -> None:
    live_home.run("backend", "login", "onepassword", "--ttl", "10m", input=TOKEN + "\n",
                  check=True)
    try:
        live_home.add_key("dev")
        result = live_home.run("exec", "dev", "--", sys.executable, "-c",
                               "import os; print(os.environ['AWS_ACCESS_KEY_ID'])", check=True)
        assert result.stdout.startswith("ASIA")
        exported = live_home.run("export", "dev", "--format", "json",
                                 check=True)  # what a credential_process profile runs
        assert json.loads(exported.stdout)["Version"] == 1
        assert TOKEN not in result.stderr + exported.stderr + exported.stdout
    finally:
        live_home.run("remove", "dev", "--force")
        live_home.run("backend", "logout", "onepassword")
