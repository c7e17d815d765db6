"""Keys in items the user already keeps: a profile's ``broker_item``.

A profile may name the existing item that holds its key (``broker_item =
op://AWS/AWS Access Key``, or an item's title in its backend's vault) instead of the item
broker would keep for it. Each credential backend is told, when it is opened, which
profiles it serves that way (:func:`bind_items`); from then on its ``get``, ``list``,
``set`` and ``delete`` of those names use those items. broker only reads such an item
until `broker adopt` marks it as broker's (:meth:`broker.backend.Backend.adopt`).

Which backend a ``broker_item`` belongs to: the profile's credential backend
(:meth:`broker.services.context.Context.backend_choice`), which a ``SCHEME://`` reference
chooses itself (the backend that resolves that scheme) unless ``--backend``,
``BROKER_BACKEND`` or the profile's ``broker_backend`` says otherwise.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from broker.aws.profiles import Profile
    from broker.backend import Backend
    from broker.errors import BrokerError
    from broker.services.context import Context


def reference_backend(ctx: Context, reference: str | None) -> str | None:
    """The backend that resolves the scheme of a ``SCHEME://VAULT/ITEM`` reference
    (``op`` for 1Password's), None for an item's title, an unknown scheme or no
    reference. Reads the plugin index only (no plugin is imported)."""
    if not reference:
        return None
    scheme, sep, _ = reference.partition("://")
    if not sep or not scheme:
        return None
    return ctx.registry.scheme_backend(scheme.lower())


def bind_items(ctx: Context, name: str, store: Backend) -> dict[str, BrokerError]:
    """Bind to ``store`` (credential backend ``name``, just opened) every profile of
    ~/.aws/config whose ``broker_item`` it serves (:meth:`Backend.bind_item`): the
    profiles whose credential backend is ``name``, as nothing on the command line chose.

    Returns profile name -> the error binding it raised (a backend that cannot read such
    items, a scheme not its own), each to be raised when that profile's key is wanted
    (:meth:`Context.credential_backend`). A malformed ``broker_item`` is left to the
    profile's own problem, raised before any call
    (:func:`broker.aws.profiles.item_reference_problem`). Offline; an unreadable
    ~/.aws/config binds nothing (the command reports it where it needs the file).
    """
    from broker.errors import BrokerError

    try:
        profiles = ctx.aws.profiles
    except BrokerError:
        return {}
    failed: dict[str, BrokerError] = {}
    for profile in profiles.values():
        reference = _reference(profile)
        if reference is None:
            continue
        try:
            if ctx.credential_backend_name(profile) != name:
                continue
            store.bind_item(profile.name, reference)
        except BrokerError as exc:
            failed[profile.name] = _naming(profile, exc)
    return failed


def _reference(profile: Profile) -> str | None:
    """The profile's well-formed ``broker_item``, else None."""
    if "broker_item" in profile.problem_by_key:
        return None
    return profile.broker_item


def _naming(profile: Profile, exc: BrokerError) -> BrokerError:
    """``exc`` with the file, section and key it comes from in front of its message."""
    from broker.errors import ConfigError

    message = exc.message
    backend, sep, rest = message.partition(": ")
    if sep and backend and " " not in backend:  # "onepassword: ...": it names itself
        message = rest
    return ConfigError(
        f"{profile.where} broker_item = {profile.broker_item!r}: {message}", exc.hint
    )
