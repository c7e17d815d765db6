"""End to end: profiles that read their key from items people already keep in 1Password.

The installed ``broker`` runs as a subprocess (its own HOME, the kernel keyring as the
session cache) against the local STS, which checks MFA codes and trust policies, with
1Password emulated (:mod:`broker_onepassword.testing`). The items are made "by hand", as
1Password's AWS shell plugin and the app's API Credential template make them.
"""

from __future__ import annotations

import json
import sys
import time

import pytest
from broker_onepassword.testing import OnePasswordEmulator, field

from tests.conftest import ACCOUNT, TEST_KEY_ID, TEST_SECRET, BrokerHome
from tests.support.iam import access_keys, create_iam_user
from tests.support.imports import imported_modules
from tests.support.otp import SEED, pyotp_code

from .conftest import OP_SITE

SHELL_SERIAL = f"arn:aws:iam::{ACCOUNT}:mfa/shell-user"
PROFILES = f"""
[profile shell]
broker_item = op://Broker/AWS Access Key
role_arn = arn:aws:iam::{ACCOUNT}:role/otp-role

[profile tmpl]
broker_item = IAM key

[profile bad]
broker_item = op://Broker/AWS Access Key/access key id
"""
PRINT_KEY = [sys.executable, "-c", "import os; print(os.environ['AWS_ACCESS_KEY_ID'])"]


def shell_plugin_item(emulator: OnePasswordEmulator, key_id: str = TEST_KEY_ID,
                      secret: str = TEST_SECRET, *, otp: bool = True) -> str:
    """The AWS shell plugin's item, made in the app: an API Credential, its fields in the
    app's default section, the OTP field stored as TOTP_<id>, "default region"."""
    fields = [
        field("access key id", key_id, id="sp1"),
        field("secret access key", secret, "Concealed", id="sp2"),
        field("default region", "eu-west-1", id="sp5"),
    ]
    if otp:
        fields[2:2] = [field("one-time password", SEED, "Totp", id="sp3"),
                       field("mfa serial", SHELL_SERIAL, id="sp4")]
    return emulator.create_item("AWS Access Key", fields, notes="AWS shell plugin")


def template_item(emulator: OnePasswordEmulator) -> str:
    """An item made from the app's API Credential template."""
    return emulator.create_item("IAM key", [
        field("username", TEST_KEY_ID, id="username"),
        field("credential", TEST_SECRET, "Concealed", id="credential"),
        field("type", "", id="type"), field("hostname", "", id="hostname"),
    ])


def fields(emulator: OnePasswordEmulator, item_id: str) -> list[tuple[str, str, object]]:
    return [(f["id"], f["title"], f["sectionId"]) for f in emulator.item(item_id)["fields"]]


def value(emulator: OnePasswordEmulator, item_id: str, label: str) -> str:
    return str(next(f["value"] for f in emulator.item(item_id)["fields"]
                    if f["title"] == label))


@pytest.fixture
def op_home(home: BrokerHome, emulator: OnePasswordEmulator) -> BrokerHome:
    """The end-to-end home with 1Password as the credential backend, and the profiles
    above; the shell plugin's MFA device is known to the local STS."""
    from broker_keyctl import KeyctlBackend

    availability = KeyctlBackend().availability()
    if not availability.ok:
        pytest.skip(f"kernel keyring unavailable (the session cache): {availability.reason}")
    home.broker_config.write_text(
        'backend = "onepassword"\n\n'
        f'[backends.keyctl]\nkeyring = "{home.keyring}"\n\n'
        '[backends.onepassword]\nvault = "Broker"\n'
    )
    home.env.update({
        "BROKER_OP_EMULATOR": str(emulator.path),
        "PYTHONPATH": str(OP_SITE),
        "OP_SERVICE_ACCOUNT_TOKEN": emulator.token,
    })
    home.aws_config.write_text(home.aws_config.read_text() + PROFILES)
    home.sts.register_mfa_device(SHELL_SERIAL, SEED)
    return home


