"""`broker import credentials-file`: plaintext keys out of ~/.aws/credentials."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, Item
from broker.errors import ConfigError
from broker.importers.credentials_file import parse, remove_section, without_section
from broker.testing.memory import MemoryBackend
from tests.conftest import ACCOUNT
from tests.support.stores import Stores, table_rows

DEFAULT_KEY = ("AKIADEFAULT000000001", "default/secret+0123456789abcdefghijklm")
DEV_KEY = ("AKIADEVPLAINTEXT0002", "dev/secret+0123456789abcdefghijklmnop")

CREDENTIALS = f"""\
# My AWS keys, by hand
[default]
aws_access_key_id = {DEFAULT_KEY[0]}
aws_secret_access_key = {DEFAULT_KEY[1]}

# the dev user's key, made 2024-01
[dev]
# rotated every 90 days
aws_access_key_id={DEV_KEY[0]}
aws_secret_access_key={DEV_KEY[1]}
; after dev's keys

# temporary, pasted from the console
[temp]
aws_access_key_id = ASIATEMPORARY0000003
aws_secret_access_key = temp/secret
aws_session_token = tokentoken

[cp]
credential_process = /bin/false
"""

WITHOUT_DEFAULT_AND_DEV = """\
# My AWS keys, by hand

# the dev user's key, made 2024-01
; after dev's keys

# temporary, pasted from the console
[temp]
aws_access_key_id = ASIATEMPORARY0000003
aws_secret_access_key = temp/secret
aws_session_token = tokentoken

