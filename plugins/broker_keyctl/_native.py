"""The kernel key-management calls, through ctypes.

Two implementations of the same small interface (:class:`KeyOps`):

* :class:`LibKeyOps` calls the typed wrappers in ``libkeyutils.so.1``;
* :class:`SyscallKeyOps` calls ``add_key(2)`` and ``keyctl(2)`` through libc's
  ``syscall(3)`` when that library is not installed.

Every ``argtypes``/``restype`` below mirrors ``keyutils.h`` exactly: ctypes
defaults to C ``int`` for arguments and results, which truncates pointers and
crashes the interpreter. Every failure is raised as :class:`OSError` carrying
the kernel's errno, so callers branch on ``errno`` and never on message text.

This module is imported lazily, on the first keyring operation, so that merely
importing the plugin (``broker backend list``) does not pay for ctypes.
"""

from __future__ import annotations

import ctypes
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # on the cached fast path: typing costs ~3 ms to import
    from typing import Any

#: ``key_serial_t`` is ``int32_t``.
KeySerial = ctypes.c_int32

KEY_SPEC_USER_KEYRING = -4

# Commands of keyctl(2), from <linux/keyctl.h>.
KEYCTL_GET_KEYRING_ID = 0
KEYCTL_SETPERM = 5
KEYCTL_DESCRIBE = 6
KEYCTL_CLEAR = 7
KEYCTL_UNLINK = 9
KEYCTL_SEARCH = 10
KEYCTL_READ = 11
KEYCTL_SET_TIMEOUT = 15
KEYCTL_INVALIDATE = 21
KEYCTL_GET_PERSISTENT = 22

#: (add_key, keyctl) syscall numbers by (machine, pointer size). A 32-bit
#: interpreter on a 64-bit kernel reports the 64-bit machine but must use the
#: 32-bit numbers, hence the pointer size in the key.
SYSCALL_NUMBERS: dict[tuple[str, int], tuple[int, int]] = {
    ("x86_64", 8): (248, 250),
    ("aarch64", 8): (217, 219),  # asm-generic numbering
    ("arm64", 8): (217, 219),
    ("riscv64", 8): (217, 219),
}

LIBRARY = "libkeyutils.so.1"

_c_char_ptr = ctypes.POINTER(ctypes.c_char)


def _raise_errno(result: int) -> int:
    """Turn the C convention (-1 and errno) into an OSError; pass results through."""
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


class KeyOps:
    """The keyring operations the backend needs; every method raises OSError on failure."""

    #: Which implementation this is, for ``describe()`` and diagnostics.
    kind = ""

    def add_key(self, key_type: bytes, description: bytes, payload: bytes, ring: int) -> int:
        """Create or update (same type and description in ``ring``) a key; its serial."""
        raise NotImplementedError

    def get_keyring_id(self, key: int, create: bool) -> int:
        """Resolve a special keyring id (``KEY_SPEC_*``) to a serial."""
        raise NotImplementedError

    def setperm(self, key: int, perm: int) -> None:
        """KEYCTL_SETPERM: set ``key``'s permission mask (possessor, user, group, other bytes;
        ``KEY_POS_*``... in keyctl_setperm(3)).
        """
        raise NotImplementedError

    def describe_raw(self, key: int, buffer: Any, size: int) -> int:
        """KEYCTL_DESCRIBE into ``buffer`` of ``size`` bytes (None and 0 to ask the size): the
        full length of the NUL-terminated ``type;uid;gid;perm;description``, whatever the
        buffer's size (keyctl_describe(3)). Use :meth:`describe`.
        """
        raise NotImplementedError

    def read_raw(self, key: int, buffer: Any, size: int) -> int:
        """KEYCTL_READ into ``buffer`` of ``size`` bytes (None and 0 to ask the size): the
        payload's full length, whatever the buffer's size (keyctl_read(3)). Use :meth:`read`.
        """
        raise NotImplementedError

    def clear(self, ring: int) -> None:
        """KEYCTL_CLEAR: unlink every key from keyring ``ring`` (keyctl_clear(3))."""
        raise NotImplementedError

    def unlink(self, key: int, ring: int) -> None:
        """KEYCTL_UNLINK: remove the link from ``ring`` to ``key``; the kernel destroys a key once
        nothing links it (keyctl_unlink(3)).
        """
        raise NotImplementedError

    def search(self, ring: int, key_type: bytes, description: bytes, dest: int = 0) -> int:
        """Search ``ring`` (recursively) for a key; ENOKEY/EKEYEXPIRED/... as OSError."""
        raise NotImplementedError

    def set_timeout(self, key: int, seconds: int) -> None:
        """Expire ``key`` in ``seconds`` (0 removes the timeout)."""
        raise NotImplementedError

    def invalidate(self, key: int) -> None:
        """KEYCTL_INVALIDATE: mark ``key`` invalid at once, so every lookup fails and the kernel
        removes it (keyctl_invalidate(3), Linux 3.5+).
        """
        raise NotImplementedError

    def get_persistent(self, ring: int) -> int:
        """The caller's persistent keyring, linked into ``ring``; its serial."""
        raise NotImplementedError

    # -- helpers shared by both implementations ------------------------------

    def _read_alloc(self, call: str, key: int) -> bytes:
        """Call read_raw/describe_raw until the buffer holds the whole answer.

        The kernel returns the full size whatever the buffer's, so ask, allocate
        and retry if the payload grew in between (another process updated it).
        """
        raw = self.read_raw if call == "read" else self.describe_raw
        size = raw(key, None, 0)
        while True:
            buffer = ctypes.create_string_buffer(max(size, 1))
            try:
                needed = raw(key, buffer, size)
                if needed <= size:
                    return buffer.raw[:needed]
                size = needed
            finally:
                # The buffer may hold secret bytes: do not leave them for the allocator.
                ctypes.memset(buffer, 0, len(buffer))

    def read(self, key: int) -> bytes:
        """A key's payload (for a keyring: its serials, as native int32s)."""
        return self._read_alloc("read", key)

    def describe(self, key: int) -> str:
        """``type;uid;gid;perm;description`` of a key."""
        return self._read_alloc("describe", key).rstrip(b"\0").decode("utf-8", "replace")

    def keyring_serials(self, ring: int) -> list[int]:
        """The serials linked into a keyring."""
        data = self.read(ring)
        count = len(data) // ctypes.sizeof(KeySerial)
        return list((KeySerial * count).from_buffer_copy(data[: count * 4]))


