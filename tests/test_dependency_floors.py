"""Dependency floors exclude versions with known advisories on the paths broker uses,
and the aws-vault importer, which parses untrusted JWE files, limits what it parses."""

from __future__ import annotations

import base64
import json
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from broker.importers import aws_vault

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "file store passphrase"

#: jwcrypto advisories on the JWE path the importer uses, and the release that fixed each.
JWCRYPTO_FIXES = {
    "CVE-2023-6681 (PBES2 p2c)": "1.5.1",
    "CVE-2024-28102 (decompression bomb)": "1.5.6",
    "CVE-2026-39373 (plaintext size on decompression)": "1.5.7",
    "CVE-2026-80179 (JWE with many dots)": "1.5.9",
}


def _requirement(name: str) -> Requirement:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for line in data["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.name == name:
            return requirement
    raise AssertionError(f"{name} is not a dependency")


@pytest.mark.parametrize(("advisory", "fixed"), sorted(JWCRYPTO_FIXES.items()))
def test_the_jwcrypto_floor_excludes_every_affected_release(advisory, fixed):
    specifier = _requirement("jwcrypto").specifier
    last_affected = {"1.5.1": "1.5.0", "1.5.6": "1.5.5", "1.5.7": "1.5.6", "1.5.9": "1.5.8"}[fixed]
    assert not specifier.contains(last_affected), advisory
    assert specifier.contains(max(JWCRYPTO_FIXES.values(), key=Version))


def test_the_installed_jwcrypto_meets_the_floor():
    assert _requirement("jwcrypto").specifier.contains(version("jwcrypto"))


# --- the importer's own limits ------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _item(name: str = "dev") -> bytes:
    creds = json.dumps({"AccessKeyID": "AKIAFLOORS0000000000", "SecretAccessKey": "s"})
    return json.dumps({"Key": name, "Data": _b64(creds.encode())}).encode()


def _jwe(protected: dict[str, object], payload: bytes, key: object = None) -> str:
    from jwcrypto import jwe, jwk

    token = jwe.JWE(payload, protected=json.dumps(protected),
                    algs=[str(protected["alg"]), str(protected["enc"])])
    token.add_recipient(key or jwk.JWK.from_password(PASSPHRASE))
    return str(token.serialize(compact=True))


@pytest.fixture
def store(tmp_path: Path) -> aws_vault.FileStore:
    directory = tmp_path / "keys"
    directory.mkdir()
    return aws_vault.FileStore(directory, lambda: PASSPHRASE)


@pytest.fixture
def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    from jwcrypto import jwe

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the JWE parser was handed this file")

    monkeypatch.setattr(jwe.JWE, "deserialize", refuse)


def test_aws_vaults_own_format_is_read(store):
    good = {"alg": "PBES2-HS256+A128KW", "enc": "A256GCM", "p2c": 8192}
    (store.directory / "dev").write_text(_jwe(good, _item()))
    assert store.read("dev").access_key_id == "AKIAFLOORS0000000000"


def test_a_file_over_the_size_limit_is_not_parsed(store, no_parsing):
    (store.directory / "dev").write_text("a." * (aws_vault.MAX_FILE_BYTES // 2 + 1))
    with pytest.raises(aws_vault.NotAVaultItem, match="larger than 64 KiB"):
        store.read("dev")


def test_a_token_of_many_parts_is_not_parsed(store, no_parsing):
    (store.directory / "dev").write_text("." * 10_000)
    with pytest.raises(aws_vault.NotAVaultItem, match="not a JWE compact serialization"):
        store.read("dev")


def test_a_compressed_payload_is_refused(store):
    zipped = {"alg": "PBES2-HS256+A128KW", "enc": "A256GCM", "p2c": 8192, "zip": "DEF"}
    (store.directory / "dev").write_text(_jwe(zipped, _item()))
    with pytest.raises(aws_vault.NotAVaultItem, match="not encrypted the way aws-vault"):
        store.read("dev")


@pytest.mark.parametrize(("alg", "enc"), [
    ("PBES2-HS512+A256KW", "A256GCM"), ("PBES2-HS256+A128KW", "A128CBC-HS256"),
])
def test_other_algorithms_are_refused(store, alg, enc):
    (store.directory / "dev").write_text(_jwe({"alg": alg, "enc": enc, "p2c": 8192}, _item()))
    with pytest.raises(aws_vault.NotAVaultItem, match="not encrypted the way aws-vault"):
        store.read("dev")
