"""Calls and requests, counted as 1Password's rate limits count them."""

from __future__ import annotations

from typing import Any

#: Operations the real core runs offline (no server, no rate limit).
OFFLINE = frozenset({"ValidateSecretReference", "GeneratePassword"})
#: The counter for sign-ins (``init_client``).
SIGN_IN = "init_client"
#: Requests 1Password's rate limits count, per SDK operation: (reads, writes), the
#: ``n`` variants per id or reference in the call. Rate limits count requests, not
#: calls ("Service account rate limits", developer.1password.com/docs/service-accounts/
#: rate-limits: hourly reads and writes per token, a daily total per account), and
#: "Use service accounts with 1Password CLI" (developer.1password.com/docs/service-
#: accounts/use-with-1password-cli, "Commands that make multiple requests") documents
#: `op item get` as 3 reads and `op item list` as 1 + 1 per vault (2 given the vault's
#: id); every other command makes one request. Each SDK operation is counted as the CLI
#: command that does the same; marked "estimate" where no command matches.
REQUESTS: dict[str, tuple[int, int]] = {
    "VaultsList": (1, 0),  # op vault list: one request
    "VaultsGet": (1, 0),  # op vault get
    "VaultsGetOverview": (1, 0),
    "VaultsCreate": (0, 1),  # op vault create
    "ItemsList": (2, 0),  # op item list --vault <id>: 2
    "ItemsGet": (3, 0),  # op item get: 3 reads
    "ItemsCreate": (0, 1),  # op item create: one request
    "ItemsPut": (0, 1),  # op item edit: one request
    "ItemsDelete": (0, 1),  # op item delete
    "ItemsArchive": (0, 1),  # op item delete --archive
    "SecretsResolve": (3, 0),  # op read: the look-up op item get makes (estimate)
}
#: Per id or reference in the call (estimates: as that many single operations).
REQUESTS_EACH: dict[str, tuple[int, int]] = {
    "ItemsGetAll": (3, 0),
    "ItemsCreateAll": (0, 1),
    "ItemsDeleteAll": (0, 1),
    "SecretsResolveAll": (3, 0),
}
#: A service account's sign-in (SRP: start and verify; not documented, an estimate).
SIGN_IN_REQUESTS = (2, 0)


def count_call(state: dict[str, Any], name: str, params: dict[str, Any] | None = None) -> None:
    """Count one call of operation ``name`` in ``state``, and the requests 1Password
    would count for it (:data:`REQUESTS`, :data:`REQUESTS_EACH` times the ids or references
    in ``params``, :data:`SIGN_IN_REQUESTS`); offline operations cost no request."""
    calls = state.setdefault("calls", {})
    calls[name] = calls.get(name, 0) + 1
    if name in OFFLINE:
        return
    if name == SIGN_IN:
        reads, writes = SIGN_IN_REQUESTS
    elif name in REQUESTS_EACH:
        listed: Any = next((v for k, v in (params or {}).items()
                            if k in ("item_ids", "params", "secret_references")), [])
        many = len(listed) if isinstance(listed, list) else 1
        reads, writes = (n * many for n in REQUESTS_EACH[name])
    else:
        reads, writes = REQUESTS.get(name, (1, 0))
    requests = state.setdefault("requests", {})
    requests[name] = requests.get(name, 0) + reads + writes
    requests["read"] = requests.get("read", 0) + reads
    requests["write"] = requests.get("write", 0) + writes
