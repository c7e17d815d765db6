"""End to end: the installed `broker` with the real AWS CLI, moto's STS, the kernel keyring."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import BIN, TEST_KEY_ID, TEST_SECRET

pytestmark = pytest.mark.usefixtures("keyctl_available")


@pytest.fixture
def keyctl_available():
    from broker_keyctl import KeyctlBackend

    availability = KeyctlBackend().availability()
    if not availability.ok:
        pytest.skip(f"kernel keyring unavailable: {availability.reason}")


def test_add_then_exec_with_the_real_aws_cli(home, sts):
    home.add_key("dev")
    result = home.run("exec", "dev", "--", "aws", "sts", "get-caller-identity", check=True)
    identity = json.loads(result.stdout)
    assert identity["Arn"].startswith("arn:aws:sts::")
    assert ":assumed-role/dev-role/" in identity["Arn"]
    gst, = sts.actions("GetSessionToken")
    assert gst["SerialNumber"].endswith(":mfa/dev-user")
    assert [gst["TokenCode"]] == home.codes_given()  # the device's code, from mfa_process


def test_one_mfa_prompt_per_session_lifetime(home, sts):
    home.add_key("dev")
    for _ in range(3):
        home.run("exec", "dev", "--", "true", check=True)
    assert home.mfa_prompts() == 1
    assert len(sts.actions("GetSessionToken")) == 1
    assert len(sts.actions("AssumeRole")) == 1


def test_exec_environment(home):
    home.add_key("dev")
    env = {
        "AWS_ACCESS_KEY_ID": "AKIAINHERITED0000000",
        "AWS_SECRET_ACCESS_KEY": "inherited",
        "AWS_SESSION_TOKEN": "inherited",
        "AWS_SECURITY_TOKEN": "inherited",
        "AWS_PROFILE": "other",
        "AWS_DEFAULT_PROFILE": "other",
        "AWS_CREDENTIAL_FILE": "/nowhere",
    }
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    result = home.run("exec", "dev", "--", sys.executable, "-c", script, env=env, check=True)
    child = json.loads(result.stdout)
    assert child["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert child["AWS_SECRET_ACCESS_KEY"] != "inherited"
    assert child["AWS_SESSION_TOKEN"] != "inherited"
    for gone in ("AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CREDENTIAL_FILE"):
        assert gone not in child
    assert child["AWS_CREDENTIAL_EXPIRATION"].endswith("Z")
    assert child["AWS_REGION"] == child["AWS_DEFAULT_REGION"] == "ap-northeast-1"
    assert child["BROKER_PROFILE"] == "dev"


def test_exec_runs_shell_by_default_and_propagates_exit_code(home, tmp_path):
    home.add_key("dev")
    shell = tmp_path / "myshell"
    shell.write_text("#!/bin/sh\necho \"shell for $BROKER_PROFILE\"\nexit 7\n")
    shell.chmod(0o755)
    result = home.run("exec", "dev", env={"SHELL": str(shell)})
    assert result.returncode == 7
    assert result.stdout.strip() == "shell for dev"
    # the cached path propagates too
    assert home.run("exec", "dev", "--", "sh", "-c", "exit 3").returncode == 3


def test_exec_replaces_its_process(home):
    home.add_key("dev")
    script = "import os; print(os.getpid(), os.getppid())"
    proc = subprocess.Popen(
        [str(BIN / "broker"), "exec", "dev", "--", sys.executable, "-c", script],
        env=home.env, stdout=subprocess.PIPE, text=True, start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    out, _ = proc.communicate(timeout=60)
    assert int(out.split()[0]) == proc.pid  # the child *is* the broker process


def test_nested_exec_is_refused(home):
    home.add_key("dev")
    result = home.run("exec", "dev", "--", "true", env={"BROKER_PROFILE": "dev"})
    assert result.returncode == 11
    assert "already inside a broker session" in result.stderr
    assert "Traceback" not in result.stderr


def test_export_formats(home):
    home.add_key("dev")
    doc = json.loads(home.run("export", "dev", "--format", "json", check=True).stdout)
    assert doc["Version"] == 1
    assert doc["AccessKeyId"].startswith("ASIA")
    assert set(doc) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}
    assert doc["Expiration"].endswith("Z")
    env = home.run("export", "dev", "--format", "env", check=True).stdout
    assert f"AWS_ACCESS_KEY_ID={doc['AccessKeyId']}" in env.splitlines()
    exported = home.run("export", "dev", "-f", "export", check=True).stdout
    assert exported.startswith("export AWS_ACCESS_KEY_ID=")
    ini = home.run("export", "dev", "--format=ini", check=True).stdout
    assert ini.startswith("[dev]\naws_access_key_id = ")


def test_credential_process_from_the_aws_cli(home, sts):
    home.add_key("base")
    env = {k: v for k, v in home.env.items()}
    result = subprocess.run(
        [str(BIN / "aws"), "sts", "get-caller-identity", "--profile", "cp"],
        env=env, capture_output=True, text=True, timeout=120, start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert ":assumed-role/admin/" in json.loads(result.stdout)["Arn"]


def test_parallel_exports_on_a_cold_cache_make_one_round_trip(home, sts):
    home.add_key("base")

    def export(_: int) -> subprocess.CompletedProcess[str]:
        return home.run("export", "admin", "--format", "json")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(export, range(8)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    keys = {json.loads(r.stdout)["AccessKeyId"] for r in results}
    assert len(keys) == 1
    assert len(sts.actions("GetSessionToken")) == 1
    assert len(sts.actions("AssumeRole")) == 1
    assert home.mfa_prompts() == 1


def test_clear_and_list(home, sts):
    home.add_key("dev")
    home.add_key("base")
    home.run("export", "dev", check=True)
    home.run("export", "admin", check=True)
    listing = {p["name"]: p for p in json.loads(home.run("list", "--json", check=True).stdout)}
    assert listing["dev"]["stored"] is True and listing["dev"]["backend"] == "keyctl"
    assert listing["admin"]["chain"] == ["base", "admin"]
    assert listing["admin"]["key_profile"] == "base"
    assert {s["kind"] for s in listing["dev"]["sessions"]} == {"session", "role"}
    assert all(0 < s["seconds_left"] <= 8 * 3600 for s in listing["dev"]["sessions"])
    assert listing["plain"]["stored"] is False
    text = home.run("list", check=True).stdout
    assert "base -> admin" in text
    assert home.run("clear", "dev", check=True).stderr.startswith("Cleared 2 sessions")
    sts.reset()
    home.run("export", "admin", check=True)
    assert sts.actions() == []  # admin's sessions were untouched
    home.run("clear", check=True)
    home.run("export", "admin", check=True)
    assert len(sts.actions("AssumeRole")) == 1


def test_add_refuses_source_profile_and_overwrite(home):
    result = home.run("add", "admin", input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n")
    assert result.returncode == 3 and "broker add base" in result.stderr
    home.add_key("dev")
    again = home.run("add", "dev", input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n")
    assert again.returncode == 2 and "--replace" in again.stderr
    replaced = home.run("add", "dev", "--replace", input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n")
    assert replaced.returncode == 0


def test_add_from_env_and_remove(home):
    env = {"AWS_ACCESS_KEY_ID": TEST_KEY_ID, "AWS_SECRET_ACCESS_KEY": TEST_SECRET}
    home.run("add", "plain", "--env", env=env, check=True)
    assert home.run("export", "plain", "--format", "json").returncode == 0
    refused = home.run("remove", "plain")
    assert refused.returncode == 2 and "--force" in refused.stderr
    home.run("remove", "plain", "--force", check=True)
    missing = home.run("export", "plain")
    assert missing.returncode == 5 and "broker add plain" in missing.stderr


def test_secret_never_in_argv_or_files(home, tmp_path):
    home.add_key("dev")
    home.run("exec", "dev", "--", "true", check=True)
    for path in home.root.rglob("*"):
        if path.is_file():
            assert TEST_SECRET.encode() not in path.read_bytes(), path
            if ".local/state" in str(path) or ".config/broker" in str(path):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        elif path.is_dir() and ("broker" in path.name):
            assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def test_backend_list_set_show(home):
    listing = json.loads(home.run("backend", "list", "--json", check=True).stdout)
    by_name = {b["name"]: b for b in listing}
    assert by_name["keyctl"]["available"] is True
    assert by_name["keyctl"]["default"] is True
    assert by_name["keyctl"]["session_cache"] is True
    assert "store_sessions" in by_name["keyctl"]["capabilities"]
    # the built-in backends come from broker's own distribution (not named "broker")
    from importlib.metadata import packages_distributions

    assert by_name["keyctl"]["distribution"] in packages_distributions()["broker_keyctl"]
    home.broker_config.write_text(
        home.broker_config.read_text().replace('backend = "keyctl"\n', "# chosen below\n")
    )
    home.run("backend", "set", "keyctl", "--yes", check=True)
    assert 'backend = "keyctl"' in home.broker_config.read_text()
    assert "# chosen below" in home.broker_config.read_text()
    shown = home.run("backend", "show", check=True).stdout
    assert "name:          keyctl" in shown
    unknown = home.run("backend", "set", "nosuch")
    assert unknown.returncode == 3 and "installed:" in unknown.stderr


def test_python_dash_m_works(home):
    result = subprocess.run(
        [sys.executable, "-m", "broker", "--version"], capture_output=True, text=True,
        env={**os.environ, **home.env},
    )
    assert result.returncode == 0 and "broker" in result.stdout


def test_region_flag_and_env(home):
    home.add_key("dev")
    out = home.run("export", "dev", "--region", "sa-east-1", check=True).stdout
    assert "AWS_REGION=sa-east-1" in out
    out = home.run("export", "dev", env={"AWS_REGION": "eu-north-1"}, check=True).stdout
    assert "AWS_REGION=eu-north-1" in out


def test_files_written_are_private(home):
    home.run("backend", "set", "keyctl", "--yes", check=True)
    config = Path(home.env["BROKER_CONFIG"])
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700


def test_options_after_the_profile_as_in_aws_vault(home, sts):
    home.add_key("dev")
    result = home.run(
        "exec", "dev", "--duration", "2h", "--region", "eu-west-3", "--",
        "sh", "-c", "echo $AWS_REGION", check=True,
    )
    assert result.stdout.strip() == "eu-west-3"
    assert sts.actions("AssumeRole")[0]["DurationSeconds"] == "7200"
    # the command's own flags stay the command's
    home.next_step()  # a second MFA call (the 2 h role used the key and a code directly)
    out = home.run("exec", "dev", "sh", "-c", "echo ok", check=True).stdout
    assert out.strip() == "ok"
    unknown = home.run("exec", "dev", "--colour", "--", "true")
    assert unknown.returncode == 2 and "--colour" in unknown.stderr


def test_hoisting_is_pure():
    from broker.cli.app import hoist_exec_options as hoist

    assert hoist(["exec", "dev", "-d", "1h", "--", "x", "-d"]) == [
        "exec", "-d", "1h", "dev", "--", "x", "-d"]
    assert hoist(["--debug", "exec", "--no-session", "dev", "--server", "cmd", "--flag"]) == [
        "--debug", "exec", "--no-session", "--server", "dev", "cmd", "--flag"]
    assert hoist(["export", "dev", "--format", "json"]) == ["export", "dev", "--format", "json"]
    assert hoist(["exec", "dev"]) == ["exec", "dev"]


def test_parallel_first_adds_into_a_fresh_keyring_keep_every_key(home):
    profiles = [f"par{i}" for i in range(8)]

    def add(name: str) -> subprocess.CompletedProcess[str]:
        return home.run("add", name, input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(add, profiles))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    listing = {p["name"]: p for p in json.loads(home.run("list", "--json", check=True).stdout)}
    assert all(listing[name]["stored"] for name in profiles)
