"""Desktop-app authentication, as far as the emulator goes.

The emulator stands in for the app's IPC library (``libop_sdk_ipc_client``) that
the SDK's ``DesktopCore`` loads with ctypes, so the SDK's own desktop code runs:
the app can be missing, locked (the call blocks), drop the connection, or expire
the session. What it cannot show: the real app's approval prompt, biometric
unlock, and its exact error texts.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from broker_onepassword import OnePasswordBackend, _platform
from broker_onepassword._sdk import Session
from broker_onepassword.testing import OnePasswordEmulator

from broker.errors import AppLocked
from broker.testing.contract import SAMPLE

ACCOUNT = "me@example.com"


def desktop_backend(make_backend: Callable[..., OnePasswordBackend], **settings: Any
                    ) -> OnePasswordBackend:
    return make_backend(account=ACCOUNT, vault="Private", **settings)


def test_desktop_app_works(emulator: OnePasswordEmulator,
                           make_backend: Callable[..., OnePasswordBackend],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OP_SERVICE_ACCOUNT_TOKEN")  # not needed with the app
    emulator.desktop(installed=True, accounts=[ACCOUNT])
    backend = desktop_backend(make_backend)
    assert backend.availability().ok
    backend.set("dev", SAMPLE)
    assert emulator.find("AWS dev", "Private")["tags"] == ["broker"]  # the personal vault
    assert desktop_backend(make_backend).get("dev") == SAMPLE
    assert "desktop app" in backend.describe()["auth"]


def test_app_missing(emulator: OnePasswordEmulator,
                     make_backend: Callable[..., OnePasswordBackend],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    emulator.desktop(installed=False)
    backend = desktop_backend(make_backend)
    availability = backend.availability()
    assert not availability.ok and "desktop app is not installed" in availability.reason
    with pytest.raises(AppLocked) as caught:
        backend.get("dev")
    assert caught.value.exit_code == 16
    assert "was not found" in caught.value.message
    assert "service-account token" in caught.value.hint
    monkeypatch.setattr(_platform, "in_wsl", lambda: True)
    assert "inside WSL2" in backend.availability().reason


def test_app_library_lookup_without_the_sdk(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    """availability() must not import the SDK: it checks the SDK's own locations."""
    monkeypatch.delitem(sys.modules, "onepassword.desktop_core", raising=False)
    library = tmp_path / "libop_sdk_ipc_client.so"
    monkeypatch.setitem(_platform.DESKTOP_LIBRARIES, "linux", [str(library)])
    monkeypatch.setattr(sys, "platform", "linux")
    assert _platform.desktop_library() is None
    library.write_bytes(b"")
    assert _platform.desktop_library() == str(library)


def test_locked_app_times_out(emulator: OnePasswordEmulator,
                              make_backend: Callable[..., OnePasswordBackend]) -> None:
    emulator.desktop(installed=True, locked=True, block_seconds=10)
    backend = desktop_backend(make_backend, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(AppLocked) as caught:
        backend.list()
    assert time.monotonic() - started < 3
    assert "did not answer within 0.5 s" in caught.value.message
    assert "unlock" in caught.value.hint
    emulator.desktop(installed=True, locked=False)  # unlocked: the next call works
    assert backend.list() == []


def test_app_that_drops_the_connection(emulator: OnePasswordEmulator,
                                       make_backend: Callable[..., OnePasswordBackend]) -> None:
    emulator.desktop(installed=True, locked=True, block_seconds=0.2)
    with pytest.raises(AppLocked, match="unexpectedly dropped"):
        desktop_backend(make_backend, timeout=10).list()


def test_expired_session_is_renewed_by_the_sdk(emulator: OnePasswordEmulator,
                                               make_backend: Callable[..., OnePasswordBackend]
                                               ) -> None:
    emulator.desktop(installed=True)
    backend = desktop_backend(make_backend)
    backend.list()
    emulator.desktop(installed=True, expire_sessions=1)
    assert backend.list() == []
    assert emulator.calls()["init_client"] == 2


def test_session_that_keeps_expiring(emulator: OnePasswordEmulator,
                                     make_backend: Callable[..., OnePasswordBackend]) -> None:
    emulator.desktop(installed=True)
    backend = desktop_backend(make_backend)
    backend.list()
    emulator.desktop(installed=True, expire_sessions=5)
    with pytest.raises(AppLocked, match="session expired"):
        backend.list()


def test_close_never_hangs_on_a_locked_app(emulator: OnePasswordEmulator,
                                           make_backend: Callable[..., OnePasswordBackend]
                                           ) -> None:
    emulator.desktop(installed=True, block_seconds=10)
    backend = desktop_backend(make_backend, timeout=0.5)
    backend.list()
    emulator.desktop(installed=True, locked=True, block_seconds=10)
    started = time.monotonic()
    backend.close()  # releasing the client asks the app: bounded by the timeout
    assert time.monotonic() - started < 3


def test_timeout_wrapper_with_a_blocking_call(emulator: OnePasswordEmulator) -> None:
    """A blocking call inside async code (as the SDK's desktop calls are) cannot be
    cancelled by asyncio; the wait happens outside the loop, on its own clock."""
    session = Session(lambda: emulator.token, desktop=True, timeout=0.3, secrets=list)

    async def blocking(client: Any) -> str:
        time.sleep(2)  # what a ctypes call into a locked app does
        return "late"

    async def quick(client: Any) -> str:
        return "on time"

    started = time.monotonic()
    with pytest.raises(AppLocked, match=r"did not answer within 0\.3 s"):
        session.run(blocking, "waiting")
    assert time.monotonic() - started < 1.5
    assert session.run(quick, "again") == "on time"  # a new loop and a new client
    session.close()
