"""MFA use cases: a TOTP seed kept with a key, the current code, enrolling a device.

Plain functions for the CLI's `totp` and `mfa` commands; no click, no printing (a
``progress`` callback reports steps; waits show a countdown through the clock).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from broker.aws import totp
from broker.aws.credentials import Credentials
from broker.aws.mfa_ledger import MfaLedger, UsedCode
from broker.aws.profiles import Chain, Profile, resolve_chain
from broker.aws.totp import TotpSeed, looks_like_uri, parse_seed
from broker.backend import MFA_SERIAL, TOTP, Backend, Item
from broker.errors import (
    AuthenticationError,
    AWSError,
    BackendError,
    BrokerError,
    ConfigError,
    CredentialsNotFound,
    MFACodeRefused,
    MFARequired,
    UsageError,
)
from broker.services.context import Context

#: The issuer an authenticator app shows for a device broker enrolled (as AWS's own QR code).
AWS_ISSUER = "Amazon Web Services"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def code_source(chain: Chain, backend_name: str) -> str:
    """Which source gives ``chain``'s MFA codes ("" when it has no device), for `list`.

    Whether a seed is kept with the key comes from broker's state (updated whenever
    the key is read), so listing reads no secret.
    """
    from broker.aws.mfa import source_name

    stored = MfaLedger().seed_stored(backend_name, chain.key_profile.name)
    return source_name(chain, stored)


def _chain(ctx: Context, profile: str) -> Chain:
    """``profile``'s chain; a key stored under a name with no section stands alone."""
    if profile in ctx.aws.profiles:
        return resolve_chain(ctx.aws, profile)
    bare = Profile(profile)
    return Chain(bare, bare, (), None)


def _own_key_profile(ctx: Context, profile: str, command: str) -> Profile | None:
    """``profile``'s section, refusing one that gets its key through source_profile."""
    from broker.services.keys import refuse_borrowed_key

    refuse_borrowed_key(ctx, profile,
                        lambda key: f"the seed belongs with that key: `broker {command} {key}`")
    return ctx.aws.profiles.get(profile)


def _stored_item(store: Backend, profile: str) -> Item:
    """The Item of ``profile``'s key, about to be updated: refused (before anything is
    changed) when broker may not write it (an item the user keeps, not adopted:
    :meth:`Backend.check_writable`)."""
    item = store.get(profile)
    if item is None:
        raise CredentialsNotFound(
            f"no key stored for profile {profile!r} in backend {store.name!r}",
            f"store the key first (`broker add {profile}`): the seed is kept with it",
        )
    store.check_writable(profile)
    return item


def seed_kept(ctx: Context, profile: str, *, backend: str | None = None) -> bool:
    """Whether a TOTP seed is kept with ``profile``'s key already, asked by `totp set`
    before it reads the new seed: a key that is not stored, or an item broker may only
    read (not adopted), is refused here, before anything is read from the user.

    Raises:
        ConfigError: the profile gets its key through a ``source_profile``.
        CredentialsNotFound: no key is stored for it.
        UsageError: its item is one broker may only read (`broker adopt PROFILE`).
        BrokerError: the backend's own error reading the key.
    """
    known = _own_key_profile(ctx, profile, "totp set")
    store = ctx.credential_backend(known, backend)
    return bool(_stored_item(store, profile).get(TOTP))


@dataclass
class SeedResult:
    """What ``broker totp set`` did: the ``profile`` whose key now keeps the seed, the
    ``backend`` holding it, whether a seed was ``replaced``, where codes now come from,
    the seed's ``period`` (seconds) and ``digits``, and whether AWS accepted a code made
    from it (``verified``: the device's serial) or why that was not checked
    (``unchecked``).
    """
    profile: str
    backend: str
    replaced: bool
    #: Where the profile's codes now come from (mfa_process still comes first).
    source: str
    period: int
    digits: int
    #: The MFA device AWS accepted a code made from the seed for ("": not checked).
    verified: str = ""
    #: Why the seed was not checked against AWS ("" when it was).
    unchecked: str = ""