class LibKeyOps(KeyOps):
    """The typed functions of libkeyutils (which set errno like any libc call)."""

    kind = "libkeyutils"

    def __init__(self, lib: ctypes.CDLL) -> None:
        serial, long_, size_t = KeySerial, ctypes.c_long, ctypes.c_size_t
        # (name, restype, argtypes), exactly as declared in keyutils.h.
        signatures: list[tuple[str, Any, list[Any]]] = [
            ("add_key", serial,
             [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, size_t, serial]),
            ("keyctl_get_keyring_ID", serial, [serial, ctypes.c_int]),
            ("keyctl_setperm", long_, [serial, ctypes.c_uint32]),
            ("keyctl_describe", long_, [serial, _c_char_ptr, size_t]),
            ("keyctl_clear", long_, [serial]),
            ("keyctl_unlink", long_, [serial, serial]),
            ("keyctl_search", long_, [serial, ctypes.c_char_p, ctypes.c_char_p, serial]),
            ("keyctl_read", long_, [serial, _c_char_ptr, size_t]),
            ("keyctl_set_timeout", long_, [serial, ctypes.c_uint]),
            ("keyctl_invalidate", long_, [serial]),
            ("keyctl_get_persistent", long_, [ctypes.c_uint32, serial]),  # uid_t
        ]
        self._fn: dict[str, Any] = {}
        for name, restype, argtypes in signatures:
            function = getattr(lib, name)  # AttributeError: too old a library
            function.restype = restype
            function.argtypes = argtypes
            self._fn[name] = function

    def _call(self, name: str, *args: Any) -> int:
        ctypes.set_errno(0)
        return _raise_errno(int(self._fn[name](*args)))

    def add_key(self, key_type: bytes, description: bytes, payload: bytes, ring: int) -> int:
        return self._call("add_key", key_type, description, payload, len(payload), ring)

    def get_keyring_id(self, key: int, create: bool) -> int:
        return self._call("keyctl_get_keyring_ID", key, int(create))

    def setperm(self, key: int, perm: int) -> None:
        self._call("keyctl_setperm", key, perm)

    def describe_raw(self, key: int, buffer: Any, size: int) -> int:
        return self._call("keyctl_describe", key, buffer, size)

    def read_raw(self, key: int, buffer: Any, size: int) -> int:
        return self._call("keyctl_read", key, buffer, size)

    def clear(self, ring: int) -> None:
        self._call("keyctl_clear", ring)

    def unlink(self, key: int, ring: int) -> None:
        self._call("keyctl_unlink", key, ring)

    def search(self, ring: int, key_type: bytes, description: bytes, dest: int = 0) -> int:
        return self._call("keyctl_search", ring, key_type, description, dest)

    def set_timeout(self, key: int, seconds: int) -> None:
        self._call("keyctl_set_timeout", key, seconds)

    def invalidate(self, key: int) -> None:
        self._call("keyctl_invalidate", key)

    def get_persistent(self, ring: int) -> int:
        # (uid_t)-1 means "the calling process's user".
        return self._call("keyctl_get_persistent", 0xFFFFFFFF, ring)


