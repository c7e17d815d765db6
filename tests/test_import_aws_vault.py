"""`broker import aws-vault`: its pass, file and keyctl stores, in their exact formats.

The fixtures are written here the way aws-vault (through 99designs/keyring)
writes them: a real `pass` store filled with `pass insert -m`, JWE files made
with jwcrypto, ``user`` keys in a named kernel keyring. The target is the test
home's default backend, the kernel keyring.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, TOTP, Item
from broker.importers.aws_vault import skip_reason
from broker.testing.gnupg import throwaway_gnupg_home
from tests.conftest import ACCOUNT, BIN
from tests.support.pass_store import pass_run
from tests.support.stores import Stores, table_rows

DEV = ("AKIAVAULTDEV00000001", "vault/dev+Secret=0123456789abcdefghijkl")
BASE = ("AKIAVAULTBASE0000002", "vault/base+Secret=0123456789abcdefghijk")
CI = ("AKIAVAULTCI000000003", "vault/ci+Secret=0123456789abcdefghijklm")
PASSPHRASE = "file store passphrase ✓"


def credentials_json(key: tuple[str, str], token: str = "") -> bytes:
    """The Go SDK's aws.Credentials, as encoding/json writes it."""
    return json.dumps(
        {
            "AccessKeyID": key[0], "SecretAccessKey": key[1], "SessionToken": token,
            "Source": "", "CanExpire": bool(token), "Expires": "0001-01-01T00:00:00Z",
        },
        separators=(",", ":"),
    ).encode()


def keyring_item(name: str, data: bytes) -> bytes:
    """99designs/keyring's Item as JSON: []byte Data is base64 (standard, padded)."""
    return json.dumps(
        {
            "Key": name, "Data": base64.b64encode(data).decode(), "Label": f"aws-vault ({name})",
            "Description": "", "KeychainNotTrustApplication": True,
            "KeychainNotSynchronizable": False,
        },
        separators=(",", ":"),
    ).encode()


def session_name(profile: str, mfa: str = "", kind: str = "sts.GetSessionToken") -> str:
    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    return f"{kind},{b64(profile)},{b64(mfa)},1900000000"


def expected(key: tuple[str, str], mfa_user: str | None = None) -> Item:
    fields = {ACCESS_KEY_ID: key[0], SECRET_ACCESS_KEY: key[1]}
    if mfa_user:
        fields[MFA_SERIAL] = f"arn:aws:iam::{ACCOUNT}:mfa/{mfa_user}"
    return Item(fields)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.fixture
def stores(in_home, monkeypatch, capsys, tmp_path) -> Iterator[Stores]:
    made = Stores(in_home, monkeypatch, capsys, tmp_path)
    made.provide("keyctl")
    yield made
    made.close()


class VaultPass:
    def __init__(self, stores: Stores, root: Path) -> None:
        exits = contextlib.ExitStack()
        stores.cleanups.append(exits.close)
        self.gnupg = exits.enter_context(throwaway_gnupg_home())
        stores.setenv("GNUPGHOME", str(self.gnupg.path))
        self.store = root / "vault-store"
        pass_run(self.gnupg, self.store, "init", self.gnupg.key.uid)

    def insert(self, name: str, data: bytes) -> None:
        pass_run(self.gnupg, self.store, "insert", "-m", name, input=data)

    def names(self) -> set[str]:
        return {str(p.relative_to(self.store))[:-4] for p in self.store.rglob("*.gpg")}


@pytest.fixture
def vault_pass(stores: Stores, tmp_path: Path) -> VaultPass:
    """aws-vault's pass backend with its default (empty) prefix, among other passwords."""
    vault = VaultPass(stores, tmp_path)
    vault.insert("dev", keyring_item("dev", credentials_json(DEV)))
    vault.insert("base", keyring_item("base", credentials_json(BASE)))
    name = session_name("dev", f"arn:aws:iam::{ACCOUNT}:mfa/dev-user")
    vault.insert(name, keyring_item(name, credentials_json(("ASIASESSION", "s"), "tok")))
    name = session_name("base", kind="sts.AssumeRole")
    vault.insert(name, keyring_item(name, credentials_json(("ASIASESSION", "s"), "tok")))
    vault.insert("plain", b"a password that is not aws-vault's\n")  # named like a profile
    vault.insert("github", b"hunter2\n")
    vault.insert("email/gmail", b"hunter3\n")
    return vault


