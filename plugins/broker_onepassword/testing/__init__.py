"""An emulator of the 1Password SDK's native core, for tests without 1Password.

The ``onepassword-sdk`` package is a Python layer (pydantic types, one class per API)
over a native library, ``onepassword.lib.<arch>.op_uniffi_core``, that takes JSON
invocations and answers JSON. This package replaces *only* that native module (and, for
desktop-app authentication, the app's IPC library that ``onepassword.desktop_core``
loads with ctypes), so the SDK's real Python layer and types run unchanged::

    from broker_onepassword.testing import installed

    with installed(tmp_path / "op-account.json") as account:
        account.add_vault("AWS")
        ...  # OnePasswordBackend(settings={"vault": "AWS"}), token account.token

Activation: importing this package puts a router in place of the native core; the
router sends calls to the emulator while a state file is active — pinned with
:func:`install` / :func:`installed`, or named by ``BROKER_OP_EMULATOR`` — and to the
real core otherwise. For subprocesses, put :data:`SITE` on ``PYTHONPATH`` and set
``BROKER_OP_EMULATOR=<state file>`` (:func:`child_environment` does both): its
sitecustomize imports this package. A fresh state file accepts :data:`DEFAULT_TOKEN` and
holds one shared vault, :data:`DEFAULT_VAULT` (plus a personal "Private" vault and the
default "Shared" vault that, as in 1Password, service accounts cannot see).

The modules, by concern:

- :mod:`.account`: the fake account's state file (vaults, items, tokens) and its model;
- :mod:`.protocol`: the native core's four functions and the SDK operations
  (the JSON invocation protocol), with the core's local checks of tokens and
  integration names;
- :mod:`.references`: ``op://`` reference parsing and resolution;
- :mod:`.costs` and :mod:`.faults`: requests as 1Password counts them; injected faults;
- :mod:`.desktop`: the desktop app's IPC library;
- :mod:`.shim`: the router installed into ``sys.modules`` / ``sys.meta_path``;
- :mod:`.emulator`: :class:`OnePasswordEmulator`, the handle tests use.

Each rule the emulator follows names its source (1Password's documentation, the SDK's
sources and issues, or "measured": observed from the SDK 0.4.2 native core).
"""

from __future__ import annotations

import os
from pathlib import Path

from broker_onepassword.testing.account import (
    DEFAULT_TOKEN,
    DEFAULT_VAULT,
    ENV,
    PERSONAL_VAULT,
    SHARED_VAULT,
    active_path,
    make_token,
    totp_code,
)
from broker_onepassword.testing.costs import REQUESTS, REQUESTS_EACH, SIGN_IN_REQUESTS
from broker_onepassword.testing.emulator import OnePasswordEmulator, field, installed
from broker_onepassword.testing.errors import CoreError
from broker_onepassword.testing.shim import install, uninstall

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_VAULT",
    "ENV",
    "PERSONAL_VAULT",
    "REQUESTS",
    "REQUESTS_EACH",
    "SHARED_VAULT",
    "SIGN_IN_REQUESTS",
    "SITE",
    "CoreError",
    "OnePasswordEmulator",
    "active_path",
    "child_environment",
    "field",
    "install",
    "installed",
    "make_token",
    "totp_code",
    "uninstall",
]

#: The directory to put on a child process's ``PYTHONPATH``: its ``sitecustomize``
#: routes the SDK's core to the emulator while ``BROKER_OP_EMULATOR`` names a state file.
SITE = Path(__file__).resolve().parent / "_site"


def child_environment(
    state: str | os.PathLike[str], pythonpath: str | None = None
) -> dict[str, str]:
    """The variables that route a child process's SDK calls to the account in ``state``
    (a state file path): ``BROKER_OP_EMULATOR`` and ``PYTHONPATH`` (:data:`SITE` first,
    then ``pythonpath``, the child's own, if any). Merge them into the child's env."""
    return {
        ENV: os.fspath(state),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), pythonpath])),
    }
