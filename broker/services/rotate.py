"""`broker rotate`: replace a profile's long-lived access key with a new one.

The order keeps a working key stored at every step, and every failure names the
state IAM is left in and the command that finishes the job:

1. GetCallerIdentity with the stored key: whose key it is, and that it works.
2. Credentials allowed to manage keys: the MFA session when the profile has an
   ``mfa_serial`` (policies often require MFA for iam:*), else the key itself.
3. iam:CreateAccessKey.
4. Store the new key in the same backend, keeping the item's other fields
   (``mfa_serial``, ``totp``...), and in every other backend that holds the same
   access key id under the same name (``broker migrate`` keeps the source's copy by
   default): deleting the old key must not break a copy left behind. Storing before
   the wait means an interrupted wait never loses the new secret. Each copy is read
   back through a new instance of its backend (nothing the writing instance cached),
   and its key id and secret compared with the new key's: a store that answered a
   write it did not make (a 1Password CLI older than 2.23 did) is caught here, before
   the old key is touched. If a copy cannot be updated, or does not read back as the
   new key, the others are put back and the new key deleted.
5. Wait until the new key works (IAM is eventually consistent): GetCallerIdentity
   with backoff. If it never does, the old items are put back and the new key deleted.
6. Clear the sessions made from the old key, then iam:DeleteAccessKey the old key
   (with the credentials of step 2).

Before step 3 every available backend is asked for the profile's item; one that cannot
be read stops the rotation, since it might hold a copy that step 6 would break.

Only the rotated profile's own items get the new key. Before step 1 the stored key of
every other profile of ~/.aws/config that has a key of its own is read (one
``get_many`` per credential backend): a profile holding the same access key id in
another item would break when step 6 deletes the old key, so the rotation is refused,
naming those profiles, unless ``force`` is given (:func:`sharing_profiles`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from broker.aws import iam_keys
from broker.aws.credentials import Credentials
from broker.aws.profiles import Chain, Profile, resolve_chain
from broker.backend import ACCESS_KEY_ID, SECRET_ACCESS_KEY, Backend, Item
from broker.errors import (
    BackendError,
    BrokerError,
    CredentialsNotFound,
    ExitCode,
    Interrupted,
    UsageError,
)
from broker.services.context import Context

#: Seconds between verification attempts: 1, 2, 4, then 8 (about a minute in all).
FIRST_DELAY = 1.0
MAX_DELAY = 8.0
VERIFY_ATTEMPTS = 10


class RotationFailed(BrokerError):
    """A step of the rotation failed; the message says what state IAM and the store are in.

    The exit code is the one of the error that stopped the rotation.
    """

    def __init__(self, message: str, hint: str, exit_code: ExitCode) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


@dataclass
class RotationResult:
    """What ``broker rotate`` did: the key ``profile`` (the chain's, which may differ from the
    ``requested`` one), the ``backend`` it is read from, the IAM ``user``, the old and the
    new access key ids (never a secret), how many tries it took before AWS accepted the new
    key (IAM is eventually consistent), how many cached sessions were ended, and every
    backend now holding the new key.
    """
    profile: str  # the profile whose key was rotated (the chain's key profile)
    requested: str  # the profile named on the command line
    backend: str
    user: str
    old_key_id: str
    new_key_id: str
    verify_attempts: int
    sessions_cleared: int
    #: Every backend that held the old key and now holds the new one, ``backend`` first.
    backends: list[str] = field(default_factory=list)
    #: Other profiles whose items held the old key (rotated with ``force``): they do not
    #: get the new key and stop working now that the old one is deleted.
    broken: list[str] = field(default_factory=list)


@dataclass
class _Copy:
    """One backend's item holding the key being rotated: the open ``store``, the name the
    registry knows it by (``backend``), and the ``item`` it held before."""

    store: Backend
    item: Item
    backend: str


def _delete_command(user: str, key_id: str) -> str:
    return f"`aws iam delete-access-key --user-name {user} --access-key-id {key_id}`"


def _failed(cause: BaseException, state: str, hint: str) -> RotationFailed:
    if isinstance(cause, BrokerError):
        detail, code = cause.message, cause.exit_code
    else:  # a plugin's own exception: its text is not ours to show, its type is
        detail, code = f"unexpected {type(cause).__name__}", ExitCode.FAILURE
    return RotationFailed(f"{detail}; {state}", hint, code)


@dataclass
class Sharing:
    """Other profiles holding the key being rotated (:func:`sharing_profiles`):
    ``profiles`` by name, ``holders`` the same as shown (``PROFILE (backend NAME)``), and
    ``unread``, the profiles whose stored key could not be read, with why (an error's
    message, never a secret)."""

    profiles: list[str] = field(default_factory=list)
    holders: list[str] = field(default_factory=list)
    unread: dict[str, str] = field(default_factory=dict)


def _same_item(profile: Profile, rotated: Profile) -> bool:
    """Whether both profiles name the same item in their ``broker_item`` (compared
    without case, as 1Password matches names): rotating one updates the other's key."""
    mine, theirs = rotated.broker_item, profile.broker_item
    return bool(mine and theirs and mine.strip().casefold() == theirs.strip().casefold())


