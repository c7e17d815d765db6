"""`broker list`: every profile, how its credentials are made, where its key is.

Listing reads no secret: which keys a backend holds comes from its ``list()``, whether
a TOTP seed is kept with a key from broker's state (updated whenever a key is read,
stored, migrated or removed). A profile whose ``broker_item`` names an existing item is
listed as stored when its backend finds that item (the backend is told which items
profiles name when it is opened: :mod:`broker.services.items`); items no profile can use
are no keys (a backend's ``list()`` leaves them out).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from broker.aws.chain import problems as chain_problems
from broker.aws.credentials import utcnow
from broker.aws.mfa_ledger import MfaLedger
from broker.aws.profiles import Chain, Profile, resolve_chain
from broker.backend import Capability, unnamed
from broker.errors import BackendUnavailable, BrokerError
from broker.services.backends import (
    LOST_AT_REBOOT,
    easiest_to_set_up,
    lasting_order,
    memory_only,
    persistent_setup,
)
from broker.services.context import Context

#: ``broker export``'s options that take a value (to find its PROFILE argument).
_EXPORT_VALUE_OPTIONS = frozenset(
    {"-f", "--format", "-d", "--duration", "--region", "--mfa-code", "--backend"}
)


@dataclass
class SessionInfo:
    """A live cached session of a profile: its ``kind`` (``session`` for the MFA session
    of GetSessionToken, ``role`` for an AssumeRole session), whole seconds until it
    expires (always > 0), and the ``role_arn`` the cache recorded ("" when none)."""

    kind: str
    seconds_left: int
    role_arn: str = ""


@dataclass
class ProfileInfo:
    """One row of ``broker list``: the profile ``name``; its ``chain`` of profile names
    from the key profile up to it (:attr:`Chain.names`, then the profile itself when a
    ``credential_process = broker export`` serves it from another); the ``key_profile``
    and the ``backend`` expected to hold its key, and whether it is ``stored`` there;
    the chain's ``mfa_serial`` (or the device its ``broker_item``'s item named when last
    read), the profile's own ``role_arn``, its live ``sessions``;
    and ``error``, the one-line reason when the chain cannot be resolved (then most
    other fields are empty)."""

    name: str
    chain: list[str]
    key_profile: str
    backend: str
    stored: bool | None  # None: could not tell
    mfa_serial: str | None
    role_arn: str | None
    sessions: list[SessionInfo] = field(default_factory=list)
    error: str = ""
    #: Where MFA codes come from: mfa_process, stored totp, broker_totp, prompt ("": no
    #: MFA; "?": a seed may be kept with a key that cannot be listed now, or the key is
    #: read from a ``broker_item`` whose item, not read yet, may name a device).
    mfa_source: str = ""
    #: Values in the profile's chain broker cannot use (they fail it when used).
    problems: list[str] = field(default_factory=list)
    #: The profile's credential_process, when that is how its credentials are made.
    credential_process: str = ""
    #: Whether a key is expected at all (False: a section with only settings, such as a
    #: ``[default]`` holding the region).
    key_needed: bool = True
    #: Whether the backend keeps the key across reboots (None: no backend involved).
    persistent: bool | None = None


@dataclass
class Listing:
    """What ``broker list`` shows: a row per profile in ~/.aws/config (sorted by name),
    then one per stored key whose name has no section there."""

    profiles: list[ProfileInfo]
    #: backend -> why its keys could not be listed (said once, not on every row).
    unlisted: dict[str, str] = field(default_factory=dict)


def broker_export_target(command: str) -> str | None:
    """The profile a ``credential_process = broker export PROFILE ...`` serves, else None."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if len(words) < 2 or words[0].rsplit("/", 1)[-1] != "broker" or words[1] != "export":
        return None
    i = 2
    while i < len(words):
        word = words[i]
        if word == "--":
            return words[i + 1] if i + 1 < len(words) else None
        if word in _EXPORT_VALUE_OPTIONS:
            i += 2
            continue
        if not word.startswith("-"):
            return word
        i += 1
    return None


def keep_keys_hint(ctx: Context, source: str) -> str:
    """How to move the keys out of memory-only ``source`` into a backend that keeps them:
    a `broker migrate` to the first available one of
    :func:`broker.services.backends.lasting_order` (the default credential backend when it
    is persistent and available), else how to set one up first."""
    lasting = lasting_order(ctx)
    for name in lasting:
        if ctx.registry.availability(name).ok:
            return f"`broker migrate --from {source} --to {name} --delete-source`"
    if not lasting:
        return persistent_setup(ctx)
    target = easiest_to_set_up(ctx, lasting)  # as persistent_setup chooses
    return (f"{persistent_setup(ctx)}, then "
            f"`broker migrate --from {source} --to {target} --delete-source`")


def lost_at_reboot_note(ctx: Context, backend: str, profiles: list[str]) -> str:
    """One line for the keys of ``profiles`` held by memory-only ``backend``."""
    return (f"the keys of {', '.join(profiles)} are in {backend}, {LOST_AT_REBOOT}; "
            f"to keep them: {keep_keys_hint(ctx, backend)}")


def settings_only(profile: Profile) -> bool:
    """A section that makes no credentials of its own: no role, no device, no source, no
    process (``[default]`` with the region, typically)."""
    return not (profile.role_arn or profile.mfa_serial or profile.source_profile
                or profile.credential_process)


