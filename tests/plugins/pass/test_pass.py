"""The pass backend against real GnuPG: layout, recipients, git, availability, describe."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from broker_pass import PassBackend
from broker_pass._packets import recipient_key_ids

from broker.backend import Capability, Item
from broker.errors import BackendError, ConfigError, NotFound

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ITEM = Item(
    aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
    aws_secret_access_key=SECRET,
    mfa_serial="arn:aws:iam::123456789012:mfa/dev-user",
)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (git internals excluded) with its content."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


# -- layout ------------------------------------------------------------------------------


def test_entry_file_mode_and_folders(store: Any) -> None:
    old_umask = os.umask(0o022)  # looser than pass's own 077: still 0600 and 0700
    try:
        store.backend().set("team/dev", ITEM)
    finally:
        os.umask(old_umask)
    path = store.store / "broker" / "team" / "dev.gpg"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert SECRET.encode() not in path.read_bytes()
    assert recipient_key_ids(path.read_bytes()) == [store.keys.one.subkey_id]
    # the atomic write leaves no temporary file behind
    assert sorted(p.name for p in path.parent.iterdir()) == ["dev.gpg"]


def test_list_is_recursive_sorted_and_only_under_the_prefix(store: Any) -> None:
    backend = store.backend()
    for name in ("b", "a", "team/x", "team/deeper/y"):
        backend.set(name, ITEM)
    (store.store / "broker" / ".hidden.gpg").write_bytes(b"")
    (store.store / "broker" / "README").write_text("not an entry")
    (store.store / "personal").mkdir()
    (store.store / "personal" / "github.gpg").write_bytes(b"")
    assert backend.list() == ["a", "b", "team/deeper/y", "team/x"]
    assert backend.delete("team/deeper/y") is True
    assert not (store.store / "broker" / "team" / "deeper").exists()  # like `pass rm`
    assert backend.list() == ["a", "b", "team/x"]


def test_a_missing_prefix_folder_lists_nothing(store: Any) -> None:
    assert store.backend().list() == []
    assert store.backend().get("dev") is None


@pytest.mark.parametrize("prefix", ["", "/", "..", "a/../b", ".hidden"])
def test_prefix_is_never_the_store_root(env: Any, prefix: str) -> None:
    with pytest.raises(ConfigError):
        PassBackend(settings={"prefix": prefix})


def test_custom_prefix_and_store_setting(env: Any, tmp_path: Path) -> None:
    other = tmp_path / "other-store"
    other.mkdir()
    (other / ".gpg-id").write_text(env.keys.one.fingerprint + "\n")
    backend = env.backend(store=str(other), prefix="aws/keys/")
    backend.set("dev", ITEM)
    assert (other / "aws" / "keys" / "dev.gpg").is_file()
    assert backend.get("dev") == ITEM
    assert backend.describe()["prefix"] == "aws/keys/"


@pytest.mark.parametrize("name", ["", "../escape", "a//b", "/abs", "a/", ".hidden", "a/./b"])
def test_names_that_could_escape_are_refused(store: Any, name: str) -> None:
    backend = store.backend()
    with pytest.raises(BackendError):
        backend.set(name, ITEM)
    with pytest.raises(BackendError):
        backend.get(name)
    assert not (store.store / "escape.gpg").exists()


def test_sessions_are_never_written_here(store: Any) -> None:
    assert Capability.STORE_SESSIONS not in PassBackend.capabilities
    assert {Capability.LIST, Capability.PERSISTENT, Capability.INTERACTIVE} <= set(
        PassBackend.capabilities
    )
    with pytest.raises(BackendError, match="never written"):
        store.backend(namespace="sessions").set("dev:mfa:0", ITEM)
    assert snapshot(store.store) == {".gpg-id": (store.keys.one.fingerprint + "\n").encode()}


def test_importing_the_plugin_does_not_import_gnupg(store: Any) -> None:
    code = (
        "import sys, broker_pass\n"
        "b = broker_pass.PassBackend()\n"
        "b.list(); b.availability()\n"
        "print('gnupg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "False"


# -- recipients --------------------------------------------------------------------------


def test_several_recipients_with_comments(env: Any) -> None:
    one, two = env.keys.one, env.keys.two
    env.store.mkdir()
    (env.store / ".gpg-id").write_text(
        f"# the team\n{one.fingerprint}  # me\n\n   {two.uid.split('<')[1].rstrip('>')}\n"
    )
    backend = env.backend()
    backend.set("dev", ITEM)
    key_ids = recipient_key_ids((env.store / "broker" / "dev.gpg").read_bytes())
    assert sorted(key_ids or []) == sorted([one.subkey_id, two.subkey_id])
    assert backend.describe()["recipients"] == f"{one.fingerprint}, two@example.test"
    assert env.reopen(backend).get("dev") == ITEM


def test_nearest_gpg_id_wins(store: Any) -> None:
    team = store.store / "broker" / "team"
    team.mkdir(parents=True)
    (team / ".gpg-id").write_text(store.keys.two.fingerprint + "\n")
    backend = store.backend()
    backend.set("team/dev", ITEM)
    backend.set("dev", ITEM)
    assert recipient_key_ids((team / "dev.gpg").read_bytes()) == [store.keys.two.subkey_id]
    assert recipient_key_ids((store.store / "broker" / "dev.gpg").read_bytes()) == [
        store.keys.one.subkey_id
    ]


def test_password_store_key_overrides_gpg_id(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    both = f"{store.keys.two.fingerprint} {store.keys.one.fingerprint}"
    monkeypatch.setenv("PASSWORD_STORE_KEY", both)
    backend = store.backend()
    assert backend.recipients("broker/dev") == (
        [store.keys.two.fingerprint, store.keys.one.fingerprint], "PASSWORD_STORE_KEY"
    )
    monkeypatch.setenv("PASSWORD_STORE_KEY", store.keys.two.fingerprint)
    backend.set("dev", ITEM)
    path = store.store / "broker" / "dev.gpg"
    assert recipient_key_ids(path.read_bytes()) == [store.keys.two.subkey_id]
    assert backend.describe()["gpg-id"] == "PASSWORD_STORE_KEY"


def test_unknown_recipient_is_a_clear_error(store: Any) -> None:
    (store.store / ".gpg-id").write_text("nobody@example.invalid\n")
    with pytest.raises(BackendError) as raised:
        store.backend().set("dev", ITEM)
    assert "nobody@example.invalid" in raised.value.message
    assert "no public key" in raised.value.message
    assert not (store.store / "broker").exists()


def test_untrusted_recipient_is_a_clear_error(store: Any) -> None:
    store.gpg("--import-ownertrust", input=f"{store.keys.one.fingerprint}:2:\n")
    with pytest.raises(BackendError) as raised:
        store.backend().set("dev", ITEM)
    assert "not trusted" in raised.value.message
    assert "gpg --edit-key" in raised.value.hint


def test_signed_gpg_id_is_checked_when_pass_would(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpg_id = store.store / ".gpg-id"
    monkeypatch.setenv("PASSWORD_STORE_SIGNING_KEY", store.keys.one.fingerprint)
    with pytest.raises(BackendError, match="signature"):
        store.backend().set("dev", ITEM)  # no .gpg-id.sig at all
    store.gpg("--pinentry-mode", "loopback", "--passphrase-fd", "0", "--detach-sign",
              "-o", f"{gpg_id}.sig", str(gpg_id), input=store.keys.one.passphrase)
    store.backend().set("dev", ITEM)
    gpg_id.write_text(store.keys.two.fingerprint + "\n")  # changed after signing
    with pytest.raises(BackendError, match="signature"):
        store.backend().set("dev", ITEM)


# -- git ---------------------------------------------------------------------------------


def git(store: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(store), *args], capture_output=True,
                          encoding="utf-8", errors="replace", check=True, timeout=60).stdout


def test_git_store_commits_each_change_even_without_an_identity(store: Any) -> None:
    git(store.store, "init", "-q")
    # git may not guess an identity: this store insists on a configured one
    git(store.store, "config", "user.useConfigOnly", "true")
    backend = store.backend()
    backend.set("dev", ITEM)
    backend.set("dev", ITEM.replace(region="ap-northeast-1"))
    backend.set("team/prod", ITEM)
    assert backend.delete("dev") is True
    log = git(store.store, "log", "--format=%an|%s")
    assert log.splitlines() == [
        "broker|Remove broker/dev from store.",
        "broker|Add given password for broker/team/prod to store.",
        "broker|Add given password for broker/dev to store.",
        "broker|Add given password for broker/dev to store.",
    ]
    assert git(store.store, "status", "--porcelain", "--", "broker") == ""
    assert SECRET not in git(store.store, "log", "-p", "--all")
    assert backend.describe()["git"] == "commits each change"


def test_git_identity_from_the_environment_is_used(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    git(store.store, "init", "-q")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Me Myself")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "me@example.test")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Me Myself")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "me@example.test")
    store.backend().set("dev", ITEM)
    assert git(store.store, "log", "--format=%an <%ae>").strip() == "Me Myself <me@example.test>"


def test_only_the_entry_is_committed(store: Any) -> None:
    git(store.store, "init", "-q")
    (store.store / "staged-by-user").write_text("x")
    git(store.store, "add", "staged-by-user")
    store.backend().set("dev", ITEM)
    assert git(store.store, "show", "--name-only", "--format=").split() == ["broker/dev.gpg"]
    assert "A  staged-by-user" in git(store.store, "status", "--porcelain")


def test_without_git_nothing_is_committed(store: Any) -> None:
    store.backend().set("dev", ITEM)
    assert not (store.store / ".git").exists()
    assert store.backend().describe()["git"].startswith("no")


# -- availability ------------------------------------------------------------------------


def test_available_when_initialised(store: Any) -> None:
    assert store.backend().availability().ok


def test_unavailable_without_gpg(store: Any) -> None:
    availability = store.backend(gpg="/nonexistent/gpg").availability()
    assert not availability.ok
    assert "not found" in availability.reason and "GnuPG" in availability.reason


def test_unavailable_without_a_store(env: Any) -> None:
    availability = env.backend().availability()
    assert not availability.ok
    assert str(env.store) in availability.reason
    assert "run `pass init <gpg-id>`" in availability.reason
    with pytest.raises(BackendError, match="no password store"):
        env.backend().set("dev", ITEM)


def test_unavailable_without_gpg_id(env: Any) -> None:
    env.store.mkdir()
    availability = env.backend().availability()
    assert not availability.ok
    assert "no .gpg-id — run `pass init <gpg-id>`" in availability.reason
    with pytest.raises(BackendError) as raised:
        env.backend().set("dev", ITEM)
    assert "pass init" in raised.value.hint
    assert raised.value.exit_code == 6


def test_unavailable_when_gpg_id_names_no_key(env: Any) -> None:
    env.init_store()
    (env.store / ".gpg-id").write_text("# nothing yet\n\n")
    availability = env.backend().availability()
    assert not availability.ok and "names no GPG key" in availability.reason


def test_unavailable_without_a_usable_secret_key(store: Any) -> None:
    store.gpg("--yes", "--delete-secret-keys", store.keys.one.fingerprint)
    availability = store.backend().availability()
    assert not availability.ok
    assert "no usable secret key" in availability.reason
    assert store.keys.one.fingerprint in availability.reason
    (store.store / ".gpg-id").write_text("nobody@example.invalid\n")
    assert "no usable secret key" in store.backend().availability().reason


def test_a_gpg_group_in_gpg_id_is_understood(store: Any) -> None:
    conf = Path(store.gnupghome) / "gpg.conf"
    conf.write_text(conf.read_text() + f"group team = {store.keys.one.fingerprint}\n")
    (store.store / ".gpg-id").write_text("team\n")
    assert store.backend().availability().ok


def test_availability_never_raises(store: Any) -> None:
    (store.store / ".gpg-id").unlink()
    (store.store / ".gpg-id").mkdir()  # nonsense, but no exception
    assert not store.backend().availability().ok


# -- describe, and the lost-key recovery ---------------------------------------------------


def test_describe_values_are_strings(store: Any) -> None:
    backend = store.backend()
    backend.set("dev", ITEM)
    facts = backend.describe()
    assert all(isinstance(v, str) for v in facts.values())
    assert facts["store"] == str(store.store)
    assert facts["prefix"] == "broker/"
    assert facts["recipients"] == store.keys.one.fingerprint
    assert facts["gpg-id"] == str(store.store / ".gpg-id")
    # the made-up test: scheme is no installed plugin's, so it is not echoed (see secrets.shown)
    from broker.secrets import shown

    assert facts["passphrase"].startswith(shown(store.passphrase_ref))
    assert facts["entries"] == "1"
    assert "unreadable" not in facts
    assert PassBackend().describe()["passphrase"] == "gpg-agent and pinentry"


def test_describe_reports_entries_encrypted_to_a_lost_key(store: Any) -> None:
    backend = store.backend()
    backend.set("dev", ITEM)
    lost = store.store / "broker" / "old"
    lost.mkdir()
    (lost / ".gpg-id").write_text(store.keys.two.fingerprint + "\n")
    backend.set("old/prod", ITEM)
    backend.set("old/staging", ITEM)
    assert "unreadable" not in backend.describe()
    store.gpg("--yes", "--delete-secret-keys", store.keys.two.fingerprint)

    facts = store.backend().describe()
    assert facts["unreadable"].startswith("old/prod, old/staging — ")
    assert store.keys.two.subkey_id in facts["unreadable"]
    assert "dev" not in facts["unreadable"].split(" — ")[0]
    assert store.backend().availability().ok  # key one still reads the rest

    with pytest.raises(BackendError) as raised:
        store.backend().get("old/prod")
    assert raised.value.exit_code == 6
    assert "no secret key here can decrypt broker/old/prod" in raised.value.message
    assert store.keys.two.subkey_id in raised.value.message
    assert "broker backend show pass" in raised.value.hint
    assert store.backend().get("dev") == ITEM


def test_describe_counts_no_hidden_recipient_as_lost(store: Any) -> None:
    path = store.store / "broker" / "hidden.gpg"
    path.parent.mkdir()
    store.gpg("--hidden-recipient", store.keys.two.fingerprint, "-e", "-o", str(path),
              input=SECRET)
    store.gpg("--yes", "--delete-secret-keys", store.keys.two.fingerprint)
    assert "unreadable" not in store.backend().describe()


# -- resolve ---------------------------------------------------------------------------


def test_resolve_reads_the_first_line_from_the_store_root(store: Any) -> None:
    personal = store.store / "personal"
    personal.mkdir()
    store.gpg("-e", "-r", store.keys.one.fingerprint, "-o", str(personal / "token.gpg"),
              input="tok-123\nuser: me\n")
    backend = store.backend()
    assert backend.resolve("pass:personal/token") == "tok-123"
    backend.set("dev", ITEM)
    assert backend.resolve("pass:broker/dev") == SECRET
    with pytest.raises(NotFound):
        backend.resolve("pass:personal/missing")
    with pytest.raises(BackendError):
        backend.resolve("pass:../outside")


def test_armored_entries_are_read_and_their_recipients_known(store: Any) -> None:
    # pass writes ASCII armour when gpg.conf says `armor`; both forms must work
    path = store.store / "broker" / "armored.gpg"
    path.parent.mkdir()
    one, two = store.keys.one, store.keys.two
    store.gpg("--armor", "-e", "-r", one.fingerprint, "-r", two.fingerprint, "-o", str(path),
              input=f"{SECRET}\naws_access_key_id: AKIAIOSFODNN7EXAMPLE\n")
    assert path.read_bytes().startswith(b"-----BEGIN PGP MESSAGE-----")
    assert sorted(recipient_key_ids(path.read_bytes()) or []) == sorted(
        [one.subkey_id, two.subkey_id]
    )
    assert store.backend().get("armored") == Item(
        aws_secret_access_key=SECRET, aws_access_key_id="AKIAIOSFODNN7EXAMPLE"
    )
    assert recipient_key_ids(b"not an OpenPGP message") is None
