"""Generate docs/cli.md from the click commands; --check fails if it has drifted."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from broker.cli.app import cli

OUT = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += walk(command.commands[name], [*path, name])
    return found


def render() -> str:
    parts = [
        "# CLI reference\n",
        "Generated from the commands themselves by `scripts/gen_cli_docs.py`; "
        "CI checks it is current. Exit codes: [errors.md](errors.md).\n",
    ]
    for path, command in walk(cli, ["broker"]):
        name = " ".join(path)
        with click.Context(
            command, info_name=name, terminal_width=88, max_content_width=88
        ) as ctx:
            text = command.get_help(ctx)
        parts.append(f"## `{name}`\n\n```\n{text}\n```\n")
    return "\n".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            sys.stderr.write(
                "docs/cli.md is out of date: run .venv/bin/python scripts/gen_cli_docs.py\n"
            )
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