def set_seed(
    ctx: Context,
    profile: str,
    text: str,
    *,
    backend: str | None = None,
    verify: bool = True,
    clock: totp.Clock | None = None,
) -> SeedResult:
    """Keep a TOTP seed (base32 or otpauth URI) in the Item of ``profile``'s key.

    With ``verify`` (the default) the seed is proven first: a code made from it must get
    a GetSessionToken for the profile's MFA device, or nothing is stored. A wrong seed
    would otherwise only show at the next `broker exec`, as codes AWS refuses.
    """
    known = _own_key_profile(ctx, profile, "totp set")
    seed = parse_seed(text, origin="that seed")
    store = ctx.credential_backend(known, backend)
    item = _stored_item(store, profile)
    value = seed.uri() if looks_like_uri(text) else seed.secret
    updated = item.replace(**{TOTP: value})
    verified, unchecked = "", "not asked to"
    if verify:
        serial = _device_of(ctx, profile, item)
        if serial:
            _prove_seed(ctx, profile, known, serial, updated, clock or totp.CLOCK)
            verified, unchecked = serial, ""
        else:
            unchecked = (f"no mfa_serial is set for {profile} (or a role built on its key), "
                         "so there is no device to check it against")
    store.set(profile, updated)
    MfaLedger().mark_seed(store.name, profile, True)
    source = code_source(_chain(ctx, profile), store.name)
    return SeedResult(
        profile, store.name, bool(item.get(TOTP)), source, seed.period, seed.digits,
        verified, unchecked,
    )


def _device_of(ctx: Context, profile: str, item: Item) -> str | None:
    """The MFA device whose codes ``profile``'s key sends: the profile's ``mfa_serial``,
    the one stored with the key, or the one of a role built on the key."""
    from broker.services.keys import profiles_using_key

    if profile in ctx.aws.profiles:
        own = resolve_chain(ctx.aws, profile).mfa_serial
        if own:
            return own
    if item.get(MFA_SERIAL):
        return item[MFA_SERIAL]
    for name in profiles_using_key(ctx, profile) if profile in ctx.aws.profiles else []:
        try:
            serial = resolve_chain(ctx.aws, name).mfa_serial
        except BrokerError:
            continue
        if serial:
            return serial
    return None


def _prove_seed(
    ctx: Context, profile: str, known: Profile | None, serial: str, item: Item,
    clock: totp.Clock,
) -> None:
    """GetSessionToken with the stored key and a code made from the seed in ``item``: AWS
    accepts the code only if the seed is the device's. The session is cached as the
    profile's MFA session, the one `exec` makes, so the next command needs no new code
    (AWS takes each code once); the code is recorded as used."""
    from broker.aws import sts
    from broker.aws.chain import ChainOptions, CredentialChain
    from broker.aws.mfa import MfaCodes, StoredSeed
    from broker.services.credentials import device_kept_with_key

    key_profile = known or Profile(profile)
    # A device named only in a broker_item's item goes through the hook `exec` uses, not
    # the chain: the cache name holds the profiles' device only, so `exec` finds it.
    named = known is not None and resolve_chain(ctx.aws, profile).mfa_serial == serial
    kept = None if named else device_kept_with_key(key_profile, item)
    own = Chain(key_profile, key_profile, (), None if kept == serial else serial)
    creds = Credentials.from_item(item, what=f"the stored key of {profile!r}")
    codes = MfaCodes(sources=[StoredSeed(lambda: item)], clock=clock)
    options = ChainOptions.from_settings(
        ctx.settings, region=ctx.region_for(known) if known else None, profile=profile,
    )
    # fresh: always ask AWS (a cached session would answer without checking the code); the
    # new session replaces the cached one only once AWS accepted the code.
    producer = CredentialChain(own, ctx.sessions, lambda: creds, codes, options, fresh=True,
                               key_serial=lambda: serial)
    with sts.profile_scope(profile):
        try:
            producer.get()
        except MFACodeRefused:
            raise AuthenticationError(
                f"AWS refused the code made from that seed for {serial}: it is not that "
                "device's seed, or the clock here is off",
                "check the seed, the secret shown when the device was set up, and this "
                "machine's clock with `broker doctor`; nothing was stored",
            ) from None
        except BrokerError as exc:
            clone = copy.copy(exc)
            clone.hint = "; ".join(filter(None, [
                exc.hint, f"nothing was stored: `broker totp set {profile} --no-verify` stores "
                "the seed without asking AWS",
            ]))
            raise clone from None


def remove_seed(ctx: Context, profile: str, *, backend: str | None = None) -> str:
    """Drop the seed kept with ``profile``'s key (the key stays); the backend's name."""
    known = _own_key_profile(ctx, profile, "totp remove")
    store = ctx.credential_backend(known, backend)
    item = _stored_item(store, profile)
    if not item.get(TOTP):
        MfaLedger().mark_seed(store.name, profile, False)
        raise CredentialsNotFound(
            f"no TOTP seed is kept with {profile}'s key in backend {store.name!r}",
            "nothing to remove",
        )
    store.set(profile, item.replace(**{TOTP: None}))
    MfaLedger().mark_seed(store.name, profile, False)
    return store.name


