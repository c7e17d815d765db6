"""What broker's items look like in 1Password, and items people make by hand."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from typing import Any

import pyotp
import pytest
from broker_onepassword import OnePasswordBackend
from broker_onepassword._state import state_path
from broker_onepassword.testing import OnePasswordEmulator, field

from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, TOTP, Capability, Item
from broker.errors import AmbiguousMatch, ConfigError
from broker.testing.contract import SAMPLE

SEED = SAMPLE[TOTP]


def by_title(item: dict[str, Any], title: str) -> dict[str, Any]:
    (found,) = [f for f in item["fields"] if f["title"] == title]
    return dict(found)


def test_capabilities_never_include_sessions() -> None:
    caps = OnePasswordBackend.capabilities
    assert Capability.STORE_SESSIONS not in caps
    assert caps == (Capability.LIST | Capability.PERSISTENT | Capability.SHARED
                    | Capability.LOGIN_TOKEN)  # reads `broker backend login`'s token
    assert OnePasswordBackend.schemes == ("op",)


def test_item_layout(emulator: OnePasswordEmulator,
                     make_backend: Callable[..., OnePasswordBackend]) -> None:
    make_backend().set("dev", SAMPLE.replace(region="ap-northeast-1"))
    item = emulator.find("AWS dev", "Broker")
    assert item["category"] == "ApiCredentials"
    assert item["tags"] == ["broker"]
    assert "dev" in item["notes"]
    assert by_title(item, "access key id")["fieldType"] == "Text"
    assert by_title(item, "access key id")["value"] == SAMPLE[ACCESS_KEY_ID]
    assert by_title(item, "secret access key")["fieldType"] == "Concealed"
    assert by_title(item, "mfa serial")["fieldType"] == "Text"
    otp = by_title(item, "one-time password")
    assert otp["fieldType"] == "Totp" and otp["value"] == SEED
    assert by_title(item, "region")["value"] == "ap-northeast-1"
    assert {f["sectionId"] for f in item["fields"]} == {"broker"}
    assert item["sections"] == [{"id": "broker", "title": "AWS"}]


def test_totp_field_shows_the_current_code(make_backend: Callable[..., OnePasswordBackend]
                                           ) -> None:
    backend = make_backend()
    backend.set("dev", SAMPLE)
    # What the app shows: the SDK's own view of the field, with the computed code.
    _, sdk_item = backend._load("dev")
    (otp,) = [f for f in sdk_item.fields if f.title == "one-time password"]
    assert otp.field_type.value == "Totp"
    totp = pyotp.TOTP(SEED)
    assert otp.details.content.code in {totp.now(), totp.at(time.time() - 30)}


def test_title_template(emulator: OnePasswordEmulator,
                        make_backend: Callable[..., OnePasswordBackend]) -> None:
    backend = make_backend(title="{profile} (AWS key)")
    backend.set("prod", SAMPLE)
    assert emulator.find("prod (AWS key)")["tags"] == ["broker"]
    assert backend.list() == ["prod"]
    assert backend.get("prod") == SAMPLE


def test_title_template_needs_profile(make_backend: Callable[..., OnePasswordBackend]) -> None:
    backend = make_backend(title="AWS key")
    assert not backend.availability().ok
    assert "{profile}" in backend.availability().reason
    with pytest.raises(ConfigError):
        backend.get("dev")


def test_hand_made_item_is_read(emulator: OnePasswordEmulator,
                                make_backend: Callable[..., OnePasswordBackend]) -> None:
    """Made in the app: random field ids, the app's own section, other fields, any case."""
    emulator.create_item("AWS handmade", [
        field("username", "someone"),
        field("Access Key ID", "AKIAHANDMADE00000001", section="add more"),
        field("Secret Access Key", "hand/made+secret", "Concealed", section="add more"),
        field("MFA serial", "arn:aws:iam::123456789012:mfa/hand", section="add more"),
        field("one-time password", SEED, "Totp", section="add more"),
        field("hostname", "example.com"),
    ], notes="my own notes")
    backend = make_backend()
    assert backend.get("handmade") == Item({
        ACCESS_KEY_ID: "AKIAHANDMADE00000001",
        SECRET_ACCESS_KEY: "hand/made+secret",
        MFA_SERIAL: "arn:aws:iam::123456789012:mfa/hand",
        TOTP: SEED,
    })
    assert backend.list() == []  # untagged: no profile's item until tagged broker
    emulator.edit_item(emulator.find("AWS handmade")["id"], tags=["broker"])
    assert backend.list() == ["handmade"]


