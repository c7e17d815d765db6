"""Generate docs/cli.md from the click commands; --check fails if it has drifted."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from broker.cli.app import cli

OUT = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


#: The width `--help` wraps at on a terminal of 80 columns or more: click's formatter
#: takes min(columns, ``max_content_width`` = 80) - 2. Each section is then exactly what
#: `broker ... --help` prints there.
WIDTH = 78


def walk(
    command: click.Command, name: str, parent: click.Context | None = None
) -> list[click.Context]:
    """A context for ``command`` and each command under it, depth first, subcommands by
    name. Each is made as click makes it for `broker ... --help`: a child of its group's
    context (so ``help_option_names = ["-h", "--help"]`` and the other settings a group
    passes down hold), with the command's own ``context_settings``."""
    sizes = {} if parent else {"terminal_width": WIDTH}
    ctx = click.Context(command, info_name=name, parent=parent,
                        **{**sizes, **command.context_settings})
    found = [ctx]
    if isinstance(command, click.Group):
        for sub in sorted(command.commands):
            found += walk(command.commands[sub], sub, ctx)
    return found


def render() -> str:
    """The whole of docs/cli.md: every command's `--help`, as printed on a wide terminal."""
    parts = [
        "# CLI reference\n",
        "Generated from the commands themselves by `scripts/gen_cli_docs.py`; "
        "CI checks it is current. Each section is what `broker ... --help` prints on a "
        "terminal 80 columns wide or wider. "
        "Exit codes: [errors.md](errors.md).\n",
    ]
    for ctx in walk(cli, "broker"):
        parts.append(f"## `{ctx.command_path}`\n\n```\n{ctx.command.get_help(ctx)}\n```\n")
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
