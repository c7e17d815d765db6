"""`broker doctor`: each check ok, warn or fail with its fix."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import click
import pytest

from broker.backend import Capability, Check
from broker.registry import Registry
from broker.services import doctor
from broker.testing.local_sts import free_port
from broker.testing.memory import MemoryBackend
from tests.support.contexts import require_keyctl


def _by_name(document: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in document["checks"]}


@pytest.fixture
def keyctl_home(home):
    require_keyctl()
    return home


def test_json_output_and_a_missing_key(keyctl_home):
    home = keyctl_home
    result = home.run("doctor", "--json")
    document = json.loads(result.stdout)
    checks = _by_name(document)
    assert all(set(c) == {"name", "status", "summary", "fix"} for c in checks.values())
    assert all(c["status"] in ("ok", "warn", "fail") for c in checks.values())
    assert document["ok"] is (result.returncode == 0)
    assert document["ok"] is not any(c["status"] == "fail" for c in checks.values())
    assert checks["broker config"]["status"] == "ok"
    assert checks["aws config"]["status"] == "ok"
    # keyctl holds keys in memory only: the default backend is said to lose them at reboot
    assert checks["default backend"]["status"] == "warn"
    assert "lost at reboot" in checks["default backend"]["summary"]
    assert checks["session cache"]["status"] == "ok"
    assert checks["keyctl"]["status"] == "ok"
    assert checks["clock"]["status"] == "ok", checks["clock"]  # moto's Date header
    assert checks["profile dev"]["status"] == "warn"
    assert checks["profile dev"]["fix"] == "run `broker add dev`"
    assert checks["profile admin"]["status"] == "warn"
    assert checks["profile admin"]["fix"] == "run `broker add base`"  # the key under the role
    assert checks["profile cp"]["status"] == "ok"  # served by its credential_process
    assert "profile default" not in checks  # only a region
    home.add_key("dev")
    after = _by_name(json.loads(home.run("doctor", "--json").stdout))
    assert after["profile dev"]["status"] == "ok"
    assert after["profile dev"]["summary"] == "dev; key stored in keyctl (memory only)"
    assert after["keys lost at reboot"]["status"] == "warn"
    assert after["keys lost at reboot"]["summary"].startswith("dev: in keyctl, memory only")


def test_a_broken_broker_config_fails_with_the_fix(keyctl_home):
    home = keyctl_home
    home.broker_config.write_text("backend = [\n")
    result = home.run("doctor", "--json")
    assert result.returncode == 1
    check = _by_name(json.loads(result.stdout))["broker config"]
    assert check["status"] == "fail"
    assert "not valid TOML" in check["summary"]
    assert check["fix"] == f"fix or remove {home.broker_config}"
    text = home.run("doctor")
    assert text.returncode == 1
    assert f"FAIL  broker config: {home.broker_config}: not valid TOML" in text.stdout
    assert f"      fix: fix or remove {home.broker_config}" in text.stdout


def test_a_broken_aws_config_and_a_broken_chain(keyctl_home):
    home = keyctl_home
    home.aws_config.write_text("[profile x\nregion = y\n")
    result = home.run("doctor", "--json")
    assert result.returncode == 1
    check = _by_name(json.loads(result.stdout))["aws config"]
    assert check["status"] == "fail" and "malformed" in check["summary"]
    home.aws_config.write_text(
        "[profile a]\nrole_arn = arn:aws:iam::1:role/a\nsource_profile = b\n"
        "[profile b]\nrole_arn = arn:aws:iam::1:role/b\nsource_profile = a\n"
    )
    checks = _by_name(json.loads(home.run("doctor", "--json").stdout))
    assert checks["profile a"]["status"] == "fail"
    assert "loop" in checks["profile a"]["summary"] and checks["profile a"]["fix"]


# --- in process ------------------------------------------------------------------------------


@contextmanager
def date_server(offset: float) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def date_time_string(self, timestamp: float | None = None) -> str:
            moment = datetime.now(timezone.utc) + timedelta(seconds=offset)
            return format_datetime(moment, usegmt=True)

        def do_GET(self) -> None:
            self.send_response(403)  # as STS answers an unsigned request
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("offset", "status"), [(0, "ok"), (-15, "warn"), (120, "fail")])
def test_clock_skew(offset, status):
    with date_server(offset) as url:
        check = doctor.check_clock(doctor.Facts(environ={"AWS_ENDPOINT_URL": url}))
    assert check.status == status, check
    if status != "ok":
        assert "MFA codes" in check.summary and "timedatectl" in check.fix


def test_clock_offline_is_a_warning():
    url = f"http://127.0.0.1:{free_port()}/"
    check = doctor.check_clock(doctor.Facts(environ={"AWS_ENDPOINT_URL_STS": url}, timeout=1))
    assert check.status == "warn" and "not checked" in check.summary


def test_wsl(tmp_path):
    version = tmp_path / "version"
    version.write_text("Linux version 5.15.153.1-microsoft-standard-WSL2 (root@1) #1 SMP\n")
    facts = doctor.Facts(proc_version=version)
    assert facts.wsl == 2
    check = doctor.check_wsl(facts)
    assert check.status == "ok"
    assert check.summary == ("WSL2: the kernel keyring works; the Windows 1Password app is "
                             "reached through op.exe, the 1Password CLI for Windows (docs/wsl2.md)")
    with date_server(60) as url:
        clock = doctor.check_clock(doctor.Facts(environ={"AWS_ENDPOINT_URL": url},
                                                proc_version=version))
    assert "hwclock -s" in clock.fix
    version.write_text("Linux version 4.4.0-19041-Microsoft (Microsoft@Microsoft.com)\n")
    assert doctor.check_wsl(facts).status == "warn"
    version.write_text("Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org)\n")
    assert doctor.check_wsl(facts) == doctor.Check("WSL", "ok", "not running under WSL")


def test_plaintext_keys_are_reported_by_profile_never_by_value(tmp_path):
    credentials = tmp_path / "credentials"
    credentials.write_text("[old]\naws_access_key_id = AKIA1\naws_secret_access_key = S3CR3T\n")
    check = doctor.check_plaintext_credentials(
        doctor.Facts(environ={"AWS_SHARED_CREDENTIALS_FILE": str(credentials)})
    )
    assert check.status == "warn" and "old" in check.summary
    # the command that moves them all, verified, and removes them from the file
    assert "`broker import credentials-file --remove-plaintext`" in check.fix
    from broker.cli.app import cli

    group = cli.commands["import"]
    assert isinstance(group, click.Group)
    command = group.commands["credentials-file"]
    assert "--remove-plaintext" in [o for p in command.params for o in p.opts]
    assert "S3CR3T" not in check.summary + check.fix


class FakeOnePassword(MemoryBackend):
    """Stands in for the 1Password plugin: remote (SHARED), listing costs an API call."""

    name: ClassVar[str] = "onepassword"
    capabilities: ClassVar[Capability] = Capability.LIST | Capability.SHARED
    calls: ClassVar[list[str]] = []
    checked: ClassVar[list[bool]] = []

    def list(self) -> list[str]:
        FakeOnePassword.calls.append("list")
        return super().list()

    def checks(self, used: bool) -> list[Check]:
        FakeOnePassword.checked.append(used)
        return [Check("fake 1Password", "ok", "its own row")]


def _run(in_home, monkeypatch, *, online: bool) -> dict[str, doctor.Check]:
    monkeypatch.setenv("BROKER_BACKEND", "onepassword")
    FakeOnePassword.calls.clear()
    FakeOnePassword.checked.clear()
    environ = {"AWS_ENDPOINT_URL": in_home.env["AWS_ENDPOINT_URL"]}
    registry = Registry(extra={"onepassword": FakeOnePassword})
    checks = doctor.run(doctor.Facts(environ=environ, online=online), registry)
    return {c.name: c for c in checks}


def test_a_shared_backend_is_listed_online_only_and_once(in_home, monkeypatch):
    checks = _run(in_home, monkeypatch, online=False)
    assert checks["fake 1Password"].summary == "its own row"  # the backend's own checks
    assert FakeOnePassword.checked == [True]  # told it is in use (the default here)
    assert "not checked" in checks["onepassword reachability"].summary
    assert checks["profile dev"].status == "ok"  # a remote backend is not listed offline
    assert "not checked" in checks["profile dev"].summary
    assert FakeOnePassword.calls == []

    checks = _run(in_home, monkeypatch, online=True)
    assert checks["onepassword reachability"].status == "ok"
    assert checks["onepassword reachability"].summary == "reachable (0 items)"
    assert checks["profile dev"].status == "warn"  # listed: no key stored for dev
    assert FakeOnePassword.calls == ["list"]  # one API call for everything


def test_every_installed_backend_runs_its_checks_told_whether_it_is_used(in_home, monkeypatch):
    class Quiet(MemoryBackend):
        seen: ClassVar[dict[str, bool]] = {}

        def checks(self, used: bool) -> list[Check]:
            Quiet.seen[self.settings.get("label", "?")] = used
            return []

    class Exploding(MemoryBackend):
        def checks(self, used: bool) -> list[Check]:
            raise RuntimeError("a plugin's bug, with a value: s3cr3t")

    monkeypatch.setenv("BROKER_BACKEND", "quiet-used")
    in_home.broker_config.write_text('[backends.quiet-unused]\nlabel = "unused"\n'
                                     '[backends.quiet-used]\nlabel = "used"\n')
    registry = Registry(
        settings_for={"quiet-used": {"label": "used"}, "quiet-unused": {"label": "unused"}},
        extra={"quiet-used": Quiet, "quiet-unused": Quiet, "exploding": Exploding},
    )
    checks = {c.name: c for c in doctor.run(doctor.Facts(
        environ={"AWS_ENDPOINT_URL": in_home.env["AWS_ENDPOINT_URL"]}), registry)}
    assert Quiet.seen == {"used": True, "unused": False}
    row = checks["backend exploding"]
    assert row.status == "warn" and "RuntimeError" in row.summary
    assert "s3cr3t" not in row.summary + row.fix  # an exception's text is never shown


def test_gnupg_for_the_pass_backend(in_home, monkeypatch, tmp_path):
    import broker_pass._checks as pass_checks

    monkeypatch.setenv("BROKER_BACKEND", "pass")
    monkeypatch.delenv("GPG_TTY", raising=False)
    monkeypatch.setattr(pass_checks.shutil, "which", lambda tool: None)
    monkeypatch.setattr(pass_checks, "terminal", lambda: "/dev/pts/7")
    facts = doctor.Facts(environ={"AWS_ENDPOINT_URL": in_home.env["AWS_ENDPOINT_URL"]})
    checks = {c.name: c for c in doctor.run(facts)}
    assert checks["gpg"].status == "fail" and "apt install gnupg" in checks["gpg"].fix
    # broker tells gpg the terminal itself (README: no .bashrc workarounds)
    assert checks["GPG_TTY"].status == "ok", checks["GPG_TTY"]
    assert "bashrc" not in checks["GPG_TTY"].summary + checks["GPG_TTY"].fix
    monkeypatch.setattr(pass_checks.shutil, "which",
                        lambda tool: f"/usr/bin/{tool}" if tool == "pass" else None)
    terminal = tmp_path / "pts-7"
    terminal.touch()
    monkeypatch.setattr(pass_checks, "terminal", lambda: str(terminal))
    monkeypatch.setenv("GPG_TTY", str(terminal))
    checks = {c.name: c for c in doctor.run(facts)}
    assert checks["GPG_TTY"].status == "ok" and checks["pass"].summary.startswith("/usr/bin/pass")
    # an exported GPG_TTY wins: a stale one (another terminal's) sends pinentry there
    other = tmp_path / "pts-3"
    other.touch()
    monkeypatch.setenv("GPG_TTY", str(other))
    check = {c.name: c for c in doctor.run(facts)}["GPG_TTY"]
    assert check.status == "warn" and str(terminal) in check.summary
    monkeypatch.setenv("GPG_TTY", str(tmp_path / "gone"))
    check = {c.name: c for c in doctor.run(facts)}["GPG_TTY"]
    assert check.status == "warn" and "does not exist" in check.summary
    # not in use: gpg's absence is no failure, GPG_TTY is not needed
    monkeypatch.setenv("BROKER_BACKEND", "keyctl")
    checks = {c.name: c for c in doctor.run(facts)}
    assert checks["gpg"].status == "ok" and "only the pass backend" in checks["gpg"].summary
    assert checks["GPG_TTY"].summary.startswith("not needed")


def test_check_is_defined_in_the_backend_contract():
    from broker.backend import Check as Contract

    assert doctor.Check is Contract
    assert Contract("x", "ok", "y") == Contract("x", "ok", "y", "")
