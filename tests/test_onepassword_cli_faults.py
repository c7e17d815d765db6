"""The 1Password CLI transport when ``op`` is not what broker needs.

An ``op`` too old to read the item on stdin (``op item edit`` before 2.23.0 ignores
it and answers with the unchanged item), a program that prints nothing or something
that is not JSON, an ``op_path`` that names no program, no ``op.exe`` inside WSL2, a
Linux ``op`` inside WSL2, several accounts in the app, a stale service-account token
next to an installed ``op``. Each is an error that names what is wrong and the next
step, never a write reported as done, a crash or a missing item.
``tests/support/fake_op.py`` stands in for ``op`` and the app.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from broker_onepassword import OnePasswordBackend, _cli, _cli_checks
from broker_onepassword._cli_items import OpClient

from broker.backend import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from broker.errors import AuthenticationError, BackendError, BackendUnavailable
from broker.testing.contract import SAMPLE
from tests.support.fake_op import FakeOp, install_fake_op, isolate_op_home

NEW_KEY = {ACCESS_KEY_ID: "AKIANEWKEY0000000001", SECRET_ACCESS_KEY: "n3w/secret+value0123"}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and XDG dirs; no 1Password sign-in or WSL inherited."""
    home = isolate_op_home(tmp_path, monkeypatch)
    monkeypatch.setattr(_cli, "drives_root", lambda *_: tmp_path / "no-drives")
    return home


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> FakeOp:
    return install_fake_op(tmp_path, monkeypatch, **kwargs)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeOp:
    return install(tmp_path, monkeypatch)


@pytest.fixture
def make(fake: FakeOp) -> Iterator[Callable[..., OnePasswordBackend]]:
    """``make(**settings)``; closed after the test."""
    made: list[OnePasswordBackend] = []

    def build(**settings: Any) -> OnePasswordBackend:
        backend = OnePasswordBackend(settings=settings)
        made.append(backend)
        return backend

    yield build
    for backend in made:
        backend.close()


def script(tmp_path: Path, name: str, body: str) -> Path:
    """An executable shell script ``name`` running ``body``."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(stat.S_IRWXU)
    return path


def fields(fake: FakeOp, title: str = "AWS dev") -> dict[str, str]:
    return {f["label"]: f["value"] for f in fake.find(title)["fields"]}


# -- an op older than 2.23.0: `op item edit` ignores the item on stdin --------------------


def test_an_old_op_is_refused_before_any_write(fake: FakeOp, make: Callable[..., Any]) -> None:
    make(vault="Broker").set("dev", SAMPLE)
    fake.update(version="2.20.0")
    fake.reset_calls()
    with pytest.raises(BackendError) as caught:
        make(vault="Broker").set("dev", SAMPLE.replace(**NEW_KEY))
    error = caught.value
    assert "2.20.0" in error.message and "2.23.0" in error.message
    assert "op update" in error.hint
    assert fields(fake)["access key id"] == SAMPLE[ACCESS_KEY_ID]
    assert not [c for c in fake.calls() if c[:2] in (["item", "edit"], ["item", "create"])]
    with pytest.raises(BackendError, match=r"2\.23\.0"):
        make(vault="Broker").set("new", SAMPLE)  # creating too
    assert make(vault="Broker").get("dev") == SAMPLE  # reading still works


def test_an_old_op_is_refused_before_a_writing_command_begins(
    fake: FakeOp, make: Callable[..., Any]
) -> None:
    """`check_writable`, which rotate, add and totp call before an MFA prompt or a new
    key, asks the version first: an op too old to write stops the command there."""
    fake.update(version="2.20.0")
    fake.reset_calls()
    with pytest.raises(BackendError) as caught:
        make(vault="Broker").check_writable("dev")
    assert "2.20.0" in caught.value.message and "2.23.0" in caught.value.message
    assert "op update" in caught.value.hint
    assert fake.calls() == [["--version"]]  # nothing read, nothing signed in
    fake.update(version="2.30.3")
    fake.reset_calls()
    make(vault="Broker").check_writable("dev")
    assert fake.calls() == [["--version"]]


def test_op_exe_too_old_names_winget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = install(tmp_path, monkeypatch, names=("op.exe",))
    monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu")
    fake.update(version="2.19.0")
    with pytest.raises(BackendError) as caught:
        OnePasswordBackend(settings={}).set("dev", SAMPLE)
    assert "winget upgrade 1Password.1PasswordCLI" in caught.value.hint


def test_an_edit_op_did_not_store_is_an_error(
    fake: FakeOp, make: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the version check let one through, what `op item edit` answers is compared
    with what broker sent: an unchanged item is never reported as stored."""
    make(vault="Broker").set("dev", SAMPLE)
    fake.update(version="2.20.0")
    monkeypatch.setattr(_cli.OpRunner, "require_writable", lambda self: None)
    with pytest.raises(BackendError) as caught:
        make(vault="Broker").set("dev", SAMPLE.replace(**NEW_KEY))
    error = caught.value
    assert "did not store" in error.message and "2.20.0" in error.message
    assert "aws_access_key_id" in error.message and "aws_secret_access_key" in error.message
    assert "2.23.0" in error.hint
    assert NEW_KEY[SECRET_ACCESS_KEY] not in error.message + error.hint
    assert fields(fake)["access key id"] == SAMPLE[ACCESS_KEY_ID]


