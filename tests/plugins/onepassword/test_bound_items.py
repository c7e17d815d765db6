"""Items people already keep, named by a profile's ``broker_item`` (``bind_item``).

1Password's AWS shell plugin item (an API Credential with fields labelled "access key id",
"secret access key", "one-time password", "mfa serial", "default region", in the app's
default section, its OTP field stored as ``TOTP_<id>``) and the app's API Credential
template (username = access key id, credential = secret) are read as they are; broker
writes into them only once adopted (tagged ``broker``), into their own fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from broker_onepassword import OnePasswordBackend
from broker_onepassword.testing import OnePasswordEmulator, field

from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, TOTP, Item
from broker.errors import AmbiguousMatch, ConfigError, NotFound, UsageError
from broker.testing.contract import SAMPLE

SEED = SAMPLE[TOTP]
SERIAL = "arn:aws:iam::123456789012:mfa/shell-user"
SHELL_KEY = "AKIASHELLPLUGIN00001"
SHELL = Item({ACCESS_KEY_ID: SHELL_KEY, SECRET_ACCESS_KEY: "shell/plugin+secret",
              TOTP: SEED, MFA_SERIAL: SERIAL})
NEW_KEY = Item({ACCESS_KEY_ID: "AKIAROTATED000000001", SECRET_ACCESS_KEY: "rotated/secret"})
Make = Callable[..., OnePasswordBackend]


def shell_plugin_item(emulator: OnePasswordEmulator, title: str = "AWS Access Key",
                      vault: str = "Broker", section: str | None = None) -> str:
    """The shell plugin's item as made in the app: random ids, the default section."""
    return emulator.create_item(title, [
        field("access key id", SHELL_KEY, id="kq1", section=section),
        field("secret access key", "shell/plugin+secret", "Concealed", id="kq2",
              section=section),
        field("one-time password", SEED, "Totp", id="kq3", section=section),
        field("mfa serial", SERIAL, id="kq4", section=section),
        field("default region", "eu-west-1", id="kq5", section=section),
    ], vault=vault, notes="made by the AWS shell plugin")


def template_item(emulator: OnePasswordEmulator, title: str = "IAM key") -> str:
    """An item made from the app's API Credential template."""
    return emulator.create_item(title, [
        field("username", "AKIATEMPLATE00000001", id="username"),
        field("credential", "template/secret", "Concealed", id="credential"),
        field("type", "", id="type"), field("hostname", "", id="hostname"),
    ])


def labels(emulator: OnePasswordEmulator, item_id: str) -> list[tuple[str, str, Any]]:
    """(id, label, section) of every field, in order."""
    return [(f["id"], f["title"], f["sectionId"]) for f in emulator.item(item_id)["fields"]]


def values(emulator: OnePasswordEmulator, item_id: str) -> dict[str, str]:
    return {f["title"]: f["value"] for f in emulator.item(item_id)["fields"]}


def bound(make_backend: Make, reference: str, name: str = "dev", **settings: Any
          ) -> OnePasswordBackend:
    backend = make_backend(**settings)
    backend.bind_item(name, reference)
    return backend


# -- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize("section", [None, ""])
def test_shell_plugin_item_is_read(emulator: OnePasswordEmulator, make_backend: Make,
                                   section: str | None) -> None:
    item_id = shell_plugin_item(emulator, section=section)
    assert labels(emulator, item_id)[2][0] == "TOTP_kq3"  # as the core stores OTP fields
    backend = bound(make_backend, "op://Broker/AWS Access Key")
    assert backend.get("dev") == SHELL  # "default region" is not broker's
    assert backend.get_many(["dev"]) == {"dev": SHELL}


def test_the_otp_field_is_found_by_its_type(emulator: OnePasswordEmulator,
                                            make_backend: Make) -> None:
    emulator.create_item("Keys", [
        field("access key id", SHELL_KEY), field("secret access key", "s3cr3t", "Concealed"),
        field("Authenticator", SEED, "Totp", id="zz9")])
    got = bound(make_backend, "Keys").get("dev")
    assert got is not None and got[TOTP] == SEED


