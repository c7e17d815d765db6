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

import contextlib
import os

from broker.backend import _plain  # a name or path as references hold them
from broker.errors import BrokerError, ConfigError, UsageError
from broker.registry import Registry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from broker.backend import Backend

#: What a message shows instead of a value that does not have a reference's shape.
NOT_SHOWN = "(a value that is not a secret reference, not shown)"
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def shown(reference: object) -> str:
    """``reference`` as a message may show it: itself when it has the shape of a secret
    reference, else :data:`NOT_SHOWN`.

    A secret typed where a reference belongs (``passphrase = "op:MyPassw0rd"``) must never
    be echoed back. Shown are ``env:NAME`` (a variable name), ``prompt:`` and its label,
    ``scheme://...`` (``op://vault/item/field`` and any plugin's URL-shaped references),
    and ``scheme:name`` when the installed plugin that resolves ``scheme`` says it has the
    shape of one of its references (:meth:`broker.backend.Backend.shows_reference`:
    ``pass:path`` and ``keyctl:name`` do; ``op:text`` does not, 1Password's references
    being ``op://...`` only); anything else is not.
    """
    if not isinstance(reference, str):
        return NOT_SHOWN
    head, sep, rest = reference.partition(":")
    scheme = head.lower()
    if not sep or not head or not head.replace("-", "").replace("_", "").isalnum():
        return NOT_SHOWN
    if scheme == "env":
        ok = bool(rest) and _NAME_CHARS.issuperset(rest) and not rest[0].isdigit()
    elif scheme == "prompt":
        ok = rest.isprintable()
    elif rest.startswith("//"):
        ok = _plain(rest[2:])
    else:
        from broker.registry import reference_class

        claimed_by = reference_class(scheme)
        try:
            ok = claimed_by is not None and claimed_by.shows_reference(reference) is True
        except Exception:
            ok = False  # a plugin's mistake must not echo what may be a secret
    return reference if ok else NOT_SHOWN


def scheme_of(reference: str) -> str:
    """The lower-cased scheme of ``reference``: what precedes the first colon (``op`` for
    ``op://...``, ``env`` for ``env:NAME``), letters, digits, ``-`` and ``_`` only.

    Raises:
        UsageError: ``reference`` has no such scheme; the message never shows the value
            (it may be a secret typed where a reference belongs).
    """
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

    def login_reference(self, backend: str) -> str | None:
        """The secret reference of the token `broker backend login BACKEND` keeps for
        ``backend``: the :meth:`~broker.backend.Backend.secret_reference` of
        :func:`~broker.registry.login_token_name` in the secret store that command
        chooses (:meth:`Registry.secret_store`: the highest-priority available backend
        declaring ``SECRET_STORE``; ``keyctl:onepassword-token`` with the built-in
        plugins). Offline: nothing is read. None when no secret store works here.

        A backend asks it through :meth:`broker.backend.Backend.login_reference`, so that
        it finds the token wherever `backend login` put it, without naming a store.
        """
        from broker.registry import login_token_name

        opened: list[Backend] = []

        def open_store(name: str) -> Backend:
            store = self.registry.create(name, namespace="secrets", resolver=self)
            opened.append(store)
            return store

        try:
            return self.registry.secret_store(open_store).secret_reference(
                login_token_name(backend))
        except Exception:  # no store works here, or a plugin's bug: no kept token
            return None
        finally:
            for store in opened:
                with contextlib.suppress(Exception):
                    store.close()

    def resolve(self, reference: str) -> str:
        """The secret ``reference`` names: ``env:NAME`` from the environment, ``prompt:[Label]``
        typed on /dev/tty, any other scheme by the installed backend registered for it in
        ``broker.references`` (created with this resolver, so its own settings may hold
        references, up to four levels deep, and closed afterwards).

        Raises:
            UsageError: ``reference`` has no scheme (:func:`scheme_of`).
            ConfigError: the variable is unset or empty, no plugin resolves the scheme, or
                references refer to each other in a loop.
            Interrupted: the prompt was interrupted or got end of input.
            BrokerError: the plugin's own error, with the reference cut out of it unless it is
                one a message may show (:func:`shown`).
        """
        scheme = scheme_of(reference)
        if scheme == "env":
            name = reference[4:]
            value = os.environ.get(name)
            if not value:
                if shown(reference) != reference:
                    raise ConfigError(
                        "a setting's env: reference names no variable that is set "
                        "(the name is not shown: it is not a variable name)",
                        "write env:NAME with the name of an exported variable",
                    )
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
            if shown(reference) != reference:  # its "scheme" may be part of a secret
                raise ConfigError(
                    "a setting that must be a secret reference is not one that an installed "
                    "plugin resolves (its value is not shown)",
                    "use env:NAME, prompt:, op://vault/item/field, pass:path or keyctl:name",
                )
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
            except BrokerError as exc:
                raise _redacted(exc, reference) from None
            finally:
                backend.close()
        finally:
            self._depth -= 1


def _redacted(error: BrokerError, reference: str) -> BrokerError:
    """``error`` with ``reference`` cut out of its message and hint when the reference is
    not one a message may show (a plugin's error might quote a value typed by mistake)."""
    if shown(reference) == reference or not reference:
        return error
    rest = reference.partition(":")[2]
    forms = [repr(reference), reference, repr(rest), rest] if len(rest) >= 4 else []
    message, hint = error.message, error.hint
    for form in forms:  # a plugin may quote the whole value, or what follows its scheme
        message, hint = message.replace(form, NOT_SHOWN), hint.replace(form, NOT_SHOWN)
    if message == error.message and hint == error.hint:
        return error
    clean = type(error).__new__(type(error))  # same class and exit code, whatever its __init__
    clean.__dict__.update(error.__dict__)
    clean.message, clean.hint = message, hint
    clean.args = (message,)
    return clean