def test_a_shell_plugin_item_serves_exec(op_home: BrokerHome, emulator: OnePasswordEmulator,
                                         sts: object) -> None:
    """The item's own MFA device and seed make the MFA session (the profile sets neither),
    and the role that needs MFA is assumed; the cached exec never asks 1Password."""
    item_id = shell_plugin_item(emulator)
    before = emulator.item(item_id)
    start = time.time()
    result = op_home.run("exec", "shell", "--", *PRINT_KEY, check=True)
    assert result.stdout.startswith("ASIA")
    gst, = op_home.sts.actions("GetSessionToken")
    assert gst["SerialNumber"] == SHELL_SERIAL  # the item's mfa serial
    steps = range(int(start // 30), int(time.time() // 30) + 1)
    assert gst["TokenCode"] in {pyotp_code(SEED, step) for step in steps}  # the item's seed
    assert op_home.sts.actions("AssumeRole")[-1]["RoleArn"].endswith(":role/otp-role")
    assert op_home.mfa_prompts() == 0  # no mfa_process, no prompt: the item's seed
    assert emulator.calls(remote_only=True) == {"init_client": 1, "VaultsList": 1,
                                                "ItemsList": 1, "ItemsGet": 1}
    assert emulator.item(item_id) == before  # only read
    emulator.reset_calls()
    listed = json.loads(op_home.run("list", "--json", check=True).stdout)
    shell = next(p for p in listed if p["name"] == "shell")
    assert (shell["mfa_serial"], shell["mfa_source"]) == (SHELL_SERIAL, "stored totp")
    assert not emulator.calls(remote_only=True).get("ItemsGet")  # listing reads no item

    emulator.reset_calls()
    op_home.run("exec", "shell", "--", "true", check=True)
    assert emulator.calls() == {}  # the cached session: 1Password is not contacted
    # without the emulator's site hook (it imports the plugin): nothing of 1Password loads
    bare = {k: v for k, v in op_home.env.items() if k not in ("BROKER_OP_EMULATOR",
                                                                "PYTHONPATH")}
    names = imported_modules(bare, "exec", "shell", "--", "true")
    assert not names & {"broker_onepassword", "onepassword", "pydantic", "boto3"}


def test_the_profiles_mfa_serial_wins(op_home: BrokerHome, emulator: OnePasswordEmulator,
                                      sts: object) -> None:
    shell_plugin_item(emulator)
    op_home.aws_config.write_text(op_home.aws_config.read_text().replace(
        "[profile shell]\n",
        f"[profile shell]\nmfa_serial = arn:aws:iam::{ACCOUNT}:mfa/dev-user\n"
        f'mfa_process = "$BROKER_TEST_MFA" arn:aws:iam::{ACCOUNT}:mfa/dev-user\n'))
    op_home.run("exec", "shell", "--", "true", check=True)
    gst, = op_home.sts.actions("GetSessionToken")
    assert gst["SerialNumber"] == f"arn:aws:iam::{ACCOUNT}:mfa/dev-user"


def test_an_api_credential_item_serves_exec(op_home: BrokerHome,
                                            emulator: OnePasswordEmulator,
                                            sts: object) -> None:
    template_item(emulator)
    result = op_home.run("exec", "tmpl", "--", *PRINT_KEY, check=True)
    assert result.stdout.startswith("ASIA")
    op_home.run("clear", "tmpl", check=True)
    emulator.reset_calls()
    op_home.run("exec", "tmpl", "--", "true", check=True)  # a cold exec, ids remembered
    assert emulator.calls(remote_only=True) == {"init_client": 1, "ItemsGet": 1}
    assert emulator.requests() == {"init_client": 2, "ItemsGet": 3, "read": 5, "write": 0}


def test_a_malformed_broker_item_is_refused_before_any_call(
    op_home: BrokerHome, emulator: OnePasswordEmulator
) -> None:
    emulator.reset_calls()
    result = op_home.run("exec", "bad", "--", "true")
    assert result.returncode == 3, result.stderr
    (line,) = result.stderr.splitlines()
    assert "[profile bad] broker_item" in line and str(op_home.aws_config) in line
    assert "names a field" in line
    assert emulator.request_total() == 0 and emulator.calls() == {}
    listed = {p["name"]: p for p in json.loads(op_home.run("list", "--json").stdout)}
    assert "names a field" in listed["bad"]["error"]


def test_list_shows_only_items_a_profile_can_use(
    op_home: BrokerHome, emulator: OnePasswordEmulator
) -> None:
    shell_plugin_item(emulator)
    template_item(emulator)
    emulator.create_item("AWS Console", [field("username", "alice", id="username"),
                                         field("credential", "token", "Concealed",
                                               id="credential")])
    emulator.create_item("AWS other", [field("access key id", "AKIAOTHER00000000001")])
    op_home.add_key("dev")
    listed = {p["name"]: p for p in json.loads(op_home.run("list", "--json",
                                                           check=True).stdout)}
    assert listed["shell"]["stored"] is True and listed["shell"]["backend"] == "onepassword"
    # the item's mfa serial is known only once the key was read (by exec)
    assert (listed["shell"]["mfa_serial"], listed["shell"]["mfa_source"]) == (None, "?")
    assert listed["tmpl"]["stored"] is True
    assert listed["dev"]["stored"] is True
    assert not {"Console", "other", "Access Key"} & set(listed)  # no profiles of their own
    assert listed["base"]["stored"] is False


def test_writes_are_refused_until_adopted(op_home: BrokerHome, emulator: OnePasswordEmulator,
                                          sts: object) -> None:
    item_id = shell_plugin_item(emulator)
    before = emulator.item(item_id)
    new_key = "AKIANEWKEY0000000001\nnew/secret\n"
    attempts = [
        ("add", "shell", "--replace"),
        ("rotate", "shell"),
        ("totp", "set", "shell", "--no-verify"),
        ("remove", "shell", "--force"),
        ("migrate", "--from", "onepassword", "--to", "keyctl", "--profile", "shell",
         "--delete-source", "--memory-only"),
    ]
    for args in attempts:
        result = op_home.run(*args, input=new_key if args[0] == "add" else f"{SEED}\n")
        assert result.returncode == 2, (args, result.stderr)
        (line,) = result.stderr.splitlines()
        assert "'AWS Access Key'" in line and "`broker adopt shell`" in line, line
    assert emulator.item(item_id) == before
    assert [c["Action"] for c in op_home.sts.actions()] == []  # rotate asked AWS nothing
    from broker_keyctl import KeyctlBackend

    assert KeyctlBackend(settings={"keyring": op_home.keyring}).get("shell") is None


def test_adopted_item_is_rotated_in_its_own_fields(
    op_home: BrokerHome, emulator: OnePasswordEmulator, sts: object, moto_server: str
) -> None:
    user, old_id, secret = create_iam_user(moto_server)
    item_id = shell_plugin_item(emulator, old_id, secret, otp=False)
    labels = fields(emulator, item_id)
    op_home.aws_config.write_text(op_home.aws_config.read_text().replace(
        f"role_arn = arn:aws:iam::{ACCOUNT}:role/otp-role\n", "region = us-east-1\n", 1))
    done = op_home.run("adopt", "shell", check=True)
    assert "now manages" in done.stderr
    assert emulator.item(item_id)["tags"] == ["broker"]
    assert "already manages" in op_home.run("adopt", "shell", check=True).stderr
    op_home.run("rotate", "shell", check=True)
    new_id = value(emulator, item_id, "access key id")
    assert new_id != old_id and access_keys(moto_server, user) == {new_id}
    assert fields(emulator, item_id) == labels  # the shell plugin's labels, nothing added
    assert value(emulator, item_id, "default region") == "eu-west-1"
    assert emulator.item(item_id)["notes"] == "AWS shell plugin"
    assert emulator.find("AWS Access Key")["id"] == item_id  # no other item made


def test_add_item_writes_broker_item_and_stores_nothing(
    op_home: BrokerHome, emulator: OnePasswordEmulator, sts: object
) -> None:
    item_id = template_item(emulator)
    before = emulator.item(item_id)
    emulator.reset_calls()
    done = op_home.run("add", "fresh", "--item", "op://Broker/IAM key", check=True)
    assert "fresh reads its key from op://Broker/IAM key" in done.stderr
    assert "broker adopt fresh" in done.stderr
    text = op_home.aws_config.read_text()
    assert "[profile fresh]\nbroker_item = op://Broker/IAM key\n" in text
    assert "broker_backend" not in text.split("[profile fresh]")[1]
    assert emulator.item(item_id) == before
    assert not {"ItemsCreate", "ItemsPut"} & set(emulator.calls())
    assert op_home.run("exec", "fresh", "--", *PRINT_KEY, check=True).stdout.startswith("ASIA")

    missing = op_home.run("add", "other", "--item", "op://Broker/No such item")
    assert missing.returncode == 14, missing.stderr
    assert "No such item" in missing.stderr and "[profile other]" not in text
    assert "check --item" in missing.stderr and "nothing was written" in missing.stderr
    again = op_home.run("add", "fresh", "--item", "op://Broker/AWS Console")
    assert again.returncode == 2 and "--replace" in again.stderr
