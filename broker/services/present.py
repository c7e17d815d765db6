"""Handing credentials over: an environment for `exec`, text for `export`."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Collection, Mapping

from broker import config
from broker.aws.credentials import format_time
from broker.childenv import withheld_variables
from broker.errors import NestedSession, UsageError
from broker.services import child
from broker.services.credentials import Resolved

#: Inherited variables that could shadow or leak into the credentials we set.
SCRUBBED = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CREDENTIAL_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_SESSION_EXPIRATION",
    "AWS_VAULT",
)

FORMATS = ("env", "export", "json", "ini")


def refuse_nesting(environ: Mapping[str, str]) -> None:
    """Refuse to run inside another broker session, as aws-vault refuses inside ``AWS_VAULT``.

    Raises:
        NestedSession: ``BROKER_PROFILE`` is set (non-empty) in ``environ``.
    """
    current = config.environment("BROKER_PROFILE", environ)
    if current:
        raise NestedSession(
            f"already inside a broker session for profile {current!r}",
            "exit that shell first, or unset BROKER_PROFILE if you really mean to nest",
        )


def variables(resolved: Resolved) -> dict[str, str]:
    """The credential variables for ``resolved``, variable name -> value: the key pair, the
    session token when there is one, ``AWS_CREDENTIAL_EXPIRATION`` (RFC 3339 UTC, as
    aws-vault sets it) when the credentials expire, and ``AWS_REGION`` and
    ``AWS_DEFAULT_REGION`` when a region is known. The key, token and region variables
    are those the AWS SDKs read ("Environment variables" in the AWS SDKs and Tools
    Reference Guide).
    """
    creds = resolved.credentials
    out = {
        "AWS_ACCESS_KEY_ID": creds.access_key_id,
        "AWS_SECRET_ACCESS_KEY": creds.secret_access_key,
    }
    if creds.session_token:
        out["AWS_SESSION_TOKEN"] = creds.session_token
    if creds.expiration:
        out["AWS_CREDENTIAL_EXPIRATION"] = format_time(creds.expiration)
    if resolved.region:
        out["AWS_REGION"] = resolved.region
        out["AWS_DEFAULT_REGION"] = resolved.region
    return out


def inherited(
    environ: Mapping[str, str], withheld: Collection[str] | None = None
) -> dict[str, str]:
    """What a child of `exec` or `exec --server` inherits: ``environ`` less the
    :data:`SCRUBBED` credential variables and less broker's own secret inputs
    (``withheld``, by default :func:`broker.childenv.withheld_variables`)."""
    hidden = withheld_variables() if withheld is None else withheld
    return {k: v for k, v in environ.items() if k not in SCRUBBED and k not in hidden}


def child_environment(
    resolved: Resolved, environ: Mapping[str, str], withheld: Collection[str] | None = None
) -> dict[str, str]:
    """:func:`inherited` from ``environ``, plus the credentials, the region and
    ``BROKER_PROFILE``."""
    env = inherited(environ, withheld)
    env.update(variables(resolved))
    env["BROKER_PROFILE"] = resolved.profile
    return env


def run(
    resolved: Resolved, command: list[str], withheld: Collection[str] | None = None
) -> None:
    """Replace this process with ``command`` (or $SHELL) holding the credentials
    (:func:`broker.services.child.replace`); returns only by raising.

    Raises:
        UsageError: the command is not found or may not be run.
    """
    env = child_environment(resolved, os.environ, withheld)
    child.replace(child.command_argv(command, os.environ), env)


def render(resolved: Resolved, fmt: str) -> str:
    """``resolved``'s credentials as text for ``broker export``, ending in a newline:
    ``json`` is the ``credential_process`` document (``Version`` 1, ``AccessKeyId``,
    ``SecretAccessKey``, ``SessionToken``, ``Expiration`` in RFC 3339 UTC), as the AWS CLI's
    "Sourcing credentials with an external process" page defines it; ``env`` is
    ``NAME=value`` lines of :func:`variables`; ``export`` the same as shell ``export``
    lines (values quoted with :func:`shlex.quote`); ``ini`` a credentials-file section
    named after the profile.

    Raises:
        UsageError: ``fmt`` is not one of :data:`FORMATS`.
    """
    creds = resolved.credentials
    if fmt == "json":
        document: dict[str, object] = {
            "Version": 1,
            "AccessKeyId": creds.access_key_id,
            "SecretAccessKey": creds.secret_access_key,
        }
        if creds.session_token:
            document["SessionToken"] = creds.session_token
        if creds.expiration:
            document["Expiration"] = format_time(creds.expiration)
        return json.dumps(document) + "\n"
    values = variables(resolved)
    if fmt == "env":
        return "".join(f"{k}={v}\n" for k, v in values.items())
    if fmt == "export":
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())
    if fmt == "ini":
        lines = [f"[{resolved.profile}]"]
        lines.append(f"aws_access_key_id = {creds.access_key_id}")
        lines.append(f"aws_secret_access_key = {creds.secret_access_key}")
        if creds.session_token:
            lines.append(f"aws_session_token = {creds.session_token}")
        if resolved.region:
            lines.append(f"region = {resolved.region}")
        return "\n".join(lines) + "\n"
    raise UsageError(f"unknown format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