def sharing_profiles(ctx: Context, chain: Chain, store_name: str, key_id: str) -> Sharing:
    """The other profiles of ~/.aws/config whose own stored key (in their credential
    backend, from a ``broker_item`` or broker's own item) has the access key id
    ``key_id``, the key of ``chain``'s key profile, kept in backend ``store_name``.

    A profile that gets its key through a ``source_profile`` uses the rotated key
    itself, and one whose ``broker_item`` names the same item as the rotated profile's
    in the same backend gets the new key with it: neither is counted (the same item by
    its reference's text, any case, or, once read, by
    :meth:`~broker.backend.Backend.item_identity`: a title and an ``op://`` reference or
    id naming one item). Each backend is
    read with one :meth:`~broker.backend.Backend.get_many` of its profiles (a store
    with a batched read makes one request for them all; a failed batch is retried one
    profile at a time, so one unreadable item does not hide the others). A backend that
    is not installed or not available here serves none of them, so is skipped.
    """
    rotated = chain.key_profile
    wanted: dict[str, list[str]] = {}
    for name, profile in ctx.aws.profiles.items():
        if name == rotated.name:
            continue
        try:
            if resolve_chain(ctx.aws, name).key_profile.name != name:
                continue
            backend = ctx.credential_backend_name(profile)
        except BrokerError:
            continue  # a profile broker cannot use holds no key it would break
        if backend == store_name and _same_item(profile, rotated):
            continue
        wanted.setdefault(backend, []).append(name)
    found = Sharing()
    for backend, store in ctx.usable_backends(sorted(wanted)):
        names = [n for n in wanted[backend] if ctx.item_problem(backend, n) is None]
        # the rotated key's own item, served to another profile too: it gets the new key
        own = store.item_identity(rotated.name) if backend == store_name else None
        for name, item in _read_all(store, names, found.unread).items():
            if item is None or item.get(ACCESS_KEY_ID) != key_id:
                continue
            if own is not None and store.item_identity(name) == own:
                continue
            found.profiles.append(name)
            found.holders.append(f"{name} (backend {backend})")
    return found


def _read_all(store: Backend, names: list[str], unread: dict[str, str]) -> dict[str, Item | None]:
    """``store.get_many(names)``; when the batch fails, each name on its own, the ones
    that fail too recorded in ``unread`` (name -> why)."""
    if not names:
        return {}
    try:
        return store.get_many(names)
    except Exception:  # noqa: S110 - told apart per profile below
        pass
    items: dict[str, Item | None] = {}
    for name in names:
        try:
            items[name] = store.get(name)
        except Exception as exc:
            unread[name] = exc.message if isinstance(exc, BrokerError) else type(exc).__name__
    return items


