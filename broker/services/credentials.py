"""Getting a profile's credentials: from the cache, or through the whole chain."""

from __future__ import annotations

from broker.aws.chain import ChainOptions, CredentialChain, final_session_name
from broker.aws.credentials import Credentials
from broker.aws.profiles import Chain, Profile, _header_for, resolve_chain
from broker.backend import MFA_SERIAL, TOTP, Capability, Item
from broker.errors import BrokerError, CredentialsNotFound
from broker.services.context import Context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from broker.aws.mfa_ledger import MfaLedger


class Resolved:
    """A profile's credentials, with what a caller needs to present them."""

    def __init__(
        self,
        profile: str,
        credentials: Credentials,
        region: str | None,
        chain: Chain,
        sts_calls: list[str],
    ) -> None:
        self.profile = profile
        self.credentials = credentials
        self.region = region
        self.chain = chain
        self.sts_calls = sts_calls


class StoredKey:
    """The key profile's Item, read at most once: the key and a TOTP seed kept with it
    come from the same read (one 1Password call, one gpg decryption)."""

    def __init__(self, ctx: Context, chain: Chain, backend: str | None = None) -> None:
        self.ctx = ctx
        self.profile = chain.key_profile
        self.backend = backend
        self._item: Item | None = None

    def item(self) -> Item:
        """The key profile's Item from its credential backend (``backend``, else the usual
        choice), read on the first call and kept; the MFA ledger records whether a TOTP
        seed is kept with it (for `broker list`).

        Raises:
            CredentialsNotFound: nothing is stored under the key profile's name.
            BackendUnavailable, ConfigError: no usable credential backend.
            BrokerError: the backend's own error reading it (a locked vault, a lost GPG
                key).
        """
        if self._item is None:
            from broker.aws.mfa_ledger import MfaLedger  # `broker list` shows the MFA source

            store = self.ctx.credential_backend(self.profile, self.backend)
            ledger = MfaLedger()
            try:
                item = store.get(self.profile.name)
            except BrokerError:
                # unreadable (a lost GPG key, a locked vault): whether a seed is kept with
                # it, and which device its item names, are no longer known
                ledger.mark_seed(store.name, self.profile.name, None)
                self._mark_device(ledger, store.name, None)
                # a backend that cannot work here says why (exit 7), not how the read
                # failed; asked only now, so a read that works costs no check
                from broker.services.backends import require_available

                require_available(self.ctx, store.name)
                raise
            if item is None:
                ledger.mark_seed(store.name, self.profile.name, False)
                self._mark_device(ledger, store.name, None)
                raise self._not_found(store.name)
            self._item = item
            ledger.mark_seed(store.name, self.profile.name, bool(item.get(TOTP)))
            self._mark_device(ledger, store.name,
                              device_kept_with_key(self.profile, item) or "")
        return self._item

    def _not_found(self, backend: str) -> CredentialsNotFound:
        """The error for a key that ``backend`` does not hold: when other available
        backends that can list their items (``LIST``) hold one under the profile's name
        (:func:`holders_elsewhere`), it names them and how to use or move that key,
        else it says to add one. A profile reading a ``broker_item`` gets the plain
        error: a key under its name elsewhere is not the item it names."""
        name = self.profile.name
        said = f"no key stored for profile {name!r} in backend {backend!r}"
        others = [] if self.profile.broker_item else holders_elsewhere(self.ctx, name, backend)
        if not others:
            return CredentialsNotFound(said, f"run `broker add {name}`")
        holder = others[0]
        origin = self.ctx.backend_choice(self.profile, self.backend)[1]
        if origin == "explicit":
            use = f"use --backend {holder}"
        elif origin == "BROKER_BACKEND":
            use = f"set BROKER_BACKEND={holder}"
        else:
            use = f"set broker_backend = {holder} in {_header_for(name)}"
        import shlex

        from broker.services.backends import memory_only

        holds = f"{' and '.join(others)} hold{'s' if len(others) == 1 else ''} one"
        if memory_only(self.ctx, backend):  # never advise copying a key into memory
            return CredentialsNotFound(f"{said}; {holds}", use)
        return CredentialsNotFound(
            f"{said}; {holds}",
            f"{use}, or `broker migrate --from {holder} --to {backend} "
            f"--profile {shlex.quote(name)}`",
        )

    def _mark_device(self, ledger: MfaLedger, backend: str, serial: str | None) -> None:
        """Record, for `broker list`, the device a ``broker_item``'s item names (only
        such a profile's key can carry the device that signs its sessions)."""
        if self.profile.broker_item:
            ledger.mark_device(backend, self.profile.name, serial)

    def serial(self) -> str | None:
        """The MFA device named in the item the key profile's ``broker_item`` points to (its
        ``mfa serial`` field, read with the key), for a chain whose profiles name none; None
        for a profile without ``broker_item`` (the device broker copied into its own item
        is the profile's, whose ``mfa_serial`` it follows).

        Raises:
            BrokerError: as :meth:`item`.
        """
        if not self.profile.broker_item:
            return None
        return device_kept_with_key(self.profile, self.item())

    def credentials(self) -> Credentials:
        """The long-lived key pair of :meth:`item` (no session token, no expiration).

        Raises:
            BackendError: the Item lacks a key field or has an empty one
                (:meth:`Credentials.from_item`); and as :meth:`item`.
        """
        return Credentials.from_item(self.item(), what=f"the stored key of {self.profile.name!r}")


