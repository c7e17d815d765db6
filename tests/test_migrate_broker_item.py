"""`broker migrate` of a profile that reads its key from an item it names (``broker_item``).

In process through the real CLI, from 1Password (emulated: the shell plugin's item, made
by hand as the app makes it) to a real `pass` store: once the item is deleted
(``--delete-source``), the profile no longer names it and reads the verified copy; while
the item is kept, the profile keeps reading it. Removing one setting from ~/.aws/config
(:func:`broker.aws.config_writer.without_profile_value`) is tested here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.aws.config_writer import without_profile_value
from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, TOTP
from broker.errors import ConfigError
from tests.support.stores import Stores
from tests.support.stores import table_rows as _rows

SERIAL = "arn:aws:iam::123456789012:mfa/shell-user"
SEED = "JBSWY3DPEHPK3PXP"
SHELL_KEY = "AKIASHELLPLUGIN00001"
PROFILE = "\n[profile shell]\nbroker_item = op://Broker/AWS Access Key\nregion = eu-west-1\n"


@pytest.fixture
def stores(in_home, monkeypatch, capsys, tmp_path) -> Iterator[Stores]:
    made = Stores(in_home, monkeypatch, capsys, tmp_path)
    yield made
    made.close()


@pytest.fixture
def shell_item(stores: Stores) -> str:
    """1Password and pass in the test home; the shell plugin's item in 1Password, named by
    profile shell's broker_item and adopted; returns the item's id."""
    from broker_onepassword.testing import OnePasswordEmulator, field

    stores.provide("onepassword")
    stores.provide("pass")
    emulator = OnePasswordEmulator(stores.tmp_path / "op-state.json")
    item_id = emulator.create_item("AWS Access Key", [
        field("access key id", SHELL_KEY, id="kq1"),
        field("secret access key", "shell/plugin+secret", "Concealed", id="kq2"),
        field("one-time password", SEED, "Totp", id="kq3"),
        field("mfa serial", SERIAL, id="kq4"),
    ])
    with open(stores.home.aws_config, "a", encoding="utf-8") as handle:
        handle.write(PROFILE)
    code, _, err = stores.broker("adopt", "shell")
    assert code == 0, err
    return item_id


def _items(stores: Stores) -> list[str]:
    from broker_onepassword.testing import OnePasswordEmulator

    emulator = OnePasswordEmulator(stores.tmp_path / "op-state.json")
    return [i["title"] for i in emulator.items("Broker")]


def _key_read_by(stores: Stores, profile: str) -> tuple[str, str]:
    """(backend, key id) of the key ``profile`` reads now, as `exec` would find it."""
    ctx = stores.context()
    store = ctx.credential_backend(ctx.aws.profiles[profile])
    item = store.get(profile)
    assert item is not None
    return store.name, item[ACCESS_KEY_ID]


def test_delete_source_drops_broker_item_and_the_profile_reads_the_copy(
    stores: Stores, shell_item: str
) -> None:
    code, out, err = stores.broker("migrate", "--from", "onepassword", "--to", "pass",
                                   "--profile", "shell", "--delete-source", "--dry-run")
    assert code == 0, err
    assert "would remove broker_item = op://Broker/AWS Access Key from profile 'shell'" in err
    assert "broker_item" in stores.home.aws_config.read_text()

    code, out, err = stores.broker("migrate", "--from", "onepassword", "--to", "pass",
                                   "--profile", "shell", "--delete-source")
    assert code == 0, err
    assert _rows(out)["shell"].startswith("copied, deleted source")
    assert "removed broker_item = op://Broker/AWS Access Key from profile 'shell'" in err
    assert "broker_backend = pass" in err
    assert "AWS Access Key" not in _items(stores)
    text = stores.home.aws_config.read_text()
    assert "broker_item" not in text
    assert "[profile shell]\nregion = eu-west-1\nbroker_backend = pass\n" in text
    assert _key_read_by(stores, "shell") == ("pass", SHELL_KEY)
    copy = stores.backend("pass").get("shell")
    assert copy is not None
    assert (copy[SECRET_ACCESS_KEY], copy[TOTP], copy[MFA_SERIAL]) == (
        "shell/plugin+secret", SEED, SERIAL)

    code, out, err = stores.broker("migrate", "--from", "onepassword", "--to", "pass",
                                   "--profile", "shell", "--delete-source")
    assert code == 0, err  # nothing left to do, and nothing said about broker_item
    assert _rows(out)["shell"].startswith("already there") and "broker_item" not in err


def test_without_delete_source_the_profile_keeps_reading_its_item(
    stores: Stores, shell_item: str
) -> None:
    before = stores.home.aws_config.read_text()
    code, out, err = stores.broker("migrate", "--from", "onepassword", "--to", "pass",
                                   "--profile", "shell")
    assert code == 0, err
    assert _rows(out)["shell"].startswith("copied") and "broker_item" not in err
    assert stores.home.aws_config.read_text() == before
    assert "AWS Access Key" in _items(stores)
    assert _key_read_by(stores, "shell") == ("onepassword", SHELL_KEY)
    assert stores.backend("pass").get("shell") is not None  # the second copy


def test_a_run_that_stopped_after_deleting_the_item_is_finished(
    stores: Stores, shell_item: str
) -> None:
    """The item deleted, ~/.aws/config not yet edited (a crash in between): running the
    command again removes broker_item."""
    from broker_onepassword.testing import OnePasswordEmulator

    code, _, err = stores.broker("migrate", "--from", "onepassword", "--to", "pass",
                                 "--profile", "shell")
    assert code == 0, err
    OnePasswordEmulator(stores.tmp_path / "op-state.json").delete_item(shell_item)
    code, out, err = stores.broker("migrate", "--from", "onepassword", "--to", "pass",
                                   "--profile", "shell", "--delete-source")
    assert code == 0, err
    assert _rows(out)["shell"].startswith("already there")
    assert "removed broker_item" in err
    assert "broker_item" not in stores.home.aws_config.read_text()
    assert _key_read_by(stores, "shell") == ("pass", SHELL_KEY)


def test_set_default_leaves_no_pin(stores: Stores, shell_item: str) -> None:
    code, _, err = stores.broker("migrate", "--from", "onepassword", "--to", "pass",
                                 "--profile", "shell", "--delete-source", "--set-default")
    assert code == 0, err
    text = stores.home.aws_config.read_text()
    assert "broker_item" not in text and "broker_backend" not in text
    assert _key_read_by(stores, "shell") == ("pass", SHELL_KEY)


# -- removing one setting ------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), [
    ("[profile dev]\nbroker_item = x\nregion = r\n", "[profile dev]\nregion = r\n"),
    ("[profile dev]\r\nregion = r\r\nbroker_item = x\r\n# next\r\n[default]\r\n",
     "[profile dev]\r\nregion = r\r\n# next\r\n[default]\r\n"),
    ("[profile dev]\nbroker_item =\n  a = 1\n; kept\n  b = 2\nregion = r",
     "[profile dev]\n; kept\nregion = r"),
    ("\ufeff[dev]\nbroker_item = a\n[profile dev]\nbroker_item = b\n",
     "\ufeff[dev]\nbroker_item = a\n[profile dev]\n"),
    ("[profile dev]\r\rbroker_item = x\r\n\nregion = r\n",
     "[profile dev]\r\r\rregion = r\n"),
])
def test_without_profile_value(before: str, after: str) -> None:
    assert without_profile_value(before, "dev", "broker_item") == after


@pytest.mark.parametrize("text", ["", "[profile dev]\nregion = r\n", "[profile other]\nx = 1\n"])
def test_without_profile_value_unchanged(text: str) -> None:
    assert without_profile_value(text, "dev", "broker_item") is text


def test_without_profile_value_refuses_a_default_value() -> None:
    with pytest.raises(ConfigError, match="by hand"):
        without_profile_value("[DEFAULT]\nbroker_item = d\n[profile dev]\nbroker_item = x\n",
                              "dev", "broker_item")


def test_remove_profile_value_keeps_the_file(tmp_path: Path) -> None:
    from broker.aws.config_writer import remove_profile_value

    path = tmp_path / "config"
    path.write_text("[profile dev]\nbroker_item = x\n")
    path.chmod(0o640)
    assert remove_profile_value(path, "dev", "broker_item")
    assert path.read_text() == "[profile dev]\n" and path.stat().st_mode & 0o777 == 0o640
    assert not remove_profile_value(path, "dev", "broker_item")
