"""The cached fast path: ``exec PROFILE [-- CMD...]`` and ``export PROFILE [--format F]``.

When the target's session is in the cache, answer without click, boto3 or any
credential backend. Anything unusual (another flag, a cache miss, any error)
returns None and the full command line handles it, errors included.
"""

from __future__ import annotations

import os
import sys


def _parse_exec(args: list[str]) -> tuple[str, list[str]] | None:
    if not args or args[0].startswith("-"):
        return None
    profile, rest = args[0], args[1:]
    if rest and rest[0] == "--":
        return profile, rest[1:]
    if rest and rest[0].startswith("-"):
        return None
    return profile, rest


def _parse_export(args: list[str]) -> tuple[str, str] | None:
    profile, fmt = None, "env"
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--format", "-f") and i + 1 < len(args):
            fmt, i = args[i + 1], i + 2
            continue
        if arg.startswith("--format="):
            fmt = arg.split("=", 1)[1]
        elif arg.startswith("-") or profile is not None:
            return None
        else:
            profile = arg
        i += 1
    if profile is None:  # the AWS CLI's default profile, exactly as the full path picks it
        from broker.aws.profiles import default_profile_name

        profile = default_profile_name()
    return profile, fmt


def try_fast(args: list[str]) -> int | None:
    """Serve ``args`` (the command line without the program's name) from the session
    cache: ``exec`` replaces this process, ``export`` prints and ends it (exit code 0).

    None when the full command line must handle them: another command or flag, a cache
    miss, ``BROKER_DEBUG`` set, a nested ``exec``, ``BROKER_BACKEND`` naming a backend the
    plugin index (read anyway) does not offer, or any error (never raised here).
    """
    if len(args) < 2 or args[0] not in ("exec", "export"):
        return None
    try:
        from broker import config
        from broker.errors import ExitCode

        if config.debug_requested():
            return None
        if args[0] == "exec":
            parsed_exec = _parse_exec(args[1:])
            if parsed_exec is None or config.environment("BROKER_PROFILE"):
                return None
            profile, command = parsed_exec
        else:
            parsed_export = _parse_export(args[1:])
            if parsed_export is None:
                return None
            profile, fmt = parsed_export
            from broker.services.present import FORMATS

            if fmt not in FORMATS:
                return None
        from broker.services import credentials
        from broker.services.context import Context

        ctx = Context.load()
        resolved = credentials.cached(ctx, profile)
        if resolved is None:
            return None
        chosen = config.environment("BROKER_BACKEND")
        if chosen and not ctx.registry.known_usable(chosen):
            return None  # an unknown, disabled or broken name: the full path says which
        from broker.services import present

        if args[0] == "exec":
            from broker.childenv import withheld_variables

            withheld = withheld_variables(ctx.settings, ctx.aws)
            present.run(resolved, command, withheld)  # replaces this process
            return None  # pragma: no cover - run() only returns by raising
        sys.stdout.write(present.render(resolved, fmt))
        sys.stdout.flush()
        sys.stderr.flush()
        # Nothing is left to clean up (no files, no clients): skipping the interpreter's
        # shutdown saves ~4 ms, a tenth of this path, as exec does by replacing itself.
        os._exit(ExitCode.SUCCESS)
    except Exception:
        return None  # the full path reports the problem properly
