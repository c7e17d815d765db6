"""Managing stored keys: add and remove (`broker list` is broker.services.listing)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from broker.aws.profiles import Profile, resolve_chain
from broker.backend import (
    ACCESS_KEY_ID,
    MFA_SERIAL,
    SECRET_ACCESS_KEY,
    TOTP,
    Backend,
    Capability,
    Item,
)
from broker.errors import (
    BrokerError,
    ConfigError,
    CredentialsNotFound,
    NotFound,
    ProfileNotFound,
    UsageError,
)
from broker.services.backends import key_destination, memory_only
from broker.services.context import Context

_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")


def validate_key(access_key_id: str, secret_access_key: str) -> tuple[str, str]:
    """(key id, secret), stripped of surrounding blanks, when they have the shape of a
    long-lived IAM key: an id of 16 to 128 upper-case letters and digits (IAM API
    reference, ``AccessKey``: 16-128 characters) that is not an ``ASIA`` temporary key
    (IAM User Guide, "IAM identifiers": unique ID prefixes), and a non-empty secret
    without blanks. Nothing is sent to AWS.

    Raises:
        UsageError: either one has the wrong shape; the message never shows the secret.
    """
    key_id, secret = access_key_id.strip(), secret_access_key.strip()
    if not _KEY_ID.match(key_id):
        raise UsageError(
            "that access key id does not look like one (AKIA... letters and digits)",
            "copy it again from the IAM console or the key's CSV",
        )
    if key_id.startswith("ASIA"):
        raise UsageError(
            "that is a temporary (ASIA...) key, which needs a session token",
            "add the IAM user's long-lived AKIA... key instead",
        )
    if not secret or any(c.isspace() for c in secret):
        raise UsageError(
            "the secret access key is empty or contains spaces", "paste it again, on its own"
        )
    return key_id, secret


#: The longest ``/``-separated part of a name broker stores a key under, in UTF-8 bytes:
#: Linux's NAME_MAX (255) less pass's ``.gpg`` suffix, rounded down.
MAX_PART_BYTES = 250


def name_problem(profile: str) -> str | None:
    """Why ``profile`` cannot be the name broker stores a key under, or None when it can.

    A profile name is any section name botocore reads, but a backend keeps the key under
    the name itself: pass as a file path under its store (each ``/``-separated part a
    file or directory name, none empty, none starting with ``.``, as its plugin
    requires), the kernel keyring and 1Password as a description or a title. So the
    name must not be empty or blank, start with ``-`` (every command would read it as
    an option), contain a control character (a newline, a tab, NUL), or have a
    ``/``-separated part that is empty or starts with ``.`` (``.``, ``..``, ``.x``, a
    leading, trailing or doubled ``/``), and no part may be longer than
    :data:`MAX_PART_BYTES` bytes in UTF-8 (pass adds ``.gpg`` to a file name, and
    Linux file names end at 255 bytes). docs/configuration.md ("Names broker stores a
    key under") states the same rule.
    """
    import unicodedata

    if not profile.strip():
        return "it is empty"
    if profile.startswith("-"):
        return "it starts with '-', which commands read as an option"
    if any(unicodedata.category(c) == "Cc" for c in profile):
        return "it contains a control character"
    for part in profile.split("/"):
        if not part:
            return "it has an empty part between slashes (a leading, trailing or doubled '/')"
        if part in (".", ".."):
            return f"it has a {part!r} part, which would name a directory of the store"
        if part.startswith("."):
            return f"its part {part!r} starts with '.', which makes a hidden file in a store"
        if len(part.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES:
            return (f"it is longer than {MAX_PART_BYTES} bytes between slashes, more than "
                    "a store's file name holds")
    return None


def check_name(profile: str) -> None:
    """Refuse ``profile`` as the name of a key to store (:func:`name_problem`), before
    anything is read or written.

    Raises:
        UsageError: naming the reason; nothing was stored or written.
    """
    problem = name_problem(profile)
    if problem is not None:
        raise UsageError(
            f"{profile!r} cannot be the name broker stores a key under: {problem}",
            "choose another name; nothing was stored or written; docs/configuration.md "
            "gives the rule under 'Names broker stores a key under'",
        )


def profiles_using_key(ctx: Context, key_profile: str) -> list[str]:
    """Every profile in ~/.aws/config whose credentials are made from ``key_profile``'s
    key (its own, and each role whose chain starts from it), ``key_profile`` included."""
    names = {key_profile}
    for name in ctx.aws.profiles:
        try:
            if resolve_chain(ctx.aws, name).key_profile.name == key_profile:
                names.add(name)
        except BrokerError:
            continue
    return sorted(names)


def revoke_sessions(ctx: Context, key_profile: str) -> int:
    """End every cached session made from ``key_profile``'s key, derived role sessions
    included; how many were ended."""
    return ctx.sessions.revoke(key_profile, profiles_using_key(ctx, key_profile))


@dataclass
class AddResult:
    """What ``broker add`` did: the ``profile`` whose key was stored, the ``backend``
    holding it, whether it ``replaced`` a stored key, and how many cached sessions made
    from the replaced key were ended (``sessions_cleared``)."""

    profile: str
    backend: str
    replaced: bool
    sessions_cleared: int
    #: The backend keeps keys in memory only: the key is lost at reboot.
    memory_only: bool = False
    #: ~/.aws/config, when a section for the profile was added to it (`exec` needs one).
    config_written: Path | None = None
    #: ~/.aws/config, when ``broker_backend`` was written into the profile's section so that
    #: `exec`, `list` and `doctor` look for the key where --backend put it.
    backend_pinned: Path | None = None


def add(
    ctx: Context,
    profile: str,
    access_key_id: str,
    secret_access_key: str,
    *,
    backend: str | None = None,
    replace: bool = False,
) -> AddResult:
    """Store ``profile``'s long-lived key in ``backend`` (else the usual choice, see
    :func:`broker.services.backends.key_destination`). The Item keeps the other fields of
    a replaced one (a TOTP seed) and the profile's ``mfa_serial``; ~/.aws/config gets an
    empty section for a new profile, and ``broker_backend`` when the key lands outside
    the backend the profile would otherwise look in. Replacing a key ends every cached
    session made from the old one.

    Raises:
        UsageError: the name cannot hold a key (:func:`check_name`), or the key has the
            wrong shape (:func:`validate_key`), or the profile has a stored key and
            ``replace`` is not given, or its key is in an item named by ``broker_item``
            that broker may only read (not adopted).
        ConfigError: the profile gets its key from a ``source_profile`` (add it there),
            ~/.aws/config is malformed, or the backend is not installed.
        BackendUnavailable: no backend can take it (a memory-only one nobody chose).
        BrokerError: the backend's own error reading or storing the key.
    """
    check_name(profile)
    key_id, secret = validate_key(access_key_id, secret_access_key)
    known = ctx.aws.profiles.get(profile)
    store, existing = _target(ctx, profile, known, backend, replace)
    # `exec` reads profiles from ~/.aws/config: a key stored under a name with no section
    # there would be listed as stored, yet unusable. The section comes first: a failure
    # afterwards leaves only an empty section behind.
    written = ensure_profile(ctx, profile) if known is None else None
    fields = dict(existing or {})
    fields.update({ACCESS_KEY_ID: key_id, SECRET_ACCESS_KEY: secret})
    if known is not None and known.mfa_serial:
        fields[MFA_SERIAL] = known.mfa_serial
    store.set(profile, Item(fields))
    pinned = pin_backend(ctx, profile, store.name)
    # sessions made from the replaced key, the roles built on it included, end with it
    cleared = revoke_sessions(ctx, profile) if existing is not None else 0
    return AddResult(
        profile, store.name, existing is not None, cleared, memory_only(ctx, store.name), written,
        pinned,
    )


def check_add(
    ctx: Context, profile: str, *, backend: str | None = None, replace: bool = False
) -> None:
    """Refuse, before the key is read from the user, an `add` that :func:`add` would
    refuse for where the key goes: a key stored already without ``replace``, or an item
    named by ``broker_item`` that broker may only read (not adopted). Reads the stored
    item (once), never the new key.

    Raises:
        UsageError: as :func:`add`, for those reasons, and a name that cannot hold a key
            (:func:`check_name`).
        ConfigError: the profile gets its key from a ``source_profile``; ~/.aws/config is
            malformed; the backend is not installed or cannot serve the profile's item.
        BrokerError: the backend's own error reading the stored key.
    """
    check_name(profile)
    known = ctx.aws.profiles.get(profile)
    if known is None or not known.broker_item:
        return  # broker's own item: add refuses, if it must, before anything is written
    _target(ctx, profile, known, backend, replace)


def refuse_borrowed_key(ctx: Context, profile: str, then: Callable[[str], str]) -> None:
    """Refuse a command about ``profile``'s own key when the profile gets its key from a
    ``source_profile`` (a role built on another profile's key): ``then(key_profile)`` is
    the hint, the command to run on that profile instead. A name with no section in
    ~/.aws/config has a key of its own.

    Raises:
        ConfigError: naming the profile whose key it uses.
    """
    if profile not in ctx.aws.profiles:
        return
    key = resolve_chain(ctx.aws, profile).key_profile.name
    if key != profile:
        raise ConfigError(f"profile {profile!r} gets its key from source_profile {key!r}",
                          then(key))


def _target(
    ctx: Context, profile: str, known: Profile | None, backend: str | None, replace: bool,
) -> tuple[Backend, Item | None]:
    """Where :func:`add` stores ``profile``'s key and what it holds now; refuses as it says."""
    refuse_borrowed_key(
        ctx, profile, lambda key: f"add the key to that profile instead: `broker add {key}`")
    name = key_destination(
        ctx, known, backend, knowingly=lambda b: f"`broker add {profile} --backend {b}`"
    )
    store = ctx.credential_backend(known, name)  # refuses a broker_item it cannot serve
    existing = store.get(profile)
    if existing is not None and not replace:
        raise UsageError(
            f"profile {profile!r} already has a key in backend {store.name!r}",
            "pass --replace to overwrite it, or `broker remove` it first",
        )
    if existing is not None:
        store.check_writable(profile)  # an item the user keeps: only once adopted
    return store, existing


def pin_backend(ctx: Context, profile: str, backend: str) -> Path | None:
    """Make ``profile`` name ``backend`` (``broker_backend``) in ~/.aws/config when it would
    otherwise look for its key elsewhere, so a key stored with --backend (or moved there)
    is found by `exec`, `list` and `doctor`, not reported missing; the file's path if it
    was changed."""
    from broker.aws.config_writer import write_profile_value

    known = ctx.aws.profiles.get(profile)
    if ctx.credential_backend_name(known) == backend:
        return None
    path = ctx.aws.path
    if not write_profile_value(path, profile, "broker_backend", backend):
        return None
    ctx.__dict__.pop("aws", None)  # the cached parse is stale now
    return path


def ensure_profile(ctx: Context, profile: str) -> Path | None:
    """Add an empty section for ``profile`` to ~/.aws/config unless it has one; the file's
    path if it was changed."""
    from broker.aws.config_writer import ensure_profile_section

    path = ctx.aws.path
    if not ensure_profile_section(path, profile):
        return None
    ctx.__dict__.pop("aws", None)  # the cached parse is stale now
    return path


def item_deleted_by_remove(
    ctx: Context, profile: str, *, backend: str | None = None
) -> str | None:
    """The ``broker_item`` of ``profile`` when `broker remove` would delete that whole
    item (its notes, other fields and any TOTP seed go with the key): the profile names
    a well-formed one and ``backend`` (None: the profile's usual choice) is the backend
    serving it (:func:`broker.services.items.bind_items`); else None. Asked before the
    confirmation prompt, so a refusal comes first: an item broker may only read (not
    adopted) is refused here.

    Raises:
        UsageError: the item is not adopted (:meth:`~broker.backend.Backend.check_writable`).
        ConfigError: ~/.aws/config is malformed; or the backend cannot serve the item.
        BrokerError: the backend's own error reading the item.
    """
    known = ctx.aws.profiles.get(profile)
    if known is None or not known.broker_item or "broker_item" in known.problem_by_key:
        return None
    usual = ctx.credential_backend_name(known)
    if ctx.credential_backend_name(known, backend) != usual:
        return None  # another backend's own item under the profile's name
    ctx.credential_backend(known).check_writable(profile)
    return known.broker_item


@dataclass
class Removal:
    """What `broker remove` is about to delete, known before it asks: the ``profile``,
    the ``backend`` holding its key, the reference of the whole item deleted with it
    (``item``, see :func:`item_deleted_by_remove`), whether that backend keeps keys in
    memory only (``memory_only``), and, for such a backend, the persistent backends that
    list a key under the same name (``copies``, highest priority first; empty: none
    does, as far as the backends that can list here tell, or not looked for)."""

    profile: str
    backend: str
    item: str | None = None
    memory_only: bool = False
    copies: list[str] = field(default_factory=list)


def plan_remove(
    ctx: Context, profile: str, *, backend: str | None = None, copies: bool = True
) -> Removal:
    """What :func:`remove_key` would delete, refusing first, before any prompt, what it
    would refuse: a name that is neither a profile nor a stored key, and a role profile
    whose key is its ``source_profile``'s. Whether a key is stored is asked with the
    backend's ``list()`` (reads no secret) when it declares ``LIST``; else, or when the
    listing cannot settle the name, :func:`remove_key`'s delete answers. ``copies``:
    for a memory-only backend, look for copies in the persistent ones
    (:func:`broker.services.credentials.holders_elsewhere`, for the question asked before
    deleting).

    Raises:
        ProfileNotFound: no such profile in ~/.aws/config and no key stored under the
            name (the hint names close matches).
        UsageError: the profile gets its key from a ``source_profile`` and nothing is
            stored under its own name (the message names that profile); or its item is
            one broker may only read (not adopted).
        CredentialsNotFound: the profile exists and nothing is stored for it.
        ConfigError: ~/.aws/config is malformed, or the backend cannot serve the item.
        BrokerError: the backend's own error.
    """
    from broker.services.backends import require_available

    # a backend that cannot work here says why (exit code 7), not how a read failed
    require_available(ctx, ctx.credential_backend_name(ctx.aws.profiles.get(profile), backend))
    item = item_deleted_by_remove(ctx, profile, backend=backend)
    store = ctx.credential_backend(ctx.aws.profiles.get(profile), backend)
    listed = _listing(store, profile) if item is None else None
    if listed is not None and profile not in listed:
        raise _nothing_to_remove(ctx, profile, store.name, listed)
    volatile = memory_only(ctx, store.name)
    from broker.services.credentials import holders_elsewhere

    found = (holders_elsewhere(ctx, profile, store.name, Capability.PERSISTENT)
             if volatile and copies else [])
    return Removal(profile, store.name, item, volatile, found)


def _listing(store: Backend, profile: str) -> set[str] | None:
    """The names ``store`` lists, when it can list and settles ``profile``; else None
    (no ``LIST``, the listing failed, or it could not settle that name)."""
    if Capability.LIST not in type(store).capabilities:
        return None
    try:
        names = set(store.list())
        if profile in store.list_problems():
            return None
    except BrokerError:
        return None  # the delete reports the backend's error, if it has one
    return names


def _nothing_to_remove(
    ctx: Context, profile: str, backend: str, listed: set[str] | None
) -> BrokerError:
    """The error for a `remove` of ``profile`` that finds nothing stored in ``backend``
    (``listed``: the names it holds, when known): an unknown name (exit 4, close matches
    among the profiles and the stored names), a role profile using its source's key
    (exit 2, naming it), else the key is missing (exit 5)."""
    known = ctx.aws.profiles.get(profile)
    if known is None:
        import difflib

        candidates = sorted(set(ctx.aws.profiles) | (listed or set()))
        close = difflib.get_close_matches(profile, candidates, n=3, cutoff=0.5)
        hint = ("did you mean " + " or ".join(repr(c) for c in close) + "?" if close
                else "`broker list` shows the profiles and where their keys are")
        return ProfileNotFound(
            f"no profile named {profile!r} in {ctx.aws.path} and no key stored under that "
            f"name in backend {backend!r}",
            hint,
        )
    try:
        source = resolve_chain(ctx.aws, profile).key_profile.name
    except BrokerError:
        source = profile  # a profile broker cannot use still has only its own key
    if source != profile:
        return UsageError(
            f"profile {profile!r} uses the key of {source!r} (source_profile), and no key "
            f"is stored under {profile!r} in backend {backend!r}; nothing was removed",
            f"`broker remove {source}` removes that key, which every profile built on it "
            "uses",
        )
    return CredentialsNotFound(
        f"no key stored for {profile!r} in backend {backend!r}",
        "see `broker list` for where keys are",
    )


@dataclass
class Removed:
    """What ``broker remove`` did: the ``backend`` the key was deleted from, how many
    cached sessions were ended, and, for a profile that read its key from an item it
    named, that item's reference (``item``: the whole item was deleted) and
    ~/.aws/config when its ``broker_item`` line was removed (``config_written``)."""

    backend: str
    sessions_cleared: int
    item: str | None = None
    config_written: Path | None = None


def remove_key(
    ctx: Context, profile: str, *, backend: str | None = None, plan: Removal | None = None
) -> Removed:
    """Delete ``profile``'s stored key and end every cached session made from it (the
    roles built on it included) and the profile's own. For a profile served from its
    ``broker_item`` (:func:`item_deleted_by_remove`) that is the whole item, so the
    ``broker_item`` line is removed from the profile afterwards (it names nothing now).
    The MFA ledger forgets what it knew of the key (whether a seed was kept with it, the
    device its item named). ``plan``: :func:`plan_remove`'s answer, when asked already.

    Raises:
        ProfileNotFound, UsageError, CredentialsNotFound: as :func:`plan_remove`, also
            when the delete itself finds nothing.
        BrokerError: the backend's own error.
    """
    from broker.aws.config_writer import remove_profile_value
    from broker.aws.mfa_ledger import MfaLedger

    if plan is None:
        plan = plan_remove(ctx, profile, backend=backend, copies=False)
    store = ctx.credential_backend(ctx.aws.profiles.get(profile), backend)
    if not store.delete(profile):
        raise _nothing_to_remove(ctx, profile, store.name, None)
    ledger = MfaLedger()  # no key, so nothing is known of a seed or device kept with it
    ledger.mark_seed(store.name, profile, None)
    ledger.mark_device(store.name, profile, None)
    cleared = revoke_sessions(ctx, profile) + ctx.sessions.clear(profile)
    written = None
    if plan.item is not None:
        path = ctx.aws.path
        if remove_profile_value(path, profile, "broker_item"):
            written = path
        ctx.__dict__.pop("aws", None)  # the cached parse is stale now
    return Removed(store.name, cleared, plan.item, written)


def remove(ctx: Context, profile: str, *, backend: str | None = None) -> tuple[str, int]:
    """:func:`remove_key`, answering (backend, sessions ended)."""
    removed = remove_key(ctx, profile, backend=backend)
    return removed.backend, removed.sessions_cleared


@dataclass
class ItemAdded:
    """What ``broker add PROFILE --item REFERENCE`` did: ``profile`` now reads its key
    from the item ``reference`` names, in ``backend``."""

    profile: str
    backend: str
    reference: str
    #: ~/.aws/config, when ``broker_item`` was written (None: it named this item already).
    config_written: Path | None
    #: ~/.aws/config, when a section for the profile was added to it first.
    section_added: Path | None
    #: ~/.aws/config, when ``broker_backend`` was written too (the item is in a backend the
    #: profile would not otherwise look in).
    backend_pinned: Path | None
    #: Cached sessions ended (made from the key the profile used before).
    sessions_cleared: int
    #: broker may update the item (it is adopted); else it only reads it.
    writable: bool
    #: A TOTP seed is kept in the item (its one-time password field): MFA codes come from it.
    totp: bool
    #: The MFA device the item names (``mfa serial``), used when no profile sets mfa_serial.
    item_mfa_serial: str | None


def add_item(
    ctx: Context,
    profile: str,
    reference: str,
    *,
    backend: str | None = None,
    replace: bool = False,
) -> ItemAdded:
    """Make ``profile`` read its long-lived key from the existing item ``reference`` names
    (``SCHEME://VAULT/ITEM``, or an item's title in the backend's vault): check that the
    item can be read and holds a key, then write ``broker_item = REFERENCE`` into the
    profile's section of ~/.aws/config (:func:`broker.aws.config_writer.write_profile_value`,
    a section made first if needed). Nothing is stored in any backend: the item stays the
    user's, read only until `broker adopt` (:func:`adopt`).

    The backend: ``backend``, else the one the reference's scheme names, else the
    profile's usual one; ``broker_backend`` is written too when the profile would look
    elsewhere. Pointing the profile at another item ends the sessions made from its
    previous key.

    Raises:
        UsageError: the name cannot hold a key (:func:`check_name`), or ``reference`` is
            malformed, or the profile already names another item, or broker stores a key
            for it, and ``replace`` is not given.
        ConfigError: the profile gets its key from a ``source_profile``, or the backend
            cannot read keys from an existing item, or the reference is not its own.
        NotFound: the vault or the item does not exist (or cannot be seen).
        CredentialsNotFound: the item holds no AWS access key.
        BrokerError: the backend's own error reading the item.
    """
    from broker.aws.config_writer import write_profile_value
    from broker.aws.mfa_ledger import MfaLedger
    from broker.aws.profiles import ITEM_COMMENT_PROBLEM, ends_in_comment, item_reference_problem
    from broker.services.items import reference_backend

    check_name(profile)
    wrong = item_reference_problem(reference)
    if wrong is None and ends_in_comment(reference):  # it would be refused once written
        wrong = ITEM_COMMENT_PROBLEM
    if wrong is not None:
        what, _, fix = wrong.rpartition("; ")
        raise UsageError(f"--item {reference!r}: {what}", fix)
    reference = reference.strip()
    known = ctx.aws.profiles.get(profile)
    refuse_borrowed_key(ctx, profile, lambda key: "name the item in that profile instead: "
                        f"`broker add {key} --item ...`")
    if known is not None and known.broker_item and known.broker_item != reference \
            and not replace:
        raise UsageError(
            f"profile {profile!r} already reads its key from {known.broker_item!r}",
            "pass --replace to point it at the new item",
        )
    if not (known is not None and known.broker_item) and not replace:
        _refuse_hiding_stored_key(ctx, profile, known)
    name = backend or reference_backend(ctx, reference) or ctx.credential_backend_name(known)
    store = ctx.backend(name)
    store.bind_item(profile, reference)
    try:
        item = store.get(profile)
    except NotFound as exc:  # nothing is written yet: the thing to fix is --item
        raise NotFound(
            f"--item {reference!r}: {exc.message}",
            "check --item (the vault and the item's title or id); nothing was written",
        ) from None
    if item is None:  # a backend serving bound items says which is missing; to be sure
        raise CredentialsNotFound(
            f"{name}: no item {reference!r}", "check the vault and the item's title or id"
        )
    _check_item_key(name, reference, item)
    try:
        store.check_writable(profile)
        writable = True
    except UsageError:
        writable = False
    section = ensure_profile(ctx, profile) if known is None else None
    path = ctx.aws.path
    written = write_profile_value(path, profile, "broker_item", reference)
    ctx.__dict__.pop("aws", None)  # the cached parse is stale now
    pinned = pin_backend(ctx, profile, name)
    MfaLedger().mark_seed(name, profile, bool(item.get(TOTP)))
    cleared = revoke_sessions(ctx, profile) if known is not None and written else 0
    from broker.services.credentials import device_kept_with_key

    profile_now = ctx.aws.profiles.get(profile)
    return ItemAdded(
        profile, name, reference, path if written else None, section, pinned, cleared,
        writable, bool(item.get(TOTP)),
        device_kept_with_key(profile_now, item) if profile_now is not None else None,
    )


def _refuse_hiding_stored_key(ctx: Context, profile: str, known: Profile | None) -> None:
    """Refuse to point ``profile`` at an item while broker stores a key for it in its
    usual backend: that item would be hidden from `list`, `migrate` and `doctor`. A
    backend that cannot be asked here holds nothing this would hide."""
    try:
        current = ctx.credential_backend(known)
        listed = _listing(current, profile)  # reads no secret (no gpg, no item read)
        held = profile in listed if listed is not None else current.get(profile) is not None
    except BrokerError:
        return
    if held:
        raise UsageError(
            f"broker stores a key for {profile!r} in backend {current.name!r}; reading the "
            "key from an item instead would hide it from `broker list`, `migrate` and "
            "`doctor`",
            f"pass --replace to read the key from the item (the stored key stays in "
            f"{current.name} until `broker remove {profile} --backend {current.name}`), or "
            "keep the stored key",
        )


def _check_item_key(backend: str, reference: str, item: Item) -> None:
    """Refuse an item that holds no usable long-lived AWS key (names fields, never values)."""
    key_id, secret = item.get(ACCESS_KEY_ID, ""), item.get(SECRET_ACCESS_KEY, "")
    if not key_id or not secret:
        lacking = "an access key id" if not key_id else "a secret access key"
        raise CredentialsNotFound(
            f"{backend}: the item {reference!r} holds no AWS key ({lacking} is missing)",
            "broker reads fields labelled 'access key id' and 'secret access key' (or an "
            "API Credential's username and credential): fix the item, or store a key "
            "broker keeps with `broker add PROFILE`",
        )
    try:
        validate_key(key_id, secret)
    except UsageError as exc:
        raise CredentialsNotFound(
            f"{backend}: the key in the item {reference!r} is not usable: {exc.message}",
            "fix the item in its app",
        ) from None


@dataclass
class Adopted:
    """What ``broker adopt PROFILE`` did: ``changed`` is False when the item of
    ``profile``'s key in ``backend`` was broker's already."""

    profile: str
    backend: str
    changed: bool


def adopt(ctx: Context, profile: str, *, backend: str | None = None) -> Adopted:
    """Mark the item ``profile``'s key is read from (its ``broker_item``) as managed by
    broker (:meth:`broker.backend.Backend.adopt`: broker's tag added, nothing else), so
    that `broker add --replace`, `rotate`, `totp set`, `remove` and `migrate
    --delete-source` may change it, in the item's own fields.

    Raises:
        ProfileNotFound: no such profile.
        ConfigError: the profile gets its key from a ``source_profile``, or its backend
            has no items to adopt.
        NotFound: the item does not exist.
        BrokerError: the backend's own error reading or writing the item.
    """
    known = ctx.aws.get(profile)
    refuse_borrowed_key(ctx, profile,
                        lambda key: f"adopt that profile's item: `broker adopt {key}`")
    store = ctx.credential_backend(known, backend)
    return Adopted(profile, store.name, store.adopt(profile))
