"""The core knows no plugin by name: plugin facts live in the plugins.

Which backend is preferred, which one caches sessions, where `backend login` keeps a
token, what doctor checks for a store, which references may be shown: each comes from
what a backend class declares (``priority``, ``capabilities``, ``checks()``,
``secret_reference()``, ``shows_reference()``), so a third-party plugin gets the
treatment the built-in ones get. This test reads every module under ``broker/`` and
fails on a string constant that *is* a built-in plugin's name or reference scheme
(``"keyctl"``, ``"pass"``), or a secret reference of one (``"keyctl:..."``, ``"op://"``):
such a constant is a value compared, a key, a default, a reference composed by the
core. A message or hint may still name a plugin as an example inside a sentence, and
docstrings and comments are not looked at.

Not scanned: ``broker/testing`` (fakes and emulators of the stores themselves), and
the importers of aws-vault's formats, which name aws-vault's own backends (its
``pass``, ``file`` and ``keyctl``), not broker's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
NOT_SCANNED_DIRS = ("broker/testing/",)
NOT_SCANNED_FILES = frozenset({"broker/importers/aws_vault.py"})
#: (file, function): functions that speak of aws-vault's backends, by aws-vault's names.
AWS_VAULT_FUNCTIONS = frozenset({
    ("broker/services/importers.py", "_vault_store"),
    ("broker/services/importers.py", "import_aws_vault"),
    ("broker/cli/move_commands.py", "import_aws_vault_command"),
})


def builtin_words() -> frozenset[str]:
    """The built-in plugins' names and reference schemes, from broker's pyproject.toml
    (the entry points they are registered through, like any plugin)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    groups = project["project"]["entry-points"]
    return frozenset(groups["broker.backends"]) | frozenset(groups["broker.references"])


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _skipped(tree: ast.AST, path: str) -> set[int]:
    """Nodes inside the aws-vault functions of ``path`` (decorators included)."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
            (path, node.name) in AWS_VAULT_FUNCTIONS
        ):
            ids.update(id(inner) for inner in ast.walk(node))
    return ids


def names_in_logic(source: str, words: frozenset[str], path: str = "") -> list[str]:
    """``"LINE: 'constant'"`` for each string constant of ``source`` that is one of
    ``words`` or starts with one of them and a colon (a reference: ``keyctl:x``, the
    ``keyctl:`` of an f-string, ``op://``); docstrings aside."""
    tree = ast.parse(source)
    ignored = _docstrings(tree) | _skipped(tree, path)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        if id(node) in ignored:
            continue
        value = node.value
        head, colon, _ = value.partition(":")
        if value in words or (colon and head in words):
            found.append(f"{node.lineno}: {value!r}")
    return found


def core_modules() -> list[Path]:
    modules = []
    for path in sorted((ROOT / "broker").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(NOT_SCANNED_DIRS) or relative in NOT_SCANNED_FILES:
            continue
        modules.append(path)
    return modules


def test_the_builtin_words_are_known() -> None:
    assert {"keyctl", "pass", "onepassword", "op"} <= builtin_words()


@pytest.mark.parametrize(
    "source",
    [
        'if name == "keyctl":\n    pass\n',
        'x = name in ("pass", "other")\n',
        'ORDER = ["onepassword"]\n',
        'table = {"pass": 1}\n',
        'def f(name="keyctl"):\n    """Docstring."""\n',
        'ref = f"keyctl:{name}-token"\n',
        'ok = value.startswith("op://")\n',
    ],
)
def test_the_scan_finds_names_used_in_logic(source: str) -> None:
    assert names_in_logic(source, builtin_words()), source


@pytest.mark.parametrize(
    "source",
    [
        '"""Docstring naming keyctl, pass and onepassword."""\n',
        'def f():\n    """keyctl"""\n',
        'hint = "use a backend that stores a totp field (keyctl, pass, onepassword)"\n',
        '# if name == "keyctl"\nx = 1\n',
        'message = f"cannot keep the token in {name}"\n',
    ],
)
def test_the_scan_leaves_docstrings_comments_and_sentences(source: str) -> None:
    assert not names_in_logic(source, builtin_words()), source


def test_no_core_module_names_a_builtin_plugin_in_its_logic() -> None:
    words = builtin_words()
    offending = {}
    for path in core_modules():
        relative = path.relative_to(ROOT).as_posix()
        found = names_in_logic(path.read_text(encoding="utf-8"), words, relative)
        if found:
            offending[relative] = found
    assert not offending, (
        "the core names built-in plugins; declare the fact on the Backend class instead "
        f"(priority, capabilities, checks(), secret_reference()): {offending}"
    )


def test_the_aws_vault_exemptions_still_exist() -> None:
    """An exemption whose function was renamed or removed must not linger."""
    for path, function in AWS_VAULT_FUNCTIONS:
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert function in names, (path, function)
    for path in NOT_SCANNED_FILES:
        assert (ROOT / path).exists(), path
