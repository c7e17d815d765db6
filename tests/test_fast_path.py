"""The cached path imports nothing heavy: checked in a real subprocess."""

from __future__ import annotations

import pytest

from tests.conftest import BIN
from tests.support.imports import imported_modules

HEAVY = (
    "boto3", "botocore", "onepassword", "pydantic", "gnupg", "click",
    # not heavy alone, but each costs milliseconds of a ~15 ms budget
    "pyotp", "typing", "dataclasses", "subprocess", "tempfile", "hashlib", "tomllib",
)


@pytest.fixture
def warmed(home):
    from broker_keyctl import KeyctlBackend

    if not KeyctlBackend().availability().ok:
        pytest.skip("kernel keyring unavailable")
    home.add_key("dev")
    home.run("export", "dev", check=True)  # fills the session cache
    return home


@pytest.mark.parametrize(
    "args",
    [
        ("exec", "dev", "--", "true"),
        ("exec", "dev", "true"),
        ("export", "dev", "--format", "json"),
        ("export", "dev"),
    ],
)
def test_cached_path_imports_nothing_heavy(warmed, args):
    names = imported_modules(warmed.env, *args)
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def test_cold_path_does_import_boto3(warmed):
    # the check above can fail: here the same probe sees the slow path's imports
    warmed.run("clear", check=True)
    warmed.next_step()  # a new MFA session: the device's next code
    assert "botocore" in imported_modules(warmed.env, "export", "dev")


def test_console_script_is_the_venv_one():
    assert (BIN / "broker").exists()
