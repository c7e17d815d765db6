"""Items a profile names with ``broker_item``: where they are, as the backend looks for them.

``broker_item = op://VAULT/ITEM`` names the vault and the item, each by name (any case)
or by its 26-character id; ``broker_item = ITEM`` names an item of the backend's own
vault (the ``vault`` setting). broker reads the key from such an item as it is (the
shapes :mod:`broker_onepassword._fields` knows: 1Password's AWS shell plugin's, the app's
API Credential template's, broker's own) and writes it only once adopted (tagged
``broker``). Only the reference's shape is checked here, offline.
"""

from __future__ import annotations

from broker.errors import ConfigError

SCHEME = "op://"


class BoundItem:
    """Where a profile's item is: ``vault`` (a name or id; None: the configured vault) and
    ``item`` (a title or id), from ``reference`` as the profile wrote it."""

    __slots__ = ("item", "reference", "vault")

    def __init__(self, vault: str | None, item: str, reference: str) -> None:
        self.vault = vault
        self.item = item
        self.reference = reference

    def shown(self) -> str:
        """The reference for messages: ``op://AWS/AWS dev``, or ``'AWS dev'`` (a title)."""
        return self.reference if self.vault is not None else repr(self.item)

    def __repr__(self) -> str:
        return f"BoundItem({self.reference!r})"


def parse(reference: str) -> BoundItem:
    """The item ``reference`` (a ``broker_item``) names.

    Raises:
        ConfigError: not ``op://VAULT/ITEM`` (another scheme, a field, a query) nor a title.
    """
    text = reference.strip()
    if "://" not in text:
        if not text or not text.isprintable():
            raise ConfigError(
                "onepassword: broker_item is empty or not printable",
                "name the item as op://VAULT/ITEM or by its title",
            )
        return BoundItem(None, text, text)
    if not text.startswith(SCHEME):
        raise ConfigError(
            f"onepassword: {text.partition('://')[0]}:// is not a 1Password item reference",
            "name the item as op://VAULT/ITEM (vault and item by name or id) or by its title "
            "alone",
        )
    vault, _, item = text[len(SCHEME):].partition("/")
    if not vault or not item or "/" in item or "?" in item:
        raise ConfigError(
            f"onepassword: {text!r} does not name one item",
            "name the item as op://VAULT/ITEM, without a field",
        )
    return BoundItem(vault, item, text)
