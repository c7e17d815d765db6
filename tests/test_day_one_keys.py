"""Day one as a switching user: no key lands in memory-only storage unchosen, and every
key stored leaves a profile `broker exec` can use.

* With nothing persistent set up, the best available backend is keyctl (the kernel
  keyring, lost at reboot or `wsl --shutdown`): `add` and the importers refuse to put a
  long-lived key there unless it is chosen (``--backend keyctl``, ``--to keyctl``, the
  config's ``backend``), and say how to set up a persistent store. Wherever keyctl does
  hold a key (`add`, `backend set`, `migrate`), broker says it is lost at reboot.
* `add` for a name with no section in ~/.aws/config adds one; `import credentials-file
  --remove-plaintext` moves the section's other settings (region, output) there first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.backend import Item
from tests.conftest import TEST_KEY_ID, TEST_SECRET, BrokerHome
from tests.support.backends import register_test_plugins
from tests.support.contexts import require_keyctl
from tests.support.stores import Stores, table_rows

KEY = f"{TEST_KEY_ID}\n{TEST_SECRET}\n"
OTHER_KEY_ID = "AKIAOTHERPLAINTEXT01"


def keyctl_item(home: BrokerHome, name: str) -> Item | None:
    from broker_keyctl import KeyctlBackend

    return KeyctlBackend(settings={"keyring": home.keyring}).get(name)


@pytest.fixture
def fresh(home: BrokerHome) -> BrokerHome:
    """The home of a user who has chosen no backend: no `backend =` in broker's config, no
    pass store, no 1Password token; only the kernel keyring works here."""
    require_keyctl()
    home.broker_config.write_text(f'[backends.keyctl]\nkeyring = "{home.keyring}"\n')
    listing = {b["name"]: b for b in json.loads(home.run("backend", "list", "--json",
                                                         check=True).stdout)}
    assert [n for n, b in listing.items() if b["available"]] == ["keyctl"], listing
    return home


# --- 1. memory-only storage only when chosen ---------------------------------------------


def test_add_with_nothing_persistent_is_refused_with_the_setup_command(fresh):
    config_before = fresh.aws_config.read_text()
    result = fresh.run("add", "dev", input=KEY)
    assert result.returncode == 7, result.stderr
    assert "lost at reboot" in result.stderr and "keyctl" in result.stderr
    assert "pass init" in result.stderr  # the one command that sets up a persistent store
    assert "broker add dev --backend keyctl" in result.stderr  # or the explicit choice
    assert keyctl_item(fresh, "dev") is None
    assert fresh.aws_config.read_text() == config_before
    assert TEST_SECRET not in result.stderr


def test_keyctl_chosen_knowingly_holds_the_key_and_says_it_is_lost_at_reboot(fresh):
    result = fresh.run("add", "dev", "--backend", "keyctl", input=KEY, check=True)
    assert "Added the key for dev in backend keyctl." in result.stderr
    assert "lost at reboot" in result.stderr
    stored = keyctl_item(fresh, "dev")
    assert stored is not None and stored["aws_access_key_id"] == TEST_KEY_ID
    # a default chosen in broker's config is a choice too, and is still said to be lost
    fresh.broker_config.write_text(f'backend = "keyctl"\n{fresh.broker_config.read_text()}')
    again = fresh.run("add", "base", input=KEY, check=True)
    assert "lost at reboot" in again.stderr


def test_backend_set_keyctl_needs_a_yes(fresh):
    refused = fresh.run("backend", "set", "keyctl")
    assert refused.returncode == 2, refused.stderr
    assert "lost at reboot" in refused.stderr and "--yes" in refused.stderr
    assert "backend =" not in fresh.broker_config.read_text()
    done = fresh.run("backend", "set", "keyctl", "--yes", check=True)
    assert "Default backend is now keyctl" in done.stderr and "lost at reboot" in done.stderr
    assert 'backend = "keyctl"' in fresh.broker_config.read_text()
    assert fresh.run("add", "dev", input=KEY).returncode == 0  # chosen now


def test_a_persistent_default_is_taken_without_a_word_about_reboots(fresh, tmp_path):
    pythonpath = register_test_plugins(tmp_path / "site")  # dirstore: PERSISTENT
    store = tmp_path / "dirstore"
    fresh.broker_config.write_text(
        fresh.broker_config.read_text() + f'\n[backends.dirstore]\npath = "{store}"\n'
    )
    env = {"PYTHONPATH": pythonpath}
    assert fresh.run("backend", "set", "dirstore", env=env, check=True).stderr.count("\n") == 1
    result = fresh.run("add", "dev", input=KEY, env=env, check=True)
    assert "in backend dirstore" in result.stderr and "reboot" not in result.stderr


def test_import_with_nothing_persistent_is_refused(fresh):
    credentials = Path(fresh.env["AWS_SHARED_CREDENTIALS_FILE"])
    text = f"[dev]\naws_access_key_id = {TEST_KEY_ID}\naws_secret_access_key = {TEST_SECRET}\n"
    credentials.write_text(text)
    result = fresh.run("import", "credentials-file", "--remove-plaintext")
    assert result.returncode == 7, result.stderr
    assert "lost at reboot" in result.stderr and "--to keyctl" in result.stderr
    assert credentials.read_text() == text
    assert keyctl_item(fresh, "dev") is None


@pytest.fixture
def stores(in_home, monkeypatch, capsys, tmp_path) -> Iterator[Stores]:
    made = Stores(in_home, monkeypatch, capsys, tmp_path)
    yield made
    made.close()


def test_migrate_to_keyctl_deleting_a_persistent_source_needs_memory_only(stores: Stores):
    stores.provide("dirstore")  # persistent, as pass or 1Password
    stores.provide("keyctl")
    item = Item(aws_access_key_id=TEST_KEY_ID, aws_secret_access_key=TEST_SECRET)
    stores.seed("dirstore", {"dev": item})

    code, _, err = stores.broker(
        "migrate", "--from", "dirstore", "--to", "keyctl", "--delete-source"
    )
    assert code == 2, err
    assert "lost at reboot" in err and "--memory-only" in err
    assert stores.contents("dirstore", ["dev"]) == {"dev": item}
    assert stores.contents("keyctl", ["dev"]) == {"dev": None}  # nothing was written

    code, _, err = stores.broker("migrate", "--from", "dirstore", "--to", "keyctl")
    assert code == 0, err
    assert "keyctl keeps the keys in memory only: lost at reboot" in err
    assert "the copies in dirstore stay" in err

    code, out, err = stores.broker(
        "migrate", "--from", "dirstore", "--to", "keyctl", "--delete-source", "--memory-only"
    )
    assert code == 0, err
    assert "deleted source" in table_rows(out)["dev"]
    assert "lost at reboot" in err
    assert stores.contents("keyctl", ["dev"]) == {"dev": item}

    code, _, err = stores.broker("migrate", "--from", "dirstore", "--to", "keyctl",
                                 "--set-default")
    assert code == 2 and "--memory-only" in err


# --- 2. a stored key leaves a profile exec can use -----------------------------------------


def test_add_for_a_profile_without_a_section_adds_one(home, sts):
    require_keyctl()
    before = home.aws_config.read_text()
    assert "solo" not in before
    result = home.run("add", "solo", input=KEY, check=True)
    assert str(home.aws_config) in result.stderr
    assert home.aws_config.read_text() == before + "\n[profile solo]\n"
    listing = {p["name"]: p for p in json.loads(home.run("list", "--json", check=True).stdout)}
    assert listing["solo"]["stored"] is True
    ran = home.run("exec", "solo", "--", "sh", "-c", "echo ok", check=True)
    assert ran.stdout.strip() == "ok"
    # a second add finds the section: the file is not touched again
    home.run("add", "solo", "--replace", input=KEY, check=True)
    assert home.aws_config.read_text().count("[profile solo]") == 1


def test_add_for_the_default_profile_adds_a_default_section(home, sts):
    require_keyctl()
    home.aws_config.write_bytes(b"# my profiles\r\n[profile plain]\r\nregion = us-west-2\r\n")
    home.run("add", input=KEY, check=True)  # no profile: `default`, as for the AWS CLI
    assert home.aws_config.read_bytes() == (  # its comments and line endings kept
        b"# my profiles\r\n[profile plain]\r\nregion = us-west-2\r\n\r\n[default]\r\n"
    )
    home.run("exec", "--region", "us-east-1", "default", "--", "true", check=True)


CREDENTIALS = f"""\
# by hand
[solo]
aws_access_key_id = {TEST_KEY_ID}
aws_secret_access_key = {TEST_SECRET}
region = eu-west-3
output = json