def _refuse_shared(name: str, key_id: str, sharing: Sharing) -> UsageError:
    """The refusal of a rotation whose old key other profiles hold (or may hold)."""
    if sharing.holders:
        them = ", ".join(sharing.holders)
        return UsageError(
            f"the key {key_id} of {name} is also the stored key of {them}: rotate gives "
            f"the new key to {name}'s item only, so deleting the old key would break them; "
            "nothing was changed",
            f"make them use {name}'s key (`source_profile = {name}` in a role profile, or a "
            f"broker_item naming {name}'s item), or remove their copies (`broker remove "
            f"PROFILE`), then rotate again; or pass --force to rotate anyway and give them "
            f"the new key afterwards (`broker add PROFILE --replace`)",
        )
    them = "; ".join(f"{p}: {why}" for p, why in sorted(sharing.unread.items()))
    return UsageError(
        f"cannot tell whether other profiles hold {name}'s key {key_id} too (their stored "
        f"key could not be read: {them}); nothing was changed",
        "fix their backend (`broker doctor`), then rotate again; or pass --force to rotate "
        "anyway (a profile holding the old key stops working)",
    )


def _iam_credentials(
    ctx: Context, chain: Chain, item: Item, old: Credentials, mfa_code: str | None,
    region: str | None,
) -> Credentials:
    """The MFA session of the key profile (shared with `exec`'s cache), or the key itself."""
    from broker.services.credentials import device_kept_with_key

    def kept() -> str | None:
        return device_kept_with_key(chain.key_profile, item)

    if not (chain.mfa_serial or kept()):
        return old
    from broker.aws.chain import ChainOptions, CredentialChain
    from broker.aws.mfa import MfaCodes, default_sources

    # The key profile's own chain without its roles: the same cached MFA session `exec`
    # uses (same profile, same device), and the same code sources (a stored TOTP seed too).
    # The device kept with the key (a broker_item's mfa serial) comes through the hook
    # `exec` uses, not the chain: the session's cache name holds the profiles' device
    # only (:func:`broker.aws.chain.mfa_session_name`), so that both find the same one.
    own = Chain(chain.key_profile, chain.key_profile, (), chain.mfa_serial)
    options = ChainOptions.from_settings(ctx.settings, region=region)
    codes = MfaCodes(
        explicit=mfa_code, sources=default_sources(key_item=lambda: item, resolve=ctx.resolver)
    )
    return CredentialChain(own, ctx.sessions, lambda: old, codes, options,
                           key_serial=kept).get()


def _read_fresh(ctx: Context, copy: _Copy, name: str) -> Item | None:
    """``name``'s item as ``copy``'s store holds it now, read through a new instance of its
    backend (bound to the profiles' ``broker_item`` as the open one is), so that nothing
    the instance that wrote it remembers can answer. Raises what the read raises."""
    from broker.services.items import bind_items

    fresh = ctx.registry.create(copy.backend, namespace=copy.store.namespace,
                                resolver=ctx.resolver)
    try:
        bind_items(ctx, copy.backend, fresh)
        return fresh.get(name)
    finally:
        fresh.close()


def _not_stored(ctx: Context, copy: _Copy, name: str, new: Credentials,
                old_id: str) -> str | None:
    """Why ``copy``'s store does not hold ``new`` (key id and secret), read back afresh
    (:func:`_read_fresh`): ``"it holds the old key AKIA..."``, ``"its secret differs"``...;
    None when it does. Names key ids only, never a secret."""
    try:
        item = _read_fresh(ctx, copy, name)
    except (Exception, KeyboardInterrupt) as exc:
        detail = exc.message if isinstance(exc, BrokerError) else type(exc).__name__
        return f"the read failed: {detail}"
    held = None if item is None else item.get(ACCESS_KEY_ID)
    if held is None:
        return "it holds no key"
    if held != new.access_key_id:
        return f"it holds the old key {old_id}" if held == old_id else f"it holds key {held}"
    if item is not None and item.get(SECRET_ACCESS_KEY) != new.secret_access_key:
        return "its secret differs from the new key's"
    return None


