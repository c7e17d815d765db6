"""The onepassword backend through the 1Password CLI (``op``, or ``op.exe`` from WSL2).

Every test runs the backend against ``tests/support/fake_op.py`` installed on PATH
as ``op`` (it stands in for the CLI, the desktop app and 1Password's servers; its
state is a 0600 JSON file), in a private HOME so the id state file is fresh. The
same contract suite as the SDK's runs three ways: ``transport = "cli"`` with a
vault named, ``auto`` with nothing set (the Private vault), and ``op.exe`` found on
PATH inside (simulated) WSL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from broker_onepassword import OnePasswordBackend, _cli, _cli_checks

from broker.backend import TOTP, Backend, Item
from broker.errors import (
    AmbiguousMatch,
    AppLocked,
    AuthenticationError,
    ConfigError,
    NotFound,
)
from broker.testing.contract import SAMPLE, BackendContract
from tests.support.fake_op import STATE_VARIABLE, FakeOp, install_fake_op, isolate_op_home

SEED = SAMPLE[TOTP]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and XDG dirs; no 1Password sign-in or WSL inherited."""
    home = isolate_op_home(tmp_path, monkeypatch)
    return home


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> FakeOp:
    return install_fake_op(tmp_path, monkeypatch, **kwargs)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeOp:
    return install(tmp_path, monkeypatch)


@pytest.fixture
def make(fake: FakeOp) -> Iterator[Callable[..., OnePasswordBackend]]:
    """``make(namespace="credentials", **settings)``; closed after the test."""
    made: list[OnePasswordBackend] = []

    def build(namespace: str = "credentials", **settings: Any) -> OnePasswordBackend:
        backend = OnePasswordBackend(settings=settings, namespace=namespace)
        made.append(backend)
        return backend

    yield build
    for backend in made:
        backend.close()


def _reopen(backend: Backend) -> Backend:
    again: Backend = OnePasswordBackend(settings=backend.settings, namespace=backend.namespace)
    return again


class TestCliContract(BackendContract):
    """``transport = "cli"``, the vault named."""

    @pytest.fixture
    def backend(self, make: Callable[..., OnePasswordBackend]) -> Backend:
        backend: Backend = make(vault="Broker", transport="cli")
        return backend

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return _reopen


class TestCliContractNothingSet(BackendContract):
    """No settings at all: no token, so ``auto`` takes ``op``; the Private vault."""

    @pytest.fixture
    def backend(self, make: Callable[..., OnePasswordBackend]) -> Backend:
        backend = make()
        assert backend.transport == "cli"
        return backend

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return _reopen


