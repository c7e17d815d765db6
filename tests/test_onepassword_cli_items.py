"""Items people already keep (a profile's ``broker_item``), through the 1Password CLI.

The same reads and writes as through the SDK (tests/plugins/onepassword/test_bound_items.py),
each ``op`` process checked: ``tests/support/fake_op.py`` stands in for ``op`` and the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from broker_onepassword import OnePasswordBackend

from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, TOTP, Item
from broker.errors import NotFound, UsageError
from broker.testing.contract import SAMPLE
from tests.support.fake_op import FakeOp, install_fake_op, isolate_op_home

SEED = SAMPLE[TOTP]
SERIAL = "arn:aws:iam::123456789012:mfa/shell-user"
SHELL = Item({ACCESS_KEY_ID: "AKIASHELLPLUGIN00001", SECRET_ACCESS_KEY: "shell/plugin+secret",
              TOTP: SEED, MFA_SERIAL: SERIAL})


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and XDG dirs; no 1Password sign-in or WSL inherited."""
    home = isolate_op_home(tmp_path, monkeypatch)
    return home


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeOp:
    return install_fake_op(tmp_path, monkeypatch)


@pytest.fixture
def make(fake: FakeOp) -> Iterator[Callable[..., OnePasswordBackend]]:
    """``make(reference)``: a backend over ``op`` with dev bound to ``reference``."""
    made: list[OnePasswordBackend] = []

    def build(reference: str) -> OnePasswordBackend:
        backend = OnePasswordBackend(settings={"vault": "Broker", "transport": "cli"})
        backend.bind_item("dev", reference)
        made.append(backend)
        return backend

    yield build
    for backend in made:
        backend.close()


def shell_plugin_item(fake: FakeOp, vault: str = "Private") -> str:
    """The AWS shell plugin's item as ``op`` shows it: an API Credential, fields in the
    default section (no ``section``), the OTP field's id made ``TOTP_...``."""
    return fake.add_item(vault, {"title": "AWS Access Key", "category": "API_CREDENTIAL",
                                 "fields": [
        {"id": "kq1", "type": "STRING", "label": "access key id",
         "value": SHELL[ACCESS_KEY_ID]},
        {"id": "kq2", "type": "CONCEALED", "label": "secret access key",
         "value": SHELL[SECRET_ACCESS_KEY]},
        {"id": "kq3", "type": "OTP", "label": "one-time password", "value": SEED},
        {"id": "kq4", "type": "STRING", "label": "mfa serial", "value": SERIAL},
        {"id": "kq5", "type": "STRING", "label": "default region", "value": "eu-west-1"},
        {"id": "notesPlain", "type": "STRING", "purpose": "NOTES", "label": "notesPlain",
         "value": "made by the shell plugin"},
    ]})


def labels(fake: FakeOp) -> list[tuple[str, str]]:
    return [(f["id"], f["label"]) for f in fake.find("AWS Access Key")["fields"]]


def test_the_shell_plugin_item_in_the_private_vault(
    fake: FakeOp, make: Callable[..., OnePasswordBackend]
) -> None:
    """The CLI signs in as the user, who sees the Private vault where the shell plugin
    keeps its item; the first read looks it up, later ones are one `op item get` by id."""
    item_id = shell_plugin_item(fake)
    assert make("op://Private/AWS Access Key").get("dev") == SHELL
    fake.reset_calls()
    assert make("op://Private/AWS Access Key").get("dev") == SHELL
    (call,) = fake.calls()
    assert call[:3] == ["item", "get", item_id]
    fake.reset_calls()
    assert make("op://Private/AWS Access Key").list() == ["dev"]


def test_writes_wait_for_adoption_then_keep_the_labels(
    fake: FakeOp, make: Callable[..., OnePasswordBackend]
) -> None:
    shell_plugin_item(fake)
    before = labels(fake)
    with pytest.raises(UsageError, match="broker adopt dev"):
        make("op://Private/AWS Access Key").set("dev", SHELL)
    assert not [c for c in fake.calls() if c[:2] == ["item", "edit"]]
    assert make("op://Private/AWS Access Key").adopt("dev") is True
    assert fake.find("AWS Access Key")["tags"] == ["broker"]
    rotated = SHELL.replace(aws_access_key_id="AKIAROTATED000000001",
                            aws_secret_access_key="rotated/secret")
    make("op://Private/AWS Access Key").set("dev", rotated)
    assert labels(fake) == before
    fields = {f["label"]: f["value"] for f in fake.find("AWS Access Key")["fields"]}
    assert fields["access key id"] == "AKIAROTATED000000001"
    assert fields["default region"] == "eu-west-1"
    assert fields["notesPlain"] == "made by the shell plugin"
    assert make("op://Private/AWS Access Key").get("dev") == rotated


