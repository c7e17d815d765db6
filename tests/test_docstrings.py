"""Every public module, class, function and method under ``broker/`` and ``plugins/``
has a docstring.

The sources are read with :mod:`ast`, nothing is imported. What must have one:

- every module, private ones (``_fields.py``) included, and every package
  (``__init__.py``);
- every class, function and method whose name does not start with ``_``, at module
  level or inside a class that is itself public (and so on down), including those
  under ``if``/``try`` blocks at module or class level.

What need not:

- names starting with ``_`` (dunder methods included), and everything inside a
  private class;
- nested functions and the classes defined inside a function;
- ``@overload`` stubs (the implementation carries the docstring);
- property setters and deleters (``@x.setter``): the getter documents the property;
- a method that overrides a method with a docstring in one of its class's base
  classes, when that base class is defined under ``broker/`` or ``plugins/``
  (followed through imports, transitively): it inherits that contract, as
  ``inspect.getdoc`` and ``help()`` show, and needs its own only if it adds something;
- a click command or group callback whose decorator passes ``help=``. Without
  ``help=`` the docstring *is* the command's ``--help`` text, so it is required.

The failure lists every offender as ``path:line kind qualified.name``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Source directories, each with the directory its module names are relative to.
SOURCE_ROOTS = ((ROOT / "broker", ROOT), (ROOT / "plugins", ROOT / "plugins"))

Scope = ast.Module | ast.ClassDef
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Module:
    """One source file: its dotted name, path relative to the repository, and tree."""

    name: str
    path: str
    tree: ast.Module
    is_package: bool


def _modules() -> list[Module]:
    modules = []
    for source, base in SOURCE_ROOTS:
        for path in sorted(source.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            modules.append(Module(".".join(parts), str(path.relative_to(ROOT)), tree, is_package))
    return modules


def _body_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements of a scope's body, looking into ``if``/``try``/``with`` blocks."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            yield from _body_statements(stmt.body)
            yield from _body_statements(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody):
                yield from _body_statements(block)
            for handler in stmt.handlers:
                yield from _body_statements(handler.body)
        elif isinstance(stmt, ast.With):
            yield from _body_statements(stmt.body)
        else:
            yield stmt


def _import_table(module: Module) -> dict[str, str]:
    """Local name -> fully qualified name, for imports and classes defined in ``module``."""
    table: dict[str, str] = {}
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for stmt in ast.walk(module.tree):
        if isinstance(stmt, ast.ImportFrom):
            origin = stmt.module or ""
            if stmt.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (stmt.level - 1)]
                origin = ".".join([*anchor, origin] if origin else anchor)
            for alias in stmt.names:
                table[alias.asname or alias.name] = f"{origin}.{alias.name}"
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                table[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
    for stmt in _body_statements(module.tree.body):
        if isinstance(stmt, ast.ClassDef):
            table[stmt.name] = f"{module.name}.{stmt.name}"
    return table


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    if isinstance(node, ast.Subscript):  # Generic[T], Protocol[T]
        return _dotted(node.value)
    return None


class Codebase:
    """Every class under broker/ and plugins/ by qualified name, with its resolved bases."""

    def __init__(self, modules: list[Module]) -> None:
        self.classes: dict[str, ast.ClassDef] = {}
        self.bases: dict[str, list[str]] = {}
        tables = {m.name: _import_table(m) for m in modules}
        for module in modules:
            self._collect(module, module.tree.body, module.name, tables[module.name])
        self.reexports = {
            f"{m.name}.{local}": target for m in modules for local, target in tables[m.name].items()
        }

    def _collect(
        self, module: Module, body: list[ast.stmt], prefix: str, table: dict[str, str]
    ) -> None:
        for stmt in _body_statements(body):
            if isinstance(stmt, ast.ClassDef):
                qualified = f"{prefix}.{stmt.name}"
                self.classes[qualified] = stmt
                bases = []
                for base in stmt.bases:
                    dotted = _dotted(base)
                    if dotted is None:
                        continue
                    head, _, rest = dotted.partition(".")
                    resolved = table.get(head, f"{module.name}.{head}")
                    bases.append(f"{resolved}.{rest}" if rest else resolved)
                self.bases[qualified] = bases
                self._collect(module, stmt.body, qualified, table)

    def _resolve(self, name: str) -> str | None:
        seen = set()
        while name not in self.classes and name in self.reexports and name not in seen:
            seen.add(name)
            name = self.reexports[name]
        return name if name in self.classes else None

    def documented_in_base(self, class_name: str, method: str) -> bool:
        """Whether a base class (in this codebase, transitively) documents ``method``."""
        pending = list(self.bases.get(class_name, []))
        seen: set[str] = set()
        while pending:
            base = self._resolve(pending.pop(0))
            if base is None or base in seen:
                continue
            seen.add(base)
            for stmt in _body_statements(self.classes[base].body):
                if (
                    isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and stmt.name == method
                    and ast.get_docstring(stmt) is not None
                ):
                    return True
            pending.extend(self.bases.get(base, []))
        return False


def _decorator_names(node: FunctionNode) -> list[str]:
    names = []
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        names.append(_dotted(target) or "")
    return names


def _is_overload(node: FunctionNode) -> bool:
    return any(name.rpartition(".")[2] == "overload" for name in _decorator_names(node))


def _is_accessor(node: FunctionNode) -> bool:
    return any(name.endswith((".setter", ".deleter")) for name in _decorator_names(node))


def _click_help_given(node: FunctionNode) -> bool:
    for decorator in node.decorator_list:
        if not isinstance(decorator, ast.Call):
            continue
        name = _dotted(decorator.func) or ""
        if name.rpartition(".")[2] in {"command", "group"} and any(
            keyword.arg == "help" for keyword in decorator.keywords
        ):
            return True
    return False


def missing_docstrings(modules: list[Module]) -> list[str]:
    """Every offender as ``path:line kind qualified.name``, in file order."""
    codebase = Codebase(modules)
    missing: list[str] = []

    def visit(module: Module, scope: Scope, prefix: str) -> None:
        in_class = isinstance(scope, ast.ClassDef)
        for stmt in _body_statements(scope.body):
            if isinstance(stmt, ast.ClassDef):
                if stmt.name.startswith("_"):
                    continue
                qualified = f"{prefix}.{stmt.name}"
                if ast.get_docstring(stmt) is None:
                    missing.append(f"{module.path}:{stmt.lineno} class {qualified}")
                visit(module, stmt, qualified)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if stmt.name.startswith("_") or ast.get_docstring(stmt) is not None:
                    continue
                if _is_overload(stmt) or _is_accessor(stmt) or _click_help_given(stmt):
                    continue
                if in_class and codebase.documented_in_base(prefix, stmt.name):
                    continue
                kind = "method" if in_class else "function"
                missing.append(f"{module.path}:{stmt.lineno} {kind} {prefix}.{stmt.name}")

    for module in modules:
        if ast.get_docstring(module.tree) is None:
            missing.append(f"{module.path}:1 module {module.name}")
        visit(module, module.tree, module.name)
    return missing


def test_every_public_name_has_a_docstring() -> None:
    missing = missing_docstrings(_modules())
    assert not missing, f"{len(missing)} without a docstring:\n" + "\n".join(missing)


def test_the_check_sees_a_missing_docstring() -> None:
    """The walker flags what it should and spares what the rules spare."""
    source = '''
"""A module."""
from typing import overload
import click

class Base:
    """A base."""
    def get(self, name):
        """Documented contract."""

class Child(Base):
    """A child."""
    def get(self, name):
        return None
    def put(self, name):
        return None
    def _private(self):
        return None
    def __repr__(self):
        return ""
    @property
    def size(self):
        """The size."""
    @size.setter
    def size(self, value):
        pass

@overload
def one(x: int) -> int: ...
def one(x):
    """Implementation."""
    def nested():
        pass

@click.command(help="Shown by --help.")
def cmd():
    pass

@click.command()
def bare():
    pass

def undocumented():
    pass

class _Hidden:
    def visible(self):
        pass
'''
    module = Module("sample", "sample.py", ast.parse(source), is_package=False)
    found = [line.partition(" ")[2] for line in missing_docstrings([module])]
    assert found == [
        "method sample.Child.put",
        "function sample.bare",
        "function sample.undocumented",
    ]
