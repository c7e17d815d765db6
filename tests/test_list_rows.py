"""`broker list` and `broker doctor` rows: short, said once, and true about
credential_process profiles, settings-only sections, TOTP sources and memory-only keys."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from broker.backend import TOTP, Item
from broker.services import doctor
from tests.conftest import ACCOUNT, TEST_KEY_ID, TEST_SECRET
from tests.support.contexts import require_keyctl
from tests.support.stores import Stores

#: README's ~/.aws/config, with its credential_process profile.
README_CONFIG = f"""\
[default]
region = ap-northeast-1

[profile dev]
mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/me
role_arn = arn:aws:iam::{ACCOUNT}:role/developer

[profile dev-sdk]
credential_process = broker export dev --format json
region = ap-northeast-1

[profile base]
mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/base

[profile admin]
role_arn = arn:aws:iam::{ACCOUNT}:role/admin
source_profile = base
duration_seconds = soon

[profile ro]
role_arn = arn:aws:iam::{ACCOUNT}:role/ro
source_profile = base
"""
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
KEY = Item(aws_access_key_id=TEST_KEY_ID, aws_secret_access_key=TEST_SECRET)
#: Longest line a row may have: a terminal's width, not a paragraph.
WIDTH = 100


@pytest.fixture
def stores(in_home, monkeypatch, capsys, tmp_path) -> Iterator[Stores]:
    made = Stores(in_home, monkeypatch, capsys, tmp_path)
    in_home.aws_config.write_text(README_CONFIG)
    yield made
    made.close()


def _table(out: str) -> dict[str, dict[str, str]]:
    lines = out.splitlines()
    header = lines[0]
    starts = [header.index(word) for word in header.split()]
    rows = {}
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = dict(zip(header.split(), cells, strict=True))
    return rows


def test_readme_profiles_make_short_true_rows(stores: Stores) -> None:
    stores.provide("dirstore")
    stores.setenv("BROKER_BACKEND", "dirstore")
    stores.seed("dirstore", {"dev": KEY})
    code, out, err = stores.broker("list")
    assert code == 0, err
    rows = _table(out)
    # the credential_process profile is served by dev: no error, no 150-column row
    assert rows["dev-sdk"]["KEY"] == "via dev" and rows["dev-sdk"]["BACKEND"] == "dirstore"
    assert rows["dev-sdk"]["CHAIN"] == "dev -> dev-sdk"
    # a [default] holding only the region needs no key
    assert rows["default"]["KEY"] == "-"
    assert rows["dev"]["KEY"] == "stored"
    assert all(len(line) <= WIDTH for line in out.splitlines()), out
    # admin's unusable value is said once, on the profile `exec` would refuse; base's key
    # and ro, built on the same key, are unaffected
    problems = [line for line in err.splitlines() if "duration_seconds" in line]
    assert len(problems) == 1 and problems[0].startswith("admin: ")
    assert rows["admin"]["KEY"] == "error" and rows["ro"]["KEY"] == "via base"


def test_an_error_row_keeps_its_message_out_of_the_table(stores: Stores) -> None:
    stores.provide("dirstore")
    stores.setenv("BROKER_BACKEND", "dirstore")
    stores.home.aws_config.write_text(
        "[profile loop]\ncredential_process = broker export loop --format json\n"
        "[profile gone]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = nowhere\n"
    )
    code, out, err = stores.broker("list")
    assert code == 0, err
    rows = _table(out)
    assert rows["loop"]["KEY"] == "error" and rows["gone"]["KEY"] == "error"
    assert all(len(line) <= WIDTH for line in out.splitlines()), out
    assert "loop: profile 'loop' gets its credentials from broker itself" in err
    assert "gone: " in err and "[profile gone] has source_profile = 'nowhere'" in err


def test_an_unavailable_backend_is_unknown_not_missing_and_said_once(stores: Stores,
                                                                     tmp_path) -> None:
    stores.setenv("BROKER_BACKEND", "pass")
    stores.setenv("PASSWORD_STORE_DIR", str(tmp_path / "no-store"))
    code, out, err = stores.broker("list")
    assert code == 0, err
    rows = _table(out)
    assert rows["dev"]["KEY"] == "?" and rows["base"]["KEY"] == "?"
    reasons = [line for line in err.splitlines() if "no password store" in line]
    assert len(reasons) == 1 and reasons[0].startswith("pass: keys not listed: ")
    assert "pass: pass:" not in err


def test_keys_in_keyctl_are_said_to_be_lost_at_reboot(home) -> None:
    require_keyctl()
    home.aws_config.write_text(README_CONFIG)
    home.add_key("dev")
    result = home.run("list", check=True)
    rows = _table(result.stdout)
    assert rows["dev"]["KEY"] == "stored, lost at reboot"
    assert rows["dev-sdk"]["KEY"] == "via dev"
    notes = [line for line in result.stderr.splitlines() if "lost at reboot" in line]
    assert len(notes) == 1 and "broker migrate --from keyctl" in notes[0], result.stderr
    document = json.loads(home.run("list", "--json", check=True).stdout)
    assert {i["name"]: i["persistent"] for i in document}["dev"] is False


# --- where MFA codes come from ---------------------------------------------------------------


def _mfa(stores: Stores) -> dict[str, str]:
    code, out, err = stores.broker("list")
    assert code == 0, err
    return {name: row["MFA"] for name, row in _table(out).items()}


def test_a_removed_key_takes_its_stored_seed_along(stores: Stores) -> None:
    from broker.aws.mfa_ledger import MfaLedger

    stores.provide("dirstore")
    stores.setenv("BROKER_BACKEND", "dirstore")
    stores.seed("dirstore", {"dev": Item({**KEY, TOTP: SEED})})
    MfaLedger().mark_seed("dirstore", "dev", True)  # as an exec that read the seed leaves it
    assert _mfa(stores)["dev"] == "stored totp"
    code, _, err = stores.broker("remove", "dev", "--force")
    assert code == 0, err
    assert _mfa(stores)["dev"] == "prompt"
    # a key deleted behind broker's back: listed as missing, so no seed either
    stores.seed("dirstore", {"dev": KEY})
    MfaLedger().mark_seed("dirstore", "dev", True)
    stores.backend("dirstore").delete("dev")
    assert _mfa(stores)["dev"] == "prompt"


def test_an_unreadable_key_forgets_its_seed(stores: Stores) -> None:
    from broker.aws.mfa_ledger import MfaLedger
    from broker.errors import BackendError
    from tests.support.backends import DirBackend

    class Unreadable(DirBackend):
        def get(self, name: str) -> Item | None:
            raise BackendError("cannot decrypt", "the GPG key is lost")

    stores.provide("dirstore")
    stores.extra["dirstore"] = Unreadable
    stores.setenv("BROKER_BACKEND", "dirstore")
    stores.seed("dirstore", {"dev": Item({**KEY, TOTP: SEED})})
    MfaLedger().mark_seed("dirstore", "dev", True)
    code, _, err = stores.broker("export", "dev")
    assert code == 6, err
    assert _mfa(stores)["dev"] == "prompt"


def test_a_migrated_seed_shows_at_once(stores: Stores) -> None:
    stores.provide("dirstore")
    stores.provide("memory")
    stores.seed("memory", {"dev": Item({**KEY, TOTP: SEED})})
    code, _, err = stores.broker("migrate", "--from", "memory", "--to", "dirstore",
                                 "--delete-source")
    assert code == 0, err
    stores.setenv("BROKER_BACKEND", "dirstore")
    assert _mfa(stores)["dev"] == "stored totp"


# --- doctor ------------------------------------------------------------------------------------


def _doctor(environ: dict[str, str]) -> dict[str, doctor.Check]:
    return {c.name: c for c in doctor.run(doctor.Facts(environ=environ, timeout=1))}


def test_doctor_says_a_backends_problem_once_in_short_rows(in_home, monkeypatch,
                                                           tmp_path) -> None:
    in_home.aws_config.write_text(README_CONFIG.replace("duration_seconds = soon\n", ""))
    monkeypatch.setenv("BROKER_BACKEND", "pass")
    monkeypatch.setenv("PASSWORD_STORE_DIR", str(tmp_path / "no-store"))
    checks = doctor.run(doctor.Facts(environ={"AWS_ENDPOINT_URL": in_home.env[
        "AWS_ENDPOINT_URL"]}))
    lines = [f"{c.status}  {c.name}: {c.summary}" for c in checks]
    text = "\n".join(lines)
    assert "pass: pass:" not in text
    assert text.count("no password store") == 1, text
    by_name = {c.name: c for c in checks}
    for name in ("profile dev", "profile base", "profile admin", "profile ro"):
        assert by_name[name].status == "warn", by_name[name]  # not "ok": nothing was checked
        assert len(f"{name}: {by_name[name].summary}") <= WIDTH
    assert "profile default" not in by_name  # only the region: no key expected
    assert by_name["profile dev-sdk"] == doctor.Check(
        "profile dev-sdk", "ok", "served by `broker export dev`")


def test_doctor_wants_a_region_in_a_credential_process_profile(in_home, monkeypatch) -> None:
    in_home.aws_config.write_text(README_CONFIG.replace(
        "credential_process = broker export dev --format json\nregion = ap-northeast-1\n",
        "credential_process = broker export dev --format json\n"))
    monkeypatch.setenv("BROKER_BACKEND", "keyctl")
    check = _doctor({})["profile dev-sdk"]
    assert check.status == "warn" and "no region" in check.summary
    assert check.fix == "add `region = ...` to [profile dev-sdk]"
    assert _doctor({"AWS_REGION": "eu-west-1"})["profile dev-sdk"].status == "ok"


def test_doctor_names_vaults_a_service_account_can_never_read(in_home, monkeypatch) -> None:
    # an op:// reference in the config puts the onepassword backend in use: its checks say
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", "ops_x")
    with open(in_home.broker_config, "a") as handle:
        handle.write('\n[backends.pass]\npassphrase = "op://Private/GPG key/password"\n')
    check = _doctor({})["1Password vault"]
    assert check.status == "fail" and "op://Private/GPG key/password" in check.summary
    with open(in_home.broker_config, "w") as handle:
        handle.write('[backends.pass]\npassphrase = "op://AWS/GPG key/password"\n')
    assert "1Password vault" not in _doctor({})


def test_a_name_the_backend_could_not_settle_is_a_problem_not_missing(tmp_path, monkeypatch):
    """Backend.list_problems: a profile whose item the listing found twice shows that
    error on its row with stored unknown, never "missing" (which would invite `broker add`)."""
    from broker.errors import AmbiguousMatch
    from broker.services import listing
    from broker.testing.context import memory_context
    from broker.testing.memory import MemoryBackend

    class Doubled(MemoryBackend):
        def list_problems(self):
            return {"dev": AmbiguousMatch("two items are titled 'AWS dev'", "keep one")}

    (tmp_path / "aws").write_text("[profile dev]\nregion = eu-west-1\n[profile ok]\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws"))
    ctx = memory_context(tmp_path / "config.toml", {"ok": ("AKIAOK", "s")}, backend=Doubled)
    rows = {row.name: row for row in listing.list_profiles(ctx).profiles}
    assert rows["dev"].stored is None
    assert "two items are titled 'AWS dev'; keep one" in rows["dev"].problems
    assert rows["ok"].stored is True and rows["ok"].problems == []