[plain]
aws_access_key_id = {OTHER_KEY_ID}
aws_secret_access_key = other/secret+0123456789abcdefghijklm
region = sa-east-1
"""


def botocore_view(home: BrokerHome, profile: str) -> dict[str, str]:
    """What botocore (the AWS CLI, the SDKs) reads for ``profile``, secrets left out."""
    import botocore.session

    env = {k: home.env[k] for k in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        config = botocore.session.Session(profile=profile).get_scoped_config()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {k: v for k, v in config.items() if not k.startswith("aws_")}


def persistent_store(home: BrokerHome, tmp_path: Path) -> dict[str, str]:
    """dirstore (a persistent test backend) as the default; the environment it needs."""
    store = tmp_path / "dirstore"
    home.broker_config.write_text(
        home.broker_config.read_text().replace('backend = "keyctl"', 'backend = "dirstore"')
        + f'\n[backends.dirstore]\npath = "{store}"\n'
    )
    return {"PYTHONPATH": register_test_plugins(tmp_path / "site")}


def test_import_remove_plaintext_moves_the_sections_settings_to_the_config(home, sts, tmp_path):
    env = persistent_store(home, tmp_path)
    credentials = Path(home.env["AWS_SHARED_CREDENTIALS_FILE"])
    credentials.write_text(CREDENTIALS)
    seen = {name: botocore_view(home, name) for name in ("solo", "plain")}
    assert seen["solo"] == {"region": "eu-west-3", "output": "json"}
    assert seen["plain"]["region"] == "sa-east-1"  # the credentials file wins over config

    result = home.run("import", "credentials-file", "--remove-plaintext", env=env)
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert rows["solo"].startswith("imported, plaintext removed"), rows
    assert rows["plain"].startswith("imported, plaintext removed"), rows
    assert credentials.read_text().split() == ["#", "by", "hand"]  # no section left
    # botocore reads every profile as it did, now from ~/.aws/config alone
    assert {name: botocore_view(home, name) for name in seen} == seen
    assert "[profile solo]\nregion = eu-west-3\noutput = json\n" in home.aws_config.read_text()
    out = home.run("exec", "solo", "--", "sh", "-c", "echo $AWS_REGION", env=env,
                   check=True).stdout
    assert out.strip() == "eu-west-3"


def test_a_setting_that_cannot_be_moved_keeps_its_section(home, sts, tmp_path):
    env = persistent_store(home, tmp_path)
    credentials = Path(home.env["AWS_SHARED_CREDENTIALS_FILE"])
    text = (f"[solo]\naws_access_key_id = {TEST_KEY_ID}\naws_secret_access_key = {TEST_SECRET}\n"
            "s3 =\n  max_concurrent_requests = 4\n")
    credentials.write_text(text)
    result = home.run("import", "credentials-file", "--remove-plaintext", env=env)
    assert result.returncode == 0, result.stderr
    row = table_rows(result.stdout)["solo"]
    assert row.startswith("imported") and "plaintext removed" not in row
    assert "s3" in row and "by hand" in row
    assert credentials.read_text() == text


# --- a key stored outside the default backend stays in view ------------------------------


def _default(stores: Stores, backend: str) -> None:
    """Make ``backend`` the default in broker's config (its top-level `backend =` line)."""
    path = stores.home.broker_config
    lines = path.read_text().splitlines()
    lines = [f'backend = "{backend}"' if line.startswith("backend =") else line
             for line in lines]
    path.write_text("\n".join(lines) + "\n")


