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


@pytest.mark.parametrize("chosen", ["nosuch", "pass"])
def test_a_cached_session_does_not_hide_an_unusable_backend_choice(warmed, chosen):
    """A backend chosen by name that is not installed (exit 3) or is disabled (exit 7)
    fails as it does without a cached session: the cached path checks the name against
    the plugin index it reads anyway, and leaves it to the full path."""
    disabled = {"BROKER_DISABLED_PLUGINS": "pass"}
    code = 3 if chosen == "nosuch" else 7
    by_env = warmed.run("export", "dev", env={"BROKER_BACKEND": chosen, **disabled})
    assert by_env.returncode == code, by_env.stderr
    assert repr(chosen) in by_env.stderr and not by_env.stdout
    by_flag = warmed.run("export", "dev", "--backend", chosen, env=disabled)
    assert by_flag.returncode == code, by_flag.stderr
    ran = warmed.run("exec", "dev", "--", "true", env={"BROKER_BACKEND": chosen, **disabled})
    assert ran.returncode == code, ran.stderr


def test_a_cached_path_with_a_valid_backend_choice_stays_light(warmed):
    names = imported_modules({**warmed.env, "BROKER_BACKEND": "keyctl"}, "export", "dev")
    assert not names & set(HEAVY), sorted(names & set(HEAVY))


#: `broker list` takes the full path (click) but reads no secret and calls no AWS API:
#: docs/performance.md gives its figures. hashlib loads OpenSSL's libcrypto (~4 MiB of
#: resident memory); subprocess, signal and selectors another ~1 MiB.
LIST_HEAVY = ("boto3", "botocore", "onepassword", "pydantic", "gnupg", "pyotp", "hashlib",
              "subprocess")


def test_list_imports_nothing_it_does_not_use(warmed):
    names = imported_modules(warmed.env, "list")
    assert "click" in names  # the probe sees the full path
    assert not names & set(LIST_HEAVY), sorted(names & set(LIST_HEAVY))