def test_hand_made_item_by_field_ids_and_otpauth(emulator: OnePasswordEmulator,
                                                 make_backend: Callable[..., OnePasswordBackend]
                                                 ) -> None:
    uri = f"otpauth://totp/AWS:dev?secret={SEED}&issuer=AWS"
    emulator.create_item("AWS ids", [
        field("key", "AKIAHANDMADE00000002", id="aws_access_key_id", section="s"),
        field("secret", "s3cr3t-value", "Concealed", id="aws_secret_access_key", section="s"),
        field("otp", uri, "Totp", id="totp", section="s"),
    ], category="Login")
    backend = make_backend()
    assert backend.get("ids") == Item({ACCESS_KEY_ID: "AKIAHANDMADE00000002",
                                       SECRET_ACCESS_KEY: "s3cr3t-value", TOTP: uri})
    assert backend.list() == []  # neither tagged broker nor an API Credentials item


def test_update_keeps_the_users_own_parts(emulator: OnePasswordEmulator,
                                          make_backend: Callable[..., OnePasswordBackend]
                                          ) -> None:
    item_id = emulator.create_item("AWS dev", [
        field("username", "someone"),
        field("access key id", "AKIAOLD0000000000000", section="app"),
        field("secret access key", "old-secret", "Text", section="app"),
        field("mfa serial", "arn:aws:iam::123456789012:mfa/old", section="app"),
    ], tags=["mine"], notes="keep me")
    backend = make_backend()
    rotated = Item({ACCESS_KEY_ID: "AKIANEW0000000000000", SECRET_ACCESS_KEY: "new-secret",
                    TOTP: SEED})
    backend.set("dev", rotated)
    assert backend.get("dev") == rotated
    item = emulator.item(item_id)
    assert item["notes"] == "keep me"
    assert item["tags"] == ["mine", "broker"]
    assert item["category"] == "ApiCredentials"
    assert by_title(item, "username")["value"] == "someone"
    assert by_title(item, "access key id")["sectionId"] == "app"  # updated where it was
    assert by_title(item, "secret access key")["fieldType"] == "Concealed"  # type corrected
    assert not [f for f in item["fields"] if f["title"] == "mfa serial"]  # not in the item
    assert by_title(item, "one-time password")["fieldType"] == "Totp"
    assert item["version"] == 2


def test_extra_fields_come_and_go(emulator: OnePasswordEmulator,
                                  make_backend: Callable[..., OnePasswordBackend]) -> None:
    backend = make_backend()
    backend.set("dev", SAMPLE.replace(region="eu-west-1", aws_session_token="tok-secret"))
    item = emulator.find("AWS dev")
    assert by_title(item, "aws_session_token")["fieldType"] == "Concealed"
    assert by_title(item, "region")["fieldType"] == "Text"
    backend.set("dev", SAMPLE.replace(region="us-east-1"))
    assert backend.get("dev") == SAMPLE.replace(region="us-east-1")
    assert "aws_session_token" not in {f["title"] for f in emulator.find("AWS dev")["fields"]}


def test_extra_field_named_like_a_known_title(make_backend: Callable[..., OnePasswordBackend]
                                              ) -> None:
    backend = make_backend()
    item = SAMPLE.replace(**{"Access Key ID": "not the key"})
    backend.set("dev", item)
    assert backend.get("dev") == item