def _add(stores: Stores, *args: str) -> tuple[int, str, str]:
    """`broker add` in this process, the key on stdin."""
    import io
    import sys

    stores.monkeypatch.setattr(sys, "stdin", io.StringIO(KEY))
    return stores.broker("add", *args)


def _row(stores: Stores, profile: str) -> str:
    code, out, err = stores.broker("list")
    assert code == 0, err
    return next(line for line in out.splitlines() if line.split()[:1] == [profile])


def test_a_key_added_to_another_backend_is_found_there(stores: Stores):
    """`add --backend keyctl` while the default is persistent: the profile names keyctl,
    so list shows the key (lost at reboot) instead of `missing`, and exec finds it."""
    stores.provide("dirstore")
    stores.provide("keyctl")
    _default(stores, "dirstore")
    code, _, err = _add(stores, "dev", "--backend", "keyctl")
    assert code == 0, err
    assert "broker_backend = keyctl" in err
    assert "broker_backend = keyctl" in stores.home.aws_config.read_text()
    row = _row(stores, "dev")
    assert "keyctl" in row and "lost at reboot" in row and "missing" not in row


def test_a_key_moved_out_of_the_default_backend_is_found_there(stores: Stores):
    stores.provide("dirstore")
    stores.provide("keyctl")
    _default(stores, "dirstore")
    stores.seed("dirstore", {"dev": Item(aws_access_key_id=TEST_KEY_ID,
                                         aws_secret_access_key=TEST_SECRET)})
    code, _, err = stores.broker("migrate", "--from", "dirstore", "--to", "keyctl",
                                 "--profile", "dev", "--delete-source", "--memory-only")
    assert code == 0, err
    assert "broker_backend = keyctl" in err
    row = _row(stores, "dev")
    assert "keyctl" in row and "missing" not in row


