"""Just enough of keyctl(2) to read and unlink another program's keys.

broker's core never imports a plugin by name, so the importer does not borrow
the keyctl plugin's ctypes layer: it makes the four calls it needs through
libc's ``syscall(3)``. Each argument is passed as a register-sized ctypes value
(a variadic function cannot be given ``argtypes``), and every failure is an
``OSError`` carrying the kernel's errno.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

KEY_SPEC_THREAD_KEYRING = -1
KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_SESSION_KEYRING = -3
KEY_SPEC_USER_KEYRING = -4
KEY_SPEC_USER_SESSION_KEYRING = -5

#: aws-vault's keyctl scopes and the special keyring each names.
SCOPES = {
    "user": KEY_SPEC_USER_KEYRING,
    "usersession": KEY_SPEC_USER_SESSION_KEYRING,
    "session": KEY_SPEC_SESSION_KEYRING,
    "process": KEY_SPEC_PROCESS_KEYRING,
    "thread": KEY_SPEC_THREAD_KEYRING,
}

_DESCRIBE, _UNLINK, _SEARCH, _READ = 6, 9, 10, 11

#: keyctl(2)'s number by machine (64-bit interpreters only).
_KEYCTL_NR = {"x86_64": 250, "aarch64": 219, "arm64": 219, "riscv64": 219}


class KernelKeys:
    """search / read / describe / unlink on the caller's keyrings."""

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            raise OSError(0, f"the kernel keyring exists only on Linux (this is {sys.platform})")
        machine = os.uname().machine
        number = _KEYCTL_NR.get(machine) if ctypes.sizeof(ctypes.c_void_p) == 8 else None
        if number is None:
            raise OSError(0, f"no keyctl system call number known for {machine}")
        self._nr = number
        self._syscall = ctypes.CDLL(None, use_errno=True).syscall
        self._syscall.restype = ctypes.c_long

    def _keyctl(self, command: int, *args: Any) -> int:
        wrapped = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
        ctypes.set_errno(0)
        result = int(self._syscall(ctypes.c_long(self._nr), ctypes.c_long(command), *wrapped))
        if result == -1:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return result

    def search(self, ring: int, key_type: str, description: str) -> int:
        """KEYCTL_SEARCH: the serial of the key of ``key_type`` with exactly ``description`` in
        ``ring`` or a keyring it links (see keyctl_search(3)); no destination keyring.

        Raises:
            OSError: errno ENOKEY when there is none, EACCES, ENOMEM... as the man page lists.
        """
        return self._keyctl(
            _SEARCH, ring, ctypes.c_char_p(key_type.encode()),
            ctypes.c_char_p(description.encode()), 0,
        )

    def _buffer_call(self, command: int, key: int) -> bytes:
        size = self._keyctl(command, key, ctypes.c_void_p(None), 0)
        while True:
            buffer = ctypes.create_string_buffer(max(size, 1))
            try:
                needed = self._keyctl(command, key, buffer, size)
                if needed <= size:
                    return buffer.raw[:needed]
                size = needed
            finally:
                ctypes.memset(buffer, 0, len(buffer))  # it may hold a secret

    def read(self, key: int) -> bytes:
        """KEYCTL_READ: the key's payload (a keyring's payload is its children's serials), read
        into a buffer that is zeroed afterwards.

        Raises:
            OSError: the kernel's errno (EKEYEXPIRED, EACCES...), see keyctl_read(3).
        """
        return self._buffer_call(_READ, key)

    def describe(self, key: int) -> tuple[str, str]:
        """(type, description) of a key."""
        text = self._buffer_call(_DESCRIBE, key).rstrip(b"\0").decode("utf-8", "replace")
        parts = text.split(";", 4)
        if len(parts) != 5:
            raise OSError(0, f"unexpected key description {text!r}")
        return parts[0], parts[4]

    def children(self, ring: int) -> list[int]:
        """The serials of the keys linked in keyring ``ring``, in the kernel's order.

        Raises:
            OSError: as :meth:`read`.
        """
        data = self.read(ring)
        count = len(data) // 4
        return list((ctypes.c_int32 * count).from_buffer_copy(data[: count * 4]))

    def unlink(self, key: int, ring: int) -> None:
        """KEYCTL_UNLINK: remove ``key`` from ``ring`` (the key goes once nothing links it).

        Raises:
            OSError: the kernel's errno (ENOENT when it was not linked there), see keyctl_unlink(3).
        """
        self._keyctl(_UNLINK, key, ring)
