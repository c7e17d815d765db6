"""Secret references: where a secret setting's value comes from.

    env:NAME                       an environment variable
    prompt: / prompt:Label         a hidden prompt on /dev/tty
    op://vault/item/field          1Password (the plugin that claims "op")
    pass:path/in/store             a pass entry's first line (the pass plugin)
    keyctl:name                    the kernel keyring (the keyctl plugin)

broker's core handles ``env:`` and ``prompt:``; any other scheme is resolved by
the backend registered for it in the ``broker.references`` entry-point group,
so the pass plugin can take its passphrase from 1Password without knowing it.
"""

from __future__ import annotations

import os

from broker.errors import ConfigError, UsageError
from broker.registry import Registry


def scheme_of(reference: str) -> str:
    head, sep, _ = reference.partition(":")
    if not sep or not head or not head.replace("-", "").replace("_", "").isalnum():
        raise UsageError(
            "a setting that must be a secret reference is not one (its value is not shown)",
            "use env:NAME, prompt:, op://vault/item/field, pass:path or keyctl:name",
        )
    return head.lower()


class ReferenceResolver:
    """Resolves references through the registry; remembers nothing between calls."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._depth = 0

    def __call__(self, reference: str) -> str:
        return self.resolve(reference)

    def resolve(self, reference: str) -> str:
        scheme = scheme_of(reference)
        if scheme == "env":
            name = reference[4:]
            value = os.environ.get(name)
            if not value:
                raise ConfigError(
                    f"environment variable {name} is not set",
                    f"export {name}, or point the setting at another secret reference",
                )
            return value
        if scheme == "prompt":
            from broker import tty

            label = reference[len("prompt:") :] or "Secret"
            return tty.prompt_secret(f"{label}: ")
        backend_name = self.registry.scheme_backend(scheme)
        if backend_name is None:
            raise ConfigError(
                f"no installed plugin resolves {scheme}: references",
                "install the plugin for it, or use env:NAME or prompt:",
            )
        if self._depth > 3:
            raise ConfigError(
                "secret references refer to each other in a loop",
                "make one of them env: or prompt:",
            )
        self._depth += 1
        try:
            backend = self.registry.create(backend_name, resolver=self)
            try:
                return backend.resolve(reference)
            finally:
                backend.close()
        finally:
            self._depth -= 1