def test_api_credential_template_is_read(emulator: OnePasswordEmulator,
                                         make_backend: Make) -> None:
    template_item(emulator)
    assert bound(make_backend, "IAM key").get("dev") == Item({
        ACCESS_KEY_ID: "AKIATEMPLATE00000001", SECRET_ACCESS_KEY: "template/secret"})


def test_brokers_own_item_is_read(emulator: OnePasswordEmulator, make_backend: Make) -> None:
    make_backend().set("old", SAMPLE)
    assert bound(make_backend, "op://broker/aws OLD").get("dev") == SAMPLE  # any case


def test_a_cold_read_with_remembered_ids_is_one_item_read(
    emulator: OnePasswordEmulator, make_backend: Make
) -> None:
    shell_plugin_item(emulator)
    assert bound(make_backend, "op://Broker/AWS Access Key").get("dev") == SHELL
    assert emulator.calls(remote_only=True) == {"init_client": 1, "VaultsList": 1,
                                                "ItemsList": 1, "ItemsGet": 1}
    emulator.reset_calls()
    assert bound(make_backend, "op://Broker/AWS Access Key").get("dev") == SHELL
    assert emulator.calls(remote_only=True) == {"init_client": 1, "ItemsGet": 1}
    assert emulator.requests() == {"init_client": 2, "ItemsGet": 3, "read": 5, "write": 0}


def test_an_item_in_another_vault(emulator: OnePasswordEmulator, make_backend: Make) -> None:
    emulator.add_vault("Keys")
    shell_plugin_item(emulator, vault="Keys")
    assert bound(make_backend, "op://Keys/AWS Access Key").get("dev") == SHELL
    emulator.reset_calls()
    backend = bound(make_backend, "op://Keys/AWS Access Key")
    assert backend.get("dev") == SHELL  # the vault's id and the item's are remembered
    assert emulator.calls(remote_only=True) == {"init_client": 1, "ItemsGet": 1}


def test_vault_and_item_by_id(emulator: OnePasswordEmulator, make_backend: Make) -> None:
    item_id = shell_plugin_item(emulator)
    reference = f"op://{emulator.vault_id()}/{item_id}"
    assert bound(make_backend, reference).get("dev") == SHELL
    assert emulator.calls(remote_only=True) == {"init_client": 1, "ItemsGet": 1}


def test_one_item_named_three_ways_has_one_identity(emulator: OnePasswordEmulator,
                                                      make_backend: Make) -> None:
    """By title, by op:// reference in any case and by ids: the same VAULT_ID/ITEM_ID
    once read (and None before); broker's own item of a profile has its own."""
    item_id = shell_plugin_item(emulator)
    other = shell_plugin_item(emulator, title="AWS copy")
    backend = make_backend()
    for name, reference in (("by-title", "AWS Access Key"),
                            ("by-ref", "op://broker/aws access key"),
                            ("by-id", f"op://{emulator.vault_id()}/{item_id}"),
                            ("copy", "op://Broker/AWS copy")):
        backend.bind_item(name, reference)
    assert backend.item_identity("by-title") is None  # nothing read yet
    same = f"{emulator.vault_id()}/{item_id}"
    for name in ("by-title", "by-ref", "by-id", "copy"):
        assert backend.get(name) == SHELL
    assert {backend.item_identity(n) for n in ("by-title", "by-ref", "by-id")} == {same}
    assert backend.item_identity("copy") == f"{emulator.vault_id()}/{other}"
    backend.set("own", SAMPLE)
    assert backend.get("own") == SAMPLE
    own = backend.item_identity("own")
    assert own is not None and own.startswith(f"{emulator.vault_id()}/") and own != same