def _clear_sessions(ctx: Context, key_profile: str) -> int:
    from broker.services.keys import revoke_sessions

    try:
        return revoke_sessions(ctx, key_profile)
    except BrokerError:
        return 0  # stale sessions only expire; the rotation itself is done


def _other_copies(
    ctx: Context, store: Backend, name: str, key_id: str, progress: Callable[[str], None]
) -> list[_Copy]:
    """The items under ``name`` in every other available credential backend that hold
    ``key_id`` too (a copy `broker migrate` kept, say).

    Raises:
        RotationFailed: a backend that is available cannot be read, so whether it holds a
            copy (that deleting the old key would break) cannot be told.
    """
    copies = []
    for other, backend in ctx.usable_backends(ctx.registry.names(), skip=store.name):
        try:
            item = backend.get(name)
        except (Exception, KeyboardInterrupt) as exc:
            raise _failed(
                exc,
                f"cannot tell whether backend {other!r} holds a copy of {name}'s key too; "
                f"nothing was changed: the stored key {key_id} is still in use",
                f"deleting the old key would break a copy left there: fix {other} first "
                "(`broker doctor`), or remove its copy, then rotate again",
            ) from None
        if item is None:
            continue
        if item.get(ACCESS_KEY_ID) == key_id:
            copies.append(_Copy(backend, item, other))
        else:
            held = item.get(ACCESS_KEY_ID) or "no key"
            progress(f"Backend {other} holds another key ({held}) for {name}: left alone")
    return copies


def _store_everywhere(
    ctx: Context, copies: list[_Copy], name: str, new: Credentials, iam_creds: Credentials,
    region: str | None, user: str, old_id: str,
) -> None:
    """Store the new key in every copy, each keeping its other fields, and read each back
    (:func:`_not_stored`). On a failure the copies already updated (and the one that
    does not read back as the new key) get the old item back and the new key is deleted
    again."""
    new_id = new.access_key_id
    fields = {ACCESS_KEY_ID: new_id, SECRET_ACCESS_KEY: new.secret_access_key}
    updated: list[_Copy] = []
    for copy in copies:
        try:
            copy.store.set(name, copy.item.replace(**fields))
        except (Exception, KeyboardInterrupt) as exc:
            if _not_stored(ctx, copy, name, new, old_id) is None:
                updated.append(copy)
                continue
            where = f" in backend {copy.store.name}" if len(copies) > 1 else ""
            stuck = _put_back(updated, name)
            if stuck:
                raise _failed(
                    exc,
                    f"the new key {new_id} could not be stored{where}, and backends "
                    f"{', '.join(stuck)} hold it but could not get the old key {old_id} back; "
                    f"both keys still exist in IAM",
                    f"store the new key{where} too (`broker migrate --from {stuck[0]} --to "
                    f"{copy.store.name} --profile {name} --overwrite`); then, once `broker "
                    f"exec` works, delete the old key with {_delete_command(user, old_id)}",
                ) from None
            raise _store_failed(exc, iam_creds, region, user, old_id, new_id, where) from None
        updated.append(copy)
        problem = _not_stored(ctx, copy, name, new, old_id)
        if problem is not None:
            _unstored(copy, problem, updated, name, iam_creds, region, user, old_id, new_id)