class SyscallKeyOps(KeyOps):
    """The raw system calls through libc's variadic ``long syscall(long number, ...)``.

    A variadic function cannot be given ``argtypes``, so each argument is
    wrapped in a register-sized ctypes value here (``c_long``/``c_void_p``);
    a bare Python int would be passed as a 32-bit ``int``.
    """

    kind = "syscall"

    def __init__(self, libc: ctypes.CDLL, numbers: tuple[int, int]) -> None:
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        self._nr_add_key, self._nr_keyctl = numbers

    @staticmethod
    def _arg(value: Any) -> Any:
        if value is None:
            return ctypes.c_void_p(None)
        if isinstance(value, bytes):
            return ctypes.c_char_p(value)
        if isinstance(value, int):
            return ctypes.c_long(value)
        return value  # a ctypes buffer: passed as a pointer

    def _call(self, number: int, *args: Any) -> int:
        ctypes.set_errno(0)
        result = int(self._syscall(ctypes.c_long(number), *(self._arg(a) for a in args)))
        return _raise_errno(result)

    def _keyctl(self, command: int, *args: Any) -> int:
        return self._call(self._nr_keyctl, command, *args)

    def add_key(self, key_type: bytes, description: bytes, payload: bytes, ring: int) -> int:
        return self._call(self._nr_add_key, key_type, description, payload, len(payload), ring)

    def get_keyring_id(self, key: int, create: bool) -> int:
        return self._keyctl(KEYCTL_GET_KEYRING_ID, key, int(create))

    def setperm(self, key: int, perm: int) -> None:
        self._keyctl(KEYCTL_SETPERM, key, perm)

    def describe_raw(self, key: int, buffer: Any, size: int) -> int:
        return self._keyctl(KEYCTL_DESCRIBE, key, buffer, size)

    def read_raw(self, key: int, buffer: Any, size: int) -> int:
        return self._keyctl(KEYCTL_READ, key, buffer, size)

    def clear(self, ring: int) -> None:
        self._keyctl(KEYCTL_CLEAR, ring)

    def unlink(self, key: int, ring: int) -> None:
        self._keyctl(KEYCTL_UNLINK, key, ring)

    def search(self, ring: int, key_type: bytes, description: bytes, dest: int = 0) -> int:
        return self._keyctl(KEYCTL_SEARCH, ring, key_type, description, dest)

    def set_timeout(self, key: int, seconds: int) -> None:
        self._keyctl(KEYCTL_SET_TIMEOUT, key, seconds)

    def invalidate(self, key: int) -> None:
        self._keyctl(KEYCTL_INVALIDATE, key)

    def get_persistent(self, ring: int) -> int:
        return self._keyctl(KEYCTL_GET_PERSISTENT, 0xFFFFFFFF, ring)


class NoKeyOps(Exception):
    """Neither libkeyutils nor known syscall numbers: keyrings cannot be reached."""


def load_library(name: str = LIBRARY) -> LibKeyOps | None:
    """libkeyutils, or None when it is absent or too old (missing a function)."""
    try:
        return LibKeyOps(ctypes.CDLL(name, use_errno=True))
    except (OSError, AttributeError):
        return None


def load_syscalls(machine: str | None = None) -> SyscallKeyOps:
    """The raw-syscall implementation for this machine, or :class:`NoKeyOps`."""
    machine = machine or os.uname().machine
    numbers = SYSCALL_NUMBERS.get((machine, ctypes.sizeof(ctypes.c_void_p)))
    if numbers is None:
        raise NoKeyOps(f"{LIBRARY} not found and no keyctl syscall numbers known for {machine}")
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return SyscallKeyOps(libc, numbers)
    except (OSError, AttributeError) as exc:
        raise NoKeyOps(f"{LIBRARY} not found and libc has no syscall(): {exc}") from None


def load(library: str = LIBRARY) -> KeyOps:
    """libkeyutils if present, else the raw syscalls; :class:`NoKeyOps` if neither."""
    return load_library(library) or load_syscalls()
