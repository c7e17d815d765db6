"""What each operation costs in 1Password calls (service accounts are rate limited).

The figures asserted here are the ones docs/backends/onepassword.md states.
``init_client`` is the sign-in each process makes before its first call.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from broker_onepassword import OnePasswordBackend
from broker_onepassword.testing import OnePasswordEmulator, field

from broker.backend import ACCESS_KEY_ID, Item
from broker.testing.contract import SAMPLE


def calls(emulator: OnePasswordEmulator) -> dict[str, int]:
    return emulator.calls(remote_only=True)


def test_first_get_on_a_machine_costs_two(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    """Nothing known: one SecretsResolveAll finds vault and item by name, one ItemsGet."""
    emulator.create_item("AWS dev", [field("access key id", "AKIAFIRST00000000001")])
    assert make_backend(vault="Broker").get("dev") is not None
    assert calls(emulator) == {"init_client": 1, "SecretsResolveAll": 1, "ItemsGet": 1}
    emulator.reset_calls()
    assert make_backend(vault="Broker").get("dev") is not None  # both ids remembered
    assert calls(emulator) == {"init_client": 1, "ItemsGet": 1}


def test_first_get_of_a_missing_item_costs_one(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    backend = make_backend(vault="Broker")
    assert backend.get("dev") is None
    assert calls(emulator) == {"init_client": 1, "SecretsResolveAll": 1}
    backend.set("dev", SAMPLE)  # what `broker add` does next: no second look-up
    assert calls(emulator) == {"init_client": 1, "SecretsResolveAll": 1, "VaultsList": 1,
                               "ItemsCreate": 1}


@pytest.mark.parametrize(("settings", "title"), [
    ({"vault": None}, "AWS dev"),  # no vault name to put in a reference
    ({"vault": "Broker"}, "AWS dev@example"),  # a title a reference cannot hold
])
def test_first_get_the_long_way_costs_three(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend],
    settings: dict[str, str | None], title: str,
) -> None:
    emulator.create_item(title, [field("access key id", "AKIAFIRST00000000001")])
    assert make_backend(**settings).get(title.removeprefix("AWS ")) is not None
    assert calls(emulator) == {"init_client": 1, "VaultsList": 1, "ItemsList": 1, "ItemsGet": 1}


def test_first_get_with_the_vault_id_or_a_remembered_vault_costs_two(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    emulator.create_item("AWS dev", [field("access key id", "AKIAFIRST00000000001")])
    emulator.create_item("AWS prod", [field("access key id", "AKIAFIRST00000000002")])
    assert make_backend(vault=emulator.vault_id()).get("dev") is not None
    assert calls(emulator) == {"init_client": 1, "ItemsList": 1, "ItemsGet": 1}
    emulator.reset_calls()
    make_backend(vault="Broker").list()  # learns the vault id (and every item's id)
    emulator.reset_calls()
    assert make_backend(vault="Broker").get("prod") is not None
    assert calls(emulator) == {"init_client": 1, "ItemsGet": 1}


def test_cold_get_with_remembered_ids_is_one_call(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    make_backend().set("dev", SAMPLE)
    emulator.reset_calls()
    assert make_backend().get("dev") == SAMPLE  # a new instance: a new process's view
    assert calls(emulator) == {"init_client": 1, "ItemsGet": 1}
    assert emulator.operations() == 1


def test_missing_item_costs_a_listing(emulator: OnePasswordEmulator,
                                      make_backend: Callable[..., OnePasswordBackend]) -> None:
    make_backend().list()
    emulator.reset_calls()
    assert make_backend().get("nothing") is None
    assert calls(emulator) == {"init_client": 1, "ItemsList": 1}


def test_set_costs(emulator: OnePasswordEmulator,
                   make_backend: Callable[..., OnePasswordBackend]) -> None:
    make_backend().set("dev", SAMPLE)  # first ever: no such item; find the vault; create
    assert calls(emulator) == {"init_client": 1, "SecretsResolveAll": 1, "VaultsList": 1,
                               "ItemsCreate": 1}
    emulator.reset_calls()
    backend = make_backend()
    assert backend.get("new") is None  # `broker add`: is there one already? then store it
    backend.set("new", SAMPLE)
    assert calls(emulator) == {"init_client": 1, "ItemsList": 1, "ItemsCreate": 1}
    emulator.reset_calls()
    make_backend().set("dev", SAMPLE.replace(region="x"))  # read (for the version) + write
    assert calls(emulator) == {"init_client": 1, "ItemsGet": 1, "ItemsPut": 1}


def test_list_and_delete_costs(emulator: OnePasswordEmulator,
                               make_backend: Callable[..., OnePasswordBackend]) -> None:
    backend = make_backend()
    backend.set("dev", SAMPLE)
    emulator.reset_calls()
    assert make_backend().list() == ["dev"]
    assert calls(emulator) == {"init_client": 1, "ItemsList": 1}
    emulator.reset_calls()
    assert make_backend().delete("dev") is True
    assert calls(emulator) == {"init_client": 1, "ItemsList": 1, "ItemsDelete": 1}


def test_one_sign_in_per_instance(emulator: OnePasswordEmulator,
                                  make_backend: Callable[..., OnePasswordBackend]) -> None:
    backend = make_backend()
    backend.set("dev", SAMPLE)
    for _ in range(3):
        backend.get("dev")
    assert calls(emulator)["init_client"] == 1


def test_get_many_is_one_batched_call(emulator: OnePasswordEmulator,
                                      make_backend: Callable[..., OnePasswordBackend]) -> None:
    backend = make_backend()
    names = [f"p{i}" for i in range(60)]
    for name in names:
        emulator.create_item(f"AWS {name}", [field("access key id", f"AKIA{name:0>16}")])
    backend.list()
    emulator.reset_calls()
    found = make_backend().get_many([*names, "missing"])
    assert found["missing"] is None
    assert all(found[n] == Item({ACCESS_KEY_ID: f"AKIA{n:0>16}"}) for n in names)
    assert calls(emulator) == {"init_client": 1, "ItemsList": 1, "ItemsGetAll": 2}


def test_stale_item_id_is_recovered_once(emulator: OnePasswordEmulator,
                                         make_backend: Callable[..., OnePasswordBackend]) -> None:
    make_backend().set("dev", SAMPLE)
    # In the app: the item is deleted, and a new one made with the same title.
    emulator.delete_item(emulator.find("AWS dev")["id"])
    new_id = emulator.create_item("AWS dev", [field("access key id", "AKIAREMADE0000000001")],
                                  tags=["broker"])
    emulator.reset_calls()
    backend = make_backend()
    assert backend.get("dev") == Item({ACCESS_KEY_ID: "AKIAREMADE0000000001"})
    assert calls(emulator) == {"init_client": 1, "ItemsGet": 2, "ItemsList": 1}
    emulator.reset_calls()
    assert make_backend().get("dev") is not None  # the new id is remembered
    assert calls(emulator) == {"init_client": 1, "ItemsGet": 1}
    assert new_id in backend.state.path.read_text()


def test_deleted_item_is_gone_after_one_listing(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    make_backend().set("dev", SAMPLE)
    emulator.delete_item(emulator.find("AWS dev")["id"])
    emulator.reset_calls()
    assert make_backend().get("dev") is None
    assert calls(emulator) == {"init_client": 1, "ItemsGet": 1, "ItemsList": 1}


def test_renamed_item_is_not_mistaken(emulator: OnePasswordEmulator,
                                      make_backend: Callable[..., OnePasswordBackend]) -> None:
    make_backend().set("dev", SAMPLE)
    make_backend().set("prod", SAMPLE.replace(note="prod"))
    emulator.edit_item(emulator.find("AWS dev")["id"], title="AWS dev (old)")
    assert make_backend().get("dev") is None
    assert make_backend().delete("dev") is False
    assert emulator.find("AWS dev (old)")  # a renamed item is never deleted by its old name


def test_stale_vault_id_is_recovered(emulator: OnePasswordEmulator,
                                     make_backend: Callable[..., OnePasswordBackend]) -> None:
    make_backend().set("dev", SAMPLE)
    # The vault is deleted and made again (a new id), with the item made by hand.
    emulator.delete_vault(emulator.vault_id("Broker"))
    emulator.add_vault("Broker")
    emulator.create_item("AWS dev", [field("access key id", "AKIANEWVAULT00000001")])
    emulator.reset_calls()
    assert make_backend().get("dev") == Item({ACCESS_KEY_ID: "AKIANEWVAULT00000001"})
    assert calls(emulator) == {"init_client": 1, "ItemsGet": 2, "ItemsList": 2,
                               "VaultsList": 1}


def test_no_such_item_is_trusted_only_briefly(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import broker_onepassword

    backend = make_backend()
    assert backend.get("later") is None
    emulator.create_item("AWS later", [field("access key id", "AKIALATER00000000001")])
    assert backend.get("later") is None  # within one command: not asked again
    monkeypatch.setattr(broker_onepassword, "ABSENT_FOR", 0.0)  # a long-lived process
    assert backend.get("later") == Item({ACCESS_KEY_ID: "AKIALATER00000000001"})


def test_hand_made_login_item_is_remembered_too(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    emulator.create_item("AWS web", [field("access key id", "AKIAWEB0000000000001")],
                         category="Login")
    assert make_backend(vault=emulator.vault_id()).get("web") is not None
    emulator.reset_calls()
    assert make_backend(vault=emulator.vault_id()).get("web") is not None
    assert calls(emulator) == {"init_client": 1, "ItemsGet": 1}


# -- requests, as 1Password's rate limits count them (the emulator's REQUESTS table) --


def test_requests_per_cold_exec_list_and_add(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    """The figures docs/backends/onepassword.md gives in "What it costs"."""
    make_backend().set("dev", SAMPLE)  # `broker add`, first ever on this machine
    assert emulator.requests() == {"init_client": 2, "SecretsResolveAll": 3, "VaultsList": 1,
                                   "ItemsCreate": 1, "read": 6, "write": 1}
    emulator.reset_calls()
    assert make_backend().get("dev") == SAMPLE  # a cold `broker exec`, ids remembered
    assert emulator.requests() == {"init_client": 2, "ItemsGet": 3, "read": 5, "write": 0}
    emulator.reset_calls()
    assert make_backend().list() == ["dev"]  # `broker list`
    assert emulator.request_total() == 4
    emulator.reset_calls()
    backend = make_backend()
    assert backend.get("prod") is None  # `broker add prod`: a look-up, then the write
    backend.set("prod", SAMPLE)
    assert emulator.requests() == {"init_client": 2, "ItemsList": 2, "ItemsCreate": 1,
                                   "read": 4, "write": 1}
    emulator.reset_calls()
    make_backend().set("dev", SAMPLE.replace(region="x"))  # `add --replace`, `rotate`
    assert emulator.requests() == {"init_client": 2, "ItemsGet": 3, "ItemsPut": 1,
                                   "read": 5, "write": 1}
