"""docs/cli.md is what `broker ... --help` prints, section by section (`-h, --help`
included, wrapped as on a terminal of 80 columns or more), and `--check` catches drift."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from broker.cli import app

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gen_cli_docs.py"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sections(text: str) -> dict[str, str]:
    """Command path -> the help text shown under its heading."""
    found = re.findall(r"^## `([^`]+)`\n\n```\n(.*?)\n```\n", text, re.S | re.M)
    return dict(found)


def test_each_section_is_what_help_prints(generator, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # click wraps at 78 on any terminal this wide
    documented = sections(generator.render())
    assert "broker" in documented and "broker import credentials-file" in documented
    for path, shown in documented.items():
        capsys.readouterr()
        assert app.run([*path.split()[1:], "--help"]) == 0
        printed = capsys.readouterr().out
        assert printed.rstrip("\n") == shown, path
        assert "  -h, --help" in shown, path  # the short option the group adds


def test_check_fails_on_a_stale_file_and_passes_on_a_fresh_one(generator, tmp_path,
                                                                 monkeypatch, capsys):
    out = tmp_path / "cli.md"
    monkeypatch.setattr(generator, "OUT", out)
    monkeypatch.setattr(sys, "argv", ["gen_cli_docs.py", "--check"])
    assert generator.main() == 1  # missing
    out.write_text(generator.render().replace("-h, --help", "--help"))
    assert generator.main() == 1  # stale
    assert "out of date" in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["gen_cli_docs.py"])
    assert generator.main() == 0
    monkeypatch.setattr(sys, "argv", ["gen_cli_docs.py", "--check"])
    assert generator.main() == 0