def test_a_missing_item_is_an_error_naming_it(emulator: OnePasswordEmulator,
                                              make_backend: Make) -> None:
    backend = bound(make_backend, "op://Broker/Nothing here")
    with pytest.raises(NotFound, match="op://Broker/Nothing here") as caught:
        backend.get("dev")
    assert "broker_item" in str(caught.value) and caught.value.exit_code == 14
    assert backend.get_many(["dev"]) == {"dev": None}
    assert backend.list() == []
    assert backend.delete("dev") is False


def test_a_vault_a_service_account_cannot_see(emulator: OnePasswordEmulator,
                                              make_backend: Make) -> None:
    backend = bound(make_backend, "op://Private/AWS Access Key")
    with pytest.raises(NotFound, match="no vault 'Private'") as caught:
        backend.get("dev")
    assert "service account never sees a Private" in caught.value.hint


def test_two_items_with_the_title(emulator: OnePasswordEmulator, make_backend: Make) -> None:
    first = shell_plugin_item(emulator)
    second = shell_plugin_item(emulator)
    with pytest.raises(AmbiguousMatch) as caught:
        bound(make_backend, "AWS Access Key").get("dev")
    assert first in str(caught.value) and second in str(caught.value)
    assert bound(make_backend, f"op://Broker/{second}").get("dev") == SHELL  # by id


def test_a_renamed_item_is_found_again(emulator: OnePasswordEmulator,
                                       make_backend: Make) -> None:
    item_id = shell_plugin_item(emulator)
    assert bound(make_backend, "AWS Access Key").get("dev") == SHELL
    emulator.edit_item(item_id, title="AWS Access Key (old)")
    new_id = shell_plugin_item(emulator)
    emulator.edit_item(new_id, fields=[dict(f, value="AKIANEWKEY0000000001") if f["title"] ==
                                       "access key id" else f
                                       for f in emulator.item(new_id)["fields"]])
    got = bound(make_backend, "AWS Access Key").get("dev")
    assert got is not None and got[ACCESS_KEY_ID] == "AKIANEWKEY0000000001"


@pytest.mark.parametrize("reference", ["pass://store/dev", "op://Broker/dev/field"])
def test_a_reference_not_to_one_1password_item(make_backend: Make, reference: str) -> None:
    with pytest.raises(ConfigError):
        make_backend().bind_item("dev", reference)


def test_only_keys_are_bound(make_backend: Make) -> None:
    with pytest.raises(ConfigError):
        make_backend(namespace="sessions").bind_item("dev", "AWS Access Key")


# -- list ----------------------------------------------------------------------------------


def test_list_shows_broker_items_and_named_items_only(
    emulator: OnePasswordEmulator, make_backend: Make
) -> None:
    make_backend().set("own", SAMPLE)
    shell = shell_plugin_item(emulator)
    template_item(emulator, "AWS tmpl")  # fits the title template, but untagged: no profile
    emulator.create_item("AWS Console", [field("username", "alice"),
                                         field("credential", "token", "Concealed")])
    emulator.reset_calls()
    backend = bound(make_backend, "AWS Access Key")
    assert backend.list() == ["dev", "own"]
    assert emulator.calls(remote_only=True) == {"init_client": 1, "ItemsList": 1}
    emulator.edit_item(shell, tags=["broker"])  # adopted: still listed as dev, never as
    assert bound(make_backend, "AWS Access Key").list() == ["dev", "own"]  # "Access Key"
    assert make_backend().list() == ["Access Key", "own"]  # no profile names it any more


def test_list_looks_in_the_vault_of_a_named_item(emulator: OnePasswordEmulator,
                                                 make_backend: Make) -> None:
    emulator.add_vault("Keys")
    shell_plugin_item(emulator, vault="Keys")
    backend = bound(make_backend, "op://Keys/AWS Access Key")
    backend.bind_item("gone", "op://Keys/Nothing")
    assert backend.list() == ["dev"]
    assert emulator.calls(remote_only=True)["ItemsList"] == 2


# -- writes: refused until adopted, then into the item's own fields ----------------------