@dataclass
class CurrentCode:
    """A TOTP code for the console: the 6-digit ``code``, how many whole seconds of its time
    step remain (``seconds_left``, at least 0), and where it came from (``origin``, e.g.
    "the stored TOTP seed", "broker_totp").
    """
    code: str
    seconds_left: int
    origin: str


def current_code(
    ctx: Context, profile: str, *, backend: str | None = None, clock: totp.Clock | None = None
) -> CurrentCode:
    """The code for the console sign-in page, from the stored seed or ``broker_totp``.

    It counts as used at once (the console will use it): a `broker exec` in the same
    30 seconds waits for the next code instead of sending this one again.
    """
    from broker.aws.mfa import MfaCodes, StoredSeed, TotpReference
    from broker.services.credentials import StoredKey

    chain = _chain(ctx, profile)
    key = StoredKey(ctx, chain, backend)

    def key_item() -> Item | None:
        try:
            return key.item()
        except CredentialsNotFound:
            return None  # broker_totp may still serve

    clock = clock or totp.CLOCK
    codes = MfaCodes(sources=[StoredSeed(key_item), TotpReference(ctx.resolver)], clock=clock)
    serial = chain.mfa_serial or f"profile:{chain.key_profile.name}"
    try:
        code = codes.code_for(serial, chain)
    except MFARequired:
        name = chain.key_profile.name
        raise MFARequired(
            f"no TOTP seed is kept with {name}'s key and the profile has no broker_totp",
            f"store one with `broker totp set {name}`, or enrol with `broker mfa enroll {name}`",
        ) from None
    issued = codes.last_issued
    assert issued is not None
    left = max(int(issued.until - clock.now()), 0)
    return CurrentCode(code, left, codes.last_origin)


@dataclass
class EnrollResult:
    """What ``broker mfa enroll`` did: the ``profile`` and ``backend`` whose key keeps the
    seed, the IAM ``user`` and the device ``serial`` (its ARN), whether an interrupted run
    was ``resumed`` or the device was enabled ``already``, the ~/.aws/config written
    (``config_path``) and whether it changed, and the ``seed`` (a secret, printed only
    with ``--show-seed``/``--show-qr``).
    """
    profile: str
    backend: str
    user: str
    serial: str
    #: An earlier, interrupted run was continued.
    resumed: bool
    #: The device was enabled already: only ~/.aws/config was brought up to date.
    already: bool
    config_path: Path
    config_changed: bool
    #: Held for --show-seed/--show-qr; the CLI prints it only when asked.
    seed: TotpSeed | None = dataclasses.field(default=None, repr=False)