def test_no_value_in_any_argument(fake: FakeOp, make: Callable[..., Any]) -> None:
    shell_plugin_item(fake)
    make("op://Private/AWS Access Key").adopt("dev")
    make("op://Private/AWS Access Key").set("dev", SHELL.replace(aws_secret_access_key="n3w"))
    for call in fake.raw_calls():
        assert not any(s in arg for s in ("n3w", SEED, SHELL[SECRET_ACCESS_KEY])
                       for arg in call["argv"])


def test_a_second_key_pair_is_left_alone(fake: FakeOp,
                                         make: Callable[..., OnePasswordBackend]) -> None:
    """An adopted item with another key pair in a section "old": the write updates the
    pair broker read and leaves the other one, and its section, as they are."""
    fake.add_item("Private", {"title": "AWS Access Key", "category": "API_CREDENTIAL",
                              "tags": ["broker"],
                              "sections": [{"id": "old", "label": "old"}], "fields": [
        {"id": "kq1", "type": "STRING", "label": "access key id",
         "value": SHELL[ACCESS_KEY_ID]},
        {"id": "kq2", "type": "CONCEALED", "label": "secret access key",
         "value": SHELL[SECRET_ACCESS_KEY]},
        {"id": "o1", "type": "STRING", "label": "access key id", "section": {"id": "old"},
         "value": "AKIAOLDPAIR000000001"},
        {"id": "o2", "type": "CONCEALED", "label": "secret access key",
         "section": {"id": "old"}, "value": "old/pair+secret"},
    ]})
    before = labels(fake)
    rotated = Item({ACCESS_KEY_ID: "AKIAROTATED000000001",
                    SECRET_ACCESS_KEY: "rotated/secret"})
    make("op://Private/AWS Access Key").set("dev", rotated)
    assert labels(fake) == before
    shown = {f["id"]: f["value"] for f in fake.find("AWS Access Key")["fields"]}
    assert shown == {"kq1": "AKIAROTATED000000001", "kq2": "rotated/secret",
                     "o1": "AKIAOLDPAIR000000001", "o2": "old/pair+secret"}
    assert make("op://Private/AWS Access Key").get("dev") == rotated


def test_a_renamed_item_is_never_another_profile(fake: FakeOp) -> None:
    """An adopted item titled as broker's template names a profile (``AWS ro``), renamed
    in the app: still profile ro's (not a profile "ro renamed"), never removed or written
    under the new name, and reading it says what to change in broker_item."""
    item_id = fake.add_item("Broker", {"title": "AWS ro", "category": "API_CREDENTIAL",
                                       "tags": ["broker"], "fields": [
        {"id": "kq1", "type": "STRING", "label": "access key id",
         "value": SHELL[ACCESS_KEY_ID]},
        {"id": "kq2", "type": "CONCEALED", "label": "secret access key",
         "value": SHELL[SECRET_ACCESS_KEY]},
    ]})
    made: list[OnePasswordBackend] = []

    def make() -> OnePasswordBackend:
        backend = OnePasswordBackend(settings={"vault": "Broker", "transport": "cli"})
        backend.bind_item("ro", "op://Broker/AWS ro")
        made.append(backend)
        return backend

    try:
        assert make().get("ro") is not None
        fake.edit_item(item_id, title="AWS ro renamed")
        assert make().list() == ["ro"]
        for attempt in (lambda b: b.delete("ro renamed"),
                        lambda b: b.set("ro renamed", SHELL)):
            with pytest.raises(UsageError, match="profile 'ro' takes its key from"):
                attempt(make())
        assert fake.find("AWS ro renamed")["id"] == item_id
        with pytest.raises(NotFound, match="renamed to 'AWS ro renamed'") as caught:
            make().get("ro")
        assert "to op://Broker/AWS ro renamed" in caught.value.hint
    finally:
        for backend in made:
            backend.close()