def test_changing_the_default_keeps_keys_of_the_old_one_in_view(stores: Stores):
    stores.provide("dirstore")
    stores.provide("keyctl")
    _default(stores, "keyctl")
    code, _, err = _add(stores, "dev")
    assert code == 0, err
    code, _, err = stores.broker("backend", "set", "dirstore")
    assert code == 0, err
    assert "dev keep their keys in keyctl" in err and "broker migrate --from keyctl" in err
    row = _row(stores, "dev")
    assert "keyctl" in row and "lost at reboot" in row and "missing" not in row


def test_keys_in_memory_are_sent_to_the_configured_default(stores: Stores):
    """pass is the default in broker's config, 1Password (higher priority) works too: the
    way out of memory-only storage that list, doctor and `backend set` name is pass."""
    stores.provide("keyctl")
    stores.provide("pass")
    stores.provide("onepassword")
    _default(stores, "pass")
    code, _, err = _add(stores, "dev", "--backend", "keyctl")
    assert code == 0, err
    code, _, err = stores.broker("list")
    assert code == 0, err
    note, = [line for line in err.splitlines() if "lost at reboot" in line]
    assert "`broker migrate --from keyctl --to pass --delete-source`" in note, note
    code, out, err = stores.broker("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["keys lost at reboot"]["fix"] == (
        "`broker migrate --from keyctl --to pass --delete-source`"
    ), checks["keys lost at reboot"]
    code, _, err = stores.broker("backend", "set", "keyctl")
    assert code == 2, err
    assert "for keys that last, keep pass, the default now" in err
    assert "onepassword" not in err
    # BROKER_BACKEND names the default too; without either, the usual priority order
    from broker.services.listing import keep_keys_hint

    _default(stores, "keyctl")
    assert "--to onepassword" in keep_keys_hint(stores.context(), "keyctl")
    stores.setenv("BROKER_BACKEND", "pass")
    assert "--to pass" in keep_keys_hint(stores.context(), "keyctl")
