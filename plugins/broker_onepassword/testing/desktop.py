"""The 1Password desktop app, emulated: the IPC library ``onepassword.desktop_core``
loads with ctypes (``libop_sdk_ipc_client``), over the fake account's state file."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import types
from pathlib import Path
from typing import Any

from broker_onepassword.testing.account import active_path, open_state
from broker_onepassword.testing.errors import GUESSED_NAME, CoreError
from broker_onepassword.testing.protocol import Emulated

DESKTOP_MODULE = "onepassword.desktop_core"
#: What the emulated ``find_1password_lib_path`` returns when the "app" is installed.
FAKE_LIBRARY_PATH = "/opt/1Password/libop_sdk_ipc_client.so"


class FakeFunction:
    """A stand-in for a ctypes foreign function (argtypes/restype are accepted)."""

    def __init__(self, func: Any) -> None:
        self.func = func
        self.argtypes: Any = None
        self.restype: Any = None

    def __call__(self, *args: Any) -> Any:
        return self.func(*args)


class FakeDesktopLibrary:
    """``libop_sdk_ipc_client``: base64 JSON in, ``{"success", "payload": [bytes]}`` out.

    Return codes as on Linux: -2 the app is not running (channel closed), -5 the
    connection dropped (here: the app stayed locked for ``blockSeconds``).
    """

    def __init__(self) -> None:
        self._buffers: dict[int, Any] = {}
        self.op_sdk_ipc_send_message = FakeFunction(self._send)
        self.op_sdk_ipc_free_response = FakeFunction(self._free)

    def _send(self, msg_ptr: Any, msg_len: int, out_buf: Any, out_len: Any,
              out_cap: Any) -> int:
        import ctypes

        request = json.loads(ctypes.string_at(msg_ptr, msg_len))
        path = active_path()
        if path is None:
            return -2
        emulated = Emulated(path)
        waited = 0.0
        while True:
            with open_state(emulated.path) as state:
                app = state["desktop"]
                installed, locked = app["installed"], app["locked"]
                block = float(app.get("blockSeconds", 30.0))
                accounts = list(app.get("accounts") or [])
                expire = int(app.get("expireSessions") or 0)
                if not locked and expire and request["kind"] == "invoke":
                    app["expireSessions"] = expire - 1
            if not installed:
                return -2
            if not locked:
                break
            if waited >= block:
                return -5
            time.sleep(0.05)
            waited += 0.05
        account = request.get("account_name")
        payload = base64.b64decode(request["payload"]).decode("utf-8")
        try:
            if accounts and account not in accounts:
                raise CoreError.of(GUESSED_NAME, "account couldn't be found")
            if request["kind"] == "init_client":
                answer = emulated.init_client(payload, desktop_account=str(account))
            elif request["kind"] == "invoke":
                if expire:
                    raise CoreError.of("DesktopSessionExpired", "desktop session expired")
                answer = emulated.invoke(payload)
            elif request["kind"] == "release_client":
                emulated.release_client(payload)
                answer = ""
            else:
                raise CoreError(f"unknown message kind {request['kind']!r}")
            reply = {"success": True, "payload": list(answer.encode("utf-8"))}
        except CoreError as exc:
            reply = {"success": False, "payload": list(exc.msg.encode("utf-8"))}
        data = json.dumps(reply).encode("utf-8")
        buffer = ctypes.create_string_buffer(data, len(data))
        out_buf._obj.contents = ctypes.c_uint8.from_buffer(buffer)
        out_len._obj.value = len(data)
        out_cap._obj.value = len(data)
        self._buffers[ctypes.addressof(buffer)] = buffer
        return 0

    def _free(self, buf: Any, length: Any, capacity: Any) -> None:
        import ctypes

        with contextlib.suppress(Exception):
            self._buffers.pop(ctypes.cast(buf, ctypes.c_void_p).value or 0, None)


class CtypesProxy:
    """``ctypes`` as ``desktop_core`` sees it: CDLL of the fake path gives the fake app."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def CDLL(self, path: Any, *args: Any, **kwargs: Any) -> Any:
        """The fake desktop app's library for :data:`FAKE_LIBRARY_PATH` while an emulated account
        is active, else the real ``ctypes.CDLL(path, ...)``.
        """
        if str(path) == FAKE_LIBRARY_PATH and active_path() is not None:
            return FakeDesktopLibrary()
        return self._real.CDLL(path, *args, **kwargs)


def patch_desktop(module: types.ModuleType) -> None:
    """Make ``onepassword.desktop_core`` find the fake app while an account is active
    (idempotent; the real app otherwise)."""
    if getattr(module, "_broker_emulated", False):
        return
    real_find = module.find_1password_lib_path

    def find_1password_lib_path() -> str:
        path = active_path()
        if path is None:
            return str(real_find())
        with open_state(Path(path)) as state:
            installed = state["desktop"]["installed"]
        if installed:
            return FAKE_LIBRARY_PATH
        raise FileNotFoundError("1Password desktop application not found")

    module.__dict__.update(
        find_1password_lib_path=find_1password_lib_path,
        ctypes=CtypesProxy(module.ctypes),
        _broker_emulated=True,
    )
