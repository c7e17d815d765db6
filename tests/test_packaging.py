"""The distribution's name: its own (``broker`` on the public package index is an unrelated
project, so ``pipx install broker`` would install that), while the command and the import
package stay ``broker``; and the README installs it from a clone."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
NAME = "aws-broker-cli"


def test_the_distribution_has_a_name_of_its_own_and_the_command_is_broker():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == NAME
    assert project["scripts"] == {"broker": "broker.cli:main"}
    assert (ROOT / "broker" / "__init__.py").exists()


def test_the_readme_installs_from_a_clone_without_the_system_pip():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## The first ten minutes")
    install = readme[start:readme.index("as you probably have it", start)]
    assert "pipx install ." in install and "uv tool install ." in install
    assert "externally-managed-environment" in install
    assert f"`{NAME}`" in install
    assert "pip install ." not in install.replace("`pip install .` into", "")