class TestCliContractWsl(BackendContract):
    """Inside WSL2: ``op.exe`` on PATH (WSL appends the Windows PATH), run through interop."""

    @pytest.fixture
    def backend(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
        install(tmp_path, monkeypatch, names=("op.exe",))
        monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu")
        backend = OnePasswordBackend(settings={})
        assert backend.transport == "cli"
        assert _cli.locate().windows  # type: ignore[union-attr]
        yield backend
        backend.close()

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        return _reopen


# -- what it costs -------------------------------------------------------------------------


def test_a_cold_read_is_one_op_process(fake: FakeOp, make: Callable[..., Any]) -> None:
    make().set("dev", SAMPLE)
    fake.reset_calls()
    assert make().get("dev") == SAMPLE  # a new instance: ids from the state file
    (call,) = fake.calls()
    assert call[:2] == ["item", "get"] and "--vault" in call and "--format" in call


def test_the_first_read_by_name_is_one_op_process(
    fake: FakeOp, make: Callable[..., Any], isolated: Path
) -> None:
    make(vault="Broker").set("dev", SAMPLE)
    for state in isolated.joinpath(".local/state").rglob("onepassword.json"):
        state.unlink()  # a new machine: nothing remembered
    fake.reset_calls()
    assert make(vault="Broker").get("dev") == SAMPLE
    assert fake.calls() == [["item", "get", "AWS dev", "--vault", "Broker", "--format", "json"]]
    fake.reset_calls()
    assert make(vault="Broker").get("dev") == SAMPLE  # ids learnt: by id now
    assert fake.calls()[0][2] == fake.find("AWS dev")["id"]


def test_several_references_to_one_item_are_one_process(
    fake: FakeOp, make: Callable[..., Any]
) -> None:
    make(vault="Broker").set("dev", SAMPLE)
    fake.reset_calls()
    refs = ["op://Broker/AWS dev/access key id", "op://Broker/AWS dev/AWS/mfa serial",
            "op://Broker/AWS dev/one-time password?attribute=totp"]
    values = make(vault="Broker").resolve_many(refs)
    assert values[refs[0]] == SAMPLE["aws_access_key_id"]
    assert values[refs[1]] == SAMPLE["mfa_serial"]
    assert values[refs[2]] in {pyotp.TOTP(SEED).now(), pyotp.TOTP(SEED).at(-30 + int(
        __import__("time").time()))}
    assert len(fake.calls()) == 1


def test_one_approval_for_many_calls_and_again_after_the_app_locks(
    fake: FakeOp, make: Callable[..., Any]
) -> None:
    backend = make(vault="Broker")
    backend.set("dev", SAMPLE)
    backend.set("other", SAMPLE)
    assert backend.list() == ["dev", "other"]
    assert len(fake.calls()) >= 4 and fake.approvals() == 1
    fake.lock_app()
    assert make(vault="Broker").get("dev") == SAMPLE
    assert fake.approvals() == 2


# -- values travel on stdin and stdout only ------------------------------------------------


def test_writes_send_the_item_on_stdin(fake: FakeOp, make: Callable[..., Any]) -> None:
    backend = make(vault="Broker")
    backend.set("dev", SAMPLE)
    backend.set("dev", SAMPLE.replace(region="eu-west-1"))
    calls = fake.raw_calls()
    create = next(c for c in calls if c["argv"][1:3] == ["item", "create"])
    edit = next(c for c in calls if c["argv"][1:3] == ["item", "edit"])
    assert create["argv"][-3] == "-" and create["stdin_bytes"] > 100
    assert edit["stdin_bytes"] > 100
    secrets = [SAMPLE["aws_secret_access_key"], SEED]
    for call in calls:
        assert not any(s in arg for s in secrets for arg in call["argv"]), call["argv"]


def test_the_item_is_the_one_the_sdk_makes(fake: FakeOp, make: Callable[..., Any]) -> None:
    make(vault="Broker").set("dev", SAMPLE)
    item = fake.find("AWS dev")
    assert item["category"] == "API_CREDENTIAL" and item["tags"] == ["broker"]
    fields = {f["label"]: f for f in item["fields"]}
    assert fields["secret access key"]["type"] == "CONCEALED"
    assert fields["one-time password"]["type"] == "OTP"
    assert fields["one-time password"]["id"] == "TOTP_totp"  # the core's prefix
    assert fields["one-time password"]["value"] == SEED
    assert fields["notesPlain"]["value"].startswith("AWS credentials of the profile")
    assert {f["section"]["id"] for f in item["fields"] if "section" in f} == {"broker"}


def test_an_item_made_by_hand_keeps_what_is_not_brokers(
    fake: FakeOp, make: Callable[..., Any]
) -> None:
    fake.add_item("Private", {
        "title": "AWS hand", "category": "LOGIN", "urls": [{"primary": True,
                                                            "href": "https://aws.amazon.com"}],
        "fields": [
            {"id": "k", "type": "STRING", "label": "Access Key ID",
             "value": "AKIAHAND0000000000001"},
            {"id": "mine", "type": "STRING", "label": "team", "value": "platform"},
            {"id": "otp", "type": "OTP", "label": "MFA code", "value": SEED},
        ],
    })
    backend = make()
    got = backend.get("hand")
    assert got == Item(aws_access_key_id="AKIAHAND0000000000001", totp=SEED)  # OTP by type
    backend.set("hand", got.replace(aws_secret_access_key="s3cret/value"))
    item = fake.find("AWS hand")
    labels = [f["label"] for f in item["fields"]]
    assert "team" in labels and "MFA code" in labels and "secret access key" in labels
    assert item["urls"] == [{"primary": True, "href": "https://aws.amazon.com"}]
    assert item["category"] == "LOGIN"
    assert make().get("hand") == got.replace(aws_secret_access_key="s3cret/value")


# -- references -----------------------------------------------------------------------------


def test_references(fake: FakeOp, make: Callable[..., Any]) -> None:
    backend = make(vault="Broker")
    backend.set("dev", SAMPLE)
    assert backend.resolve("op://Broker/AWS dev/secret access key") == SAMPLE[
        "aws_secret_access_key"]
    code = backend.resolve("op://Broker/AWS dev/one-time password?attribute=otp")
    assert len(code) == 6 and code.isdigit()
    with pytest.raises(NotFound):
        backend.resolve("op://Broker/AWS nobody/secret access key")
    with pytest.raises(NotFound):
        backend.resolve("op://Broker/AWS dev/no such field")
    with pytest.raises(ConfigError, match="one-time password fields only"):
        backend.resolve("op://Broker/AWS dev/secret access key?attribute=totp")


@pytest.mark.parametrize("reference", [
    "op://Broker/AWS dev", "op://a/b/c/d/e", "op://a/b/c?", "op://a/b/c?attribute=type",
    "op://a/b/c?attribute=totp&ssh-format=openssh",
])
def test_malformed_references_are_refused_before_any_call(
    fake: FakeOp, make: Callable[..., Any], reference: str
) -> None:
    with pytest.raises(ConfigError, match="not a valid 1Password reference"):
        make().resolve(reference)
    assert fake.calls() == []


# -- op's errors, in op's words, with the next step --------------------------------------------


def test_integration_off(fake: FakeOp, make: Callable[..., Any]) -> None:
    fake.update(integration=False)
    with pytest.raises(AppLocked) as caught:
        make().get("dev")
    assert "No accounts configured for use with 1Password CLI" in caught.value.message
    assert "Settings > Developer > Integrate with 1Password CLI" in caught.value.hint
    assert caught.value.exit_code == 16


def test_app_not_running(fake: FakeOp, make: Callable[..., Any]) -> None:
    fake.update(app="closed")
    with pytest.raises(AppLocked, match="connecting to desktop app") as caught:
        make().get("dev")
    assert "Integrate with 1Password CLI" in caught.value.hint


def test_approval_dismissed(fake: FakeOp, make: Callable[..., Any]) -> None:
    fake.update(approval="dismiss")
    with pytest.raises(AuthenticationError, match="authorization prompt dismissed") as caught:
        make().get("dev")
    assert "approve it" in caught.value.hint


def test_no_answer_in_time(fake: FakeOp, make: Callable[..., Any]) -> None:
    fake.update(approval="hang")
    with pytest.raises(AppLocked, match="did not answer within 1 s") as caught:
        make(timeout=1).get("dev")
    assert "approve" in caught.value.hint


def test_several_accounts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(tmp_path, monkeypatch, accounts=2)
    with pytest.raises(AmbiguousMatch, match="multiple accounts found") as caught:
        OnePasswordBackend(settings={}).get("dev")
    assert "account =" in caught.value.hint
    chosen = OnePasswordBackend(settings={"account": "my.1password.com"})
    chosen.set("dev", SAMPLE)
    assert OnePasswordBackend(settings={"account": "my.1password.com"}).get("dev") == SAMPLE
    assert all(c[-2:] == ["--account", "my.1password.com"] for c in fake.calls()[2:]
               if c != ["--version"])  # the version is the program's, not an account's
    with pytest.raises(NotFound, match="no account matching 'nobody'"):
        OnePasswordBackend(settings={"account": "nobody"}).get("dev")


def test_op_exe_gets_op_account_as_a_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WSL does not hand Linux variables to Windows programs: OP_ACCOUNT becomes --account."""
    fake = install(tmp_path, monkeypatch, names=("op.exe",), accounts=2)
    monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu")
    monkeypatch.setenv("OP_ACCOUNT", "team1")
    OnePasswordBackend(settings={}).set("dev", SAMPLE)
    assert all(c[-2:] == ["--account", "team1"] for c in fake.calls() if c != ["--version"])


def test_unknown_vault_lists_the_vaults(fake: FakeOp, make: Callable[..., Any]) -> None:
    with pytest.raises(NotFound) as caught:
        make(vault="Nope").get("dev")
    assert "no vault 'Nope' is visible to this 1Password account" in caught.value.message
    assert "'Broker', 'Private'" in caught.value.message


def test_a_stale_id_is_looked_up_again(fake: FakeOp, make: Callable[..., Any]) -> None:
    make().set("dev", SAMPLE)
    old = fake.find("AWS dev")["id"]
    assert make().delete("dev") is True
    make().set("dev", SAMPLE.replace(note="again"))  # made anew in the app: a new id
    assert fake.find("AWS dev")["id"] != old
    assert make().get("dev") == SAMPLE.replace(note="again")


def test_errors_never_carry_values(fake: FakeOp, make: Callable[..., Any]) -> None:
    backend = make()
    backend.set("dev", SAMPLE)
    fake.update(app="closed")
    with pytest.raises(AppLocked) as caught:
        backend.set("dev", SAMPLE.replace(aws_secret_access_key="n3w/secret+value"))
    text = caught.value.message + caught.value.hint
    assert "n3w/secret+value" not in text and SAMPLE["aws_secret_access_key"] not in text


def test_an_unknown_message_is_shown_as_op_said_it() -> None:
    failure = _cli.OpFailure("something new went wrong", "other")
    error = _cli.translate(failure, "reading 'AWS dev'", secrets=[])
    assert error.message == ("onepassword: the 1Password CLI failed while reading 'AWS dev': "
                             "something new went wrong")


def test_error_lines_lose_their_prefix() -> None:
    stderr = ("<3>WSL (123) ERROR: UtilTranslatePathList:2866: Failed to translate x\n"
              "[ERROR] 2025/01/14 08:22:56 \"AWS dev\" isn't an item. Specify the item with "
              "its UUID, name, or domain.\n")
    said = _cli.error_message(stderr)
    assert said == "\"AWS dev\" isn't an item. Specify the item with its UUID, name, or domain."
    assert _cli.classify(said) == "item_not_found"


# -- which transport, where op is -------------------------------------------------------------


def test_a_token_keeps_the_sdk(fake: FakeOp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", "ops_x")
    assert OnePasswordBackend(settings={}).transport == "sdk"
    assert OnePasswordBackend(settings={"transport": "cli"}).transport == "cli"
    assert OnePasswordBackend(settings={"token": "env:X"}).transport == "sdk"


def test_without_op_auto_keeps_the_sdk_and_cli_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OnePasswordBackend(settings={}).transport == "sdk"
    availability = OnePasswordBackend(settings={"transport": "cli"}).availability()
    assert not availability.ok and "1Password CLI (op) is not installed" in availability.reason
    monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu")
    availability = OnePasswordBackend(settings={"transport": "cli"}).availability()
    assert "winget install 1Password.1PasswordCLI" in availability.reason


def test_a_bad_transport_setting(fake: FakeOp) -> None:
    availability = OnePasswordBackend(settings={"transport": "pigeon"}).availability()
    assert not availability.ok and "transport = 'pigeon'" in availability.reason


def test_op_path_setting(fake: FakeOp, tmp_path: Path) -> None:
    path = fake.bin / "op"
    backend = OnePasswordBackend(settings={"op_path": str(path), "transport": "cli"})
    assert backend.availability().ok and str(path) in backend.describe()["auth"]
    bad = OnePasswordBackend(settings={"op_path": str(tmp_path / "none"), "transport": "cli"})
    assert "op_path" in bad.availability().reason


def test_op_exe_in_the_usual_windows_places(tmp_path: Path) -> None:
    root = tmp_path / "mnt"
    winget = root / "c/Users/me/AppData/Local/Microsoft/WinGet/Links/op.exe"
    winget.parent.mkdir(parents=True)
    winget.write_text("")
    winget.chmod(0o755)
    found = _cli.locate(wsl=True, which=lambda name: None, root=root)
    assert found == _cli.OpBinary(str(winget), True, "C: drive")
    assert _cli.locate(wsl=False, which=lambda name: None, root=root) is None
    program = root / "c/Program Files/1Password CLI/op.exe"
    program.parent.mkdir(parents=True)
    program.write_text("")
    program.chmod(0o755)
    assert _cli.locate(wsl=True, which=lambda name: None, root=root).path == str(program)
    on_path = _cli.locate(wsl=True, which=lambda name: f"/x/{name}", root=root)
    assert on_path == _cli.OpBinary("/x/op.exe", True, "PATH")  # op.exe first inside WSL


def test_the_drive_root_from_wsl_conf(tmp_path: Path) -> None:
    conf = tmp_path / "wsl.conf"
    assert _cli.drives_root(str(conf)) == Path("/mnt/")
    conf.write_text("[automount]\nroot = /windir/\n")
    assert _cli.drives_root(str(conf)) == Path("/windir/")


def test_op_runs_without_other_sign_ins() -> None:
    env = _cli.op_environment({"OP_SERVICE_ACCOUNT_TOKEN": "ops_x", "OP_CONNECT_TOKEN": "y",
                               "PATH": "/bin", "OP_ACCOUNT": "my"})
    assert env == {"PATH": "/bin", "OP_ACCOUNT": "my"}


def test_show_says_it_is_the_cli(fake: FakeOp, make: Callable[..., Any]) -> None:
    auth = make().describe()["auth"]
    assert auth == f"1Password CLI ({fake.bin / 'op'}), signed in through the 1Password app"


def test_the_state_file_is_private(fake: FakeOp) -> None:
    assert fake.path.stat().st_mode & 0o777 == 0o600
    assert os.environ[STATE_VARIABLE] == str(fake.path)


# -- doctor -----------------------------------------------------------------------------------


def _rows(backend: OnePasswordBackend) -> dict[str, tuple[str, str, str]]:
    return {c.name: (c.status, c.summary, c.fix) for c in _cli_checks.checks(backend, True)}


def test_doctor_all_well(fake: FakeOp, make: Callable[..., Any]) -> None:
    rows = _rows(make())
    assert rows["1Password CLI"][:2] == ("ok", f"{fake.bin / 'op'}, version 2.30.3")
    assert rows["1Password app integration"][:2] == ("ok", "on; the app's account "
                                                           "my.1password.com")
    assert rows["1Password CLI sign-in"][0] == "ok"
    assert "not approved in this terminal session yet" in rows["1Password CLI sign-in"][1]
    assert fake.approvals() == 0  # doctor never asks for an approval
    make().get("dev")
    assert "approved in this terminal session (" in _rows(make())["1Password CLI sign-in"][1]


def test_doctor_integration_off_says_what_to_turn_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(tmp_path, monkeypatch, names=("op.exe",))
    monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu")
    fake.update(integration=False)
    backend = OnePasswordBackend(settings={"transport": "cli"})
    status, summary, fix = _rows(backend)["1Password app integration"]
    assert status == "fail" and "the app integration is off" in summary
    assert "the Windows 1Password app" in fix
    assert "Settings > Developer > Integrate with 1Password CLI" in fix
    assert "Settings > Security > Windows Hello" in fix


def test_doctor_app_closed(fake: FakeOp, make: Callable[..., Any]) -> None:
    fake.update(app="closed")
    rows = _rows(make())
    status, summary, fix = rows["1Password app integration"]
    assert status == "fail" and "cannot reach the app: connecting to desktop app" in summary
    assert "open and unlock the 1Password app" in fix
    assert "1Password CLI sign-in" not in rows


def test_doctor_old_version_and_several_accounts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(tmp_path, monkeypatch, accounts=2)
    fake.update(version="2.20.0")
    rows = _rows(OnePasswordBackend(settings={}))
    # both stop broker's writes (the old op) or every call (no account): failures
    assert rows["1Password CLI"][0] == "fail" and "2.23.0 or newer" in rows["1Password CLI"][1]
    assert rows["1Password app integration"][0] == "fail"
    assert 'set account = "<one of them>"' in rows["1Password app integration"][2]
    rows = _rows(OnePasswordBackend(settings={"account": "elsewhere"}))
    assert rows["1Password app integration"][0] == "fail"


def test_doctor_without_op_on_wsl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside WSL op.exe is the way to the Windows app: without it and without a token,
    1Password cannot be used, and the fix names op.exe first, then a token."""
    monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu")
    (row,) = _cli_checks.checks(OnePasswordBackend(settings={}), True)
    assert (row.name, row.status) == ("1Password CLI", "fail")
    assert "Program Files/1Password CLI/op.exe" in row.summary
    assert row.fix.index("winget install 1Password.1PasswordCLI") < row.fix.index("token")
    (row,) = _cli_checks.checks(OnePasswordBackend(settings={"transport": "cli"}), True)
    assert row.status == "fail" and "token" not in row.fix
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", "ops_x")  # a token: the SDK, no CLI rows
    assert _cli_checks.checks(OnePasswordBackend(settings={}), True) == []


def test_doctor_says_nothing_when_a_token_is_used(
    fake: FakeOp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", "ops_x")
    assert _cli_checks.checks(OnePasswordBackend(settings={}), True) == []
    assert _cli_checks.checks(OnePasswordBackend(settings={}), False) == []
    (row,) = _cli_checks.checks(OnePasswordBackend(settings={"transport": "x"}), True)
    assert row.status == "fail"


def test_fake_op_follows_the_documented_json(fake: FakeOp, make: Callable[..., Any]) -> None:
    """The stand-in's shapes, as the CLI's documentation and 1Password's op-js give them."""
    import subprocess

    make().set("dev", SAMPLE)

    def op(*args: str) -> Any:
        out = subprocess.run(["op", *args, "--format", "json"], capture_output=True,
                             check=True, stdin=subprocess.DEVNULL).stdout
        return json.loads(out)

    (account,) = op("account", "list")
    assert set(account) == {"url", "email", "user_uuid", "account_uuid", "shorthand"}
    assert {tuple(sorted(v)) for v in op("vault", "list")} == {
        ("content_version", "id", "name")}
    item = op("item", "get", "AWS dev", "--vault", "Private")
    otp = next(f for f in item["fields"] if f["type"] == "OTP")
    assert otp["totp"] == pyotp.TOTP(SEED).now() or len(otp["totp"]) == 6
    assert otp["reference"] == "op://Private/AWS dev/AWS/one-time password"
    assert item["vault"]["name"] == "Private" and item["category"] == "API_CREDENTIAL"


@pytest.mark.parametrize(("said", "code", "words"), [
    ("No accounts configured for use with 1Password CLI.", 16, "cannot sign in through"),
    ("connecting to desktop app: read: connection reset, make sure ...", 16,
     "cannot sign in through"),
    ("account is not signed in", 8, "is not signed in"),
    ("error initializing client: authorization prompt dismissed, please try again", 8,
     "dismissed or timed out"),
    ("multiple accounts found. Use the --account flag or set the OP_ACCOUNT environment "
     "variable to select an account.", 15, "several accounts"),
    ('error initializing client: found no accounts for filter "x"', 14, "no account matching"),
    ('"AWS dev" isn\'t an item. Specify the item with its UUID, name, or domain.', 14,
     "not found while"),
    ('"AWS" isn\'t a vault in this account. Specify the vault with its ID or name.', 14,
     "not found while"),
    ('More than one item matches "AWS dev". Try again and specify the item by its ID:', 15,
     "several matches"),
    ("(429) Too Many Requests", 12, "rate limit"),
    ("dial tcp: lookup my.1password.com: no such host", 13, "cannot reach 1Password"),
])
def test_op_messages_become_broker_errors(said: str, code: int, words: str) -> None:
    error = _cli.translate(_cli.OpFailure(said, _cli.classify(said)), "reading 'AWS dev'")
    assert int(error.exit_code) == code and words in error.message
    assert said in error.message and error.hint


def test_replace_writes_a_template_items_key_where_it_is(
    fake: FakeOp, make: Callable[..., Any]
) -> None:
    """docs/backends/onepassword.md: in an item made from the app's API Credential template,
    `add --replace` writes the key back to its `username` and `credential`, where they
    are; it adds no `access key id` or `secret access key` field next to them."""
    fake.add_item("Private", {"title": "AWS tmpl", "category": "API_CREDENTIAL", "fields": [
        {"id": "username", "type": "STRING", "label": "username",
         "value": "AKIATEMPLATE00000001"},
        {"id": "credential", "type": "CONCEALED", "label": "credential", "value": "old/secret"},
        {"id": "hostname", "type": "STRING", "label": "hostname", "value": "aws"},
    ]})
    make().set("tmpl", Item(aws_access_key_id="AKIATEMPLATE00000002",
                            aws_secret_access_key="new/secret"))
    fields = [(f["label"], f["value"]) for f in fake.find("AWS tmpl")["fields"]]
    assert fields == [("username", "AKIATEMPLATE00000002"), ("credential", "new/secret"),
                      ("hostname", "aws")]


def test_the_transport_names_a_kept_token_without_op() -> None:
    """`backend show` with the token `broker backend login` kept and no op installed: the
    SDK, because of that token (not "no service-account token")."""
    from tests.support.resolvers import KeptTokens

    kept = KeptTokens({"test:onepassword-token": "ops_" + "x" * 40})
    backend = OnePasswordBackend(settings={}, resolver=kept)
    line = _cli.describe_transport(backend)
    assert "kept by `broker backend login`" in line and "no service-account token" not in line
    assert "no service-account token and no 1Password CLI" in _cli.describe_transport(
        OnePasswordBackend(settings={}, resolver=KeptTokens()))
