"""The user story on WSL2 with the Windows 1Password app, end to end.

The installed ``broker`` runs as a subprocess in its own HOME, against the local STS
(moto behind :class:`broker.testing.local_sts.LocalSTS`), the kernel keyring as the
session cache, and ``tests/support/fake_op.py`` as ``op.exe`` on PATH inside
(simulated) WSL2: ``broker backend set onepassword`` with nothing else set, then
``broker add`` and ``broker exec``. Each broker run is its own terminal session (a new
session id), so the stand-in asks for one approval per run, as the app does per
terminal.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY_ID, TEST_SECRET, BrokerHome
from tests.support.fake_op import FakeOp
from tests.support.imports import imported_modules


@pytest.fixture
def wsl_home(home: BrokerHome, tmp_path: Path) -> tuple[BrokerHome, FakeOp]:
    """The end-to-end home with nothing 1Password-specific configured: no token, no
    [backends.onepassword]; ``op.exe`` on PATH, WSL2 as the environment says."""
    from broker_keyctl import KeyctlBackend

    availability = KeyctlBackend().availability()
    if not availability.ok:
        pytest.skip(f"kernel keyring unavailable (the session cache): {availability.reason}")
    fake = FakeOp(tmp_path / "fake-op", names=("op.exe",))
    home.env.update(fake.env(home.env))
    home.env["WSL_DISTRO_NAME"] = "Ubuntu"
    for name in ("OP_SERVICE_ACCOUNT_TOKEN", "BROKER_OP_EMULATOR"):
        home.env.pop(name, None)
    return home, fake


def test_the_user_story(wsl_home: tuple[BrokerHome, FakeOp], sts: object) -> None:
    home, fake = wsl_home
    done = home.run("backend", "set", "onepassword", check=True)
    assert "Default backend is now onepassword" in done.stderr
    shown = home.run("backend", "show", "onepassword", check=True).stdout
    assert "available:     yes" in shown
    assert "1Password CLI (" in shown and "op.exe through WSL interop" in shown
    home.add_key("dev")
    item = fake.find("AWS dev")
    assert item["vault"]["name"] == "Private" and item["category"] == "API_CREDENTIAL"
    assert {f["label"]: f["value"] for f in item["fields"]}["secret access key"] == TEST_SECRET

    fake.reset_calls()
    result = home.run("exec", "dev", "--", sys.executable, "-c",
                      "import os; print(os.environ['AWS_ACCESS_KEY_ID'])", check=True)
    assert result.stdout.startswith("ASIA")
    (call,) = fake.calls()  # a cold exec: one op process, reading the item by its ids
    assert call[:2] == ["item", "get"] and call[2] == item["id"]
    assert fake.approvals() == 1  # one Windows Hello prompt

    fake.reset_calls()
    home.run("exec", "dev", "--", "true", check=True)
    assert fake.calls() == [] and fake.approvals() == 0  # the cached session: op never runs
    assert home.mfa_prompts() == 1


def test_the_cached_exec_loads_nothing_of_1password(
    wsl_home: tuple[BrokerHome, FakeOp], sts: object
) -> None:
    home, _ = wsl_home
    home.run("backend", "set", "onepassword", check=True)
    home.add_key("dev")
    home.run("export", "dev", check=True)  # fills the session cache
    names = imported_modules(home.env, "exec", "dev", "--", "true")
    assert "broker_onepassword" not in names and "onepassword" not in names


def test_an_app_with_the_integration_off(wsl_home: tuple[BrokerHome, FakeOp]) -> None:
    home, fake = wsl_home
    home.run("backend", "set", "onepassword", check=True)
    fake.update(integration=False)
    result = home.run("add", "dev", input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n")
    assert result.returncode == 16, result.stderr
    assert "No accounts configured for use with 1Password CLI" in result.stderr
    assert "Settings > Developer > Integrate with 1Password CLI" in result.stderr
    assert "Traceback" not in result.stderr and TEST_SECRET not in result.stderr


class ArgvSampler:
    """Reads the command line (/proc/PID/cmdline) of every process whose environment holds
    ``marker`` (this test's processes: broker, its children, each op) until stopped."""

    def __init__(self, marker: str) -> None:
        self.marker = marker.encode()
        self.seen: set[str] = set()
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    try:
                        with open(f"/proc/{entry.name}/environ", "rb") as f:
                            if self.marker not in f.read():
                                continue
                        with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                            raw = f.read()
                    except OSError:
                        continue
                    if raw:
                        self.seen.add(raw.replace(b"\0", b" ").decode("utf-8", "replace"))
            self.rounds += 1
            self._stop.wait(0.002)

    def __enter__(self) -> ArgvSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def sampler(wsl_home: tuple[BrokerHome, FakeOp]) -> Iterator[ArgvSampler]:
    with ArgvSampler(f"FAKE_OP_STATE={wsl_home[1].path}") as running:
        yield running


def test_no_secret_in_any_argv(wsl_home: tuple[BrokerHome, FakeOp], sts: object,
                               sampler: ArgvSampler) -> None:
    """While broker creates, edits and reads the item, no process's argv holds a value:
    sampled from /proc, and as each op saw its own."""
    import pyotp

    home, fake = wsl_home
    secret, seed = secrets.token_urlsafe(30), pyotp.random_base32(64)  # unique to this test
    home.run("backend", "set", "onepassword", check=True)
    home.run("add", "dev", input=f"{TEST_KEY_ID}\n{secret}\n", check=True)
    home.run("totp", "set", "dev", "--no-verify", input=seed + "\n", check=True)
    home.run("add", "dev", "--replace", input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n", check=True)
    code = home.run("totp", "code", "dev", check=True).stdout.strip()
    assert re.fullmatch(r"\d{6}", code)
    home.run("exec", "dev", "--", "true", check=True)
    values = [secret, TEST_SECRET, seed, code]
    op_argv = [" ".join(c["argv"]) for c in fake.raw_calls()]
    assert any("item create" in a for a in op_argv) and any("item edit" in a for a in op_argv)
    assert sampler.rounds > 10 and any("op.exe" in line for line in sampler.seen)
    for line in [*sampler.seen, *op_argv]:
        assert not any(v in line for v in values), line
    assert {c["stdin_bytes"] > 0 for c in fake.raw_calls()
            if c["argv"][1:3] in (["item", "create"], ["item", "edit"])} == {True}


def test_doctor_on_wsl(wsl_home: tuple[BrokerHome, FakeOp]) -> None:
    home, fake = wsl_home
    home.run("backend", "set", "onepassword", check=True)
    out = home.run("doctor").stdout
    assert re.search(r"1Password CLI\b.*op\.exe \(through WSL interop\), version 2\.30\.3", out)
    assert re.search(r"1Password app integration\b.*on; the app's account my\.1password\.com",
                     out)
    assert "no service-account token" not in out
    fake.update(integration=False)
    out = home.run("doctor").stdout
    assert "the app integration is off" in out
    assert "Settings > Developer > Integrate with 1Password CLI" in out
    assert fake.approvals() == 0


def test_an_op_too_old_to_write_loses_nothing(
    wsl_home: tuple[BrokerHome, FakeOp], sts: object
) -> None:
    """Before 2.23.0 `op item edit` ignores the item on stdin and answers as if it had
    stored it: `add --replace` and `rotate` must fail, and the stored key still work."""
    home, fake = wsl_home
    home.run("backend", "set", "onepassword", check=True)
    home.add_key("dev")
    before = fake.find("AWS dev")
    fake.update(version="2.20.0")
    replaced = home.run("add", "dev", "--replace", input="AKIANEWKEY0000000001\nn3w/secret\n")
    assert replaced.returncode == 6, replaced.stderr
    assert "2.20.0" in replaced.stderr and "2.23.0" in replaced.stderr
    assert "Replaced" not in replaced.stderr + replaced.stdout
    assert "n3w/secret" not in replaced.stderr
    doctor = home.run("doctor")
    assert doctor.returncode != 0
    assert re.search(r"FAIL\s+1Password CLI\b.*version 2\.20\.0", doctor.stdout), doctor.stdout
    assert fake.find("AWS dev")["fields"] == before["fields"]
    home.run("exec", "dev", "--", "true", check=True)


def test_inside_wsl_without_op_exe_every_command_names_op_exe(home: BrokerHome) -> None:
    """No op.exe and no token: `backend set`, `backend list`, `add` and `exec` say to
    install op.exe (or set op_path), never just "no service-account token"; a wrong
    op_path is named as such."""
    home.env["WSL_DISTRO_NAME"] = "Ubuntu"
    for name in ("OP_SERVICE_ACCOUNT_TOKEN", "BROKER_OP_EMULATOR"):
        home.env.pop(name, None)
    for args in (("backend", "set", "onepassword"), ("backend", "list")):
        said = home.run(*args)
        text = said.stderr + said.stdout
        assert "op.exe" in text and "op_path" in text and "docs/wsl2.md" in text, text
        assert "no service-account token" not in text, text
    home.broker_config.parent.mkdir(parents=True, exist_ok=True)
    for op_path, words in (("/nonexistent/op.exe", "does not exist"),
                           ("/etc/passwd", "is not executable")):
        home.broker_config.write_text(
            f'backend = "onepassword"\n[backends.onepassword]\nop_path = "{op_path}"\n')
        for args in (("exec", "dev", "--", "true"), ("list",)):
            said = home.run(*args)
            assert f"op_path = '{op_path}' {words}" in said.stderr + said.stdout, said
            assert "no service-account token" not in said.stderr
        added = home.run("add", "dev", input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n")
        assert added.returncode != 0 and f"op_path = '{op_path}' {words}" in added.stderr
