"""Injected faults (:meth:`OnePasswordEmulator.inject`) and the core's errors for them."""

from __future__ import annotations

from typing import Any

from broker_onepassword.testing.costs import SIGN_IN
from broker_onepassword.testing.errors import GUESSED_NAME, SUPPORT, CoreError


def take_fault(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The first injected fault for operation ``name`` (or for every operation), used
    up once; None when there is none."""
    for fault in state.get("faults", []):
        if fault["op"] in ("*", name):
            if fault.get("times") is not None:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    state["faults"].remove(fault)
            return dict(fault)
    return None


def fault_error(fault: dict[str, Any], name: str) -> CoreError:
    """The CoreError the core raises for ``fault`` during operation ``name`` (the
    texts are the core's own where known, marked guesses elsewhere)."""
    kind = fault["kind"]
    signing_in = name == SIGN_IN
    auth = "authentication error: " if signing_in else ""
    if kind == "rate_limit":
        detail = fault.get("detail")
        return CoreError.of("RateLimitExceeded",
                            "rate limit exceeded" + (f": {detail}" if detail else ""))
    if kind == "invalid_token":
        return CoreError.of(GUESSED_NAME, "authentication error: bad service account token, "
                            "please rotate it: the token was revoked or has expired (emulated)")
    if kind == "network":
        # The real core redacts the URL (measured).
        return CoreError.of(GUESSED_NAME, f"{auth}request library compatibility issue, check "
                            "that the your environment uses compatible versions: reqwest library: "
                            "error sending request for url (<redacted URL>)")
    if kind == "timeout":
        return CoreError.of(GUESSED_NAME, f"{auth}request timeout")
    if kind == "permission":
        return CoreError.of(GUESSED_NAME, f"{auth}you don't have the right permissions to "
                            "access this resource")
    if kind == "conflict":  # a concurrent edit on the server (SDK issue reports)
        return CoreError.of(GUESSED_NAME, "a conflict occurred on the server; please retry")
    if kind == "desktop_expired":
        return CoreError.of("DesktopSessionExpired", "desktop session expired")
    return CoreError.of("Internal", f"an internal error occurred, {SUPPORT}: emulated fault")