def test_pass_store(stores: Stores, vault_pass: VaultPass) -> None:
    before = snapshot(vault_pass.store)
    code, out, err = stores.broker(
        "import", "aws-vault", "--backend", "pass", "--pass-dir", str(vault_pass.store)
    )
    assert code == 0, err
    rows = table_rows(out)
    assert set(rows) == {"dev", "base", "plain"}
    assert rows["dev"].split()[:2] == ["imported", "keyctl"]
    assert "ap-northeast-1" in rows["dev"]
    assert rows["plain"].startswith("skipped") and "not an aws-vault credential" in rows["plain"]
    assert stores.backend("keyctl").get("dev") == expected(DEV, "dev-user")
    assert stores.backend("keyctl").get("base") == expected(BASE, "base-user")
    assert stores.backend("keyctl").get("plain") is None
    assert "left out 2 cached session(s) and 0 SSO token(s)" in err
    assert "left out 1 other entry" in err  # github; email/gmail is not at the top
    assert snapshot(vault_pass.store) == before  # aws-vault's side untouched
    for secret in (DEV[1], BASE[1], "hunter2"):
        assert secret not in out + err

    code, out, err = stores.broker(
        "import", "aws-vault", "--backend", "pass", "--pass-dir", str(vault_pass.store)
    )
    assert code == 0, err
    assert table_rows(out)["dev"].startswith("already there")


def test_pass_prefix_from_the_environment_and_delete_source(
    stores: Stores, tmp_path: Path
) -> None:
    vault = VaultPass(stores, tmp_path)
    vault.insert("aws-vault/dev", keyring_item("dev", credentials_json(DEV)))
    vault.insert("aws-vault/ci", keyring_item("ci", credentials_json(CI)))
    session = f"aws-vault/{session_name('dev')}"
    vault.insert(session, keyring_item(session, credentials_json(("ASIAX", "s"), "tok")))
    vault.insert("github", b"hunter2\n")
    stores.setenv("AWS_VAULT_PASS_PASSWORD_STORE_DIR", str(vault.store))
    stores.setenv("AWS_VAULT_PASS_PREFIX", "aws-vault")
    stores.setenv("AWS_VAULT_BACKEND", "pass")

    code, out, err = stores.broker("import", "aws-vault", "--delete-source", "--memory-only")
    assert code == 0, err
    rows = table_rows(out)
    assert rows["dev"].startswith("imported, deleted from aws-vault")
    assert "no [profile ci]" in rows["ci"]
    assert stores.backend("keyctl").get("ci") == expected(CI)
    assert vault.names() == {session, "github"}  # only the credentials left


def test_conflict_dry_run_and_overwrite(stores: Stores, vault_pass: VaultPass) -> None:
    mine = Item({
        ACCESS_KEY_ID: "AKIAALREADYINBROKER1", SECRET_ACCESS_KEY: "secret-already-in-broker",
        TOTP: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    })
    stores.backend("keyctl").set("dev", mine)
    args = ["import", "aws-vault", "--backend", "pass", "--pass-dir", str(vault_pass.store)]

    code, out, err = stores.broker(*args)
    assert code == 2
    assert "dev (aws_access_key_id, aws_secret_access_key)" in err and "--overwrite" in err
    assert DEV[1] not in err + out and "secret-already-in-broker" not in err + out
    assert stores.backend("keyctl").get("base") is None  # nothing written

    code, out, err = stores.broker(*args, "--overwrite", "--dry-run")
    assert code == 0, err
    assert table_rows(out)["dev"].startswith("would overwrite")
    assert table_rows(out)["base"].startswith("would import")
    assert stores.backend("keyctl").get("dev") == mine
    assert stores.backend("keyctl").get("base") is None

    code, out, err = stores.broker(*args, "--overwrite")
    assert code == 0, err
    assert stores.backend("keyctl").get("dev") == expected(DEV, "dev-user").replace(
        totp=mine[TOTP]  # what broker knew beyond the key is kept
    )


