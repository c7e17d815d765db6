"""Interop with the real `pass` CLI, both ways, and the lost-key recovery it documents."""

from __future__ import annotations

import shutil
from typing import Any

import pyotp
import pytest
from broker_pass import PassBackend
from broker_pass._packets import recipient_key_ids

from broker.backend import Item

pytestmark = pytest.mark.skipif(shutil.which("pass") is None, reason="pass is not installed")

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
ITEM = Item(
    aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
    aws_secret_access_key=SECRET,
    mfa_serial="arn:aws:iam::123456789012:mfa/dev-user",
    totp=SEED,
    region="ap-northeast-1",
)


def test_pass_init_then_broker(env: Any) -> None:
    env.pass_cli("init", env.keys.one.fingerprint)
    backend = env.backend()
    assert backend.availability().ok
    backend.set("dev", ITEM)
    assert backend.get("dev") == ITEM


def test_broker_writes_pass_shows(store: Any) -> None:
    store.backend().set("dev", ITEM)
    shown = store.pass_cli("show", "broker/dev", passphrase=store.keys.one.passphrase).stdout
    lines = shown.splitlines()
    assert lines[0] == SECRET  # what `pass -c broker/dev` copies
    assert "aws_access_key_id: AKIAIOSFODNN7EXAMPLE" in lines
    assert "mfa_serial: arn:aws:iam::123456789012:mfa/dev-user" in lines
    assert "region: ap-northeast-1" in lines
    otp_lines = [line for line in lines if line.startswith("otpauth://")]
    assert len(otp_lines) == 1
    assert pyotp.parse_uri(otp_lines[0]).secret == SEED  # what pass-otp would read
    listing = store.pass_cli("ls", "broker").stdout
    assert "dev" in listing


def test_pass_inserts_broker_reads_and_keeps_every_line(store: Any) -> None:
    uri = "otpauth://totp/AWS:me?secret=ABCDEFGHIJKLMNOP&issuer=AWS&period=30"
    content = (
        f"{SECRET}\n"
        "aws_access_key_id: AKIAIOSFODNN7EXAMPLE\n"
        "Account: personal dev account\n"
        "remember: rotate every 90 days\n"
        f"{uri}\n"
        "free text without a colon\n"
    )
    store.pass_cli("insert", "-m", "broker/x", input=content)
    backend = store.backend()
    assert "x" in backend.list()
    item = backend.get("x")
    assert item is not None
    assert item["aws_secret_access_key"] == SECRET
    assert item["aws_access_key_id"] == "AKIAIOSFODNN7EXAMPLE"
    assert item["Account"] == "personal dev account"
    assert item["totp"] == uri
    assert item["notes"] == "free text without a colon"
    # a rewrite by broker (as `broker add --replace` does) loses no line
    backend.set("x", item.replace(mfa_serial="arn:aws:iam::123456789012:mfa/me"))
    shown = store.pass_cli("show", "broker/x", passphrase=store.keys.one.passphrase).stdout
    assert set(content.splitlines()) <= set(shown.splitlines())
    assert "mfa_serial: arn:aws:iam::123456789012:mfa/me" in shown.splitlines()


def test_a_single_line_pass_insert_is_a_secret_only_item(store: Any) -> None:
    # `pass insert` (not -m) stores the line and a newline
    store.pass_cli("insert", "-m", "broker/plain", input="just-the-secret\n")
    assert store.backend().get("plain") == Item(aws_secret_access_key="just-the-secret")


def test_pass_rm_and_broker_delete_agree(store: Any) -> None:
    backend = store.backend()
    backend.set("a", ITEM)
    backend.set("b", ITEM)
    store.pass_cli("rm", "-f", "broker/a")
    assert backend.list() == ["b"]
    assert backend.delete("b") is True
    result = store.pass_cli("show", "broker/b", check=False)
    assert result.returncode != 0 and "not in the password store" in result.stderr


def test_pass_git_history_shows_broker_commits(store: Any) -> None:
    identity = {
        "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.test",
        "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.test",
    }
    store.pass_cli("git", "init", env=identity)
    store.backend().set("dev", ITEM)
    store.pass_cli("insert", "-m", "broker/other", input="x\n", env=identity)
    store.backend().delete("dev")
    log = store.pass_cli("git", "log", "--format=%s").stdout.splitlines()
    assert log[:3] == [
        "Remove broker/dev from store.",
        "Add given password for broker/other to store.",
        "Add given password for broker/dev to store.",
    ]
    assert store.pass_cli("git", "status", "--porcelain").stdout.strip() == ""


def test_recovering_from_a_lost_key_as_the_docs_say(store: Any) -> None:
    """The user story: the only GPG key is lost; new key, pass init, pass rm, add again."""
    lost = store.keys.one
    backend = store.backend()
    backend.set("dev", ITEM)
    store.gpg("--yes", "--delete-secret-keys", lost.fingerprint)

    assert "no usable secret key" in store.backend().availability().reason
    assert store.backend().describe()["unreadable"].startswith("dev — ")

    new = store.new_key("New Key <new@example.test>", "new passphrase")
    # pass init re-encrypts what it can; it cannot decrypt broker/dev and leaves it
    store.pass_cli("init", new.fingerprint, check=False)
    assert store.backend().availability().ok
    assert store.backend().describe()["unreadable"].startswith("dev — ")
    store.pass_cli("rm", "-f", "broker/dev")
    assert "unreadable" not in store.backend().describe()

    def resolver(reference: str) -> str:
        return "new passphrase"

    again = PassBackend(settings={"passphrase": "x:new"}, resolver=resolver)
    again.set("dev", ITEM)  # `broker add dev` with a new access key
    assert again.get("dev") == ITEM
    path = store.store / "broker" / "dev.gpg"
    assert recipient_key_ids(path.read_bytes()) == [new.subkey_id]
