"""One run of the command line: its Context and debug flag live on click's context object,
for that run only; a Context handed to :func:`broker.cli.app.run` is the one used, and
every Context is closed when the run ends. The table printer's layout."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from broker import config
from broker.backend import Item
from broker.cli import app, base
from broker.registry import Registry
from broker.services.context import Context
from broker.testing.memory import MemoryBackend


class ClosingMemory(MemoryBackend):
    """A memory backend that counts how often it is closed."""

    closed: ClassVar[list[str]] = []

    def close(self) -> None:
        ClosingMemory.closed.append(self.namespace)
        super().close()


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith(("AWS_", "BROKER_")):
            monkeypatch.delenv(key)
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    aws_config = tmp_path / "aws-config"
    aws_config.write_text("[profile dev]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws_config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    ClosingMemory.closed.clear()
    return tmp_path


def memory_context(tmp_path: Path) -> Context:
    """A Context whose one credential backend is :class:`ClosingMemory`, holding dev's key."""
    settings = config.Settings(
        path=tmp_path / "config.toml", backend="memory", session_cache="none",
        backends={"memory": {"store": uuid.uuid4().hex}},
    )
    ctx = Context(settings, Registry(settings.backends, extra={"memory": ClosingMemory}))
    ctx.backend("memory").set(
        "dev", Item(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="x" * 40)
    )
    return ctx


def test_an_injected_context_is_used_and_closed(isolated, capsys):
    ctx = memory_context(isolated)
    assert app.run(["list", "--backend", "memory"], context=ctx) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:3] == ["dev", "dev", "memory"]
    assert ClosingMemory.closed == ["credentials"]


def test_a_loaded_context_is_closed_when_the_run_ends(isolated, monkeypatch, capsys):
    loaded: list[Context] = []

    def load(registry: Registry | None = None) -> Context:
        loaded.append(memory_context(isolated))
        return loaded[-1]

    monkeypatch.setattr(Context, "load", staticmethod(load))
    assert app.run(["list", "--backend", "memory"]) == 0
    assert len(loaded) == 1 and ClosingMemory.closed == ["credentials"]
    assert app.run(["list", "--backend", "memory"]) == 0
    assert len(loaded) == 2, "each run loads its own Context"
    assert ClosingMemory.closed == ["credentials", "credentials"]


def test_an_injected_context_is_closed_even_when_the_command_line_is_wrong(isolated, capsys):
    ctx = memory_context(isolated)
    assert app.run(["--no-such-flag", "list"], context=ctx) == 2
    assert ClosingMemory.closed == ["credentials"]
    assert "no such option" in capsys.readouterr().err.lower()


def test_debug_holds_for_its_own_run_only(isolated, capsys):
    args = ["backend", "show", "no-such-backend"]
    assert app.run(["--debug", *args], context=memory_context(isolated)) != 0
    assert "Traceback" in capsys.readouterr().err
    assert app.run(args, context=memory_context(isolated)) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("broker: ")


def test_broker_debug_is_read_at_each_run(isolated, monkeypatch, capsys):
    args = ["backend", "show", "no-such-backend"]
    monkeypatch.setenv("BROKER_DEBUG", "1")
    assert app.run(args, context=memory_context(isolated)) != 0
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.delenv("BROKER_DEBUG")
    assert app.run(args, context=memory_context(isolated)) != 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_command_invoked_outside_run_gets_its_own_invocation(isolated):
    invocation = base.Invocation(context=memory_context(isolated))
    result = CliRunner().invoke(base.cli, ["list", "--backend", "memory"], obj=invocation)
    # `list` is registered once broker.cli.app assembled the commands
    assert result.exit_code == 0, result.output
    assert "dev" in result.output
    assert invocation.context is None, "closed with click's context"
    assert ClosingMemory.closed == ["credentials"]


def test_the_module_keeps_no_state_between_runs():
    """No module-level dict or flag carries a Context or the debug flag from run to run."""
    for module in (app, base):
        for name, value in vars(module).items():
            assert not isinstance(value, (dict, Context)) or name.startswith("__"), name


@pytest.mark.parametrize(
    ("rows", "lines"),
    [
        ([("A", "BB", "C"), ("aaa", "b", "")],
         ["A    BB  C", "aaa  b"]),
        ([("PROFILE", "NOTE"), ("x", "long note here")],
         ["PROFILE  NOTE", "x        long note here"]),
        ([("ONLY",), ("one",)], ["ONLY", "one"]),
    ],
)
def test_the_table_printer(rows, lines, capsys):
    base.echo_table(rows)
    assert capsys.readouterr().out.splitlines() == lines


def test_there_is_one_table_printer():
    """The commands print tables through base.echo_table, not a width loop of their own."""
    cli_dir = Path(base.__file__).parent
    for path in cli_dir.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name != "base.py":
            assert ".ljust(" not in text, path.name