def test_import_then_use_from_a_subprocess(stores: Stores, vault_pass: VaultPass, sts) -> None:
    home = stores.home
    result = home.run("import", "aws-vault", "--backend", "pass", "--pass-dir",
                      str(vault_pass.store), "--profile", "dev")
    assert result.returncode == 0, result.stderr
    assert set(table_rows(result.stdout)) == {"dev"}
    exported = home.run("export", "dev", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    gst, = sts.actions("GetSessionToken")
    assert gst["SerialNumber"] == f"arn:aws:iam::{ACCOUNT}:mfa/dev-user"


# -- the file backend -------------------------------------------------------------------


def jwe_file(directory: Path, name: str, data: bytes, passphrase: str = PASSPHRASE) -> Path:
    """What keyring's file backend writes: the Item JSON as a compact JWE."""
    from jwcrypto import jwe, jwk

    token = jwe.JWE(
        keyring_item(name, data),
        protected=json.dumps(
            {"alg": "PBES2-HS256+A128KW", "enc": "A256GCM", "p2c": 8192,
             "created": "2024-05-01 10:00:00.000000 +0000 UTC"}
        ),
    )
    token.add_recipient(jwk.JWK.from_password(passphrase))
    # keyring percent-encodes "/" (and "%") in file names
    path = directory / urllib.parse.quote(name, safe=" ,:=+@")
    path.write_text(token.serialize(compact=True))
    path.chmod(0o600)
    return path


@pytest.fixture
def vault_files(tmp_path: Path) -> Path:
    directory = tmp_path / "awsvault-keys"
    directory.mkdir(mode=0o700)
    jwe_file(directory, "dev", credentials_json(DEV))
    jwe_file(directory, "base", credentials_json(BASE))
    jwe_file(directory, session_name("dev"), credentials_json(("ASIAX", "s"), "tok"))
    oidc = json.dumps({"Token": {"AccessToken": "x"}, "Expiration": "2030-01-01T00:00:00Z"})
    jwe_file(directory, "oidc:https://example.awsapps.com/start", oidc.encode())
    return directory


def test_file_store(stores: Stores, vault_files: Path) -> None:
    assert (vault_files / "oidc:https:%2F%2Fexample.awsapps.com%2Fstart").exists()
    before = snapshot(vault_files)
    stores.setenv("AWS_VAULT_FILE_PASSPHRASE", PASSPHRASE)
    code, out, err = stores.broker(
        "import", "aws-vault", "--backend", "file", "--file-dir", str(vault_files)
    )
    assert code == 0, err
    assert set(table_rows(out)) == {"dev", "base"}
    assert stores.backend("keyctl").get("dev") == expected(DEV, "dev-user")
    assert "left out 1 cached session(s) and 1 SSO token(s)" in err
    assert snapshot(vault_files) == before

    code, out, err = stores.broker(
        "import", "aws-vault", "--backend", "file", "--file-dir", str(vault_files),
        "--delete-source", "--memory-only", "--profile", "dev",
    )
    assert code == 0, err
    assert not (vault_files / "dev").exists() and (vault_files / "base").exists()
    assert len(list(vault_files.iterdir())) == 3


def test_file_store_wrong_or_missing_passphrase(stores: Stores, vault_files: Path) -> None:
    stores.setenv("AWS_VAULT_FILE_PASSPHRASE", "not it")
    args = ["import", "aws-vault", "--backend", "file", "--file-dir", str(vault_files)]
    code, _, err = stores.broker(*args)
    assert code == 8 and "wrong passphrase" in err
    assert stores.backend("keyctl").get("base") is None

    env = {k: v for k, v in stores.home.env.items() if k != "AWS_VAULT_FILE_PASSPHRASE"}
    result = subprocess.run(  # a new session: no terminal to prompt on
        [str(BIN / "broker"), *args], env=env, capture_output=True, text=True, timeout=60,
        start_new_session=True, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 8, result.stderr
    assert "AWS_VAULT_FILE_PASSPHRASE" in result.stderr and "Traceback" not in result.stderr


# -- the keyctl backend ---------------------------------------------------------------


@pytest.fixture
def vault_keyring() -> Iterator[str]:
    """A throwaway keyring in @u shaped like aws-vault's (default permissions)."""
    from broker_keyctl import _native

    ops = _native.load()
    name = f"aws-vault-test-{uuid.uuid4().hex[:10]}"
    ring = ops.add_key(b"keyring", name.encode(), b"", -4)
    made = [ring]
    for key_name, data in [
        ("dev", credentials_json(DEV)),
        ("base", credentials_json(BASE)),
        (session_name("dev"), credentials_json(("ASIAX", "s"), "tok")),
        ("oidc:https://example.awsapps.com/start", b'{"Token":{}}'),
    ]:
        made.append(ops.add_key(b"user", key_name.encode(), data, ring))
    yield name
    for serial in made[1:]:
        try:
            ops.invalidate(serial)
        except OSError:
            continue
    ops.clear(ring)
    ops.unlink(ring, -4)


def test_keyctl_store(stores: Stores, vault_keyring: str) -> None:
    args = ["import", "aws-vault", "--backend", "keyctl", "--keyctl-keyring", vault_keyring]
    code, out, err = stores.broker(*args)
    assert code == 0, err
    assert set(table_rows(out)) == {"dev", "base"}
    assert stores.backend("keyctl").get("base") == expected(BASE, "base-user")
    assert "left out 1 cached session(s) and 1 SSO token(s)" in err

    code, out, err = stores.broker(*args, "--delete-source")
    assert code == 0, err
    assert all("already there, deleted from aws-vault" in r for r in table_rows(out).values())
    from broker.importers.aws_vault import KeyctlStore

    assert KeyctlStore(vault_keyring).names() == sorted(
        [session_name("dev"), "oidc:https://example.awsapps.com/start"]
    )


def test_backend_detection(stores: Stores, vault_files: Path, vault_keyring: str, tmp_path) -> None:
    stores.setenv("AWS_VAULT_FILE_PASSPHRASE", PASSPHRASE)
    nowhere = ["--pass-dir", str(tmp_path / "no-store")]
    code, out, err = stores.broker(
        "import", "aws-vault", "--dry-run", "--file-dir", str(vault_files), *nowhere,
        "--keyctl-keyring", f"absent-{uuid.uuid4().hex}",
    )
    assert code == 0, err
    assert f"aws-vault's file backend ({vault_files})" in err
    assert set(table_rows(out)) == {"dev", "base"}
    assert stores.backend("keyctl").get("dev") is None  # a dry run

    code, _, err = stores.broker(
        "import", "aws-vault", "--file-dir", str(vault_files), *nowhere,
        "--keyctl-keyring", vault_keyring,
    )
    assert code == 2 and "several backends here: file, keyctl" in err
    code, _, err = stores.broker(
        "import", "aws-vault", "--file-dir", str(tmp_path / "none"), *nowhere,
        "--keyctl-keyring", f"absent-{uuid.uuid4().hex}",
    )
    assert code == 2 and "found no aws-vault credentials" in err


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("dev", None),
        ("team.prod-admin", None),
        (session_name("dev", "arn:aws:iam::1:mfa/x"), "session"),
        (session_name("dev", kind="sts.AssumeRole"), "session"),
        ("session,ZGV2,,1600000000", "session"),
        ("session:dev:arn:aws:iam::1:mfa/x:1600000000", "session"),
        ("dev session (1600000000)", "session"),
        ("oidc:https://example.awsapps.com/start", "oidc"),
    ],
)
def test_skip_reason(name: str, reason: str | None) -> None:
    assert skip_reason(name) == reason