def _unstored(
    copy: _Copy, problem: str, updated: list[_Copy], name: str, iam_creds: Credentials,
    region: str | None, user: str, old_id: str, new_id: str,
) -> None:
    """``copy``'s store answered the write but does not read back as the new key: the
    copies written so far (``copy`` too) get their old item back and the new key, whose
    secret is stored nowhere, is deleted again; the old key stays active. Raises
    RotationFailed, naming the new key's id and the step left, never its secret."""
    unstored = (f"the new key {new_id} was not stored in backend {copy.store.name} (read "
                f"back afresh: {problem})")
    code = BackendError.exit_code
    stuck = _put_back(updated, name)
    if stuck:
        raise RotationFailed(
            f"{unstored}, and the old key {old_id} could not be put back in "
            f"{', '.join(stuck)}; both keys still exist in IAM",
            f"fix {stuck[0]} (`broker doctor`), see which key id it holds (`broker list`), "
            f"and delete the other of {old_id} and {new_id} with "
            f"`aws iam delete-access-key --user-name {user} --access-key-id KEY_ID`",
            code,
        )
    try:
        iam_keys.delete_access_key(iam_creds, region, user, new_id)
    except BrokerError:
        raise RotationFailed(
            f"{unstored}; its secret is stored nowhere and it could not be deleted again; "
            f"the stored key {old_id} still works",
            f"delete the new key with {_delete_command(user, new_id)}; then fix the backend "
            "(`broker doctor`) and rotate again",
            code,
        ) from None
    raise RotationFailed(
        f"{unstored}, so it was deleted again; the stored key {old_id} is still in use",
        "fix the backend (`broker doctor`), then rotate again",
        code,
    )


def _put_back(copies: list[_Copy], name: str) -> list[str]:
    """Store each copy's original item again; the backends where that failed."""
    stuck = []
    for copy in copies:
        try:
            copy.store.set(name, copy.item)
        except Exception:
            stuck.append(copy.store.name)
    return stuck


def wait_until_works(
    new: Credentials,
    region: str | None,
    expected_arn: str,
    *,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = VERIFY_ATTEMPTS,
    first_delay: float = FIRST_DELAY,
) -> int:
    """Retry GetCallerIdentity with ``new`` until it answers as ``expected_arn``.

    Returns the number of attempts; raises the last error when none succeeded.
    """
    delay = first_delay
    last: BrokerError = BrokerError("the new key was not tried")
    for attempt in range(1, attempts + 1):
        try:
            seen = iam_keys.caller_identity(new, region)
        except BrokerError as exc:
            last = exc
        else:
            if seen.arn == expected_arn:
                return attempt
            last = BrokerError(f"the new key answers as {seen.arn}, not {expected_arn}")
        if attempt < attempts:
            sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
    raise last