def test_the_answer_to_a_create_is_checked_too() -> None:
    from broker_onepassword import _fields
    from broker_onepassword._cli_items import SdkShapes, item_to_json

    params = _fields.create_params(SdkShapes, "v" * 26, "AWS dev", SAMPLE, ["broker"], "note")
    answer = item_to_json(params)
    answer["id"] = "i" * 26
    for f in answer["fields"]:
        if f["label"] == "secret access key":
            f["value"] = "something else"
    client = OpClient(lambda args, **_: answer)
    with pytest.raises(_cli.OpFailure) as caught:
        client.items.create(params)
    assert caught.value.kind == "unwritten" and "aws_secret_access_key" in caught.value.message
    assert SAMPLE[SECRET_ACCESS_KEY] not in caught.value.message


def test_a_seed_1password_shows_as_a_uri_is_the_same_seed() -> None:
    from broker_onepassword import _fields
    from broker_onepassword._cli_items import SdkShapes, item_to_json

    params = _fields.create_params(SdkShapes, "v" * 26, "AWS dev", SAMPLE, ["broker"], "note")
    answer = item_to_json(params)
    answer["id"] = "i" * 26
    for f in answer["fields"]:
        if f["type"] == "OTP":
            f["id"] = "TOTP_" + f["id"]
            f["value"] = f"otpauth://totp/AWS%20dev?secret={f['value'].lower()}&issuer=AWS"
    assert OpClient(lambda args, **_: answer).items.create(params).id == "i" * 26


# -- a program that prints nothing, or no JSON ---------------------------------------------


@pytest.mark.parametrize("settings", [{}, {"vault": "Broker"}])
def test_an_op_that_prints_nothing(
    fake: FakeOp, make: Callable[..., Any], settings: dict[str, str]
) -> None:
    with pytest.raises(BackendError) as caught:
        make(op_path="/bin/true", **settings).get("dev")
    assert "/bin/true printed nothing" in caught.value.message
    assert "op_path" in caught.value.hint


def test_a_script_that_only_answers_version_never_makes_an_item_missing(
    fake: FakeOp, make: Callable[..., Any], tmp_path: Path
) -> None:
    make(vault="Broker").set("dev", SAMPLE)  # the ids are remembered
    quiet = script(tmp_path, "quiet-op", 'if [ "$1" = --version ]; then echo 2.30.3; fi')
    for settings in ({"vault": "Broker"}, {}):
        backend = make(op_path=str(quiet), **settings)
        with pytest.raises(BackendError, match="printed nothing"):
            backend.get("dev")
        with pytest.raises(BackendError, match="printed nothing"):
            backend.list()
        with pytest.raises(BackendError, match="printed nothing"):
            backend.get_many(["dev"])