def test_writes_are_refused_until_adopted(emulator: OnePasswordEmulator,
                                          make_backend: Make) -> None:
    item_id = shell_plugin_item(emulator)
    before = emulator.item(item_id)
    backend = bound(make_backend, "op://Broker/AWS Access Key")
    for attempt in (lambda: backend.check_writable("dev"),
                    lambda: backend.set("dev", SHELL.replace(**NEW_KEY)),
                    lambda: backend.delete("dev")):
        with pytest.raises(UsageError) as caught:
            attempt()
        text = str(caught.value)
        assert "'AWS Access Key'" in text and "`broker adopt dev`" in text
        assert "\n" not in text and SHELL_KEY not in text
    assert emulator.item(item_id) == before
    assert emulator.calls(remote_only=True).get("ItemsPut") is None


def test_adopt_tags_the_item_and_changes_nothing_else(emulator: OnePasswordEmulator,
                                                      make_backend: Make) -> None:
    item_id = shell_plugin_item(emulator)
    before = emulator.item(item_id)
    backend = bound(make_backend, "op://Broker/AWS Access Key")
    assert backend.adopt("dev") is True
    after = emulator.item(item_id)
    assert after["tags"] == ["broker"] and after["version"] == before["version"] + 1
    assert {k: v for k, v in after.items() if k not in ("tags", "version", "updatedAt")} == {
        k: v for k, v in before.items() if k not in ("tags", "version", "updatedAt")}
    assert bound(make_backend, "op://Broker/AWS Access Key").adopt("dev") is False
    bound(make_backend, "op://Broker/AWS Access Key").check_writable("dev")


def test_an_adopted_shell_plugin_item_keeps_its_labels(emulator: OnePasswordEmulator,
                                                       make_backend: Make) -> None:
    item_id = shell_plugin_item(emulator)
    before = labels(emulator, item_id)
    bound(make_backend, "AWS Access Key").adopt("dev")
    backend = bound(make_backend, "AWS Access Key")
    backend.set("dev", SHELL.replace(**NEW_KEY))  # what `broker rotate` stores
    assert labels(emulator, item_id) == before  # same ids, labels, sections: nothing added
    shown = values(emulator, item_id)
    assert shown["access key id"] == NEW_KEY[ACCESS_KEY_ID]
    assert shown["secret access key"] == NEW_KEY[SECRET_ACCESS_KEY]
    assert shown["one-time password"] == SEED and shown["default region"] == "eu-west-1"
    assert emulator.item(item_id)["notes"] == "made by the AWS shell plugin"
    assert backend.get("dev") == SHELL.replace(**NEW_KEY)  # read back (migrate verifies)
    assert bound(make_backend, "AWS Access Key").get("dev") == SHELL.replace(**NEW_KEY)


def test_an_adopted_template_item_keeps_username_and_credential(
    emulator: OnePasswordEmulator, make_backend: Make
) -> None:
    item_id = template_item(emulator)
    before = labels(emulator, item_id)
    bound(make_backend, "IAM key").adopt("dev")
    bound(make_backend, "IAM key").set("dev", NEW_KEY)
    assert labels(emulator, item_id) == before
    shown = values(emulator, item_id)
    assert shown["username"] == NEW_KEY[ACCESS_KEY_ID]
    assert shown["credential"] == NEW_KEY[SECRET_ACCESS_KEY]
    assert bound(make_backend, "IAM key").get("dev") == NEW_KEY


def test_a_seed_added_to_an_adopted_item(emulator: OnePasswordEmulator,
                                         make_backend: Make) -> None:
    """`broker totp set` on an adopted template item: the seed goes in broker's section."""
    item_id = template_item(emulator)
    bound(make_backend, "IAM key").adopt("dev")
    backend = bound(make_backend, "IAM key")
    current = backend.get("dev")
    assert current is not None
    backend.set("dev", current.replace(totp=SEED))
    assert bound(make_backend, "IAM key").get("dev") == current.replace(totp=SEED)
    assert values(emulator, item_id)["username"] == "AKIATEMPLATE00000001"


