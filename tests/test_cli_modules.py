"""The command line is assembled without an import cycle: `broker.cli.base` holds what the
command modules share, each `*_commands` module imports base (never app nor a sibling),
and `broker.cli.app` imports the command modules and runs the group."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import broker.cli

CLI = Path(broker.cli.__file__).resolve().parent
MODULES = sorted(f"broker.cli.{path.stem}" for path in CLI.glob("*.py") if path.stem != "__init__")
COMMAND_MODULES = [name for name in MODULES if name.endswith("_commands")]


def _imports(module: str, *, top_level_only: bool) -> set[str]:
    """The broker.cli modules ``module`` names in an import statement."""
    tree = ast.parse((CLI / f"{module.rsplit('.', 1)[1]}.py").read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES}


def _loaded_after_import(module: str) -> list[str]:
    """The broker.cli modules a fresh interpreter holds after ``import module``."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('broker.cli.'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
        cwd=CLI.parents[1],
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_there_are_command_modules_to_check():
    assert "broker.cli.base" in MODULES and "broker.cli.app" in MODULES
    assert len(COMMAND_MODULES) >= 4


def test_base_imports_no_command_module_not_even_lazily():
    assert _imports("broker.cli.base", top_level_only=False) <= {"broker.cli.errors"}


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_a_command_module_imports_only_base_and_errors(module):
    assert _imports(module, top_level_only=False) <= {"broker.cli.base", "broker.cli.errors"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import cycle of ``graph`` (module -> the modules it imports) as the path that
    closes it, ``[a, b, a]``; None when there is none."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name):], name]
        if name in done:
            return None
        for child in sorted(graph.get(name, ())):
            cycle = visit(child, [*path, name])
            if cycle:
                return cycle
        done.add(name)
        return None

    for name in sorted(graph):
        cycle = visit(name, [])
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_the_module_graph_has_no_cycle():
    graph = {name: _imports(name, top_level_only=True) for name in MODULES}
    assert find_cycle(graph) is None


def test_no_cycle_even_through_imports_inside_functions():
    """An import deferred into a function still ties two modules together: a cycle
    through one would only fail at the call that makes it."""
    graph = {name: _imports(name, top_level_only=False) for name in MODULES}
    assert find_cycle(graph) is None


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone_in_a_fresh_interpreter(module):
    """Importing any one module first works: a cycle would meet a half-initialised module."""
    loaded = _loaded_after_import(module)
    assert module in loaded


def test_the_fast_path_imports_no_other_cli_module():
    assert _imports("broker.cli.fast", top_level_only=False) == set()


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_importing_a_command_module_alone_does_not_load_the_app(module):
    loaded = _loaded_after_import(module)
    assert "broker.cli.app" not in loaded
    assert [m for m in loaded if m.endswith("_commands")] == [module]


def test_base_alone_loads_no_command_module():
    loaded = _loaded_after_import("broker.cli.base")
    assert not [m for m in loaded if m.endswith("_commands") or m == "broker.cli.app"]


def test_the_app_assembles_every_command_module():
    loaded = _loaded_after_import("broker.cli.app")
    assert set(COMMAND_MODULES) <= set(loaded)


def test_the_fast_path_stays_free_of_click():
    code = "import sys, broker.cli.fast; print('click' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, cwd=CLI.parents[1])
    assert done.stdout.strip() == "False"