def holders_elsewhere(ctx: Context, name: str, checked: str,
                      required: Capability = Capability.LIST) -> list[str]:
    """The credential backends other than ``checked`` that hold an item under ``name``,
    highest priority first: only those declaring ``LIST`` and the rest of ``required``
    (``PERSISTENT`` for a copy that outlives a reboot), available here
    (:meth:`Context.usable_backends`) and asked with ``list()``, which reads no secret;
    one that fails to list is left out, so an empty answer means "none seen", not "none
    anywhere". Used only to explain a missing key or warn before a removal, never on the
    way to a key that is found.
    """
    found = []
    able = ctx.registry.with_capabilities(required | Capability.LIST)
    for other, backend in ctx.usable_backends(able, skip=checked):
        try:
            if name in backend.list():
                found.append(other)
        except Exception:  # noqa: S112 - an error message is being made: skip a bad one
            continue
    return found


def device_kept_with_key(profile: Profile, item: Item) -> str | None:
    """The MFA device ``item`` names (its ``mfa_serial`` field) when ``profile`` reads its
    key from an item it names with ``broker_item`` (1Password's AWS shell plugin keeps the
    device there), else None. Used only where no profile of the chain sets
    ``mfa_serial``: the profile's own wins, as botocore reads only the profile."""
    if not profile.broker_item:
        return None
    return item.get(MFA_SERIAL) or None


def master_key(ctx: Context, chain: Chain, backend: str | None = None) -> Credentials:
    """The long-lived key of the chain's key profile, from its credential backend."""
    return StoredKey(ctx, chain, backend).credentials()


def cached(ctx: Context, profile: str, region: str | None = None) -> Resolved | None:
    """The target's cached session if fresh, touching no backend but the cache."""
    chain = resolve_chain(ctx.aws, profile)
    name = final_session_name(chain, ChainOptions.from_settings(ctx.settings))
    if name is None:
        return None
    creds = ctx.sessions.get(name)
    if creds is None:
        return None
    return Resolved(profile, creds, ctx.region_for(chain.target, region), chain, [])


def obtain(
    ctx: Context,
    profile: str,
    *,
    region: str | None = None,
    duration: int | None = None,
    no_session: bool = False,
    mfa_code: str | None = None,
    backend: str | None = None,
) -> Resolved:
    """``profile``'s credentials through the whole chain, cached levels reused: the key
    from its credential backend (``backend`` or the usual choice), MFA codes from
    ``mfa_code`` then the default sources (:func:`broker.aws.mfa.default_sources`).
    ``duration``: the final credentials' lifetime in seconds (None: the default).

    Raises:
        BrokerError: as :meth:`broker.aws.chain.CredentialChain.get`, and the backend's
            errors reading the key (CredentialsNotFound when none is stored).
        ConfigError, BackendUnavailable: ``backend`` (or ``BROKER_BACKEND``) names a backend
            that is not installed, disabled or broken, cached session or not
            (:meth:`Context.check_backend_choice`).
    """
    from broker.aws.mfa import MfaCodes, default_sources  # only when a session is made

    ctx.check_backend_choice(backend)  # a wrong name fails even when a session is cached
    chain = resolve_chain(ctx.aws, profile)
    resolved_region = ctx.region_for(chain.target, region)
    options = ChainOptions.from_settings(
        ctx.settings, duration=duration, no_session=no_session, region=resolved_region,
        profile=profile,
    )
    key = StoredKey(ctx, chain, backend)
    codes = MfaCodes(
        explicit=mfa_code, sources=default_sources(key_item=key.item, resolve=ctx.resolver)
    )
    producer = CredentialChain(
        chain, ctx.sessions, key.credentials, codes, options, key_serial=key.serial
    )
    calls = producer.calls
    try:
        creds = producer.get()
    finally:
        if ctx.long_lived:  # a long-lived process keeps no secret it can read again
            del key, codes, producer
            ctx.forget_secrets()
    return Resolved(profile, creds, resolved_region, chain, calls)