def test_several_items_with_one_title(emulator: OnePasswordEmulator,
                                      make_backend: Callable[..., OnePasswordBackend]) -> None:
    first = emulator.create_item("AWS twin", [field("access key id", "AKIATWIN000000000001")])
    second = emulator.create_item("AWS twin", [field("access key id", "AKIATWIN000000000002")])
    backend = make_backend()
    with pytest.raises(AmbiguousMatch) as caught:
        backend.get("twin")
    assert first in str(caught.value) and second in str(caught.value)
    assert "AKIATWIN" not in str(caught.value)
    assert caught.value.exit_code == 15
    # Tagging one "broker" settles it.
    emulator.edit_item(second, tags=["broker"])
    got = backend.get("twin")
    assert got is not None and got[ACCESS_KEY_ID] == "AKIATWIN000000000002"


def test_archived_items_are_not_found(emulator: OnePasswordEmulator,
                                      make_backend: Callable[..., OnePasswordBackend]) -> None:
    item_id = emulator.create_item("AWS old", [field("access key id", "AKIAOLD0000000000001")])
    emulator.archive_item(item_id)
    assert make_backend().get("old") is None


def test_sessions_are_never_written(make_backend: Callable[..., OnePasswordBackend]) -> None:
    backend = make_backend(namespace="sessions")
    with pytest.raises(ConfigError, match="never written into 1Password"):
        backend.set("dev", SAMPLE)


def test_namespaces_are_kept_apart(emulator: OnePasswordEmulator,
                                   make_backend: Callable[..., OnePasswordBackend]) -> None:
    credentials = make_backend()
    other = make_backend(namespace="secrets")
    credentials.set("dev", SAMPLE)
    other.set("dev", SAMPLE.replace(note="other"))
    assert emulator.find("AWS dev (secrets)")["tags"] == ["broker", "broker:secrets"]
    assert credentials.list() == ["dev"] and other.list() == ["dev"]
    assert credentials.get("dev") == SAMPLE
    assert other.get("dev") == SAMPLE.replace(note="other")


def test_vault_by_id_and_default_vault(emulator: OnePasswordEmulator,
                                       make_backend: Callable[..., OnePasswordBackend]) -> None:
    vault_id = emulator.vault_id("Broker")
    make_backend(vault=vault_id).set("dev", SAMPLE)
    assert make_backend(vault=None).get("dev") == SAMPLE  # the only vault it can see
    assert make_backend(vault="broker").get("dev") == SAMPLE  # names match in any case


def test_no_vault_setting_with_several_vaults(emulator: OnePasswordEmulator,
                                              make_backend: Callable[..., OnePasswordBackend]
                                              ) -> None:
    emulator.add_vault("Other")
    with pytest.raises(ConfigError, match="'Broker', 'Other'"):
        make_backend(vault=None).get("dev")


