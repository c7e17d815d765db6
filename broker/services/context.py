"""What every use case needs: settings, ~/.aws/config, the registry, the session cache."""

from __future__ import annotations

import os
from functools import cached_property

from broker import config
from broker.aws import profiles
from broker.aws.session_cache import SessionCache
from broker.backend import Backend, Capability
from broker.errors import BackendUnavailable, BrokerError, ConfigError
from broker.registry import Registry
from broker.secrets import ReferenceResolver

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator


class Context:
    """Settings, registry and lazily opened backends for one broker invocation."""

    def __init__(self, settings: config.Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self._backends: dict[tuple[str, str], Backend] = {}
        #: (backend, profile) -> why that backend cannot serve the profile's broker_item,
        #: raised when the profile's key is wanted (:meth:`credential_backend`).
        self._item_problems: dict[tuple[str, str], BrokerError] = {}
        #: A process that outlives the command (``exec --server``): backends are closed
        #: after each use, so that no passphrase or token stays in its memory.
        self.long_lived = False

    @classmethod
    def load(cls, registry: Registry | None = None) -> Context:
        """A context over broker's config file and ``BROKER_*`` environment
        (:func:`broker.config.load`) and ``registry`` (default: the installed plugins, with the
        settings' backend tables and disabled plugins).

        Raises:
            ConfigError: broker's config file or a ``BROKER_*`` variable is malformed.
        """
        settings = config.load()
        return cls(settings, registry or Registry(settings.backends, settings.disabled_plugins))

    @cached_property
    def aws(self) -> profiles.AwsConfig:
        """~/.aws/config with the credentials file merged (:func:`broker.aws.profiles.load`),
        read on first use and kept for this context.

        Raises:
            ConfigError: the file cannot be read or parsed.
        """
        return profiles.load()

    @cached_property
    def resolver(self) -> ReferenceResolver:
        """The registry's reference resolver, the one every backend it creates gets."""
        return self.registry.resolver

    def backend(self, name: str, namespace: str = "credentials") -> Backend:
        """Backend ``name`` for ``namespace`` (``"credentials"`` or ``"sessions"``), created on
        first use (:meth:`Registry.create`) and kept open until :meth:`close`.

        Raises:
            ConfigError: no backend is installed under that name.
            BackendUnavailable: it is disabled, broken, or its constructor failed.
        """
        key = (name, namespace)
        if key not in self._backends:
            created = self.registry.create(name, namespace=namespace, resolver=self.resolver)
            self._backends[key] = created
            if namespace == "credentials":  # the profiles it serves from a broker_item
                from broker.services.items import bind_items

                for profile, error in bind_items(self, name, created).items():
                    self._item_problems[(name, profile)] = error
        return self._backends[key]

    def credential_backend_name(
        self, profile: profiles.Profile | None = None, explicit: str | None = None
    ) -> str:
        """--backend > BROKER_BACKEND > the profile's broker_backend > the backend its
        ``broker_item = SCHEME://...`` names by its scheme > config file > best."""
        return self.backend_choice(profile, explicit)[0]

    def backend_choice(
        self, profile: profiles.Profile | None = None, explicit: str | None = None
    ) -> tuple[str, str]:
        """The credential backend and who chose it: ``"explicit"`` (a --backend or --to
        flag), ``"BROKER_BACKEND"``, ``"broker_backend"`` (the profile's), ``"broker_item"``
        (the scheme of the profile's ``broker_item``), ``"config"``
        (broker's config file), or ``""`` when nobody did (the best available one,
        a persistent one first: :meth:`Registry.best_credential_backend`)."""
        for choice, origin in (
            (explicit, "explicit"),
            (config.environment("BROKER_BACKEND"), "BROKER_BACKEND"),
            (profile.broker_backend if profile else None, "broker_backend"),
            (self._item_backend(profile), "broker_item"),
            (self.settings.backend, "config"),
        ):
            if choice:
                return choice, origin
        best = self.registry.best_credential_backend()
        if best is None:
            raise BackendUnavailable(
                "no credential backend is available here",
                "see `broker backend list` for the reasons, then `broker backend set NAME`",
            )
        return best, ""

    def check_backend_choice(self, explicit: str | None = None) -> None:
        """Refuse a credential backend chosen by name for this invocation (``explicit``, a
        --backend flag, else ``BROKER_BACKEND``) that is not installed, disabled or broken,
        even when no key will be read from it (a cached session serves the command): a
        name that is wrong here fails the same way whether a session is cached or not.
        Imports that backend's plugin, nothing else.

        Raises:
            ConfigError: no backend of that name is installed (exit code 3).
            BackendUnavailable: it is disabled, or its plugin is broken (exit code 7).
        """
        chosen = explicit or config.environment("BROKER_BACKEND")
        if chosen:
            self.registry.backend_class(chosen)

    def credential_backend(
        self, profile: profiles.Profile | None = None, explicit: str | None = None
    ) -> Backend:
        """The backend holding long-lived keys for ``profile``, chosen as
        :meth:`credential_backend_name` says.

        Raises:
            BackendUnavailable: nobody chose one and none is available, or the chosen one is
                disabled, broken or fails to start.
            ConfigError: the chosen name is not installed; or that backend cannot serve the
                profile's ``broker_item`` (:func:`broker.services.items.bind_items`),
                naming the file, section and key.
        """
        name = self.credential_backend_name(profile, explicit)
        store = self.backend(name)
        problem = self.item_problem(name, profile.name) if profile is not None else None
        if problem is not None:
            raise problem
        return store

    def usable_backends(
        self, names: Iterable[str], *, skip: str | None = None,
        namespace: str = "credentials",
    ) -> Iterator[tuple[str, Backend]]:
        """``(name, backend)`` for the backends of ``names`` (but ``skip``), in that
        order, opened in ``namespace`` (:meth:`backend`) and available here
        (:meth:`Registry.availability_of`); one that cannot be opened or is not available
        is passed over. Never raises for a backend: for questions about other stores
        ("who else holds this key?"), where a broken plugin just has nothing to say."""
        for name in names:
            if name == skip:
                continue
            try:
                store = self.backend(name, namespace)
            except Exception:  # noqa: S112 - a plugin that cannot start holds nothing here
                continue
            if self.registry.availability_of(store).ok:
                yield name, store

    def item_problem(self, backend: str, profile: str) -> BrokerError | None:
        """Why credential backend ``backend`` cannot serve ``profile``'s ``broker_item``
        (found when it was opened: :func:`broker.services.items.bind_items`), else None."""
        return self._item_problems.get((backend, profile))

    def _item_backend(self, profile: profiles.Profile | None) -> str | None:
        """The backend a profile's ``broker_item = SCHEME://VAULT/ITEM`` chooses by its
        scheme (:func:`broker.services.items.reference_backend`), else None."""
        if profile is None or "broker_item" in profile.problem_by_key:
            return None
        from broker.services.items import reference_backend

        return reference_backend(self, profile.broker_item)

    def session_cache_name(self) -> str | None:
        """The configured cache (``BROKER_SESSION_CACHE``, else ``session_cache``; "none"
        turns caching off), else the default one: the highest-priority backend declaring
        :data:`~broker.backend.SESSION_CACHE` (``STORE_SESSIONS | EXPIRY``: fit for
        sessions, forgetting them when they expire), not ``SHARED``, that works here (the
        kernel keyring, built in; :meth:`Registry.session_caches`); None: no caching."""
        name = self.configured_cache()[0]
        if name:
            return None if name.lower() == "none" else name
        usable = self.usable_backends(self.registry.session_caches(), namespace="sessions")
        return next((candidate for candidate, _ in usable), None)

    def configured_cache(self) -> tuple[str | None, str]:
        """The session cache named by ``BROKER_SESSION_CACHE`` or else the ``session_cache``
        setting (None when neither does), and how a message names where it came from:
        ``BROKER_SESSION_CACHE=NAME``, or ``session_cache = 'NAME' in PATH``."""
        variable = config.environment("BROKER_SESSION_CACHE")
        if variable:
            return variable, f"BROKER_SESSION_CACHE={variable}"
        name = self.settings.session_cache
        return name, f"session_cache = {name!r} in {self.settings.path}"

    @cached_property
    def sessions(self) -> SessionCache:
        """The STS session cache over :meth:`session_cache_name`'s backend (namespace
        ``"sessions"``) with the configured refresh margin (seconds); a cache that is off
        when that name is None. Made on first use and kept.

        Raises:
            ConfigError: the configured cache backend is not installed, or cannot hold
                sessions (no STORE_SESSIONS); the message names the variable or the setting
                (and its file) that chose it.
            BackendUnavailable: it is disabled, broken or fails to start.
        """
        name = self.session_cache_name()
        if name is None:
            return SessionCache(None, self.settings.refresh_margin)
        configured, origin = self.configured_cache()
        said = origin if configured == name else f"the session cache {name!r}"
        try:
            backend = self.backend(name, "sessions")
        except ConfigError as exc:  # not installed: say who named it
            raise ConfigError(f"{said}: {exc.message}", exc.hint) from None
        if Capability.STORE_SESSIONS not in backend.capabilities:
            able = self.registry.with_capabilities(Capability.STORE_SESSIONS)
            raise ConfigError(
                f"{said}: that backend cannot hold STS sessions",
                "use " + " or ".join(f'"{n}"' for n in [*able, "none"]),
            )
        return SessionCache(backend, self.settings.refresh_margin)

    def region_for(self, profile: profiles.Profile, flag: str | None = None) -> str | None:
        """The region for ``profile``'s calls: ``flag`` (``--region``), else ``AWS_REGION``, else
        ``AWS_DEFAULT_REGION``, else the profile's ``region``, else the ``default`` profile's;
        None when none is set.

        Raises:
            ConfigError: ~/.aws/config cannot be read (only when it is needed, for the last).
        """
        return (
            flag
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or profile.region
            or self.aws.default_region()
        )

    def forget_secrets(self) -> None:
        """Close and drop every backend but the session cache: resolved passphrases,
        tokens and SDK clients go with them, and are made again when next needed."""
        cache = self.__dict__.get("sessions")
        keep = cache.backend if cache is not None else None
        for key, backend in list(self._backends.items()):
            if backend is keep:
                continue
            del self._backends[key]
            backend.close()

    def close(self) -> None:
        """Close every backend this context opened (they drop resolved passphrases, tokens and
        clients); the context must not be used afterwards.
        """
        for backend in self._backends.values():
            backend.close()
