"""Messages read as sentences: no name said twice, no quoted name before "'s", no
parenthesis closed twice (tests/test_invariants_cli.py), no "broker: Usage:"."""

from __future__ import annotations

import re
from pathlib import Path

import broker

ROOT = Path(broker.__file__).resolve().parents[1]


def test_no_quoted_name_takes_an_apostrophe_s():
    """f"{profile!r}'s key" prints 'enr''s key."""
    found = []
    for path in [*ROOT.joinpath("broker").rglob("*.py"), *ROOT.joinpath("plugins").rglob("*.py")]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"!r}'s\b", line):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    assert found == []


def test_an_unavailable_backend_is_named_once(home, tmp_path):
    env = {"PASSWORD_STORE_DIR": str(tmp_path / "no-store"), "OP_SERVICE_ACCOUNT_TOKEN": ""}
    listed = home.run("backend", "list", env=env, check=True).stdout
    assert "unavailable: no password store" in listed
    assert "unavailable: onepassword:" not in listed and "unavailable: pass:" not in listed
    shown = home.run("backend", "show", "onepassword", env=env, check=True).stdout
    assert "available:     no: no service-account token" in shown
    refused = home.run("backend", "set", "onepassword", env=env)
    assert "not available here: no service-account token" in refused.stderr
    assert "onepassword: onepassword:" not in refused.stderr
