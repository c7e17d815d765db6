"""The cached path imports nothing heavy: checked in a real subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import BIN

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


def imported_modules(home, *args: str) -> set[str]:
    """Module names imported by `broker ARGS`, from -X importtime (survives exec)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "broker", *args],
        env=home.env, capture_output=True, text=True, timeout=60, start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "broker" in names
    return names


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
    names = imported_modules(warmed, *args)
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


def test_cold_path_does_import_boto3(warmed):
    # the check above can fail: here the same probe sees the slow path's imports
    warmed.run("clear", check=True)
    assert "botocore" in imported_modules(warmed, "export", "dev")


def test_console_script_is_the_venv_one():
    assert (BIN / "broker").exists()