def test_an_adopted_item_is_deleted_by_remove(emulator: OnePasswordEmulator,
                                              make_backend: Make) -> None:
    item_id = shell_plugin_item(emulator)
    bound(make_backend, "AWS Access Key").adopt("dev")
    assert bound(make_backend, "AWS Access Key").delete("dev") is True
    with pytest.raises(KeyError):
        emulator.item(item_id)


def test_a_concurrent_edit_is_retried(emulator: OnePasswordEmulator,
                                      make_backend: Make) -> None:
    item_id = shell_plugin_item(emulator)
    bound(make_backend, "AWS Access Key").adopt("dev")
    backend = bound(make_backend, "AWS Access Key")
    assert backend.get("dev") == SHELL
    emulator.edit_item(item_id, notes="edited in the app meanwhile")
    backend.set("dev", SHELL.replace(**NEW_KEY))
    assert values(emulator, item_id)["access key id"] == NEW_KEY[ACCESS_KEY_ID]
    assert emulator.item(item_id)["notes"] == "edited in the app meanwhile"


OLD_PAIR = ("AKIAOLDPAIR000000001", "old/pair+secret")


def two_pair_item(emulator: OnePasswordEmulator, old_first: bool = False) -> str:
    """The shell plugin's item with a second key pair in a section "old" of its own."""
    first = [field("access key id", SHELL_KEY, id="kq1"),
             field("secret access key", "shell/plugin+secret", "Concealed", id="kq2")]
    old = [field("access key id", OLD_PAIR[0], id="o1", section="old"),
           field("secret access key", OLD_PAIR[1], "Concealed", id="o2", section="old")]
    return emulator.create_item("AWS Access Key", [*old, *first] if old_first else
                                [*first, *old, field("default region", "eu-west-1")],
                                sections=[{"id": "old", "title": "old"}])


@pytest.mark.parametrize("old_first", [False, True])
def test_a_second_key_pair_is_left_alone(emulator: OnePasswordEmulator, make_backend: Make,
                                         old_first: bool) -> None:
    """The first pair (as the read finds it) is read and written; the other pair, in its
    own section, is the user's: never removed, merged or changed."""
    item_id = two_pair_item(emulator, old_first)
    before = labels(emulator, item_id)
    read = bound(make_backend, "AWS Access Key").get("dev")
    first = OLD_PAIR if old_first else (SHELL_KEY, "shell/plugin+secret")
    other = (SHELL_KEY, "shell/plugin+secret") if old_first else OLD_PAIR
    assert read == Item({ACCESS_KEY_ID: first[0], SECRET_ACCESS_KEY: first[1]})
    bound(make_backend, "AWS Access Key").adopt("dev")
    bound(make_backend, "AWS Access Key").set("dev", NEW_KEY)  # what `broker rotate` stores
    assert labels(emulator, item_id) == before
    pairs = [(f["sectionId"] or "", f["title"], f["value"])
             for f in emulator.item(item_id)["fields"]]
    kept = [(s, v) for s, t, v in pairs if t in ("access key id", "secret access key")]
    read_section, other_section = ("old", "") if old_first else ("", "old")
    assert kept.count((read_section, NEW_KEY[ACCESS_KEY_ID])) == 1
    assert kept.count((read_section, NEW_KEY[SECRET_ACCESS_KEY])) == 1
    assert (other_section, other[0]) in kept and (other_section, other[1]) in kept
    assert bound(make_backend, "AWS Access Key").get("dev") == NEW_KEY