[cp]
credential_process = /bin/false
"""


@pytest.fixture
def stores(in_home, monkeypatch, capsys, tmp_path) -> Iterator[Stores]:
    made = Stores(in_home, monkeypatch, capsys, tmp_path)
    made.provide("keyctl")
    yield made
    made.close()


@pytest.fixture
def credentials(stores: Stores) -> Path:
    path = Path(stores.home.env["AWS_SHARED_CREDENTIALS_FILE"])
    path.write_text(CREDENTIALS)
    path.chmod(0o640)
    return path


def item(key: tuple[str, str], mfa_user: str | None = None) -> Item:
    fields = {ACCESS_KEY_ID: key[0], SECRET_ACCESS_KEY: key[1]}
    if mfa_user:
        fields[MFA_SERIAL] = f"arn:aws:iam::{ACCOUNT}:mfa/{mfa_user}"
    return Item(fields)


def test_import_keeps_the_file_by_default(stores: Stores, credentials: Path) -> None:
    code, out, err = stores.broker("import", "credentials-file")
    assert code == 0, err
    rows = table_rows(out)
    assert rows["default"].startswith("imported") and rows["dev"].startswith("imported")
    assert rows["temp"].startswith("skipped") and "session token" in rows["temp"]
    assert rows["cp"].startswith("skipped")
    assert stores.backend("keyctl").get("default") == item(DEFAULT_KEY)
    assert stores.backend("keyctl").get("dev") == item(DEV_KEY, "dev-user")
    assert stores.backend("keyctl").get("temp") is None
    assert credentials.read_text() == CREDENTIALS
    assert "still in" in err and "--remove-plaintext" in err
    assert DEV_KEY[1] not in out + err


def test_remove_plaintext(stores: Stores, credentials: Path) -> None:
    original = credentials.parent.parent / "original-link"
    original.hardlink_to(credentials)  # keeps the first version if the file is replaced
    code, out, err = stores.broker(
        "import", "credentials-file", "--remove-plaintext", "--memory-only",
    )
    assert code == 0, err
    assert table_rows(out)["dev"].startswith("imported, plaintext removed")
    assert credentials.read_text() == WITHOUT_DEFAULT_AND_DEV
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o640
    assert original.read_text() == CREDENTIALS  # replaced by a rename, not edited in place
    assert sorted(p.name for p in credentials.parent.iterdir()) == ["config", "credentials"]
    assert stores.backend("keyctl").get("dev") == item(DEV_KEY, "dev-user")


def test_profiles_and_dry_run(stores: Stores, credentials: Path) -> None:
    code, out, err = stores.broker(
        "import", "credentials-file", "--profile", "dev", "--profile", "nosuch",
        "--remove-plaintext", "--memory-only", "--dry-run",
    )
    assert code == 0, err
    assert table_rows(out)["dev"].startswith("would import")
    assert credentials.read_text() == CREDENTIALS
    assert stores.backend("keyctl").get("dev") is None

    code, out, err = stores.broker(
        "import", "credentials-file", "--profile", "dev", "--profile", "nosuch",
        "--remove-plaintext", "--memory-only",
    )
    assert code == 0, err
    rows = table_rows(out)
    assert set(rows) == {"dev", "nosuch"} and rows["nosuch"].startswith("skipped")
    assert "[dev]" not in credentials.read_text() and "[default]" in credentials.read_text()


def test_verification_failure_keeps_the_plaintext(stores: Stores, credentials: Path) -> None:
    class Lossy(MemoryBackend):
        name = "lossy"

        def set(self, name, item, *, expires_at=None):
            super().set(name, item.replace(mfa_serial=None), expires_at=expires_at)

    stores.extra["lossy"] = Lossy
    stores.add_config(f'[backends.lossy]\nstore = "{uuid.uuid4().hex}"')
    code, _, err = stores.broker(
        "import", "credentials-file", "--remove-plaintext", "--memory-only", "--to", "lossy"
    )
    assert code == 6 and "mfa_serial" in err
    text = credentials.read_text()
    assert "[default]" not in text  # verified, so removed; then dev failed to verify:
    assert f"aws_secret_access_key={DEV_KEY[1]}" in text


def test_conflict_names_fields(stores: Stores, credentials: Path) -> None:
    stores.backend("keyctl").set("dev", item(("AKIAOTHERKEY00000009", "other")))
    code, _, err = stores.broker(
        "import", "credentials-file", "--remove-plaintext", "--memory-only",
    )
    assert code == 2 and "dev (aws_access_key_id, aws_secret_access_key)" in err
    assert credentials.read_text() == CREDENTIALS
    assert stores.backend("keyctl").get("default") is None


def test_symlinked_file_is_rewritten_where_it_lives(stores: Stores, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "aws-credentials"
    real.parent.mkdir()
    real.write_text(CREDENTIALS)
    link = Path(stores.home.env["AWS_SHARED_CREDENTIALS_FILE"])
    link.symlink_to(real)
    code, _, err = stores.broker(
        "import", "credentials-file", "--remove-plaintext", "--memory-only",
    )
    assert code == 0, err
    assert link.is_symlink()
    assert real.read_text() == WITHOUT_DEFAULT_AND_DEV


def test_end_to_end_then_export(stores: Stores, credentials: Path, sts) -> None:
    result = stores.home.run("import", "credentials-file", "--remove-plaintext", "--memory-only")
    assert result.returncode == 0, result.stderr
    exported = stores.home.run("export", "default", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    assert DEFAULT_KEY[0] not in credentials.read_text()


def test_missing_file(stores: Stores) -> None:
    code, _, err = stores.broker("import", "credentials-file")
    assert code == 2 and "does not exist" in err


@pytest.mark.parametrize(
    ("text", "name", "result"),
    [
        ("[a]\nk = 1\n[b]\nk = 2\n", "b", "[a]\nk = 1\n"),
        ("[a]\r\nk = 1\r\n\r\n[b]\r\nk = 2\r\n", "a", "\r\n[b]\r\nk = 2\r\n"),
        ("[ a ]\nk = 1\n  continued\n# kept\n[b]\n", "a", "# kept\n[b]\n"),
        ("[a]\nk = 1\n", "zzz", "[a]\nk = 1\n"),
    ],
)
def test_without_section(text: str, name: str, result: str) -> None:
    assert without_section(text, name) == result


def test_remove_section_leaves_a_changed_key_alone(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text(CREDENTIALS)
    assert remove_section(path, "dev", "AKIANOTTHEONEIMPORTED") is False
    assert path.read_text() == CREDENTIALS
    assert remove_section(path, "dev", DEV_KEY[0]) is True
    assert "[dev]" not in path.read_text()


# --- the file is edited by broker's one INI editor, under its rules ----------------------

A_KEY, B_KEY = "AKIAFIRSTSECTION0001", "AKIASECONDSECTION002"


def _remove(tmp_path: Path, text: str, name: str, key_id: str) -> tuple[bool, str]:
    path = tmp_path / "credentials"
    path.write_bytes(text.encode("utf-8"))
    removed = remove_section(path, name, key_id)
    return removed, path.read_bytes().decode("utf-8")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_each_line_keeps_its_ending_a_lone_cr_included(tmp_path: Path, newline: str) -> None:
    lines = ["# keys", "[a]", f"aws_access_key_id = {A_KEY}", "aws_secret_access_key = s",
             "# about b", "[b]", f"aws_access_key_id = {B_KEY}", "aws_secret_access_key = t"]
    text = newline.join(lines) + newline
    removed, after = _remove(tmp_path, text, "a", A_KEY)
    assert removed
    assert after == newline.join([lines[0], *lines[4:]]) + newline


def test_a_blank_line_after_a_lone_cr_does_not_merge_into_it(tmp_path: Path) -> None:
    text = f"[b]\rx = 1\r[a]\naws_access_key_id = {A_KEY}\n\n[c]\ny = 2\n"
    removed, after = _remove(tmp_path, text, "a", A_KEY)
    assert removed
    assert after == "[b]\rx = 1\r\r[c]\ny = 2\n"
    assert [s.name for s in parse(after, tmp_path)] == ["b", "c"]


def test_a_byte_order_mark_is_read_past_and_kept(tmp_path: Path) -> None:
    text = f"\ufeff[a]\naws_access_key_id = {A_KEY}\n[b]\naws_access_key_id = {B_KEY}\n"
    assert [s.name for s in parse(text, tmp_path)] == ["a", "b"]
    removed, after = _remove(tmp_path, text, "a", A_KEY)
    assert removed and after == f"\ufeff[b]\naws_access_key_id = {B_KEY}\n"


def test_of_two_sections_read_as_one_name_the_later_is_the_one_checked_and_removed(
    tmp_path: Path,
) -> None:
    text = f"[dev]\naws_access_key_id = {A_KEY}\n[ dev ]\naws_access_key_id = {B_KEY}\n"
    assert {s.name: s for s in parse(text, tmp_path)}["dev"].access_key_id == B_KEY
    removed, after = _remove(tmp_path, text, "dev", A_KEY)
    assert not removed and after == text  # the key read for dev is B, not A
    removed, after = _remove(tmp_path, text, "dev", B_KEY)
    assert removed and after == f"[dev]\naws_access_key_id = {A_KEY}\n"


def test_a_removal_that_would_change_another_section_is_refused(tmp_path: Path) -> None:
    # Without [b]'s deeper-indented setting above it, "  [c]" would continue a's setting.
    text = f"[a]\nx = 1\n[b]\n    aws_access_key_id = {B_KEY}\n  [c]\n  y = 2\n"
    path = tmp_path / "credentials"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"cannot remove \[b\]"):
        remove_section(path, "b", B_KEY)
    assert path.read_text() == text


def test_the_mode_is_kept_and_an_unchanged_file_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text(f"[a]\naws_access_key_id = {A_KEY}\n[b]\nx = 1\n")
    path.chmod(0o640)
    before = path.stat().st_ino
    assert remove_section(path, "zzz", A_KEY) is False
    assert path.stat().st_ino == before
    assert remove_section(path, "a", A_KEY) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.stat().st_ino != before


def test_a_missing_file_is_left_missing(tmp_path: Path) -> None:
    assert remove_section(tmp_path / "none", "a", A_KEY) is False
    assert not (tmp_path / "none").exists()


def test_the_credentials_file_has_no_editor_of_its_own() -> None:
    """One INI editor: the credentials module splits no lines into a file's layout and
    writes no file itself; both are broker.aws.config_writer's."""
    import ast

    import broker.importers.credentials_file as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else ""
        name = name or getattr(node.func, "id", "")
        keepends = any(k.arg == "keepends" for k in node.keywords) or (
            name == "splitlines" and node.args)
        writes = name == "open" and (len(node.args) > 1 or any(
            k.arg == "mode" for k in node.keywords))
        if name in ("atomic_write", "write_bytes", "write_text", "replace_file") or (
            name == "splitlines" and keepends) or writes:
            found.append(f"{name}:{node.lineno}")
    assert found == []