class _Stores:
    """Each backend's stored names, listed once, and why a backend could not list."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.names: dict[str, set[str] | None] = {}
        self.unlisted: dict[str, str] = {}
        #: backend -> {name: error} the backend's listing could not settle
        self.problems: dict[str, dict[str, BrokerError]] = {}

    def stored(self, name: str) -> set[str] | None:
        if name not in self.names:
            self.names[name] = self._list(name)
        return self.names[name]

    def _list(self, name: str) -> set[str] | None:
        try:
            store = self.ctx.backend(name)
            availability = self.ctx.registry.availability_of(store)
            if not availability.ok:
                self.unlisted[name] = unnamed(name, availability.reason)
                return None
            if Capability.LIST not in store.capabilities:
                return None
            names = set(store.list())
            self.problems[name] = store.list_problems()
            return names
        except BrokerError as exc:
            self.unlisted[name] = unnamed(name, exc.message)
            return None


def _device(chain: Chain, backend: str) -> str | None:
    """The MFA device that signs ``chain``'s sessions, as far as listing can tell without
    reading a secret: the profiles' ``mfa_serial``; else, for a key read from an item
    the key profile names (``broker_item``), the device that item named when the key
    was last read (:meth:`MfaLedger.device_kept`). ``""``: none; None: not known yet."""
    if chain.mfa_serial or not chain.key_profile.broker_item:
        return chain.mfa_serial or ""
    return MfaLedger().device_kept(backend, chain.key_profile.name)


def _mfa_source(chain: Chain, backend: str, stored: bool | None) -> str:
    from broker.aws.mfa import source_name

    device = _device(chain, backend)
    if device is None:
        return "?"  # a broker_item whose item broker has not read yet
    if device != chain.mfa_serial:
        chain = Chain(chain.target, chain.key_profile, chain.hops, device)
    seed: bool | None
    if stored is False:
        seed = False  # no key, so no seed kept with it, whatever was known before
    else:
        seed = MfaLedger().seed_stored(backend, chain.key_profile.name)
        if stored is None and seed:
            # kept with a key that cannot be listed now: it may be gone
            source = source_name(chain, None)
            return "?" if source == "prompt" else source
    return source_name(chain, seed)


def list_profiles(ctx: Context, *, backend: str | None = None) -> Listing:
    """Every profile in ~/.aws/config and every stored key, with chains and sessions.

    Raises:
        BackendUnavailable: ``backend`` was named and cannot be used (an explicit choice
            fails loudly; a backend chosen by default is shown as ``?`` with its reason).
    """
    if backend is not None:  # a broken, disabled, unknown or unavailable backend, by name
        availability = ctx.registry.availability_of(ctx.backend(backend))
        if not availability:
            raise BackendUnavailable(
                f"backend {backend!r} is not available: {availability.reason}",
                "`broker backend list` shows which backends work here",
            )
    stores = _Stores(ctx)
    sessions: dict[str, list[SessionInfo]] = {}
    now = utcnow()
    for entry in ctx.sessions.entries():
        left = int(entry.credentials.seconds_left(now))
        if left > 0:
            sessions.setdefault(entry.profile, []).append(
                SessionInfo(entry.kind, left, entry.item.get("role_arn", ""))
            )

    def keyed(name: str, profile: Profile, chain: Chain) -> ProfileInfo:
        backend_name = ctx.credential_backend_name(chain.key_profile, backend)
        names = stores.stored(backend_name)
        stored = None if names is None else chain.key_profile.name in names
        problems = chain_problems(chain)  # what `exec` would refuse before any call
        unsettled = stores.problems.get(backend_name, {}).get(chain.key_profile.name)
        if unsettled is not None and not stored:  # e.g. two items with one title: not "missing"
            stored = None
            problems.append(unsettled.as_problem())
        unserved = ctx.item_problem(backend_name, chain.key_profile.name)
        if unserved is not None:  # a broker_item that backend cannot serve
            problems.append(unserved.as_problem())
        return ProfileInfo(
            name, chain.names, chain.key_profile.name, backend_name, stored,
            _device(chain, backend_name) or None, profile.role_arn, sessions.get(name, []),
            mfa_source=_mfa_source(chain, backend_name, stored), problems=problems,
            key_needed=not (name == "default" and settings_only(profile) and not stored),
            persistent=not memory_only(ctx, backend_name),
        )

    infos: list[ProfileInfo] = []
    for name in sorted(ctx.aws.profiles):
        profile = ctx.aws.profiles[name]
        process = profile.credential_process
        try:
            target = broker_export_target(process) if process else None
            if process and not profile.role_arn and target != name:
                if target is not None:
                    # an unknown profile raises here, naming close matches
                    served = keyed(target, ctx.aws.get(target), resolve_chain(ctx.aws, target))
                    info = ProfileInfo(
                        name, [*served.chain, name], served.key_profile, served.backend,
                        served.stored, served.mfa_serial, None, mfa_source=served.mfa_source,
                        problems=served.problems, credential_process=process,
                        persistent=served.persistent,
                    )
                else:
                    info = ProfileInfo(name, [name], name, "", None, None, None,
                                       credential_process=process, key_needed=False)
            else:
                info = keyed(name, profile, resolve_chain(ctx.aws, name))
        except BrokerError as exc:
            info = ProfileInfo(name, [name], name, "", None, None, None, error=str(exc))
        infos.append(info)
    # keys stored for names that have no section in ~/.aws/config
    default_backend = ctx.credential_backend_name(None, backend)
    for orphan in sorted((stores.stored(default_backend) or set()) - set(ctx.aws.profiles)):
        infos.append(
            ProfileInfo(orphan, [orphan], orphan, default_backend, True, None, None,
                        sessions.get(orphan, []),
                        persistent=not memory_only(ctx, default_backend))
        )
    return Listing(infos, dict(stores.unlisted))
