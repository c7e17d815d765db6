"""Invariants of exit codes: every error class maps to its documented code, the CLI's one
translation point (broker/cli/errors.py) keeps it, and Ctrl-C is 130 end to end."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import signal
import subprocess
import time
from pathlib import Path

import click
import pytest

import broker
from broker import errors
from broker.cli.errors import guarded
from tests.conftest import BIN

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"

#: Each error class of broker.errors and the code docs/errors.md documents for it,
#: written out so that a changed code fails here.
PINNED = {
    errors.BrokerError: 1,
    errors.UsageError: 2,
    errors.ConfigError: 3,
    errors.ProfileNotFound: 4,
    errors.CredentialsNotFound: 5,
    errors.BackendError: 6,
    errors.BackendUnavailable: 7,
    errors.AuthenticationError: 8,
    errors.MFARequired: 9,
    errors.AWSError: 10,
    errors.NestedSession: 11,
    errors.RateLimited: 12,
    errors.NetworkError: 13,
    errors.NotFound: 14,
    errors.AmbiguousMatch: 15,
    errors.AppLocked: 16,
    errors.Interrupted: 130,
}


def documented() -> dict[int, str]:
    """code -> meaning, from the table in docs/errors.md."""
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    table = {int(code): meaning for code, meaning in rows}
    assert len(table) == len(rows), "a code is documented twice"
    return table


def _all_error_classes() -> list[type[errors.BrokerError]]:
    """Every BrokerError subclass in broker and its built-in plugins."""
    packages = [broker]
    for name in ("broker_keyctl", "broker_pass", "broker_onepassword"):
        packages.append(importlib.import_module(name))
    for package in packages:
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__") or "._op_site" in info.name:
                continue
            importlib.import_module(info.name)
    found: list[type[errors.BrokerError]] = []
    todo: list[type[errors.BrokerError]] = [errors.BrokerError]
    while todo:
        cls = todo.pop()
        if cls not in found:
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_the_documented_table_is_the_code_table():
    assert documented() == errors.EXIT_CODES


@pytest.mark.parametrize("cls", PINNED, ids=lambda c: c.__name__)
def test_each_error_class_has_its_pinned_code(cls):
    assert cls.exit_code == PINNED[cls]
    assert cls.exit_code in documented()


@pytest.mark.parametrize("cls", _all_error_classes(),
                         ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_error_class_anywhere_has_a_documented_code(cls):
    assert cls.exit_code in documented(), f"{cls.__qualname__}: {cls.exit_code}"


def _make(cls: type[errors.BrokerError]) -> errors.BrokerError:
    """An instance with message and hint, whatever the subclass's own constructor takes."""
    exc = cls.__new__(cls)
    errors.BrokerError.__init__(exc, "what went wrong", "the next step")
    return exc


@pytest.mark.parametrize("cls", _all_error_classes(),
                         ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_the_cli_exits_with_each_classes_code_and_one_line(cls, capsys):
    def fail() -> int:
        raise _make(cls)

    assert guarded(fail, lambda: False) == cls.exit_code
    err = capsys.readouterr().err
    assert err == "broker: what went wrong (the next step)\n"


def test_ctrl_c_is_130(capsys):
    def interrupted() -> int:
        raise KeyboardInterrupt

    assert guarded(interrupted, lambda: False) == 130
    assert capsys.readouterr().err == "broker: interrupted\n"


def test_an_aborted_prompt_is_130(capsys):
    def aborted() -> int:
        raise click.exceptions.Abort()

    assert guarded(aborted, lambda: False) == 130
    assert capsys.readouterr().err == "broker: aborted\n"


def test_usage_errors_are_2_and_name_the_help(capsys):
    @click.command("sub")
    def sub() -> None:
        pass

    def with_context() -> int:
        raise click.UsageError("no such option: --x", ctx=click.Context(sub, info_name="sub"))

    def without_context() -> int:
        raise click.UsageError("missing argument")

    assert guarded(with_context, lambda: False) == 2
    assert capsys.readouterr().err == "broker: no such option: --x (see `sub --help`)\n"
    assert guarded(without_context, lambda: False) == 2
    assert capsys.readouterr().err == "broker: missing argument (see `broker --help`)\n"


def test_click_exits_and_exceptions_keep_their_codes(capsys):
    def exits() -> int:
        raise click.exceptions.Exit(7)

    def click_error() -> int:
        raise click.ClickException("bad file")

    assert guarded(exits, lambda: False) == 7
    assert capsys.readouterr().err == ""
    assert guarded(click_error, lambda: False) == 1
    assert capsys.readouterr().err == "broker: bad file\n"


def test_unexpected_errors_are_1_and_one_line(capsys):
    def unexpected(message: str):
        def fail() -> int:
            raise ValueError(message)

        return fail

    assert guarded(unexpected("first line\nsecond line"), lambda: False) == 1
    assert capsys.readouterr().err == (
        "broker: unexpected error: ValueError: first line "
        "(run again with --debug for a traceback and report it)\n"
    )
    assert guarded(unexpected(""), lambda: False) == 1
    assert capsys.readouterr().err == (
        "broker: unexpected error: ValueError:  "
        "(run again with --debug for a traceback and report it)\n"
    )
    assert guarded(unexpected("y" * 300), lambda: False) == 1
    assert capsys.readouterr().err.count("y") == 200  # cut at 200 characters
    assert guarded(unexpected("boom"), lambda: True) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: boom" in err  # --debug


def test_debug_shows_the_traceback_of_a_broker_error(capsys):
    def fail() -> int:
        raise errors.ConfigError("bad", "fix it")

    assert guarded(fail, lambda: True) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("broker: bad (fix it)\n")
    assert guarded(fail, lambda: False) == 3
    assert "Traceback" not in capsys.readouterr().err


def test_success_is_0():
    assert guarded(lambda: 0, lambda: False) == 0


def test_ctrl_c_while_broker_waits_exits_130(home, tmp_path):
    """SIGINT to broker itself while it waits for an MFA code: 130 and one line."""
    started = tmp_path / "mfa-process-started"
    home.aws_config.write_text(
        "[profile slow]\nmfa_serial = arn:aws:iam::123456789012:mfa/dev-user\n"
        f"mfa_process = touch {started}; exec sleep 60\n"
    )
    home.add_key("slow")
    out_file, err_file = tmp_path / "out", tmp_path / "err"
    with open(out_file, "w") as out, open(err_file, "w") as err:
        # files, not pipes: a pipe stays open while anything that inherited it lives
        process = subprocess.Popen(
            [str(BIN / "broker"), "export", "slow"], env=home.env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert process.poll() is None, err_file.read_text()
            assert time.monotonic() < deadline, "mfa_process never started"
            time.sleep(0.05)
        time.sleep(0.2)  # broker is waiting on it now
        os.kill(process.pid, signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = err_file.read_text()
    assert code == 130, stderr
    # click turns a Ctrl-C inside a command into an abort: either way one line, 130
    assert stderr.strip().splitlines()[-1] in ("broker: interrupted", "broker: aborted")
    assert "Traceback" not in stderr and out_file.read_text() == ""
