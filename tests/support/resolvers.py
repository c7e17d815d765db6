"""A reference resolver for backends made by hand in tests, that also says where
`broker backend login` keeps tokens (what :meth:`Backend.login_reference` asks)."""

from __future__ import annotations

from broker.errors import NotFound


class KeptTokens:
    """Resolves ``test:NAME`` references from ``values``; `broker backend login`'s store is
    ``test:`` (``login_reference("onepassword")`` is ``test:onepassword-token``). Records
    every reference asked in :attr:`asked`."""

    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})
        self.asked: list[str] = []

    def __call__(self, reference: str) -> str:
        self.asked.append(reference)
        if reference not in self.values:
            raise NotFound(f"test: nothing kept as {reference!r}", "store it first")
        return self.values[reference]

    def login_reference(self, backend: str) -> str:
        return f"test:{backend}-token"
