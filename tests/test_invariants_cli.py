"""Invariants of exit codes: every error class maps to its documented code, the CLI's one
translation point (broker/cli/errors.py) keeps it, and Ctrl-C is 130 end to end."""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import json
import os
import pkgutil
import re
import signal
import subprocess
import sys
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
    errors.KeyRejected: 8,
    errors.MFACodeRefused: 8,
    errors.ClockSkewError: 17,
    errors.Throttled: 12,
    errors.Unsupported: 18,
    errors.Interrupted: 130,
}


def documented_rows() -> list[tuple[int, str, str]]:
    """(code, name, meaning) for each row of the exit-code table in docs/errors.md."""
    text = DOC.read_text(encoding="utf-8")
    header = "| code | name | meaning |\n|---|---|---|\n"
    assert text.count(header) == 1, "docs/errors.md has no (or two) exit-code tables"
    rows = []
    for line in text.split(header, 1)[1].splitlines():
        if not line.startswith("|"):
            break
        match = re.fullmatch(r"\| (\d+) \| `([A-Z_]+)` \| (.+?) \|", line)
        assert match, f"not a row of the exit-code table: {line!r}"
        rows.append((int(match[1]), match[2], match[3]))
    return rows


def documented() -> dict[int, str]:
    """code -> meaning, from the table in docs/errors.md."""
    rows = documented_rows()
    table = {code: meaning for code, _, meaning in rows}
    assert len(table) == len(rows), "a code is documented twice"
    return table


def _all_error_classes() -> list[type[errors.BrokerError]]:
    """Every BrokerError subclass in broker and its built-in plugins."""
    packages = [broker]
    for name in ("broker_keyctl", "broker_pass", "broker_onepassword"):
        packages.append(importlib.import_module(name))
    for package in packages:
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__") or "._site" in info.name:
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


def test_the_documented_table_is_the_exit_code_enum():
    """Row for row, both ways: every member is documented with its name and meaning, in
    the enum's order, and every documented row is a member."""
    enum_rows = [(code.value, code.name, code.meaning) for code in errors.ExitCode]
    doc_rows = documented_rows()
    assert [row for row in doc_rows if row not in enum_rows] == [], "documented, not in ExitCode"
    assert [row for row in enum_rows if row not in doc_rows] == [], "in ExitCode, not documented"
    assert doc_rows == enum_rows


def test_the_table_parser_sees_a_difference():
    """The comparison above is not vacuous: a row changed in the text is seen."""
    assert len(documented_rows()) == len(errors.ExitCode) >= 20
    assert (4, "UNKNOWN_PROFILE", "unknown profile") in documented_rows()


def test_exit_codes_are_distinct_ints():
    values = [code.value for code in errors.ExitCode]
    assert len(set(values)) == len(values)
    assert all(type(code.value) is int and 0 <= code <= 255 for code in errors.ExitCode)
    assert errors.ExitCode.SUCCESS == 0 and errors.ExitCode.INTERRUPTED == 130


@pytest.mark.parametrize("cls", _all_error_classes(),
                         ids=lambda c: f"{c.__module__}.{c.__qualname__}")
def test_every_error_class_carries_an_exit_code_member(cls):
    assert isinstance(cls.exit_code, errors.ExitCode), cls


def test_no_exit_code_is_written_as_a_bare_number_in_the_cli():
    """The CLI returns and exits with ExitCode members, never literals (a child's own code
    is passed through as a variable)."""
    root = Path(broker.__file__).resolve().parent / "cli"
    found = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            value = None
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant):
                value = node.value.value
            elif (isinstance(node, ast.Call) and node.args
                  and isinstance(node.args[0], ast.Constant)
                  and ast.unparse(node.func) in ("sys.exit", "os._exit")):
                value = node.args[0].value
            if isinstance(value, int) and not isinstance(value, bool):
                found.append(f"{path.name}:{node.lineno}")
    assert found == []


def test_every_class_of_broker_errors_is_pinned():
    classes = {obj for _, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, errors.BrokerError)}
    assert classes == set(PINNED)


def test_every_documented_code_is_some_error_classes():
    """No row of the table is dead: each code but success and "unexpected" is raised as
    some class (1 is only what an error that is no BrokerError becomes)."""
    used = {cls.exit_code for cls in _all_error_classes()}
    assert set(documented()) - used == {0}
    assert set(documented()) - {0, 1} <= used


#: Bare BrokerErrors that are unexpected indeed: (file, the message's first words).
UNEXPECTED = {("broker/services/server.py", "cannot start a refresh (no thread left)")}


