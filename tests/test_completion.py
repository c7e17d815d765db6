"""Shell completion (click's): commands, and PROFILE from ~/.aws/config."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN

DOCS = Path(__file__).resolve().parents[1]


def _complete(home, *words: str) -> list[str]:
    line = " ".join(["broker", *words])
    env = {**home.env, "_BROKER_COMPLETE": "bash_complete", "COMP_WORDS": line,
           "COMP_CWORD": str(len(words))}
    done = subprocess.run([str(BIN / "broker")], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=True)
    return [line.split(",", 1)[1] for line in done.stdout.splitlines() if line]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("exec", "d"), ["default", "dev"]),
        (("exec", "--duration", "1h", "a"), ["admin"]),
        (("export", "re"), ["readonly"]),
        (("login", "p"), ["plain"]),
        (("clear", "b"), ["base"]),
        (("totp", "set", "c"), ["cp"]),
        (("ex",), ["exec", "export"]),
    ],
)
def test_profile_names_complete_from_the_aws_config(home, words, expected):
    assert _complete(home, *words) == expected


def test_a_broken_config_completes_nothing_and_says_nothing(home):
    home.aws_config.write_text("[profile x\n")
    assert _complete(home, "exec", "") == []


def test_the_bash_script_is_what_the_docs_say_to_eval(home):
    env = {**home.env, "_BROKER_COMPLETE": "bash_source"}
    done = subprocess.run([str(BIN / "broker")], env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    assert "complete -o nosort -F _broker_completion broker" in done.stdout
    for doc in ("README.md", "docs/guide.md"):
        assert 'eval "$(_BROKER_COMPLETE=bash_source broker)"' in (DOCS / doc).read_text()
