"""The shim in ``sys.modules``: a router in place of the SDK's native core.

Importing this module puts a finder on ``sys.meta_path`` (and replaces a core already
imported), so that ``onepassword.lib.<arch>.op_uniffi_core`` is a router: calls go to the
emulator (:class:`~broker_onepassword.testing.protocol.Emulated`) while a state file is
active (:func:`install`, or ``BROKER_OP_EMULATOR``: see
:func:`~broker_onepassword.testing.account.active_path`) and to the real core otherwise.
``onepassword.desktop_core`` is patched likewise (:mod:`.desktop`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from broker_onepassword.testing.account import PINNED, active_path
from broker_onepassword.testing.desktop import DESKTOP_MODULE, patch_desktop
from broker_onepassword.testing.errors import CoreError, ErrorNamespace
from broker_onepassword.testing.protocol import Emulated

CORE_MODULES = ("onepassword.lib.x86_64.op_uniffi_core", "onepassword.lib.aarch64.op_uniffi_core")

#: The genuine native modules, once loaded (see real_core).
REAL: dict[str, types.ModuleType] = {}


def real_core(name: str) -> types.ModuleType:
    """The genuine native module, loaded under a private name so the router keeps its place."""
    if name not in REAL:
        package = importlib.import_module(name.rpartition(".")[0])
        for folder in getattr(package, "__path__", []):
            source = Path(folder) / "op_uniffi_core.py"
            if source.exists():
                private = "_broker_real_" + name.replace(".", "_")
                spec = importlib.util.spec_from_file_location(private, source)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                REAL[name] = module
                break
        else:
            raise ImportError(f"no native core at {name}")
    return REAL[name]


def make_router(name: str) -> types.ModuleType:
    """A module standing in for the native core ``name``: each call goes to the
    emulator while an account is active (:func:`active_path`), else to the real core."""
    module = types.ModuleType(name, "The native core, routed through broker's emulator.")

    async def init_client(client_config: str) -> str:
        path = active_path()
        if path is None:
            return await real_core(name).init_client(client_config)  # type: ignore[no-any-return]
        return Emulated(path).init_client(client_config)

    async def invoke(invocation: str) -> str:
        path = active_path()
        if path is None:
            return await real_core(name).invoke(invocation)  # type: ignore[no-any-return]
        return Emulated(path).invoke(invocation)

    def invoke_sync(invocation: str) -> str:
        path = active_path()
        if path is None:
            return real_core(name).invoke_sync(invocation)  # type: ignore[no-any-return]
        return Emulated(path).invoke_sync(invocation)

    def release_client(client_id: str) -> None:
        path = active_path()
        if path is None:
            real_core(name).release_client(client_id)
            return
        Emulated(path).release_client(client_id)

    module.__dict__.update(
        init_client=init_client, invoke=invoke, invoke_sync=invoke_sync,
        release_client=release_client, Error=ErrorNamespace, InternalError=CoreError,
        _broker_router=True,
    )
    return module


class RouterLoader(importlib.abc.Loader):
    """Loads a native-core module as the router :func:`make_router` builds (nothing to run)."""
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        """The router module for ``spec.name`` (PEP 451 loader protocol)."""
        return make_router(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the router is complete once created (PEP 451 loader protocol)."""
        return None


class PatchingLoader(importlib.abc.Loader):
    """Loads ``onepassword.desktop_core`` with the real ``inner`` loader, then patches it to
    find the fake desktop app (:func:`patch_desktop`); anything else goes to ``inner``.
    """
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        """What the real loader creates (PEP 451 loader protocol)."""
        return self.inner.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        """Run the real module, then patch it (:func:`patch_desktop`)."""
        self.inner.exec_module(module)
        patch_desktop(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename... for tracebacks
        return getattr(self.inner, name)


class Finder(importlib.abc.MetaPathFinder):
    """The ``sys.meta_path`` finder that puts the router in place of the native core and the
    patching loader on ``onepassword.desktop_core``.
    """
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """A spec routing a native-core module (:data:`CORE_MODULES`) to :class:`RouterLoader`,
        the real desktop module's spec with :class:`PatchingLoader`, or None for any other
        module (the next finder decides), as ``importlib.abc.MetaPathFinder`` requires.
        """
        if fullname in CORE_MODULES:
            return importlib.util.spec_from_loader(fullname, RouterLoader(),
                                                   origin=__name__)
        if fullname == DESKTOP_MODULE:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is not None and spec.loader is not None:
                spec.loader = PatchingLoader(spec.loader)
            return spec
        return None


FINDER = Finder()


def route() -> None:
    """Put the router in place of the native core (idempotent)."""
    if FINDER not in sys.meta_path:
        sys.meta_path.insert(0, FINDER)
    for name in CORE_MODULES:
        module = sys.modules.get(name)
        if module is not None and not getattr(module, "_broker_router", False):
            REAL[name] = module
            router = make_router(name)
            sys.modules[name] = router
            parent = sys.modules.get(name.rpartition(".")[0])
            if parent is not None:
                setattr(parent, name.rpartition(".")[2], router)
    desktop = sys.modules.get(DESKTOP_MODULE)
    if desktop is not None:
        patch_desktop(desktop)


def install(path: str | os.PathLike[str] | None = None) -> None:
    """Route the SDK's core here; with ``path``, to that state file until :func:`uninstall`."""
    route()
    if path is not None:
        PINNED.append(os.fspath(path))


def uninstall(path: str | os.PathLike[str] | None = None) -> None:
    """Undo the innermost :func:`install` of ``path`` (calls go to the env's file or the
    real core again)."""
    if path is None:
        if PINNED:
            PINNED.pop()
        return
    target = os.fspath(path)
    for index in range(len(PINNED) - 1, -1, -1):
        if PINNED[index] == target:
            del PINNED[index]
            return


# Importing the emulator is what routes the core: a test or a sitecustomize needs no more.
route()