def test_an_empty_vault_is_still_empty(fake: FakeOp, make: Callable[..., Any]) -> None:
    assert make(vault="Broker").list() == []
    assert make(vault="Broker").get("dev") is None


def test_output_that_is_not_json_is_shown_scrubbed(
    fake: FakeOp, make: Callable[..., Any], tmp_path: Path
) -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    noisy = script(tmp_path, "noisy-op", f'echo "here is the item: {secret} and more text '
                   f'{"x" * 200}"')
    with pytest.raises(BackendError) as caught:
        make(op_path=str(noisy), vault="Broker").get("dev")
    message = caught.value.message
    assert str(noisy) in message and "not the JSON" in message and "here is the item" in message
    assert secret not in message and secret[:12] not in message
    assert len(message) < 400


def test_json_of_the_wrong_shape(make: Callable[..., Any], tmp_path: Path) -> None:
    odd = script(tmp_path, "odd-op", "echo '\"a string\"'")
    with pytest.raises(BackendError, match="not the JSON"):
        make(op_path=str(odd), vault="Broker").get("dev")


# -- where op is: op_path, PATH, WSL2 ------------------------------------------------------


@pytest.mark.parametrize(("path", "words"), [
    ("/nonexistent/op.exe", "does not exist"),
    ("/etc", "is a directory"),
    ("/etc/passwd", "is not executable"),
    ("op-nowhere.exe", "is not on PATH"),
])
def test_a_wrong_op_path_is_named(path: str, words: str) -> None:
    for settings in ({"op_path": path}, {"op_path": path, "transport": "cli"}):
        backend = OnePasswordBackend(settings=settings)
        assert backend.transport == "cli"
        availability = backend.availability()
        assert not availability.ok
        assert f"op_path = {path!r} {words}" in availability.reason
        assert "token" not in availability.reason
        with pytest.raises(BackendUnavailable) as caught:
            backend.get("dev")
        assert f"op_path = {path!r} {words}" in caught.value.message


def test_op_path_as_a_bare_name_is_looked_up_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = install(tmp_path, monkeypatch, names=("op.exe",))
    backend = OnePasswordBackend(settings={"op_path": "op.exe"})
    assert backend.transport == "cli" and backend.availability().ok
    backend.set("dev", SAMPLE)
    assert fake.find("AWS dev")["title"] == "AWS dev"
    assert _cli.locate("op.exe") == _cli.OpBinary(str(fake.bin / "op.exe"), True, "op_path")


@pytest.mark.parametrize("settings", [{}, {"account": "my.1password.com"}])
def test_inside_wsl_without_op_exe_the_reason_is_op_exe(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]
) -> None:
    monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu")
    backend = OnePasswordBackend(settings=settings)
    reason = backend.availability().reason
    assert not backend.availability().ok
    first = reason.index("op.exe")
    assert "op_path" in reason and "docs/wsl2.md" in reason
    assert "token" not in reason[:first]
    assert "Windows app cannot be reached" not in reason
    with pytest.raises(BackendUnavailable, match=r"op\.exe"):
        backend.get("dev")


def test_inside_wsl_the_sdk_without_a_token_names_op_exe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu")
    for settings in ({"transport": "sdk"}, {"transport": "sdk", "account": "me"}):
        reason = OnePasswordBackend(settings=settings).availability().reason
        if "native core" in reason or "glibc" in reason:
            pytest.skip(f"the SDK cannot load here: {reason}")
        assert "op.exe" in reason and "docs/wsl2.md" in reason, reason
        assert 'set account = "..."' not in reason