def rotate(
    ctx: Context,
    profile: str,
    *,
    backend: str | None = None,
    region: str | None = None,
    mfa_code: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = VERIFY_ATTEMPTS,
    progress: Callable[[str], None] = lambda _: None,
    force: bool = False,
) -> RotationResult:
    """Rotate the access key behind ``profile`` (its chain's key profile): the new key
    goes into every item that profile's key is read from (under its name, in each
    available backend holding the same key id), and into no other profile's.

    Raises:
        UsageError: another profile's stored key is the same key, or could not be read
            (:func:`sharing_profiles`), and ``force`` is not given; nothing was changed.
        CredentialsNotFound: no key is stored for the key profile.
        RotationFailed: a step failed; the message says what IAM and the stores hold.
        Interrupted: Ctrl-C while waiting for the new key to work.
    """
    from broker.aws import sts

    with sts.profile_scope(profile):
        chain = resolve_chain(ctx.aws, profile)
        name = chain.key_profile.name
        store = ctx.credential_backend(chain.key_profile, backend)
        item = store.get(name)
        if item is None:
            raise CredentialsNotFound(
                f"no key stored for profile {name!r} in backend {store.name!r}",
                f"run `broker add {name}` first",
            )
        store.check_writable(name)  # an item broker only reads: refused before any call
        old = Credentials.from_item(item, what=f"the stored key of {name!r}")
        old_id = old.access_key_id
        store_name = ctx.credential_backend_name(chain.key_profile, backend)
        # other profiles' items holding this key would break at step 6: refused before
        # any call to AWS (their reads are the cost of a rotation, not of exec)
        sharing = sharing_profiles(ctx, chain, store_name, old_id)
        if (sharing.holders or sharing.unread) and not force:
            raise _refuse_shared(name, old_id, sharing)
        broken = list(sharing.profiles)  # names may hold " (": never parsed back
        if broken:
            progress(f"--force: {', '.join(sharing.holders)} hold the old key {old_id}; they "
                     "do not get the new one and stop working once it is deleted")
        if sharing.unread:
            progress(f"--force: whether {', '.join(sorted(sharing.unread))} hold the old key "
                     f"{old_id} could not be read; if they do, they stop working")
        where = ctx.region_for(chain.target, region)
        unchanged = f"nothing was changed: the stored key {old_id} is still in use"

        # 1. whose key is it, and does it work?
        try:
            identity = iam_keys.caller_identity(old, where)
        except BrokerError as exc:
            raise _failed(exc, unchanged, exc.hint or "check the key with `broker exec`") from None
        user = identity.user_name
        progress(f"Rotating access key {old_id} of IAM user {user} (profile {name}, "
                 f"backend {store.name})")

        copies = [_Copy(store, item, store_name),
                  *_other_copies(ctx, store, name, old_id, progress)]
        stores = ", ".join(c.store.name for c in copies)
        if len(copies) > 1:
            progress(f"Backends {stores} hold this key: each gets the new one")

        # 2. and 3. a new key, made with credentials allowed to manage keys
        iam_creds = _iam_credentials(ctx, chain, item, old, mfa_code, where)
        try:
            new = iam_keys.create_access_key(iam_creds, where, user)
        except iam_keys.KeyLimitReached as exc:
            hint = _limit_hint(ctx, iam_creds, where, user, old_id)
            raise _failed(exc, unchanged, hint) from None
        except BrokerError as exc:
            raise _failed(exc, f"no new key was created; {unchanged}", _hint(exc)) from None
        new_id = new.access_key_id
        progress(f"Created access key {new_id}")

        # 4. store it next to each old item's other fields, in every backend holding it
        _store_everywhere(ctx, copies, name, new, iam_creds, where, user, old_id)
        kind = "backends" if len(copies) > 1 else "backend"
        progress(f"Stored the new key in {kind} {stores}; waiting until AWS accepts it")

        # 5. wait until AWS accepts it
        try:
            tries = wait_until_works(new, where, identity.arn, sleep=sleep, attempts=attempts)
        except (KeyboardInterrupt, Interrupted):
            raise Interrupted(
                f"interrupted while waiting for the new key {new_id}: it is stored, and the "
                f"old key {old_id} still exists in IAM",
                f"once `broker exec {profile}` works, delete the old key with "
                f"{_delete_command(user, old_id)}",
            ) from None
        except BrokerError as exc:
            raise _verify_failed(
                exc, copies, name, iam_creds, where, user, old_id, new_id
            ) from None

        # 6. forget sessions made from the old key, then delete it
        cleared = _clear_sessions(ctx, name)
        try:
            iam_keys.delete_access_key(iam_creds, where, user, old_id)
        except BrokerError as exc:
            raise _failed(
                exc,
                f"new key {new_id} created and stored but the old key {old_id} was not deleted",
                f"delete it with {_delete_command(user, old_id)}",
            ) from None
        progress(f"Deleted the old key {old_id}")
        return RotationResult(
            name, profile, store.name, user, old_id, new_id, tries, cleared,
            [c.store.name for c in copies], broken,
        )


def _hint(exc: BrokerError) -> str:
    if "AccessDenied" in exc.message:
        return ("the IAM user needs iam:CreateAccessKey, iam:DeleteAccessKey and "
                "iam:ListAccessKeys on itself, often only with MFA (see docs/guide.md)")
    return exc.hint


