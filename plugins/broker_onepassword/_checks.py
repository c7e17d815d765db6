"""The onepassword backend's rows in ``broker doctor``.

Each function looks at one thing and returns its rows (a list, empty when there is
nothing to say), so :meth:`OnePasswordBackend.checks` is their concatenation and a new
check is one more function. All of them are local: no 1Password call is made (doctor
lists the vault itself with ``--online``), nothing is resolved but a token kept by
``broker backend login`` (an offline read).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from broker.backend import Check

if TYPE_CHECKING:
    from broker_onepassword import OnePasswordBackend

OK, WARN, FAIL = "ok", "warn", "fail"
#: The row names, as `broker doctor` shows them.
TOKEN_ROW = "1Password token"  # noqa: S105 - a row's name
VAULT_ROW = "1Password vault"
#: Vaults a 1Password service account can never be given (1Password's rule).
SERVICE_ACCOUNT_NEVER = ("private", "personal", "employee", "shared")


def not_used() -> list[Check]:
    """The one row of a 1Password that broker does not use here."""
    return [Check("1Password", OK, "not used")]


def token(backend: OnePasswordBackend) -> list[Check]:
    """How the backend authenticates, in the order it looks: the ``token`` setting,
    ``account`` for the desktop app, ``$OP_SERVICE_ACCOUNT_TOKEN``, then the token kept
    by ``broker backend login onepassword``."""
    from broker_onepassword import TOKEN_VARIABLE, _platform

    setting, account = backend.settings.get("token"), backend.settings.get("account")
    value = os.environ.get(TOKEN_VARIABLE, "").strip()
    wsl = _platform.in_wsl()
    if isinstance(setting, str) and setting:
        from broker.secrets import shown

        return [Check(TOKEN_ROW, OK, f"from the reference {shown(setting)}")]
    if isinstance(account, str) and account:
        if wsl:
            return [Check(TOKEN_ROW, FAIL, f"account = {account!r} asks the desktop app through "
                          "the SDK, which cannot reach the Windows app from inside WSL",
                          "install op.exe, the 1Password CLI for Windows, and turn on "
                          "Settings > Developer > Integrate with 1Password CLI in the app "
                          "(docs/wsl2.md); or use a service-account token: `broker backend "
                          "login onepassword`")]
        return [Check(TOKEN_ROW, OK, f"the desktop app, account {account!r} (it asks for "
                      "approval in each new process)")]
    if value:
        if value.startswith("ops_"):
            return [Check(TOKEN_ROW, OK, f"from {TOKEN_VARIABLE}")]
        return [Check(TOKEN_ROW, FAIL, f"{TOKEN_VARIABLE} does not look like a service-account "
                      "token (ops_...)", "copy the token again")]
    kept = backend._login_token()  # wherever `broker backend login` keeps it
    if kept is not None:
        return [Check(TOKEN_ROW, OK, f"kept by `broker backend login onepassword` ({kept})")]
    return [Check(TOKEN_ROW, FAIL, "no service-account token, and no 1Password CLI found"
                  + ("" if wsl else ", and no desktop app account set"),
                  ("install op.exe, the 1Password CLI for Windows, and turn on its app "
                   "integration (docs/wsl2.md); " if wsl else "")
                  + f"`broker backend login onepassword`, or export {TOKEN_VARIABLE}"
                  + ("" if wsl else "; or account = \"...\" under [backends.onepassword]"))]


def _configured_references() -> list[str]:
    """The op:// references in broker's config (any backend's settings), or none when
    the config cannot be read (doctor's own row says why)."""
    from broker import config
    from broker.errors import BrokerError

    try:
        settings = config.load()
    except (BrokerError, OSError):
        return []
    return [v for table in settings.backends.values() for v in table.values()
            if isinstance(v, str) and v.startswith("op://")]


def vaults(backend: OnePasswordBackend) -> list[Check]:
    """Vaults a service account can never read, named in broker's config (the ``vault``
    setting, op:// references in any backend's settings). Nothing with the desktop app,
    which reads them all."""
    setting, account = backend.settings.get("token"), backend.settings.get("account")
    if not (isinstance(setting, str) and setting) and isinstance(account, str) and account:
        return []  # the desktop app (as `token` above tells it)
    named = []
    vault = backend.settings.get("vault")
    if isinstance(vault, str) and vault.lower() in SERVICE_ACCOUNT_NEVER:
        named.append(f"vault = {vault!r}")
    for reference in _configured_references():
        head = reference[len("op://"):].split("/", 1)[0]
        if head.lower() in SERVICE_ACCOUNT_NEVER:
            named.append(reference)
    if not named:
        return []
    return [Check(VAULT_ROW, FAIL, f"{', '.join(named)}: a service account can never "
                  "read the Private, Personal, Employee or default Shared vault",
                  "keep these items in a vault of their own (e.g. AWS) shared with the "
                  "service account, and name it there")]