def test_inside_wsl_op_exe_comes_before_a_linux_op(tmp_path: Path) -> None:
    root = tmp_path / "mnt"
    program = root / "c/Program Files/1Password CLI/op.exe"
    program.parent.mkdir(parents=True)
    program.write_text("")
    program.chmod(0o755)
    linux = {"op": "/usr/local/bin/op"}
    found = _cli.locate(wsl=True, which=linux.get, root=root)
    assert found == _cli.OpBinary(str(program), True, "C: drive")
    assert _cli.locate(wsl=True, which=linux.get, root=tmp_path / "empty") == _cli.OpBinary(
        "/usr/local/bin/op", False, "PATH")


def test_doctor_warns_of_a_linux_op_inside_wsl(
    fake: FakeOp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WSL_DISTRO_NAME", "Ubuntu")
    rows = {c.name: c for c in _cli_checks.checks(OnePasswordBackend(settings={}), True)}
    row = rows["1Password CLI in WSL"]
    assert row.status == "warn" and "Linux op" in row.summary
    assert "cannot reach the Windows 1Password app" in row.summary
    assert "op.exe" in row.fix and "op_path" in row.fix
    fake.update(integration=False)
    with pytest.raises(Exception) as caught:
        OnePasswordBackend(settings={}).get("dev")
    assert "op.exe" in caught.value.hint  # type: ignore[attr-defined]


# -- doctor ---------------------------------------------------------------------------------


def _rows(backend: OnePasswordBackend) -> dict[str, tuple[str, str, str]]:
    return {c.name: (c.status, c.summary, c.fix) for c in _cli_checks.checks(backend, True)}


def test_doctor_fails_with_several_accounts_and_none_chosen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, monkeypatch, accounts=2)
    status, summary, fix = _rows(OnePasswordBackend(settings={}))["1Password app integration"]
    assert status == "fail" and "2 accounts" in summary
    assert 'account = "' in fix and "OP_ACCOUNT" in fix
    assert "Integrate with 1Password CLI" not in fix
    monkeypatch.setenv("OP_ACCOUNT", "team1")  # op reads it itself
    rows = _rows(OnePasswordBackend(settings={}))
    assert rows["1Password app integration"][0] == "ok"
    assert rows["1Password CLI sign-in"][0] == "ok"


def test_doctor_fails_for_an_old_op(fake: FakeOp) -> None:
    fake.update(version="2.20.0")
    rows = _rows(OnePasswordBackend(settings={}))
    assert rows["1Password CLI"][0] == "fail" and "2.23.0" in rows["1Password CLI"][1]
    assert rows["1Password app integration"][0] == "ok"  # the other rows still run


# -- a stale token next to op ---------------------------------------------------------------


def test_a_stale_token_next_to_op_names_the_way_to_the_app(
    fake: FakeOp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broker_onepassword import _sdk

    def refused(self: Any, operation: Any, what: str) -> Any:
        raise AuthenticationError("onepassword: invalid token", _sdk.TOKEN_HINT)

    monkeypatch.setattr(_sdk.Session, "run", refused)
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", "ops_stale")
    with pytest.raises(AuthenticationError) as caught:
        OnePasswordBackend(settings={"vault": "Broker"}).get("dev")
    assert caught.value.hint.startswith(
        'unset OP_SERVICE_ACCOUNT_TOKEN to use the 1Password app through op, or set '
        'transport = "cli"')
    assert "make a new token" in caught.value.hint
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no op: only the token can help
    with pytest.raises(AuthenticationError) as caught:
        OnePasswordBackend(settings={"vault": "Broker"}).get("dev")
    assert caught.value.hint == _sdk.TOKEN_HINT


# -- what backend show says -----------------------------------------------------------------


def test_show_names_the_transport(fake: FakeOp, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = OnePasswordBackend(settings={}).describe()
    assert shown["transport"].startswith("the 1Password CLI")
    assert "onepassword-sdk" not in json.dumps(shown)
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", "ops_x")
    assert OnePasswordBackend(settings={}).describe()["transport"].startswith(
        "onepassword-sdk")
    assert "through the 1Password CLI" in OnePasswordBackend.description