def _limit_hint(
    ctx: Context, iam_creds: Credentials, region: str | None, user: str, old_id: str
) -> str:
    try:
        others = [k.access_key_id for k in iam_keys.list_access_keys(iam_creds, region, user)
                  if k.access_key_id != old_id]
    except BrokerError:
        others = []
    if len(others) != 1:
        return (f"IAM allows two keys per user: delete the one that is not {old_id} once no "
                "store holds it, then rotate again")
    held = _holders(ctx, others[0])
    if held is None:
        return (f"IAM allows two keys per user; the other one is {others[0]}: once you are "
                f"sure no store holds it (some could not be read), delete it with "
                f"{_delete_command(user, others[0])} and rotate again")
    if held:
        return (f"IAM allows two keys per user, and the other one, {others[0]}, is stored too "
                f"({', '.join(held)}): rotate that one, or remove it from there first")
    return (f"IAM allows two keys per user; {others[0]} is not one broker holds: "
            f"delete it with {_delete_command(user, others[0])} and rotate again")


def _holders(ctx: Context, key_id: str) -> list[str] | None:
    """Where the credential backends hold ``key_id`` (``PROFILE in BACKEND``); None when
    some available backend could not be searched."""
    from broker.backend import Capability

    found: list[str] = []
    complete = True
    for name in ctx.registry.names():
        try:
            backend = ctx.backend(name)
            if not ctx.registry.availability_of(backend).ok:
                continue
            if Capability.LIST not in backend.capabilities:
                complete = False
                continue
            for stored in backend.list():
                item = backend.get(stored)
                if item is not None and item.get(ACCESS_KEY_ID) == key_id:
                    found.append(f"{stored} in {name}")
        except Exception:
            complete = False
    return found if found or complete else None


def _store_failed(
    exc: BaseException, iam_creds: Credentials, region: str | None, user: str,
    old_id: str, new_id: str, where: str = "",
) -> RotationFailed:
    try:
        iam_keys.delete_access_key(iam_creds, region, user, new_id)
    except BrokerError:
        return _failed(
            exc,
            f"the new key {new_id} was created but could not be stored{where} (its secret is "
            f"lost) and could not be deleted again; the stored key {old_id} still works",
            f"delete the new key with {_delete_command(user, new_id)}",
        )
    return _failed(
        exc,
        f"the new key {new_id} could not be stored{where} and was deleted again; the stored "
        f"key {old_id} is unchanged",
        # the backend's own next step (a read-only service account: a new account) first
        f"{exc.hint}; then rotate again" if isinstance(exc, BrokerError) and exc.hint
        else "fix the backend (`broker doctor`), then rotate again",
    )


def _verify_failed(
    exc: BrokerError, copies: list[_Copy], name: str, iam_creds: Credentials,
    region: str | None, user: str, old_id: str, new_id: str,
) -> RotationFailed:
    stuck = _put_back(copies, name)
    if stuck:
        return _failed(
            exc,
            f"the new key {new_id} is stored but AWS has not accepted it yet, and the old key "
            f"{old_id} (still active in IAM) could not be put back in {', '.join(stuck)}",
            f"try `broker exec {name}` in a minute; once it works (and every backend holding "
            f"{name}'s key has the new one), delete the old key with "
            f"{_delete_command(user, old_id)}",
        )
    try:
        iam_keys.delete_access_key(iam_creds, region, user, new_id)
    except BrokerError:
        return _failed(
            exc,
            f"AWS never accepted the new key {new_id}; the stored key is {old_id} again, but "
            f"{new_id} still exists in IAM",
            f"delete it with {_delete_command(user, new_id)}",
        )
    return _failed(
        exc,
        f"AWS never accepted the new key {new_id}, so it was deleted again; the stored key "
        f"{old_id} is unchanged",
        "check the network and try again later",
    )