def enroll(
    ctx: Context,
    profile: str,
    *,
    device_name: str | None = None,
    backend: str | None = None,
    clock: totp.Clock | None = None,
    progress: Progress = _quiet,
) -> EnrollResult:
    """Create a virtual MFA device for the IAM user of ``profile``'s key, keep its seed
    with the key, enable it with two consecutive codes, set ``mfa_serial``.

    The seed is stored (and read back) before the device is enabled, so a device is
    never enabled whose seed was lost. Run again after an interruption, it finds the
    stored seed and the unassigned device and goes on from there.
    """
    from broker.aws import sts

    with sts.profile_scope(profile):
        from broker.aws.config_writer import write_profile_value
        from broker.aws.iam_mfa import ASSIGNED, MISSING, UNASSIGNED, DeviceExists, IamMfa

        clock = clock or totp.CLOCK
        known = _own_key_profile(ctx, profile, "mfa enroll")
        store = ctx.credential_backend(known, backend)
        item = _stored_item(store, profile)
        creds = Credentials.from_item(item, what=f"the stored key of {profile!r}")
        iam = IamMfa(creds, ctx.region_for(known) if known else None)
        caller = iam.caller()
        user = caller.user_name
        config_path = ctx.aws.path

        def finish(
            serial: str, seed: TotpSeed | None, resumed: bool, already: bool
        ) -> EnrollResult:
            changed = write_profile_value(config_path, profile, "mfa_serial", serial)
            ctx.__dict__.pop("aws", None)  # the cached parse is stale now
            MfaLedger().mark_seed(store.name, profile, True)
            return EnrollResult(
                profile, store.name, user, serial, resumed, already, config_path, changed, seed
            )

        seed: TotpSeed | None = None
        serial = ""
        resumed = False
        stored_value, stored_serial = item.get(TOTP), item.get(MFA_SERIAL)
        if stored_value:
            status = iam.status(stored_serial, user) if stored_serial else None
            if stored_serial and status == ASSIGNED:
                progress(f"{stored_serial} is enabled already and its seed is kept with the key.")
                return finish(stored_serial, _stored_seed(stored_value, profile), False, True)
            if stored_serial and status == UNASSIGNED:
                seed, serial, resumed = _stored_seed(stored_value, profile), stored_serial, True
                progress(f"Resuming: {serial} was created and its seed stored; enabling it.")
            elif stored_serial and status == MISSING:
                progress(f"The stored seed belongs to {stored_serial}, which no longer exists.")
            else:
                raise UsageError(
                    f"a TOTP seed is kept with {profile}'s key already, for a device broker "
                    "did not enrol",
                    f"if it is no longer used, `broker totp remove {profile}` first; to use that "
                    "device, set its mfa_serial in ~/.aws/config",
                )
        if (
            seed is None and known is not None and known.mfa_serial
            and known.mfa_serial in iam.user_devices(user)
        ):
            raise UsageError(
                    f"profile {profile!r} uses the MFA device {known.mfa_serial}, enabled already",
                    f"to keep its seed with the key: `broker totp set {profile}`; to enrol another "
                    "device, remove mfa_serial from the profile first",
                )

        if seed is None:
            name = device_name or user
            try:
                serial, raw = iam.create_device(name)
            except DeviceExists as exc:
                if iam.status(exc.serial, user) != UNASSIGNED:
                    raise
                # an earlier run created it and stopped before storing its seed, which is
                # lost: it can never be enabled safely, so it is replaced
                progress(f"Deleting {exc.serial}: an earlier run created it but kept no seed.")
                iam.delete_device(exc.serial)
                serial, raw = iam.create_device(name)
            seed = dataclasses.replace(
                parse_seed(raw, origin="the seed AWS returned", error=AWSError),
                issuer=AWS_ISSUER, account=f"{name}@{caller.account}",
            )
            try:
                _keep_seed(store, profile, item, seed, serial)
            except BaseException:
                with contextlib.suppress(Exception):
                    iam.delete_device(serial)  # unassigned and seedless: of no use to anyone
                raise
            progress(f"Created {serial}; its seed is kept with {profile}'s key in {store.name}.")

        code1, code2, step2 = _two_consecutive_codes(seed, clock)
        iam.enable(user, serial, code1, code2)
        MfaLedger().record(serial, UsedCode(step2, seed.period, code2, clock.now()))
        progress(f"Enabled {serial} for IAM user {user}.")
        return finish(serial, seed, resumed, False)


def _stored_seed(value: str, profile: str) -> TotpSeed:
    return parse_seed(
        value, origin=f"the TOTP seed stored with {profile}'s key", error=ConfigError,
        hint=f"`broker totp remove {profile}`, then enrol again",
    )


def _keep_seed(store: Backend, profile: str, item: Item, seed: TotpSeed, serial: str) -> None:
    """Store the seed with the key, then read it back: enabling a device whose seed a
    backend silently dropped would lock the user out."""
    store.set(profile, item.replace(**{TOTP: seed.uri(), MFA_SERIAL: serial}))
    kept = store.get(profile)
    value = kept.get(TOTP) if kept is not None else None
    try:
        same = bool(value) and parse_seed(value or "").secret == seed.secret
    except BrokerError:
        same = False
    if not same:
        raise BackendError(
            f"backend {store.name!r} did not keep the TOTP seed; the device was not enabled",
            "use a backend that stores a totp field (keyctl, pass, onepassword)",
        )


def _two_consecutive_codes(seed: TotpSeed, clock: totp.Clock) -> tuple[str, str, int]:
    """Codes for two consecutive steps, the second one current: EnableMFADevice wants
    them so, sent right after the second appears."""
    first = seed.step_at(clock.now())
    clock.wait_until(
        (first + 1) * seed.period,
        "broker: EnableMFADevice needs two consecutive codes; the second one in",
    )
    second = seed.step_at(clock.now())
    return seed.code_at_step(second - 1), seed.code_at_step(second), second
