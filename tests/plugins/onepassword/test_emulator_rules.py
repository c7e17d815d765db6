"""The emulator itself follows the real native core where it was measured.

Each rule below is one the emulator's source names with its origin (the SDK 0.4.2
core run offline, 1Password's developer documentation); these tests pin them so
the emulator cannot drift back to friendlier behaviour than 1Password's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import onepassword
import pytest
from broker_onepassword import testing as emu
from broker_onepassword.testing import OnePasswordEmulator, field

SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _client(token: str, name: str = "broker-tests", version: str = "1.0") -> Any:
    return await onepassword.Client.authenticate(token, name, version)


def release(client: Any) -> None:
    """Release now, while the emulator is routed (not at exit, against the real core)."""
    client._finalizer()


@pytest.fixture
def client(emulator: OnePasswordEmulator) -> Iterator[Any]:
    made = run(_client(emulator.token))
    yield made
    release(made)


# -- op:// references (the core's parser, run offline) --------------------------------


@pytest.mark.parametrize("reference", [
    "op://v/i/f?attribute=type",
    "op://v/i/f?attribute=value",
    "op://v/i/f?attribute=id",
    "op://v/i/f?attribute=purpose",
    "op://v/i/f?attribute=totp&ssh-format=openssh",
    "op://v/i/f?ssh-format=openssh&attribute=otp",
    "op://v/i/f?",
])
def test_references_the_core_rejects(emulator: OnePasswordEmulator, reference: str) -> None:
    with pytest.raises(Exception, match="could not be parsed"):
        onepassword.Secrets.validate_secret_reference(reference)


@pytest.mark.parametrize("reference", [
    "op://v/i/f?attribute=totp",
    "op://v/i/f?attribute=otp",
    "op://v/i/s/f?ssh-format=openssh",
    "op://v//f",  # empty path segments pass the parser
    "op:////",
])
def test_references_the_core_accepts(emulator: OnePasswordEmulator, reference: str) -> None:
    onepassword.Secrets.validate_secret_reference(reference)


# -- one-time-password fields ----------------------------------------------------------


def test_otp_field_ids_get_the_totp_prefix(emulator: OnePasswordEmulator) -> None:
    item_id = emulator.create_item("x", [field("one-time password", SEED, "Totp", id="otp"),
                                         field("user", "me", id="user")])
    ids = [f["id"] for f in emulator.item(item_id)["fields"]]
    assert ids == ["TOTP_otp", "user"]


def test_otp_field_ids_get_the_prefix_through_the_sdk(emulator: OnePasswordEmulator,
                                                       client: Any) -> None:
    params = onepassword.ItemCreateParams(
        category=onepassword.ItemCategory.LOGIN, vault_id=emulator.vault_id(), title="x",
        fields=[onepassword.ItemField(id="mfa", title="otp", field_type="Totp", value=SEED)])
    created = run(client.items.create(params))
    assert [f.id for f in created.fields] == ["TOTP_mfa"]
    assert created.fields[0].details.content.code is not None
    updated = run(client.items.put(created))  # the prefixed id round-trips unchanged
    assert [f.id for f in updated.fields] == ["TOTP_mfa"]


@pytest.mark.parametrize(("seed", "name"), [
    ("not base32!", "SecretNotBase32"),
    ("JBSWY3DP1890", "SecretNotBase32"),  # 1, 8, 9, 0 are not base32
    ("otpauth://totp/x?secret=abc%21", "SecretNotBase32"),
    ("JBSWY3DP", "SecretTooShort"),  # 40 bits
    ("otpauth://totp/x?secret=JBSWY3DP", "SecretTooShort"),
])
def test_bad_otp_seeds_are_refused(emulator: OnePasswordEmulator, seed: str, name: str) -> None:
    with pytest.raises(emu.CoreError) as caught:
        emulator.create_item("x", [field("one-time password", seed, "Totp")])
    assert f'"name":"{name}"' in caught.value.msg


def test_good_otp_seeds_are_kept(emulator: OnePasswordEmulator) -> None:
    for seed in (SEED, SEED.lower(), "JBSW Y3DP EHPK 3PXP", f"otpauth://totp/x?secret={SEED}", ""):
        emulator.create_item("x", [field("one-time password", seed, "Totp")])


# -- archived items ---------------------------------------------------------------------


def test_archived_items_are_not_returned_by_id(emulator: OnePasswordEmulator,
                                               client: Any) -> None:
    item_id = emulator.create_item("x", [field("user", "me")])
    vault_id = emulator.vault_id()
    assert run(client.items.get(vault_id, item_id)).title == "x"
    emulator.archive_item(item_id)
    with pytest.raises(Exception, match="couldn't be found"):
        run(client.items.get(vault_id, item_id))
    response = run(client.items.get_all(vault_id, [item_id]))
    assert response.individual_responses[0].content is None
    assert run(client.items.list(vault_id)) == []


# -- sign-in ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "version", "message"), [
    ("n" * 41, "1.0", "integration name was too long. Max allowed: 40 chars"),
    ("broker", "0.1.1.dev1234+gabc1234", "integration version was too long. Max allowed: 20"),
    ("", "1.0", "integration name was not specified"),
    ("broker", "", "integration version was not specified"),
])
def test_integration_limits(emulator: OnePasswordEmulator, name: str, version: str,
                            message: str) -> None:
    with pytest.raises(Exception, match=message):
        run(_client(emulator.token, name, version))
    release(run(_client(emulator.token, "n" * 40, "v" * 20)))  # at the limits: fine


def test_network_errors_redact_the_url(emulator: OnePasswordEmulator, client: Any) -> None:
    emulator.inject("network", op="VaultsList")
    with pytest.raises(Exception) as caught:
        run(client.vaults.list())
    assert str(caught.value).endswith("error sending request for url (<redacted URL>)")


def test_service_accounts_never_see_personal_or_default_shared_vaults(
    emulator: OnePasswordEmulator, client: Any
) -> None:
    emulator.add_vault("Employee", vault_type="personal")
    titles = {v.title for v in run(client.vaults.list())}
    assert titles == {emu.DEFAULT_VAULT}
    assert {v["vaultType"] for v in emulator.snapshot()["vaults"].values()} >= {
        "personal", "everyone"}


# -- requests, as the rate limits count them -------------------------------------------


def test_requests_are_counted_as_1password_documents(emulator: OnePasswordEmulator,
                                                      client: Any) -> None:
    """`op item get` is 3 reads, an item list in one vault (by id) 2, a write one;
    offline checks none (developer.1password.com/docs/service-accounts/use-with-1password-cli)."""
    item_id = emulator.create_item("x", [field("user", "me")])  # by hand: not counted
    vault_id = emulator.vault_id()
    emulator.reset_calls()
    run(client.items.get(vault_id, item_id))
    assert emulator.requests() == {"ItemsGet": 3, "read": 3, "write": 0}
    run(client.items.list(vault_id))
    run(client.vaults.list())
    onepassword.Secrets.validate_secret_reference("op://v/i/f")
    run(client.items.get_all(vault_id, [item_id, item_id]))
    run(client.items.delete(vault_id, item_id))
    assert emulator.requests() == {"ItemsGet": 3, "ItemsList": 2, "VaultsList": 1,
                                   "ItemsGetAll": 6, "ItemsDelete": 1, "read": 12, "write": 1}
    assert emulator.request_total() == 13
    emulator.reset_calls()
    release(run(_client(emulator.token)))
    assert emulator.requests() == {"init_client": emu.SIGN_IN_REQUESTS[0], "read": 2,
                                   "write": 0}