def test_state_file_is_private_and_holds_no_secrets(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    make_backend().set("dev", SAMPLE)
    path = state_path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    text = path.read_text()
    assert emulator.find("AWS dev")["id"] in text
    for secret in (emulator.token, SAMPLE[SECRET_ACCESS_KEY], SEED, SAMPLE[ACCESS_KEY_ID]):
        assert secret not in text


def test_repr_and_describe_hide_the_token(emulator: OnePasswordEmulator,
                                          make_backend: Callable[..., OnePasswordBackend]
                                          ) -> None:
    backend = make_backend()
    backend.set("dev", SAMPLE)
    shown = repr(backend) + repr(backend.describe()) + repr(vars(backend))
    assert emulator.token not in repr(backend) + repr(backend.describe())
    assert SAMPLE[SECRET_ACCESS_KEY] not in repr(backend) + repr(backend.describe())
    assert "Broker" in shown


def test_otp_field_found_by_type_whatever_its_id_or_title(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    """Made in the app: the core stores the OTP field as TOTP_<id>; the title is the user's."""
    item_id = emulator.create_item("AWS app", [
        field("access key id", "AKIAHANDMADE00000003"),
        field("MFA code", SEED, "Totp", id="xk3q7"),
    ])
    assert [f["id"] for f in emulator.item(item_id)["fields"]][1] == "TOTP_xk3q7"
    backend = make_backend()
    assert backend.get("app") == Item({ACCESS_KEY_ID: "AKIAHANDMADE00000003", TOTP: SEED})
    other = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    backend.set("app", Item({ACCESS_KEY_ID: "AKIAHANDMADE00000003", TOTP: other}))
    otp = [f for f in emulator.item(item_id)["fields"] if f["fieldType"] == "Totp"]
    assert [(f["id"], f["title"], f["value"]) for f in otp] == [("TOTP_xk3q7", "MFA code", other)]


def test_broker_written_otp_field_has_the_core_prefix(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    backend = make_backend()
    backend.set("dev", SAMPLE)
    otp = by_title(emulator.find("AWS dev", "Broker"), "one-time password")
    assert otp["id"] == "TOTP_totp"
    emulator.edit_item(emulator.find("AWS dev", "Broker")["id"], fields=[
        dict(f, title="renamed") if f["fieldType"] == "Totp" else f
        for f in emulator.find("AWS dev", "Broker")["fields"]])
    assert make_backend().get("dev") == SAMPLE


def test_archived_item_is_not_read_by_its_remembered_id(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    make_backend().set("dev", SAMPLE)
    assert make_backend().get("dev") == SAMPLE  # the id is remembered now
    emulator.archive_item(emulator.find("AWS dev", "Broker")["id"])
    assert make_backend().get("dev") is None
    assert make_backend().list() == []


def test_api_credential_template_item_is_read(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    """An item made from the app's API Credential template: username / credential."""
    emulator.create_item("AWS tmpl", [
        field("username", "AKIATEMPLATE00000001", id="username"),
        field("credential", "template-secret", "Concealed", id="credential"),
        field("type", "", id="type"), field("hostname", "", id="hostname"),
    ])
    emulator.create_item("AWS notakey", [
        field("username", "alice", id="username"),
        field("credential", "api-token", "Concealed", id="credential"),
    ])
    backend = make_backend()
    assert backend.get("tmpl") == Item({ACCESS_KEY_ID: "AKIATEMPLATE00000001",
                                        SECRET_ACCESS_KEY: "template-secret"})
    assert backend.get("notakey") == Item({})  # not an AWS key: nothing is taken from it


def test_shell_plugin_item_is_read(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    """1Password's AWS shell plugin item: its field titles are broker's own, the OTP
    field made in the app (a TOTP_ id), plus "default region"."""
    emulator.create_item("AWS shell", [
        field("access key id", "AKIASHELLPLUGIN00001", id="q1"),
        field("secret access key", "shell-secret", "Concealed", id="q2"),
        field("one-time password", SEED, "Totp", id="q3"),
        field("mfa serial", "arn:aws:iam::123456789012:mfa/me", id="q4"),
        field("default region", "eu-west-1", id="q5"),
    ], category="Login")
    assert make_backend().get("shell") == Item({
        ACCESS_KEY_ID: "AKIASHELLPLUGIN00001", SECRET_ACCESS_KEY: "shell-secret",
        TOTP: SEED, MFA_SERIAL: "arn:aws:iam::123456789012:mfa/me"})


def test_list_shows_only_items_a_profile_can_use(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    """Only items tagged broker (and those a profile's broker_item names): an API token
    titled "AWS Console", or someone's untagged key item, is no profile. One ItemsList."""
    make_backend().set("dev", SAMPLE)
    emulator.create_item("AWS Console", [
        field("username", "alice", id="username"),
        field("credential", "an-api-token", "Concealed", id="credential")])
    emulator.create_item("AWS tmpl", [
        field("username", "AKIATEMPLATE00000001", id="username"),
        field("credential", "template-secret", "Concealed", id="credential")])
    emulator.reset_calls()
    assert make_backend().list() == ["dev"]
    assert emulator.calls(remote_only=True) == {"init_client": 1, "ItemsList": 1}
