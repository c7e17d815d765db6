"""Invariants of what `exec` and `export` hand over, in process: the exact variables, the
exact credential_process document, the exec itself, and the nesting guard."""

from __future__ import annotations

import json
import os
import shlex
from datetime import datetime, timezone
from pathlib import Path

import pytest

from broker.aws.credentials import Credentials
from broker.aws.profiles import parse, resolve_chain
from broker.errors import NestedSession, UsageError
from broker.services import present
from broker.services.credentials import Resolved

EXPIRES = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
SESSION = Credentials("ASIAEXAMPLE", "secret/with+odd=chars", "token'with\"quotes", EXPIRES)
KEY = Credentials("AKIAEXAMPLE", "secret/with+odd=chars")


def _resolved(creds: Credentials = SESSION, region: str | None = "eu-west-1") -> Resolved:
    chain = resolve_chain(parse("[profile p]\n", Path("/x")), "p")
    return Resolved("p", creds, region, chain, [])


def test_the_variables_of_a_session():
    assert present.variables(_resolved()) == {
        "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret/with+odd=chars",
        "AWS_SESSION_TOKEN": "token'with\"quotes",
        "AWS_CREDENTIAL_EXPIRATION": "2030-01-02T03:04:05Z",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }


def test_the_variables_of_a_long_lived_key_without_region():
    assert present.variables(_resolved(KEY, None)) == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret/with+odd=chars",
    }


def test_json_is_the_credential_process_document():
    document = json.loads(present.render(_resolved(), "json"))
    assert document == {
        "Version": 1,
        "AccessKeyId": "ASIAEXAMPLE",
        "SecretAccessKey": "secret/with+odd=chars",
        "SessionToken": "token'with\"quotes",
        "Expiration": "2030-01-02T03:04:05Z",
    }
    assert json.loads(present.render(_resolved(KEY), "json")) == {
        "Version": 1, "AccessKeyId": "AKIAEXAMPLE", "SecretAccessKey": "secret/with+odd=chars",
    }
    assert present.render(_resolved(), "json").endswith("}\n")


def test_env_and_export_formats():
    env = present.render(_resolved(), "env")
    assert env.splitlines() == [f"{k}={v}" for k, v in present.variables(_resolved()).items()]
    assert env.endswith("\n")
    export = present.render(_resolved(), "export")
    for line, (name, value) in zip(export.splitlines(),
                                   present.variables(_resolved()).items(), strict=True):
        assert line == f"export {name}={shlex.quote(value)}"
        # a shell reads the value back exactly
        assert shlex.split(line.removeprefix("export "))[0] == f"{name}={value}"


def test_ini_format():
    assert present.render(_resolved(), "ini") == (
        "[p]\n"
        "aws_access_key_id = ASIAEXAMPLE\n"
        "aws_secret_access_key = secret/with+odd=chars\n"
        "aws_session_token = token'with\"quotes\n"
        "region = eu-west-1\n"
    )
    assert present.render(_resolved(KEY, None), "ini") == (
        "[p]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = secret/with+odd=chars\n"
    )


def test_an_unknown_format_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown format 'yaml'") as info:
        present.render(_resolved(), "yaml")
    assert type(info.value) is UsageError
    assert all(f in info.value.hint for f in present.FORMATS)
    assert present.FORMATS == ("env", "export", "json", "ini")


@pytest.mark.parametrize("value", ["dev", "x"])
def test_nesting_is_refused_whatever_the_outer_profile(value):
    with pytest.raises(NestedSession) as info:
        present.refuse_nesting({"BROKER_PROFILE": value})
    assert info.value.exit_code == 11
    assert info.value.message == f"already inside a broker session for profile {value!r}"
    assert "BROKER_PROFILE" in info.value.hint


@pytest.mark.parametrize("environ", [{}, {"BROKER_PROFILE": ""}, {"broker_profile": "x"}])
def test_no_session_no_refusal(environ):
    present.refuse_nesting(environ)


def test_run_execs_the_command_with_the_childs_environment(monkeypatch):
    seen: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(os, "execvpe", lambda file, argv, env: seen.append((file, argv, env)))
    monkeypatch.setenv("AWS_PROFILE", "inherited")
    present.run(_resolved(), ["aws", "sts", "get-caller-identity"])
    ((file, argv, env),) = seen
    assert (file, argv) == ("aws", ["aws", "sts", "get-caller-identity"])
    assert env == present.child_environment(_resolved(), os.environ)
    assert "AWS_PROFILE" not in env


@pytest.mark.parametrize(("shell", "expected"), [("/bin/zsh", "/bin/zsh"), (None, "/bin/sh"),
                                                 ("", "/bin/sh")])
def test_run_without_a_command_runs_the_shell(monkeypatch, shell, expected):
    seen: list[list[str]] = []
    monkeypatch.setattr(os, "execvpe", lambda file, argv, env: seen.append(argv))
    if shell is None:
        monkeypatch.delenv("SHELL", raising=False)
    else:
        monkeypatch.setenv("SHELL", shell)
    present.run(_resolved(), [])
    assert seen == [[expected]]


@pytest.mark.parametrize(("error", "message", "hint"), [
    (FileNotFoundError, "command not found: nope", "the command after --"),
    (PermissionError, "cannot run nope: permission denied", "its mode"),
])
def test_run_reports_a_command_that_cannot_start(monkeypatch, error, message, hint):
    def fail(file, argv, env):
        raise error(2, "x")

    monkeypatch.setattr(os, "execvpe", fail)
    with pytest.raises(UsageError) as info:
        present.run(_resolved(), ["nope"])
    assert info.value.message == message and info.value.exit_code == 2
    assert hint in info.value.hint  # every error says what to do next
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_the_secret_inputs_the_caller_names_are_withheld_from_the_child(monkeypatch):
    # `exec` names the variables broker's own config reads secrets from (env:ACME_TOKEN)
    environ = {"ACME_TOKEN": "s3cret", "HOME": "/home/me"}
    env = present.child_environment(_resolved(), environ, frozenset({"ACME_TOKEN"}))
    assert "ACME_TOKEN" not in env and env["HOME"] == "/home/me"
    seen: list[dict[str, str]] = []
    monkeypatch.setattr(os, "execvpe", lambda file, argv, env: seen.append(env))
    monkeypatch.setenv("ACME_TOKEN", "s3cret")
    present.run(_resolved(), ["true"], frozenset({"ACME_TOKEN"}))
    assert "ACME_TOKEN" not in seen[0]
    present.run(_resolved(), ["true"], frozenset())  # named by nobody: inherited
    assert seen[1]["ACME_TOKEN"] == "s3cret"


def test_the_hints_say_exactly_what_to_do(monkeypatch):
    with pytest.raises(UsageError) as info:
        present.render(_resolved(), "yaml")
    assert info.value.hint == "use one of: env, export, json, ini"
    with pytest.raises(NestedSession) as nested:
        present.refuse_nesting({"BROKER_PROFILE": "dev"})
    assert nested.value.hint == (
        "exit that shell first, or unset BROKER_PROFILE if you really mean to nest")
    for error, hint in ((FileNotFoundError, "check the command after --"),
                        (PermissionError, "check its mode")):
        def fail(file, argv, env, error=error):
            raise error(2, "x")

        monkeypatch.setattr(os, "execvpe", fail)
        with pytest.raises(UsageError) as failed:
            present.run(_resolved(), ["nope"])
        assert failed.value.hint == hint