def test_an_empty_first_field_is_not_the_one_written(emulator: OnePasswordEmulator,
                                                     make_backend: Make) -> None:
    """The read skips an empty "access key id"; the write updates the field it read."""
    item_id = emulator.create_item("AWS Access Key", [
        field("access key id", "", id="e1"),
        field("access key id", SHELL_KEY, id="kq1", section="keys"),
        field("secret access key", "shell/plugin+secret", "Concealed", id="kq2",
              section="keys"),
    ], tags=["broker"])
    bound(make_backend, "AWS Access Key").set("dev", NEW_KEY)
    shown = {f["id"]: f["value"] for f in emulator.item(item_id)["fields"]}
    assert shown == {"e1": "", "kq1": NEW_KEY[ACCESS_KEY_ID], "kq2": NEW_KEY[SECRET_ACCESS_KEY]}


# -- an item renamed, archived or doubled in 1Password ---------------------------------------


def adopted_ro(emulator: OnePasswordEmulator, make_backend: Make) -> tuple[str, Make]:
    """An adopted item ``AWS ro`` that profile ro names (its title fits broker's template
    and it carries broker's tag), read once (its id remembered); ``make()`` binds ro (and
    dev to another item, as ~/.aws/config would)."""
    item_id = shell_plugin_item(emulator, title="AWS ro")
    shell_plugin_item(emulator)

    def make() -> OnePasswordBackend:
        backend = bound(make_backend, "op://Broker/AWS ro", name="ro")
        backend.bind_item("dev", "op://Broker/AWS Access Key")
        return backend

    make().adopt("ro")
    assert make().get("ro") == SHELL
    return item_id, make


@pytest.mark.parametrize("listed_first", [True, False])
def test_a_renamed_item_is_never_another_profile(emulator: OnePasswordEmulator,
                                                 make_backend: Make,
                                                 listed_first: bool) -> None:
    item_id, make = adopted_ro(emulator, make_backend)
    emulator.edit_item(item_id, title="AWS ro renamed")
    before = emulator.item(item_id)
    if listed_first:
        backend = make()
        assert backend.list() == ["dev", "ro"]  # never "ro renamed"
        assert "renamed to 'AWS ro renamed'" in backend.listing_problems["ro"].message
    for attempt in (lambda b: b.delete("ro renamed"),
                    lambda b: b.set("ro renamed", SHELL.replace(**NEW_KEY)),
                    lambda b: b.check_writable("ro renamed")):
        with pytest.raises(UsageError, match="profile 'ro' takes its key from"):
            attempt(make())
    assert emulator.item(item_id) == before  # the only copy of the key is still there
    with pytest.raises(NotFound) as caught:
        make().get("ro")
    assert "renamed to 'AWS ro renamed' in 1Password (same id)" in caught.value.message
    assert "update broker_item in ~/.aws/config to op://Broker/AWS ro renamed" in (
        caught.value.hint)
    assert make().list() == ["dev", "ro"]


def test_an_archived_item_says_so(emulator: OnePasswordEmulator, make_backend: Make) -> None:
    item_id, make = adopted_ro(emulator, make_backend)
    emulator.archive_item(item_id)
    with pytest.raises(NotFound) as caught:
        make().get("ro")
    assert "deleted or archived" in caught.value.message
    assert "restore it from the Archive in 1Password, or fix broker_item" in caught.value.hint


def test_a_missing_item_names_the_vault_and_the_file(
    emulator: OnePasswordEmulator, make_backend: Make, tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "elsewhere" / "config"))
    with pytest.raises(NotFound) as caught:
        bound(make_backend, "Nope").get("dev")
    assert "no item 'Nope' in the vault 'Broker'" in caught.value.message
    assert f"fix broker_item in {tmp_path / 'elsewhere' / 'config'}" in caught.value.hint


def test_list_shows_two_items_with_the_title_as_a_problem(
    emulator: OnePasswordEmulator, make_backend: Make
) -> None:
    first, second = shell_plugin_item(emulator), shell_plugin_item(emulator)
    backend = bound(make_backend, "AWS Access Key")
    assert backend.list() == []
    problem = backend.listing_problems["dev"]
    assert isinstance(problem, AmbiguousMatch) and first in problem.message
    assert second in problem.message
