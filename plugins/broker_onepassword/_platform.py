"""Cheap checks of whether the 1Password SDK can work here, without importing it.

``import onepassword`` costs ~350 ms (pydantic and a native core), and
``availability()`` runs on paths that must stay fast, so these checks look at
files and the C library version only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: ``uname -m`` values the SDK ships a native core for, and its folder name.
ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
#: The native core is linked against glibc 2.34 (Ubuntu 22.04+, Debian 12+).
MIN_GLIBC = (2, 34)

#: Where the SDK (0.4.x) looks for the desktop app's IPC library, by OS.
DESKTOP_LIBRARIES = {
    "linux": [
        "/usr/bin/1password/libop_sdk_ipc_client.so",
        "/opt/1Password/libop_sdk_ipc_client.so",
        "/snap/bin/1password/libop_sdk_ipc_client.so",
    ],
    "darwin": [
        "/Applications/1Password.app/Contents/Frameworks/libop_sdk_ipc_client.dylib",
        str(Path.home() / "Applications/1Password.app/Contents/Frameworks/"
            "libop_sdk_ipc_client.dylib"),
    ],
}

_NATIVE_PROBLEM: list[str | None] = []


def machine() -> str:
    """``uname -m`` in lower case (``x86_64``, ``aarch64``...), "" where ``os.uname`` does
    not exist; see :data:`ARCHITECTURES` for those the SDK supports.
    """
    return os.uname().machine.lower() if hasattr(os, "uname") else ""


def glibc_version() -> tuple[int, int] | None:
    """The running glibc's (major, minor), or None when it is not glibc (or unknown)."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        return None
    name, _, version = text.partition(" ")
    if name != "glibc":
        return None
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def in_wsl() -> bool:
    """Whether this is Linux under WSL: ``WSL_DISTRO_NAME`` is set (WSL sets it in every
    distribution's environment) or the kernel release names Microsoft.
    """
    if os.environ.get("WSL_DISTRO_NAME"):
        return True
    try:
        return "microsoft" in os.uname().release.lower()
    except AttributeError:
        return False


def native_core_problem() -> str | None:
    """Why the SDK's native core cannot load on this machine, or None if it should."""
    if not _NATIVE_PROBLEM:
        _NATIVE_PROBLEM.append(_native_core_problem())
    return _NATIVE_PROBLEM[0]


def _native_core_problem() -> str | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("onepassword")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return ("onepassword: the onepassword-sdk package is not installed — "
                "reinstall broker, which depends on it")
    arch = ARCHITECTURES.get(machine())
    if arch is None:
        return (f"onepassword: the 1Password SDK has no native core for this machine "
                f"({machine() or 'unknown'}; it supports x86_64 and aarch64) — "
                "use the pass or keyctl backend")
    folders = [Path(p) / "lib" / arch for p in spec.submodule_search_locations]
    if not any((folder / "op_uniffi_core.py").exists() for folder in folders):
        return (f"onepassword: the installed onepassword-sdk has no native core for {arch} — "
                "reinstall it from a wheel for this platform")
    if sys.platform.startswith("linux"):
        version = glibc_version()
        if version is None:
            return ("onepassword: the 1Password SDK's native core needs glibc (this system "
                    "uses another C library, e.g. musl on Alpine) — use the pass or keyctl "
                    "backend, or a glibc distribution")
        if version < MIN_GLIBC:
            return (f"onepassword: the 1Password SDK's native core needs glibc "
                    f"{MIN_GLIBC[0]}.{MIN_GLIBC[1]} or newer; this system has "
                    f"{version[0]}.{version[1]} — upgrade to Ubuntu 22.04+ or Debian 12+, "
                    "or use the pass or keyctl backend")
    return None


def desktop_library() -> str | None:
    """The desktop app's IPC library the SDK would load, or None when the app is absent.

    When the SDK's ``desktop_core`` module is already loaded its own lookup is used
    (so this answer and the SDK's never disagree); otherwise the same locations are
    checked here without paying for the SDK's import.
    """
    module = sys.modules.get("onepassword.desktop_core")
    finder = getattr(module, "find_1password_lib_path", None)
    if callable(finder):
        try:
            return str(finder())
        except OSError:
            return None
    key = "darwin" if sys.platform == "darwin" else "linux"
    for path in DESKTOP_LIBRARIES.get(key, []):
        if os.path.exists(path):
            return path
    return None
