"""``BROKER_*`` environment variables are read in one module, broker/config.py: any other
module asks :func:`broker.config.environment`. Checked by scanning the source (AST)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from broker import config

ROOT = Path(__file__).resolve().parents[1]
#: The one module that reads BROKER_* variables itself.
READER = "broker/config.py"
#: A ``sitecustomize.py`` (the 1Password emulator's) runs at the start-up of every
#: interpreter given its directory on PYTHONPATH, some of which cannot import broker
#: (another Python): the variable decides whether broker is imported at all, so it is read
#: before any import of broker.
STARTUP_HOOK = "sitecustomize.py"
ENVIRON_NAMES = ("environ", "_environ", "env", "environment")


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments."""
    found = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def _broker_name(node: ast.expr, constants: dict[str, str]) -> bool:
    """Whether ``node`` spells a BROKER_* variable name: a literal, a module constant, an
    f-string or a concatenation that starts with ``BROKER_``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.startswith("BROKER_")
    if isinstance(node, ast.Name):
        return constants.get(node.id, "").startswith("BROKER_")
    if isinstance(node, ast.JoinedStr) and node.values:
        return _broker_name(node.values[0], constants)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _broker_name(node.left, constants)
    return False


def _is_environ(node: ast.expr) -> bool:
    """``os.environ``, ``environ``, ``self.env``, ``facts.environ``...: a mapping that is
    the environment or stands for it."""
    if isinstance(node, ast.Attribute):
        return node.attr in ENVIRON_NAMES
    return isinstance(node, ast.Name) and node.id in ENVIRON_NAMES


def environment_reads(source: str) -> list[int]:
    """Line numbers where ``source`` reads a BROKER_* variable from the environment."""
    tree = ast.parse(source)
    constants = _constants(tree)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and _broker_name(node.args[0], constants):
            func = node.func
            getenv = ast.unparse(func) in ("os.getenv", "getenv", "posix.getenv")
            method = (isinstance(func, ast.Attribute) and _is_environ(func.value)
                      and func.attr in ("get", "pop", "setdefault", "__getitem__"))
            if getenv or method:
                lines.append(node.lineno)
        elif (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
              and _is_environ(node.value) and _broker_name(node.slice, constants)):
            lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and _broker_name(node.left, constants):
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, (ast.In, ast.NotIn)) and _is_environ(right):
                    lines.append(node.lineno)
    return sorted(lines)


def _sources() -> list[Path]:
    return sorted([*ROOT.joinpath("broker").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")])


def test_the_scanner_sees_every_way_of_reading():
    source = '''
import os
from os import environ, getenv
VARIABLE = "BROKER_THING"
a = os.environ.get("BROKER_A")
b = os.getenv(VARIABLE)
c = environ["BROKER_C"]
d = "BROKER_D" in os.environ
e = os.environ.get(f"BROKER_{name.upper()}")
f = getenv("BROKER_" + name)
g = facts.environ.get("BROKER_G", "")
h = os.environ.pop("BROKER_H", None)
'''
    assert environment_reads(source) == [5, 6, 7, 8, 9, 10, 11, 12]


def test_the_scanner_leaves_other_uses_alone():
    source = '''
import os
env = {}
env["BROKER_PROFILE"] = "dev"          # setting a child's variable is no read
a = os.environ.get("AWS_PROFILE")
b = config.environment("BROKER_BACKEND")
c = {"BROKER_X": 1}.get("BROKER_X")
'''
    assert environment_reads(source) == []


def test_no_module_but_config_reads_a_broker_variable():
    found = []
    for path in _sources():
        where = str(path.relative_to(ROOT))
        if where == READER or path.name == STARTUP_HOOK:
            continue
        found += [f"{where}:{line}" for line in environment_reads(path.read_text("utf-8"))]
    assert found == [], "read BROKER_* variables through broker.config.environment()"


def test_the_start_up_hook_is_the_only_other_reader():
    hooks = [path for path in _sources() if path.name == STARTUP_HOOK]
    for path in hooks:
        assert len(path.read_text("utf-8").splitlines()) < 40, "a hook, not a module"


def _environment_calls() -> list[tuple[str, str]]:
    """(file:line, name) for each ``environment("BROKER_...")`` call with a literal name."""
    calls = []
    for path in _sources():
        tree = ast.parse(path.read_text("utf-8"))
        constants = _constants(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and node.args
                    and ast.unparse(node.func).endswith("environment")):
                first = node.args[0]
                name = (first.value if isinstance(first, ast.Constant)
                        else constants.get(first.id, "") if isinstance(first, ast.Name) else "")
                if isinstance(name, str) and name.startswith("BROKER_"):
                    calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", name))
    return calls


def test_every_name_asked_for_is_listed():
    calls = _environment_calls()
    assert len(calls) >= 8
    assert [(where, name) for where, name in calls if name not in config.VARIABLES] == []


def test_every_listed_variable_is_documented():
    docs = "\n".join(p.read_text("utf-8") for p in [ROOT / "README.md",
                                                     *ROOT.joinpath("docs").rglob("*.md")])
    assert [name for name in config.VARIABLES if name not in docs] == []


def test_an_unlisted_name_is_refused():
    with pytest.raises(KeyError, match="BROKER_TYPO"):
        config.environment("BROKER_TYPO")


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("x", "x")])
def test_an_empty_value_counts_as_unset(value, expected):
    environ = {} if value is None else {"BROKER_BACKEND": value}
    assert config.environment("BROKER_BACKEND", environ) == expected


def test_debug_is_read_each_time(monkeypatch):
    monkeypatch.delenv("BROKER_DEBUG", raising=False)
    assert config.debug_requested() is False
    monkeypatch.setenv("BROKER_DEBUG", "1")
    assert config.debug_requested() is True
    assert config.debug_requested({"BROKER_DEBUG": ""}) is False