def test_nothing_secret_in_argv_of_pass(stores: Stores, vault_pass: VaultPass, monkeypatch) -> None:
    seen: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(args, *a, **k):
        seen.append([str(x) for x in args])
        return real_run(args, *a, **k)

    monkeypatch.setattr(subprocess, "run", recording_run)
    code, _, err = stores.broker(
        "import", "aws-vault", "--backend", "pass", "--pass-dir", str(vault_pass.store),
        "--delete-source", "--memory-only",
    )
    assert code == 0, err
    assert any(a[-2:] == ["show", "dev"] for a in seen)
    assert any(a[-3:] == ["rm", "--force", "dev"] for a in seen)
    assert not any(DEV[1] in " ".join(a) or DEV[0] in " ".join(a) for a in seen)


def test_file_store_entry_that_is_not_aws_vaults(stores: Stores, vault_files: Path) -> None:
    (vault_files / "plain").write_text("not a JWE at all\n")
    stores.setenv("AWS_VAULT_FILE_PASSPHRASE", PASSPHRASE)
    code, out, err = stores.broker(
        "import", "aws-vault", "--backend", "file", "--file-dir", str(vault_files)
    )
    assert code == 0, err
    rows = table_rows(out)
    assert rows["plain"].startswith("skipped") and "not a JWE" in rows["plain"]
    assert rows["dev"].startswith("imported")