def _bare_raises() -> list[str]:
    """`raise BrokerError(...)` anywhere in broker or its plugins: exit code 1, which the
    table calls "unexpected error", for an error that was expected."""
    root = Path(broker.__file__).resolve().parents[1]
    found = []
    for path in sorted([*root.joinpath("broker").rglob("*.py"),
                        *root.joinpath("plugins").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                first = node.exc.args[0] if node.exc.args else None
                words = first.value if isinstance(first, ast.Constant) else ""
                where = str(path.relative_to(root))
                if name == "BrokerError" and (where, words) not in UNEXPECTED:
                    found.append(f"{where}:{node.lineno}")
    return found


def test_no_expected_failure_is_raised_as_the_unexpected_code():
    assert _bare_raises() == []


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


def _literal_hints() -> list[str]:
    """Every hint written out in a call like ``SomeError("message", "hint")``."""
    root = Path(broker.__file__).resolve().parents[1]
    hints = []
    for path in [*root.joinpath("broker").rglob("*.py"), *root.joinpath("plugins").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            hint = node.args[1]
            if isinstance(hint, ast.Constant) and isinstance(hint.value, str) and (
                name.endswith(("Error", "Unavailable", "NotFound", "Required", "Unsupported"))
            ):
                hints.append(hint.value)
    return hints


def test_no_message_closes_its_parentheses_twice(capsys):
    hints = _literal_hints()
    assert "install GnuPG (`apt install gnupg`)" in hints
    for hint in hints:
        line = str(errors.BackendError("what went wrong", hint))
        assert "))" not in line and not line.startswith("what went wrong ((")
        assert line.count("(") == line.count(")"), line

    def fail() -> int:
        raise errors.BackendUnavailable("pass: gpg not found",
                                        "install GnuPG (`apt install gnupg`)")

    guarded(fail, lambda: False)
    assert capsys.readouterr().err == (
        "broker: pass: gpg not found (install GnuPG — `apt install gnupg`)\n")


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
        # As from a terminal: SIGINT at its default disposition. A shell starts a
        # background job without job control (`cmd &` in a script, as CI runners do) with
        # SIGINT ignored, and a program inherits that; Python then keeps it ignored, as
        # every program should, so broker would rightly not answer ^C.
        process = subprocess.Popen(
            [sys.executable, "-c", _WITH_DEFAULT_SIGINT, str(BIN / "broker"), "export", "slow"],
            env=home.env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert process.poll() is None, err_file.read_text()
            assert time.monotonic() < deadline, "mfa_process never started"
            time.sleep(0.05)
        time.sleep(0.2)  # broker is waiting on it now
        os.kill(process.pid, signal.SIGINT)
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            # Seen in full runs from a fresh clone, never alone: keep what broker and this
            # process were doing, and see whether a second ^C ends it.
            state = _signal_state(process.pid)
            os.kill(process.pid, signal.SIGINT)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail(f"broker answered neither SIGINT; broker: {state}; now: "
                            f"{_signal_state(process.pid)}; pytest: {_signal_state(os.getpid())}"
                            f" handler {signal.getsignal(signal.SIGINT)!r}")
            import warnings

            warnings.warn(f"broker needed a second SIGINT; after the first: {state}",
                          stacklevel=1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = err_file.read_text()
    assert code == 130, stderr
    # click turns a Ctrl-C inside a command into an abort: either way one line, 130
    assert stderr.strip().splitlines()[-1] in ("broker: interrupted", "broker: aborted")
    assert "Traceback" not in stderr and out_file.read_text() == ""


#: Runs argv[1:] with SIGINT at its default disposition (exec keeps SIG_DFL).
_WITH_DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                        "os.execv(sys.argv[1], sys.argv[1:])")


def _signal_state(pid: int) -> str:
    """What /proc says of ``pid``'s signals, state and children (for a failure message)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError as exc:
        return f"unreadable: {exc}"
    keep = ("State", "Threads", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
    lines = [line for line in status.splitlines() if line.split(":")[0] in keep]
    stack = ""
    with contextlib.suppress(OSError):  # readable only with CAP_SYS_ADMIN
        stack = Path(f"/proc/{pid}/stack").read_text().replace("\n", " | ")
    return "; ".join([*lines, f"wchan {wchan}", f"children {children.strip() or '-'}",
                      f"stack {stack or '-'}"])


# --- the codes as the commands exit with them ---------------------------------------------


def _doc_row(words: str) -> int:
    """The code column of the row of docs/errors.md's tables that mentions ``words``."""
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines()
            if line.startswith("|") and words in line]
    assert len(rows) == 1, rows
    codes = [cell.strip() for cell in rows[0].split("|") if cell.strip().isdigit()]
    assert len(codes) == 1, rows[0]
    return int(codes[0])


def test_backend_set_on_an_unavailable_backend_is_7(home, tmp_path):
    result = home.run("backend", "set", "pass",
                      env={"PASSWORD_STORE_DIR": str(tmp_path / "no-store")})
    assert result.returncode == errors.BackendUnavailable.exit_code == 7, result.stderr
    assert "not available here" in result.stderr
    assert documented()[7] == "the chosen backend is not available here"


def test_an_unreachable_sign_in_endpoint_is_a_network_error_as_documented(home, sts):
    from broker.aws import federation
    from broker.testing.local_sts import free_port

    home.add_key("dev")
    endpoint = f"http://127.0.0.1:{free_port()}/federation"
    result = home.run("login", "dev", "--stdout", env={federation.ENDPOINT_VARIABLE: endpoint})
    assert result.returncode == 13, result.stderr
    assert "cannot reach the sign-in endpoint" in result.stderr
    assert _doc_row("sign-in endpoint (`broker login`) cannot be reached") == 13
    assert _doc_row("sign-in endpoint (`broker login`) answers with an HTTP error") == 10


def test_no_browser_for_login_is_a_documented_code_not_unexpected(home, sts):
    from broker.aws import federation
    from tests.support.federation import stub_federation

    home.add_key("dev")
    with stub_federation() as stub:
        # BROWSER names a launcher that fails: no browser can be started
        result = home.run("login", "dev", env={federation.ENDPOINT_VARIABLE: stub.url,
                                               "BROWSER": "false", "DISPLAY": ""})
    assert result.returncode == errors.Unsupported.exit_code == 18, result.stderr
    assert "unexpected" not in result.stderr
    assert "could not start a web browser" in result.stderr and "--stdout" in result.stderr
    assert json.loads(json.dumps(documented()[18]))  # a documented meaning


@pytest.mark.parametrize("args", [[], ["backend"], ["totp"]])
def test_a_group_without_a_command_prints_its_help_not_an_error_line(args):
    result = subprocess.run([str(BIN / "broker"), *args], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stderr.startswith(f"Usage: broker {' '.join(args)}".rstrip() + " [OPTIONS]")
    assert "broker: Usage:" not in result.stderr and "(see `" not in result.stderr
