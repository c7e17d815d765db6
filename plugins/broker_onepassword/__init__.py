"""1Password as a broker backend, through the official SDK (``onepassword-sdk``), or
through the 1Password CLI signed in through the desktop app (:mod:`broker_onepassword._cli`:
``op``, or ``op.exe`` from WSL2, with no token; the ``transport`` setting).

Items are API Credentials items titled from a template (``AWS {profile}``),
tagged ``broker``, with the access key, the secret, the MFA serial and the TOTP
seed as a real one-time-password field the 1Password app shows codes for (the
layout is in :mod:`broker_onepassword._fields` and docs/backends/onepassword.md).
``op://vault/item/[section/]field[?attribute=totp]`` references are resolved for
other plugins and for config values.

A profile may name an item the user already keeps (``broker_item = op://VAULT/ITEM``,
:meth:`OnePasswordBackend.bind_item`, :mod:`broker_onepassword._bound`): 1Password's AWS
shell plugin item, an API Credential. Its key is read from it as it is; broker writes to
it only once it is adopted (tagged ``broker``), into the item's own fields.

Service accounts are rate limited, so ids are learnt once and kept in a state
file (:mod:`broker_onepassword._state`): a read with known ids is one SDK call.
STS sessions are never written here.

This module is imported whenever the registry loads the class, so it imports
nothing heavy: the SDK (~350 ms) comes in with the first real operation.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from broker.backend import ACCESS_KEY_ID, Availability, Backend, Capability, Item, Resolver
from broker.errors import (
    AmbiguousMatch,
    AuthenticationError,
    BrokerError,
    ConfigError,
    NotFound,
    UsageError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any, ClassVar, TypeVar

    from broker.backend import Check
    from broker_onepassword._bound import BoundItem
    from broker_onepassword._cli import CliSession
    from broker_onepassword._sdk import Session
    from broker_onepassword._state import IdState

    T = TypeVar("T")

__all__ = ["OnePasswordBackend"]

DEFAULT_TITLE = "AWS {profile}"
TOKEN_VARIABLE = "OP_SERVICE_ACCOUNT_TOKEN"  # noqa: S105 - a variable name
#: Seconds to wait for one call: the desktop app may wait for the user's approval.
DEFAULT_TIMEOUT = {"desktop": 60.0, "token": 120.0}
CREDENTIALS = "credentials"
SESSIONS = "sessions"
#: Seconds an instance trusts 1Password's "no such item" (one command's get-then-set).
ABSENT_FOR = 30.0
#: At most this many ids per ItemsGetAll (an SDK limit).
BATCH = 50
_VAULT_ID = re.compile(r"^[a-z0-9]{26}$")
#: Names an op:// reference can hold (the SDK's own rule).
_REFERENCE_SAFE = re.compile(r"^[A-Za-z0-9 _.\-]+$")
_NAMESPACE_TAG = "broker:"
# Inside the class, `list` is the method of that name.
_Names = list[str]
_Checks = list["Check"]
_Overviews = list["Any"]


def _same(a: str, b: str) -> bool:
    """Whether two names match as 1Password matches them in references: in any case."""
    return a == b or a.casefold() == b.casefold()


def _no_token_error(detail: str = "") -> AuthenticationError:
    return AuthenticationError(
        "onepassword: no 1Password service-account token"
        + (f" ({detail})" if detail else f": {TOKEN_VARIABLE} is not set and no token "
           "is kept by `broker backend login onepassword`"),
        f"export {TOKEN_VARIABLE}=ops_..., or run `broker backend login onepassword` "
        "to keep it in memory for this login; or set account = \"...\" under "
        "[backends.onepassword] to use the 1Password desktop app",
    )


class _Named:
    """An item as :meth:`OnePasswordBackend._refuse_bound` compares it: ``id`` and ``title``."""

    __slots__ = ("id", "title")

    def __init__(self, item_id: str, title: str) -> None:
        self.id, self.title = item_id, title


class OnePasswordBackend(Backend):
    """API Credentials items in a 1Password vault.

    Settings (``[backends.onepassword]``):

    * ``vault``: the vault's name or id (default: the only vault the service account
      can see, else the Private/Personal vault of a desktop-app account);
    * ``title``: the item title template, with ``{profile}`` (default ``"AWS {profile}"``);
    * ``token``: a secret reference for the service-account token (default:
      ``env:OP_SERVICE_ACCOUNT_TOKEN``, then the token ``broker backend login onepassword``
      keeps, wherever that command keeps it: :meth:`Backend.login_reference`);
    * ``account``: use the 1Password desktop app, signed in to this account (name or id),
      instead of a service account;
    * ``timeout``: seconds to wait for one 1Password call (60 with the app, else 120);
    * ``transport``: ``"sdk"``, ``"cli"`` (the 1Password CLI signed in through the app:
      :mod:`broker_onepassword._cli`, docs/wsl2.md) or ``"auto"`` (the default: the CLI
      when no service-account token is configured and ``op`` is installed);
    * ``op_path``: the CLI to run (default: ``op.exe``/``op`` on PATH, then the usual
      Windows install locations inside WSL2).
    """

    name: ClassVar[str] = "onepassword"
    description: ClassVar[str] = (
        "1Password: the app through the 1Password CLI (op), or a service account or the "
        "desktop app through onepassword-sdk"
    )
    capabilities: ClassVar[Capability] = (
        Capability.LIST | Capability.PERSISTENT | Capability.SHARED | Capability.LOGIN_TOKEN
    )
    schemes: ClassVar[tuple[str, ...]] = ("op",)
    #: First for keys when it works here: a vault the user already keeps and syncs.
    priority: ClassVar[float] = 3.0

    @classmethod
    def shows_reference(cls, reference: str) -> bool:
        """Only ``op://...`` has the shape of a 1Password reference: ``op:text`` may be a
        secret typed where its reference belongs, and is never echoed."""
        return reference.partition(":")[2].startswith("//") and super().shows_reference(
            reference
        )

    def __init__(
        self,
        *,
        settings: Mapping[str, Any] | None = None,
        namespace: str = CREDENTIALS,
        resolver: Resolver | None = None,
    ) -> None:
        super().__init__(settings=settings, namespace=namespace, resolver=resolver)
        self._token: str | None = None
        self._session: Session | CliSession | None = None
        self._state: IdState | None = None
        self._vault_id: str | None = None
        self._vault_known = False  # the vault id came from the state file
        self._secrets: list[str] = []
        # Titles 1Password just said it does not have (monotonic time of the answer).
        self._absent: dict[str, float] = {}
        # Profiles served from an item their broker_item names (bind_item), and the last
        # read of each: (monotonic time, vault id, SDK item or None), trusted ABSENT_FOR.
        self._bound: dict[str, BoundItem] = {}
        self._bound_read: dict[str, tuple[float, str, Any | None]] = {}
        self._vault_titles: list[Any] | None = None  # one VaultsList per instance
        # Why a bound item was not found, by reference: ("renamed", its new title) when
        # the id broker remembers now has another title, ("gone", id) when that id is no
        # longer found (deleted or archived).
        self._lost: dict[str, tuple[str, str]] = {}
        # Profiles `list` found but cannot serve as they are: name -> the error `exec` gives.
        self.listing_problems: dict[str, BrokerError] = {}

    def __repr__(self) -> str:
        vault = self.settings.get("vault")
        return f"OnePasswordBackend(vault={vault!r}, namespace={self.namespace!r})"

    # -- settings ------------------------------------------------------------------

    def _setting(self, key: str) -> str | None:
        value = self.settings.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ConfigError(
                f"onepassword: [backends.onepassword] {key} must be a string",
                f'e.g. {key} = "..."',
            )
        return value

    @property
    def desktop(self) -> bool:
        """Whether 1Password is reached as the user's own account (the desktop app, or
        the 1Password CLI signed in through it), not as a service account."""
        if self.transport == "cli":
            return True
        return self._setting("token") is None and self._setting("account") is not None

    @property
    def transport(self) -> str:
        """``"sdk"`` or ``"cli"`` (the 1Password CLI): the ``transport`` setting, ``auto``
        by default (:func:`broker_onepassword._cli.choose`). Raises ConfigError."""
        chosen = self.__dict__.get("_transport")
        if chosen is None:
            from broker_onepassword._cli import choose

            chosen = self.__dict__["_transport"] = choose(self).transport
        return str(chosen)

    def _auth_key(self) -> str:
        if self.transport == "cli":
            return f"cli:{self._setting('account') or ''}"
        return f"desktop:{self._setting('account')}" if self.desktop else "service-account"

    def _timeout(self) -> float:
        value = self.settings.get("timeout")
        if value is None:
            return DEFAULT_TIMEOUT["desktop" if self.desktop else "token"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(
                "onepassword: [backends.onepassword] timeout must be a positive number of "
                "seconds", "e.g. timeout = 60",
            )
        return float(value)

    def title_for(self, name: str) -> str:
        """The 1Password item title for broker name ``name`` in this namespace."""
        if not name:
            raise ConfigError("onepassword: an item needs a name", "name the profile")
        template = self._template()
        title = template.replace("{profile}", name)
        return title if self.namespace == CREDENTIALS else f"{title} ({self.namespace})"

    def _template(self) -> str:
        template = self._setting("title") or DEFAULT_TITLE
        if template.count("{profile}") != 1:
            raise ConfigError(
                f"onepassword: the title template {template!r} must contain {{profile}} once",
                'e.g. title = "AWS {profile}"',
            )
        return template

    def _name_of(self, title: str) -> str | None:
        """The broker name an item title stands for in this namespace, if any."""
        prefix, _, suffix = self._template().partition("{profile}")
        if self.namespace != CREDENTIALS:
            suffix = f"{suffix} ({self.namespace})"
        if len(title) <= len(prefix) + len(suffix):
            return None
        if not (title.startswith(prefix) and title.endswith(suffix)):
            return None
        return title[len(prefix) : len(title) - len(suffix)]

    def _tags(self) -> list[str]:
        from broker_onepassword._fields import TAG

        if self.namespace == CREDENTIALS:
            return [TAG]
        return [TAG, f"{_NAMESPACE_TAG}{self.namespace}"]

    def _in_namespace(self, tags: list[str]) -> bool:
        own = [t for t in tags if t.startswith(_NAMESPACE_TAG)]
        if self.namespace == CREDENTIALS:
            return not own
        return f"{_NAMESPACE_TAG}{self.namespace}" in own

    # -- authentication ------------------------------------------------------------

    def _resolve_token(self) -> str:
        """The service-account token: the ``token`` reference, else env, else the token
        `broker backend login onepassword` keeps (:meth:`Backend.login_reference`)."""
        if self._token is not None:
            return self._token
        reference = self._setting("token")
        if reference is not None:
            if ":" not in reference or reference.startswith("ops_"):
                raise ConfigError(
                    "onepassword: the `token` setting must be a secret reference, never the "
                    "token itself",
                    f'e.g. token = "env:{TOKEN_VARIABLE}", or no token setting and '
                    "`broker backend login onepassword`",
                )
            token = self._resolve_reference(reference).strip()
        else:
            token = os.environ.get(TOKEN_VARIABLE, "").strip()
            if not token:
                kept = self.login_reference()
                if kept is None:
                    raise _no_token_error()
                try:
                    token = self._resolve_reference(kept).strip()
                except BrokerError:
                    raise _no_token_error() from None
        if not token:
            raise _no_token_error("the token is empty")
        self._token = token
        self._secrets.append(token)
        return token

    def _resolve_reference(self, reference: str) -> str:
        """A secret reference's value, through the resolver given (the registry gives
        broker's own to every backend it creates)."""
        return self.resolve_setting(reference)

    def _auth(self) -> Any:
        if self.desktop:
            from onepassword import DesktopAuth

            return DesktopAuth(self._setting("account"))
        return self._resolve_token()

    def _run(self, operation: Callable[[Any], Awaitable[T]], what: str) -> T:
        if self.transport == "cli":  # the same calls, each one `op` process
            if self._session is None:
                from broker_onepassword._cli import open_session

                self._session = open_session(self)
            result: T = self._session.run(operation, what)
            return result
        if self._session is None:
            from broker_onepassword._sdk import Session

            self._session = Session(
                self._auth,
                desktop=self.desktop,
                timeout=self._timeout(),
                secrets=lambda: list(self._secrets),
            )
        from broker_onepassword._sdk import AccessDenied, new_account_hint

        try:
            return self._session.run(operation, what)
        except AuthenticationError as exc:
            from broker_onepassword._cli import stale_token_hint

            instead = stale_token_hint(self)  # a stale token hides the installed CLI
            if instead is None:
                raise
            raise type(exc)(exc.message, f"{instead}; or {exc.hint}") from None
        except AccessDenied as exc:
            vault = self._setting("vault")
            if vault is None or self.desktop:
                raise
            raise AccessDenied(
                exc.message, f"{new_account_hint(vault)}; or check the account's firewall rules"
            ) from None

    def _sdk(self) -> Any:
        if self.transport == "cli":  # items as the CLI's JSON, in the SDK's shapes
            from broker_onepassword._cli_items import SdkShapes

            return SdkShapes
        from broker_onepassword._sdk import load_sdk

        return load_sdk()

    # -- availability --------------------------------------------------------------

    def availability(self) -> Availability:
        """Cheap, offline, never raises: the native core, then a way to authenticate."""
        try:
            return self._availability()
        except Exception as exc:
            return Availability(False, f"onepassword: availability check failed: {exc}")

    def _availability(self) -> Availability:
        from broker_onepassword import _platform

        try:
            if self.transport == "cli":
                from broker_onepassword import _cli

                self._template()
                self._timeout()
                return _cli.availability(self)
        except ConfigError as exc:
            return Availability(False, str(exc))
        problem = _platform.native_core_problem()
        if problem:
            return Availability(False, problem)
        try:
            self._template()
            self._timeout()
            desktop = self.desktop
        except ConfigError as exc:
            return Availability(False, str(exc))
        if desktop:
            if _platform.desktop_library() is None:
                where = (" — inside WSL2 the SDK cannot reach the Windows app: use op.exe, "
                         "the 1Password CLI for Windows (transport = \"auto\" or \"cli\"; "
                         "docs/wsl2.md), or a service-account token"
                         if _platform.in_wsl() else "")
                return Availability(
                    False,
                    "onepassword: `account` is set but the 1Password desktop app is not "
                    f"installed here{where} (or install the app and enable Settings > "
                    "Developer > Integrate with other apps)",
                )
            return Availability(True)
        reference = self._setting("token")
        if reference is not None:
            from broker.secrets import shown

            if reference.startswith("env:") and not os.environ.get(reference[4:]):
                name = reference[4:] if shown(reference) == reference else "that variable"
                return Availability(
                    False, f"onepassword: token = {shown(reference)!r} but {name} is not "
                    f"set — export it, or run `broker backend login onepassword`",
                )
            if self._in_login_store(reference) and not self._kept(reference):
                return Availability(
                    False, f"onepassword: token = {shown(reference)!r} but no token is kept "
                    "there (a kept token expires) — run `broker backend login onepassword`",
                )
            return Availability(True)  # other references are resolved on first use
        token = os.environ.get(TOKEN_VARIABLE, "").strip()
        if token:
            if not token.startswith("ops_"):
                return Availability(
                    False, f"onepassword: {TOKEN_VARIABLE} does not look like a "
                    "service-account token (ops_...) — copy the token again",
                )
            return Availability(True)
        if self._login_token() is not None:
            return Availability(True)
        if _platform.in_wsl():  # the SDK cannot reach the Windows app from here
            return Availability(
                False,
                f"onepassword: no service-account token — export {TOKEN_VARIABLE} or run "
                "`broker backend login onepassword`; or use op.exe, the 1Password CLI for "
                "Windows, through the Windows app (transport = \"auto\" or \"cli\"; "
                "docs/wsl2.md)",
            )
        return Availability(
            False,
            f"onepassword: no service-account token — export {TOKEN_VARIABLE}, run "
            "`broker backend login onepassword`, or set account = \"...\" under "
            "[backends.onepassword] for the desktop app",
        )

    def _kept(self, reference: str) -> bool:
        """Whether a reference into the store `broker backend login` keeps tokens in gives
        a token (an offline read of that store); False when it does not, or when this
        instance was made without a resolver."""
        try:
            return bool(self._resolve_reference(reference).strip())
        except BrokerError:
            return False

    def _login_token(self) -> str | None:
        """The reference of the token `broker backend login onepassword` keeps, when one is
        kept now (:meth:`Backend.login_reference`, then an offline read of that store);
        else None."""
        reference = self.login_reference()
        return reference if reference is not None and self._kept(reference) else None

    def _in_login_store(self, reference: str) -> bool:
        """Whether ``reference`` (the ``token`` setting) points into the store `broker
        backend login` keeps tokens in (its scheme), which is read offline, so that
        availability can tell a token that expired from one that is there."""
        kept = self.login_reference()
        return kept is not None and reference.partition(":")[0] == kept.partition(":")[0]

    # -- ids -----------------------------------------------------------------------

    @property
    def state(self) -> IdState:
        """The vault and item ids this backend has learnt (``onepassword.json`` in the
        state directory, nothing secret), opened on first use so each read costs one
        1Password call."""
        if self._state is None:
            from broker_onepassword._state import IdState

            self._state = IdState()
        return self._state

    def _vault_key(self) -> str:
        return f"{self._auth_key()}|{self._setting('vault') or ''}"

    def _vault(self) -> str:
        """The vault's id: remembered, given as an id, or found with one VaultsList."""
        if self._vault_id is not None:
            return self._vault_id
        setting = self._setting("vault")
        remembered = self.state.vault_id(self._vault_key())
        if remembered is not None:
            self._vault_id, self._vault_known = remembered, True
            return remembered
        if setting is not None and _VAULT_ID.match(setting):
            self._vault_id, self._vault_known = setting, False
            return setting
        vaults = self._run(lambda c: c.vaults.list(), "listing vaults")
        vault_id = self._pick_vault(vaults, setting)
        self.state.update(vaults={self._vault_key(): vault_id})
        self._vault_id, self._vault_known = vault_id, False
        return vault_id

    def _pick_vault(self, vaults: list[Any], setting: str | None) -> str:
        shown = ", ".join(sorted(repr(v.title) for v in vaults)) or "none"
        if setting is None:
            if len(vaults) == 1:
                return str(vaults[0].id)
            personal = [v for v in vaults if str(getattr(v.vault_type, "value", "")) == "personal"]
            if len(personal) == 1:
                return str(personal[0].id)
            raise ConfigError(
                f"onepassword: no vault is set and this account can see {len(vaults)} "
                f"vaults ({shown})",
                'name one under [backends.onepassword], e.g. vault = "AWS"',
            )
        exact = [v for v in vaults if v.id == setting or v.title == setting]
        if not exact:
            exact = [v for v in vaults if v.title.casefold() == setting.casefold()]
        if len(exact) == 1:
            return str(exact[0].id)
        if len(exact) > 1:
            raise AmbiguousMatch(
                f"onepassword: {len(exact)} vaults are named {setting!r} "
                f"(ids {', '.join(str(v.id) for v in exact)})",
                "set [backends.onepassword] vault to one of these ids",
            )
        if self.desktop:
            hint = "fix [backends.onepassword] vault (a name or id shown in the app)"
        else:
            from broker_onepassword._sdk import new_account_hint

            hint = f"fix [backends.onepassword] vault; or else {new_account_hint(setting)}"
        raise NotFound(
            f"onepassword: no vault {setting!r} is visible to "
            + ("this 1Password account" if self.desktop else "the service account")
            + f" (it can see: {shown})",
            hint,
        )

    def _forget_vault(self) -> None:
        vault_id = self._vault_id
        self.state.update(vaults={self._vault_key(): None}, drop_vault_items=vault_id or "")
        self._vault_id, self._vault_known = None, False

    def _listing(self) -> tuple[str, list[Any]]:
        """The vault's id and its items' overviews. A remembered vault id gone stale
        (the vault deleted or replaced in the app) is forgotten and looked up once more."""
        from broker_onepassword._sdk import AccessDenied

        for attempt in (1, 2):
            vault_id = self._vault()
            try:
                return vault_id, self._overviews(vault_id)
            except (NotFound, AccessDenied):
                if attempt == 1 and self._vault_known:
                    self._forget_vault()
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _overviews(self, vault_id: str) -> list[Any]:
        """Every active item of the vault (one ItemsList); refreshes the remembered ids."""
        overviews: list[Any] = self._run(lambda c: c.items.list(vault_id), "listing items")
        ids: dict[str, str | None] = {}
        seen: dict[str, int] = {}
        for overview in overviews:
            if self._relevant(overview):
                seen[overview.title] = seen.get(overview.title, 0) + 1
                ids[overview.title] = overview.id
        present = {str(o.id): str(o.title).casefold() for o in overviews}
        bound_keys = {b.item for b in self._bound.values()}
        for title, item_id in self.state.item_ids(vault_id).items():
            if title not in ids and (present.get(item_id) == title.casefold() or (
                    title in bound_keys and item_id in present)):
                # an item found by title before (any category, case); a profile's
                # broker_item, even renamed since (its id tells it apart)
                ids[title] = item_id
        for title, count in seen.items():
            if count > 1:
                ids[title] = None  # ambiguous: never remember one of them
        self.state.update(items=ids, vault_id=vault_id, replace_items=True)
        return overviews

    def _relevant(self, overview: Any) -> bool:
        from broker_onepassword._fields import TAG

        tags = list(overview.tags)
        category = str(getattr(overview.category, "value", overview.category))
        return (
            (TAG in tags or category == "ApiCredentials")
            and self._in_namespace(tags)
            and self._name_of(overview.title) is not None
        )

    def _pick(self, overviews: list[Any], title: str) -> Any | None:
        """The one item titled ``title``; several: the one tagged broker, else an error."""
        from broker_onepassword._fields import TAG

        matches = [o for o in overviews if o.title == title and self._in_namespace(list(o.tags))]
        if len(matches) > 1:
            tagged = [o for o in matches if TAG in o.tags]
            if len(tagged) == 1:
                return tagged[0]
            raise AmbiguousMatch(
                f"onepassword: {len(matches)} items are titled {title!r} in the vault "
                f"(ids {', '.join(str(o.id) for o in matches)})",
                "delete or rename all but one in the 1Password app (or tag the one to use "
                f"{TAG!r})",
            )
        return matches[0] if matches else None

    def _first_contact(self, title: str) -> Any | None:
        """Find vault and item by name in one call, when no vault id is known yet.

        One SecretsResolveAll of ``op://<vault>/<title>/access key id`` answers with
        both ids (then one ItemsGet reads the item), or says there is no such item.
        Returns the SDK item, False for "no such item", or None when this cannot
        tell (no vault setting, names a reference cannot hold, an ambiguous or
        unusual item): the caller then takes the long way.
        """
        from broker_onepassword._fields import KNOWN

        setting = self._setting("vault")
        if setting is None or _VAULT_ID.match(setting) or not (
            _REFERENCE_SAFE.match(setting) and _REFERENCE_SAFE.match(title)
        ):
            return None
        reference = f"op://{setting}/{title}/{KNOWN[ACCESS_KEY_ID][0]}"
        response = self._run(
            lambda c: c.secrets.resolve_all([reference]), f"looking up {title!r}"
        )
        answer = response.individual_responses.get(reference)
        content = getattr(answer, "content", None)
        if content is None:
            kind = getattr(getattr(answer, "error", None), "type", None)
            return False if str(getattr(kind, "value", kind)) == "itemNotFound" else None
        vault_id, item_id = str(content.vault_id), str(content.item_id)
        self.state.update(vaults={self._vault_key(): vault_id})
        self._vault_id, self._vault_known = vault_id, False
        item = self._get_by_id(vault_id, item_id, title)
        if item.title != title:
            return None
        self.state.update(items={title: item_id}, vault_id=vault_id)
        return item

    def _load(self, name: str) -> tuple[str | None, Any | None]:
        """(vault id if known, the SDK item for ``name`` or None), with the fewest calls.

        Remembered ids: one ItemsGet. Vault id known: ItemsList then ItemsGet. Nothing
        known yet: SecretsResolveAll then ItemsGet (see :meth:`_first_contact`), else
        VaultsList, ItemsList, ItemsGet. A stale item id (deleted or renamed in the
        app) or vault id is noticed, forgotten and looked up again, once.
        """
        from broker_onepassword._sdk import AccessDenied

        if name in self._bound:
            return self._load_bound(name)
        title = self.title_for(name)
        if time.monotonic() - self._absent.get(title, -ABSENT_FOR) < ABSENT_FOR:
            return self._vault_id, None  # 1Password said so a moment ago (`add`: get, set)
        if self._vault_id is None and self.state.vault_id(self._vault_key()) is None:
            found = self._first_contact(title)
            if found is False:
                self._absent[title] = time.monotonic()
                return None, None
            if found is not None:
                return self._vault_id, found
        vault_id = self._vault()
        item_id = self.state.item_id(vault_id, title)
        if item_id is not None:
            try:
                item = self._get_by_id(vault_id, item_id, title)
            except (NotFound, AccessDenied):
                item = None
            if item is not None and item.title == title:
                return vault_id, item
            self.state.update(items={title: None}, vault_id=vault_id)
        vault_id, overviews = self._listing()
        match = self._pick(overviews, title)
        if match is None:
            self._absent[title] = time.monotonic()
            return vault_id, None
        self.state.update(items={title: str(match.id)}, vault_id=vault_id)
        return vault_id, self._get_by_id(vault_id, str(match.id), title)

    def _get_by_id(self, vault_id: str, item_id: str, title: str) -> Any:
        return self._run(lambda c: c.items.get(vault_id, item_id), f"reading {title!r}")

    # -- the Backend interface -----------------------------------------------------

    def get(self, name: str) -> Item | None:
        """The Item of ``name``'s item (the one its ``broker_item`` names, when bound), or
        None when there is none; a bound item that is missing is an error instead
        (NotFound, naming it), since the profile says where its key is."""
        from broker_onepassword._fields import to_item

        _, sdk_item = self._load(name)
        if sdk_item is None and name in self._bound:
            raise self._bound_missing(name)
        return None if sdk_item is None else to_item(sdk_item)

    def item_identity(self, name: str) -> str | None:
        """``VAULT_ID/ITEM_ID`` of the item ``name`` was last read from (the one its
        ``broker_item`` names, when bound), from what this instance and broker's state
        remember; None when not known. Offline."""
        if name in self._bound:
            kept = self._bound_read.get(name)
            if kept is None or kept[2] is None or not kept[1]:
                return None
            return f"{kept[1]}/{kept[2].id}"
        try:
            vault_id = self._vault_id or self.state.vault_id(self._vault_key())
            item_id = self.state.item_id(vault_id, self.title_for(name)) if vault_id else None
        except BrokerError:  # no way to sign in here: nothing was read either
            return None
        return f"{vault_id}/{item_id}" if item_id else None

    def set(self, name: str, item: Item, *, expires_at: datetime | None = None) -> None:
        """Create the item, or update it in place (the user's own fields kept)."""
        from broker_onepassword import _fields
        from broker_onepassword._sdk import VersionConflict

        if self.namespace == SESSIONS:
            raise ConfigError(
                "onepassword: STS sessions are never written into 1Password",
                'use session_cache = "keyctl" (or "none")',
            )
        if name in self._bound:
            self._set_bound(name, item)
            return
        title = self.title_for(name)
        sdk = self._sdk()
        self._secrets.extend(v for v in item.values() if len(v) >= 4)
        for attempt in (1, 2):
            known_vault, existing = self._load(name)
            vault_id = known_vault or self._vault()
            if existing is None:
                params = _fields.create_params(
                    sdk, vault_id, title, item, self._tags(),
                    f"AWS credentials of the profile {name!r}, kept by broker.",
                )
                created = self._run(  # the lambdas run before the loop goes on
                    lambda c: c.items.create(params), f"creating {title!r}"  # noqa: B023
                )
                self.state.update(items={title: str(created.id)}, vault_id=vault_id)
                self._absent.pop(title, None)
                return
            self._refuse_bound(name, vault_id, existing)
            updated = _fields.apply(sdk, existing, item, self._tags())
            try:
                self._run(lambda c: c.items.put(updated), f"updating {title!r}")  # noqa: B023
                return
            except VersionConflict:
                if attempt == 2:
                    raise

    def delete(self, name: str) -> bool:
        """Delete the item titled for ``name`` (found by listing, so never a renamed one);
        a bound one (:meth:`bind_item`) only once adopted."""
        if name in self._bound:
            return self._delete_bound(name)
        title = self.title_for(name)
        vault_id, overviews = self._listing()
        match = self._pick(overviews, title)
        if match is None:
            return False
        self._refuse_bound(name, vault_id, match)
        try:
            self._run(lambda c: c.items.delete(vault_id, match.id), f"deleting {title!r}")
        except NotFound:
            return False
        finally:
            self.state.update(items={title: None}, vault_id=vault_id)
        return True

    def list(self) -> _Names:
        """The profiles an item of the vault serves: items tagged ``broker`` (in this
        namespace) whose title fits the template, and the items profiles name with
        ``broker_item`` (:meth:`bind_item`), listed under those profiles' names (never
        under their titles). Other items, API Credentials ones included, are no
        profiles. One ItemsList; plus, for items named in other vaults, one ItemsList
        per vault (and a VaultsList once, until their ids are remembered)."""
        from broker_onepassword._fields import TAG

        remembered = {name: self._remembered_bound(bound)
                      for name, bound in self._bound.items()}  # before the listing
        vault_id, overviews = self._listing()
        names: set[str] = set()
        served: set[str] = set()  # ids of the items named by broker_item
        listings = {vault_id: overviews}
        self.listing_problems = {}
        for name, bound in self._bound.items():
            try:
                match = self._listed_bound(bound, listings, remembered[name])
            except AmbiguousMatch as exc:
                self.listing_problems[name] = exc
                continue
            if match is not None:
                names.add(name)
                served.add(str(match.id))
                if not (_VAULT_ID.match(bound.item) or _same(str(match.title), bound.item)):
                    self._lost[bound.reference] = ("renamed", str(match.title))
                    self.listing_problems[name] = self._bound_missing(name)
        for overview in overviews:
            tags = list(overview.tags)
            if str(overview.id) in served or TAG not in tags or not self._in_namespace(tags):
                continue
            titled = self._name_of(overview.title)
            if titled:
                names.add(titled)
        return sorted(names)

    def list_problems(self) -> dict[str, BrokerError]:
        """:meth:`Backend.list_problems`: profiles whose item the last :meth:`list` found
        twice (one title, two items) or found renamed, deleted or archived."""
        return dict(self.listing_problems)

    def get_many(self, names: Sequence[str]) -> dict[str, Item | None]:
        """Several items with one ItemsGetAll per 50 (plus one ItemsList when some id
        is not known yet or is stale); a bound name (:meth:`bind_item`) is read on its
        own (one ItemsGet with its ids remembered), None when its item is missing."""
        from broker_onepassword._fields import to_item

        found: dict[str, Item | None] = {}
        for name in names:
            if name in self._bound:
                sdk_item = self._load_bound(name)[1]
                found[name] = None if sdk_item is None else to_item(sdk_item)
        titled = [n for n in names if n not in self._bound]
        if titled:
            found.update(self._get_many_titled(titled))
        return {name: found[name] for name in names}

    def _get_many_titled(self, names: Sequence[str]) -> dict[str, Item | None]:
        from broker_onepassword._fields import to_item

        titles = {name: self.title_for(name) for name in names}
        vault_id = self._vault()
        found: dict[str, Item | None] = dict.fromkeys(names)
        listed = False
        pending = list(names)
        while pending:
            ids = {n: self.state.item_id(vault_id, titles[n]) for n in pending}
            if any(i is None for i in ids.values()) and not listed:
                overviews = self._overviews(vault_id)
                listed = True
                for n in pending:
                    match = self._pick(overviews, titles[n])
                    ids[n] = None if match is None else str(match.id)
            wanted = [(n, i) for n, i in ids.items() if i is not None]
            retry: list[str] = []
            for start in range(0, len(wanted), BATCH):
                chunk = wanted[start : start + BATCH]
                chunk_ids = [i for _, i in chunk]

                def get_all(client: Any, ids: _Names = chunk_ids) -> Awaitable[Any]:
                    return client.items.get_all(vault_id, ids)  # type: ignore[no-any-return]

                response = self._run(get_all, "reading items")
                for (n, _), answer in zip(chunk, response.individual_responses, strict=True):
                    content = answer.content
                    if content is not None and content.title == titles[n]:
                        found[n] = to_item(content)
                    elif not listed:
                        retry.append(n)
                        self.state.update(items={titles[n]: None}, vault_id=vault_id)
            pending = retry
        return found

    # -- items a profile names (broker_item) ---------------------------------------

    def bind_item(self, name: str, reference: str) -> None:
        """Serve profile ``name`` from the item ``reference`` names (its ``broker_item``):
        ``op://VAULT/ITEM`` (each by name, any case, or by id) or an item's title in the
        configured vault. Read as it is (1Password's AWS shell plugin's item, the app's API
        Credential template, broker's own layout: :mod:`broker_onepassword._fields`);
        written only once adopted (:meth:`adopt`). Offline.

        Raises:
            ConfigError: another scheme, not one item, or a namespace other than keys.
        """
        from broker_onepassword._bound import parse

        if self.namespace != CREDENTIALS:
            raise ConfigError(
                "onepassword: only long-lived keys are read from an item named by "
                "broker_item", "remove broker_item",
            )
        self._bound[name] = parse(reference)
        self._bound_read.pop(name, None)

    def check_writable(self, name: str) -> None:
        """Refuse a write of bound ``name``'s item that is not adopted (it reads the item
        once, and a later :meth:`get` of it is free); nothing for broker's own items.

        Also refuses, offline, a write under ``name`` of an item another profile's
        ``broker_item`` names (by title, id or the id broker remembers), and, through the
        1Password CLI, an ``op`` too old to write (one ``op --version``): both before the
        command asks for an MFA code or makes a key.

        Raises:
            UsageError: the item is not broker's (names it, and `broker adopt`), or it is
                another profile's.
            NotFound: the item is missing.
            BackendError: the 1Password CLI cannot write items (too old, or not the CLI).
        """
        if self.transport == "cli":  # an op too old to write: said before anything else
            self._cli_session().require_writable(f"writing {name!r}")
        if name in self._bound:
            self._writable(name)
        elif self._bound and self.namespace == CREDENTIALS:
            vault_id = self._vault_id or self.state.vault_id(self._vault_key())
            title = self.title_for(name)
            item_id = self.state.item_id(vault_id, title) if vault_id else None
            self._refuse_bound(name, vault_id or "", _Named(item_id or "", title))

    def _cli_session(self) -> CliSession:
        """The CLI transport's session, opened now if it is not yet (no call made)."""
        from broker_onepassword._cli import CliSession, open_session

        if not isinstance(self._session, CliSession):
            self._session = open_session(self)
        return self._session

    def adopt(self, name: str) -> bool:
        """Tag ``name``'s item ``broker`` (one ItemsPut; nothing else changes), so that
        broker updates it from now on, in the item's own fields. True if it was tagged
        now, False if it was already.

        Raises:
            NotFound: there is no such item.
            ConfigError: a namespace other than keys.
        """
        from broker_onepassword._sdk import VersionConflict

        if self.namespace != CREDENTIALS:
            raise ConfigError("onepassword: only items holding keys are adopted")
        for attempt in (1, 2):
            vault_id, existing = self._load(name)
            if existing is None:
                raise (self._bound_missing(name) if name in self._bound else NotFound(
                    f"onepassword: no item titled {self.title_for(name)!r} in the vault",
                    f"`broker add {name}` makes one",
                ))
            missing = [t for t in self._tags() if t not in existing.tags]
            if not missing:
                return False
            tagged = existing.model_copy(update={"tags": [*existing.tags, *missing]})
            try:
                updated = self._run(  # the lambda runs before the loop goes on
                    lambda c: c.items.put(tagged), f"adopting {existing.title!r}"  # noqa: B023
                )
            except VersionConflict:
                self._bound_read.pop(name, None)
                if attempt == 2:
                    raise
                continue
            if name in self._bound:
                self._bound_read[name] = (time.monotonic(), vault_id or "", updated)
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def _bound_missing(self, name: str) -> NotFound:
        """Why bound ``name``'s item is not served: renamed in 1Password (the id broker
        remembers has a new title: broker_item names the item, so the fix is to name the
        new title there; it is never served under a title broker_item does not give),
        gone (deleted or archived), or never found; names the file ``broker_item`` is in
        (``$AWS_CONFIG_FILE``, else ~/.aws/config)."""
        from broker.aws.profiles import config_path

        bound = self._bound[name]
        vault = self._setting("vault")
        where = "" if bound.vault is not None else (
            f" in the vault {vault!r}" if vault else " in the vault")
        config = str(config_path())
        home = os.path.expanduser("~")
        if config.startswith(home + os.sep):
            config = "~" + config[len(home):]
        lost = self._lost.get(bound.reference)
        if lost is not None and lost[0] == "renamed":
            new = (f"op://{bound.vault}/{lost[1]}" if bound.vault is not None else lost[1])
            return NotFound(
                f"onepassword: the item {bound.shown()} (broker_item of profile {name!r}) was "
                f"renamed to {lost[1]!r} in 1Password (same id)",
                f"update broker_item in {config} to {new}",
            )
        if lost is not None:
            return NotFound(
                f"onepassword: no item {bound.shown()}{where} (broker_item of profile "
                f"{name!r}): the item broker read before (id {lost[1]}) is deleted or "
                "archived",
                f"restore it from the Archive in 1Password, or fix broker_item in {config}",
            )
        return NotFound(
            f"onepassword: no item {bound.shown()}{where} (broker_item of profile {name!r})",
            f"fix broker_item in {config} (the vault and the item's title or id), or "
            "make the item in 1Password",
        )

    def _remembered_bound(self, bound: BoundItem) -> tuple[str, str] | None:
        """(vault id, item id) of ``bound``'s item as broker remembers them (or as its
        reference gives them), offline; None when either is not known."""
        if self._is_configured_vault(bound):
            vault_id = self._vault_id or self.state.vault_id(self._vault_key())
        elif bound.vault is not None and _VAULT_ID.match(bound.vault):
            vault_id = bound.vault
        else:
            vault_id = self.state.vault_id(f"{self._auth_key()}|{bound.vault}")
        if vault_id is None:
            return None
        item_id = bound.item if _VAULT_ID.match(bound.item) else self.state.item_id(
            vault_id, bound.item)
        return None if item_id is None else (vault_id, item_id)

    def _bound_owner(self, vault_id: str, item: Any) -> str | None:
        """The profile whose broker_item names ``item`` (an SDK item or overview in vault
        ``vault_id``) by its title or id, or by the id broker remembers for it; offline."""
        for other, bound in self._bound.items():
            if bound.vault is not None and not self._is_configured_vault(bound):
                known = self._remembered_bound(bound)
                if known is None or known[0] != vault_id:
                    continue
            if str(item.id) == bound.item or _same(str(item.title), bound.item):
                return other
            known = self._remembered_bound(bound)
            if known is not None and known == (vault_id, str(item.id)):
                return other
        return None

    def _refuse_bound(self, name: str, vault_id: str, item: Any) -> None:
        """Refuse a write or delete under ``name`` (not bound) of an item another profile's
        broker_item names: that item is that profile's, whatever its title.

        Raises:
            UsageError: naming the item, the profile and the command to use.
        """
        owner = self._bound_owner(vault_id, item)
        if owner is None or owner == name:
            return
        raise UsageError(
            f"onepassword: the item {str(item.title)!r} is the one profile {owner!r} takes "
            f"its key from (broker_item = {self._bound[owner].reference}), not the item of "
            f"profile {name!r}",
            f"name profile {owner!r} to change or remove its key (`broker rotate {owner}`, "
            f"`broker remove {owner}`); under any other name broker leaves the item alone",
        )

    def _writable(self, name: str) -> tuple[str, Any]:
        """(vault id, SDK item) of bound ``name``'s item, when broker may write it."""
        from broker_onepassword._fields import TAG

        vault_id, item = self._load_bound(name)
        if item is None:
            raise self._bound_missing(name)
        if TAG not in item.tags:
            raise UsageError(
                f"onepassword: broker only reads the item {item.title!r} "
                f"({self._bound[name].shown()}) that profile {name!r} takes its key from",
                f"run `broker adopt {name}` to let broker update it, in its own fields",
            )
        return vault_id, item

    def _set_bound(self, name: str, item: Item) -> None:
        """Write ``item`` into bound ``name``'s adopted item, under the item's own labels."""
        from broker_onepassword import _fields
        from broker_onepassword._sdk import VersionConflict

        sdk = self._sdk()
        self._secrets.extend(v for v in item.values() if len(v) >= 4)
        for attempt in (1, 2):
            vault_id, existing = self._writable(name)
            updated = _fields.apply(sdk, existing, item, self._tags())
            try:
                written = self._run(  # the lambda runs before the loop goes on
                    lambda c: c.items.put(updated), f"updating {existing.title!r}"  # noqa: B023
                )
            except VersionConflict:
                self._bound_read.pop(name, None)  # read it again, then write
                if attempt == 2:
                    raise
                continue
            self._bound_read[name] = (time.monotonic(), vault_id, written)
            return

    def _delete_bound(self, name: str) -> bool:
        """Delete bound ``name``'s item, once adopted; False when it is missing."""
        vault_id, item = self._load_bound(name)
        if item is None:
            return False
        self._writable(name)
        try:
            self._run(lambda c: c.items.delete(vault_id, item.id), f"deleting {item.title!r}")
        except NotFound:
            return False
        finally:
            self._bound_read.pop(name, None)
            bound = self._bound[name]
            if not _VAULT_ID.match(bound.item):
                self.state.update(items={bound.item: None}, vault_id=vault_id)
        return True

    def _load_bound(self, name: str) -> tuple[str, Any | None]:
        """(vault id, SDK item or None) of the item bound ``name``'s reference names, with
        the fewest calls: ids remembered (or given), one ItemsGet; the vault known, an
        ItemsList then an ItemsGet; else a VaultsList first. A remembered id gone stale
        (the item deleted, renamed or moved, the vault replaced) is forgotten and the item
        looked up again, once. Kept ABSENT_FOR seconds: a check then a write read once."""
        from broker_onepassword._sdk import AccessDenied

        kept = self._bound_read.get(name)
        if kept is not None and time.monotonic() - kept[0] < ABSENT_FOR:
            return kept[1], kept[2]
        bound = self._bound[name]
        for attempt in (1, 2):
            vault_id, remembered = self._bound_vault(bound)
            try:
                item = self._find_bound(bound, vault_id)
            except (NotFound, AccessDenied):  # the listing failed: the vault went stale?
                if attempt == 1 and remembered:
                    self._forget_bound_vault(bound, vault_id)
                    continue
                raise
            self._bound_read[name] = (time.monotonic(), vault_id, item)
            return vault_id, item
        raise AssertionError("unreachable")  # pragma: no cover

    def _is_configured_vault(self, bound: BoundItem) -> bool:
        return bound.vault is None or bound.vault == self._setting("vault")

    def _bound_vault(self, bound: BoundItem) -> tuple[str, bool]:
        """(the id of the vault ``bound`` names, whether it was remembered)."""
        if self._is_configured_vault(bound):
            vault_id = self._vault()
            return vault_id, self._vault_known
        assert bound.vault is not None
        if _VAULT_ID.match(bound.vault):
            return bound.vault, False
        key = f"{self._auth_key()}|{bound.vault}"
        remembered = self.state.vault_id(key)
        if remembered is not None:
            return remembered, True
        if self._vault_titles is None:
            self._vault_titles = list(self._run(lambda c: c.vaults.list(), "listing vaults"))
        try:
            vault_id = self._pick_vault(self._vault_titles, bound.vault)
        except NotFound as exc:
            hint = "fix the vault in broker_item (a name or id)"
            if not self.desktop:
                hint += ("; a service account never sees a Private, Personal or Employee "
                         "vault: move the item to a vault it can read, or use the 1Password "
                         "CLI or desktop app (docs/backends/onepassword.md)")
            raise NotFound(exc.message, hint) from None
        self.state.update(vaults={key: vault_id})
        return vault_id, False

    def _forget_bound_vault(self, bound: BoundItem, vault_id: str) -> None:
        if self._is_configured_vault(bound):
            self._forget_vault()
        elif bound.vault is not None and not _VAULT_ID.match(bound.vault):
            key = f"{self._auth_key()}|{bound.vault}"
            self.state.update(vaults={key: None}, drop_vault_items=vault_id)

    def _find_bound(self, bound: BoundItem, vault_id: str) -> Any | None:
        """The SDK item ``bound`` names in vault ``vault_id``, or None."""
        from broker_onepassword._sdk import AccessDenied

        key = bound.item
        by_id = bool(_VAULT_ID.match(key))
        item_id = key if by_id else self.state.item_id(vault_id, key)
        self._lost.pop(bound.reference, None)
        renamed: Any | None = None
        if item_id is not None:
            try:
                item = self._get_by_id(vault_id, item_id, key)
            except (NotFound, AccessDenied):
                item = None
            if item is not None and (str(item.id) == key or _same(item.title, key)):
                return item
            if not by_id and item is None:
                self.state.update(items={key: None}, vault_id=vault_id)  # gone
            renamed = item  # kept: the id is still this profile's item, under a new title
        match = self._pick_bound(self._overviews(vault_id), key)
        if match is None:
            if renamed is not None:
                self._lost[bound.reference] = ("renamed", str(renamed.title))
            elif item_id is not None:
                self._lost[bound.reference] = ("gone", item_id)
            return None
        if str(match.id) != key:
            self.state.update(items={key: str(match.id)}, vault_id=vault_id)
        return self._get_by_id(vault_id, str(match.id), key)

    def _pick_bound(self, overviews: _Overviews, key: str) -> Any | None:
        """The one item whose id is ``key``, else titled ``key`` (exactly, else in any
        case); several: the one tagged broker, else an error naming their ids."""
        from broker_onepassword._fields import TAG

        matches = [o for o in overviews if str(o.id) == key]
        if not matches:
            matches = [o for o in overviews if o.title == key] or [
                o for o in overviews if _same(o.title, key)
            ]
        if len(matches) > 1:
            tagged = [o for o in matches if TAG in o.tags]
            if len(tagged) == 1:
                return tagged[0]
            raise AmbiguousMatch(
                f"onepassword: {len(matches)} items are titled {key!r} in the vault "
                f"(ids {', '.join(str(o.id) for o in matches)})",
                "name one by its id in broker_item (op://VAULT/ID), or rename the others",
            )
        return matches[0] if matches else None

    def _listed_bound(self, bound: BoundItem, listings: dict[str, _Overviews],
                      remembered: tuple[str, str] | None = None) -> Any | None:
        """The overview of ``bound``'s item for `list` (``listings``: the vaults listed so
        far, by id; ``remembered``: the (vault id, item id) broker knew before listing):
        the item titled as ``bound`` names it, else the one of the remembered id (renamed
        since in 1Password: still this profile's), or None when it is missing or cannot be
        found now (the command that reads it says why).

        Raises:
            AmbiguousMatch: several items have the title (`exec` refuses them too).
        """
        from broker_onepassword._sdk import AccessDenied

        try:
            vault_id, _ = self._bound_vault(bound)
            if vault_id not in listings:
                listings[vault_id] = self._overviews(vault_id)
            match = self._pick_bound(listings[vault_id], bound.item)
        except (NotFound, AccessDenied, ConfigError):
            return None
        if match is None and remembered is not None and remembered[0] == vault_id:
            match = next((o for o in listings[vault_id] if str(o.id) == remembered[1]), None)
            return match
        if match is not None and str(match.id) != bound.item:
            self.state.update(items={bound.item: str(match.id)}, vault_id=vault_id)
        return match

    # -- secret references ---------------------------------------------------------

    def _check_reference(self, reference: str) -> None:
        if not reference.startswith("op://"):
            from broker.secrets import shown

            raise ConfigError(
                f"onepassword: {shown(reference)!r} is not an op:// reference",
                "write it as op://vault/item/[section/]field[?attribute=totp]",
            )
        sdk = self._sdk()
        try:
            sdk.Secrets.validate_secret_reference(reference)
        except BrokerError:
            raise
        except Exception as exc:
            from broker_onepassword._sdk import translate

            error = translate(exc, f"checking {reference}", desktop=False, secrets=[])
            if isinstance(error, ConfigError):
                from broker.secrets import shown

                raise ConfigError(
                    f"onepassword: {shown(reference)!r} is not a valid 1Password reference: "
                    f"{error.message.removeprefix('onepassword: ')}", error.hint
                ) from None
            raise error from None

    def resolve(self, reference: str) -> str:
        """The value ``op://vault/item/[section/]field[?attribute=totp]`` points to
        (checked offline first, then one SecretsResolve)."""
        self._check_reference(reference)
        value: str = self._run(lambda c: c.secrets.resolve(reference), f"resolving {reference}")
        return value

    def resolve_many(self, references: _Names) -> dict[str, str]:
        """Several references with one SecretsResolveAll; the first failure is raised."""
        for reference in references:
            self._check_reference(reference)
        if not references:
            return {}
        response = self._run(
            lambda c: c.secrets.resolve_all(list(references)), "resolving references"
        )
        values: dict[str, str] = {}
        for reference in references:
            answer = response.individual_responses.get(reference)
            if answer is None or answer.content is None:
                kind = getattr(getattr(answer, "error", None), "type", "unknown error")
                kind = str(getattr(kind, "value", kind))
                raise (AmbiguousMatch if kind.startswith("tooMany") else NotFound)(
                    f"onepassword: cannot resolve {reference}: {kind}",
                    "check the vault, item and field names in the reference",
                )
            values[reference] = answer.content.secret
        return values

    # -- the rest ------------------------------------------------------------------

    def describe(self) -> dict[str, str]:
        from broker_onepassword._state import state_path

        if self.transport == "cli":
            from broker_onepassword._cli import describe_auth

            auth = describe_auth(self)
        elif self.desktop:
            auth = f"1Password desktop app, account {self._setting('account')}"
        elif self._setting("token"):
            from broker.secrets import shown

            auth = f"service account (token from {shown(self._setting('token'))})"
        else:
            kept = self.login_reference() or "`broker backend login onepassword`"
            auth = f"service account (token from ${TOKEN_VARIABLE} or {kept})"
        from broker_onepassword._cli import describe_transport

        return {
            "transport": describe_transport(self),
            "vault": self._setting("vault") or "(the only vault it can see, else Private)",
            "titles": self._setting("title") or DEFAULT_TITLE,
            "auth": auth,
            "ids kept in": str(state_path()),
        }

    def checks(self, used: bool) -> _Checks:
        """``broker doctor``'s rows for 1Password: how it authenticates, and vaults a
        service account can never read. Each comes from a small function of
        :mod:`broker_onepassword._checks`; a new check is one more term here."""
        from broker_onepassword import _checks, _cli_checks

        if not used:
            return _checks.not_used()
        if _cli_checks.uses_cli(self):  # the user's own account, through `op` and the app
            return _cli_checks.checks(self, used)
        return [
            *_checks.token(self),
            *_checks.vaults(self),
            *_cli_checks.checks(self, used),
        ]

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        self._token = None
        self._secrets.clear()
        self._bound_read.clear()  # items read, secrets included
