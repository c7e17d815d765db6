"""`broker` or `broker backend` run without a command prints the help itself, exactly once
and ending in one newline, and exits 2 (click's usage-error code), in process."""

from __future__ import annotations

import click
import pytest

from broker.cli.errors import guarded

NoArgsIsHelpError = getattr(click.exceptions, "NoArgsIsHelpError", None)


@pytest.mark.skipif(NoArgsIsHelpError is None, reason="click before 8.2 prints the help itself")
def test_a_group_without_a_command_prints_its_help_and_exits_2(capsys):
    @click.group(no_args_is_help=True)
    def group() -> None:
        """Group help."""

    @group.command()
    def sub() -> None:
        """Sub help."""

    def run() -> int:
        with click.Context(group, info_name="broker") as ctx:
            assert NoArgsIsHelpError is not None
            raise NoArgsIsHelpError(ctx)

    assert guarded(run, lambda: False) == 2
    err = capsys.readouterr().err
    with click.Context(group, info_name="broker") as ctx:
        help_text = ctx.get_help()
    assert err == help_text.rstrip("\n") + "\n"
    assert err.startswith("Usage: broker") and not err.startswith("broker:")
