"""What every use case needs: settings, ~/.aws/config, the registry, the session cache."""

from __future__ import annotations

import os
from functools import cached_property

from broker import config
from broker.aws import profiles
from broker.aws.session_cache import SessionCache
from broker.backend import SESSION_CACHE, Backend, Capability
from broker.errors import BackendUnavailable, ConfigError
from broker.registry import Registry
from broker.secrets import ReferenceResolver


class Context:
    """Settings, registry and lazily opened backends for one broker invocation."""

    def __init__(self, settings: config.Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self._backends: dict[tuple[str, str], Backend] = {}
        #: A process that outlives the command (``exec --server``): backends are closed
        #: after each use, so that no passphrase or token stays in its memory.
        self.long_lived = False

    @classmethod
    def load(cls, registry: Registry | None = None) -> Context:
        settings = config.load()
        return cls(settings, registry or Registry(settings.backends, settings.disabled_plugins))

    @cached_property
    def aws(self) -> profiles.AwsConfig:
        return profiles.load()

    @cached_property
    def resolver(self) -> ReferenceResolver:
        """The registry's reference resolver, the one every backend it creates gets."""
        return self.registry.resolver

    def backend(self, name: str, namespace: str = "credentials") -> Backend:
        key = (name, namespace)
        if key not in self._backends:
            self._backends[key] = self.registry.create(
                name, namespace=namespace, resolver=self.resolver
            )
        return self._backends[key]

    def credential_backend_name(
        self, profile: profiles.Profile | None = None, explicit: str | None = None
    ) -> str:
        """--backend > BROKER_BACKEND > the profile's broker_backend > config file > best."""
        return self.backend_choice(profile, explicit)[0]

    def backend_choice(
        self, profile: profiles.Profile | None = None, explicit: str | None = None
    ) -> tuple[str, str]:
        """The credential backend and who chose it: ``"explicit"`` (a --backend or --to
        flag), ``"BROKER_BACKEND"``, ``"broker_backend"`` (the profile's), ``"config"``
        (broker's config file), or ``""`` when nobody did (the best available one)."""
        for choice, origin in (
            (explicit, "explicit"),
            (config.environment("BROKER_BACKEND"), "BROKER_BACKEND"),
            (profile.broker_backend if profile else None, "broker_backend"),
            (self.settings.backend, "config"),
        ):
            if choice:
                return choice, origin
        best = self.registry.best_available(Capability.NONE)
        if best is None:
            raise BackendUnavailable(
                "no credential backend is available here",
                "see `broker backend list` for the reasons, then `broker backend set NAME`",
            )
        return best, ""

    def credential_backend(
        self, profile: profiles.Profile | None = None, explicit: str | None = None
    ) -> Backend:
        return self.backend(self.credential_backend_name(profile, explicit))

    def session_cache_name(self) -> str | None:
        """The configured cache (``BROKER_SESSION_CACHE``, else ``session_cache``; "none"
        turns caching off), else the default one: the highest-priority backend declaring
        :data:`~broker.backend.SESSION_CACHE` (fit for sessions, forgetting them when they
        expire) that works here (the kernel keyring, built in); None: no caching."""
        name = config.environment("BROKER_SESSION_CACHE") or self.settings.session_cache
        if name:
            return None if name.lower() == "none" else name
        for candidate in self.registry.with_capabilities(SESSION_CACHE):
            try:
                if self.backend(candidate, "sessions").availability().ok:
                    return candidate
            except Exception:  # noqa: S112 - a plugin that cannot start is no cache
                continue
        return None

    @cached_property
    def sessions(self) -> SessionCache:
        name = self.session_cache_name()
        if name is None:
            return SessionCache(None, self.settings.refresh_margin)
        backend = self.backend(name, "sessions")
        if Capability.STORE_SESSIONS not in backend.capabilities:
            able = self.registry.with_capabilities(Capability.STORE_SESSIONS)
            raise ConfigError(
                f"session_cache = {name!r}: that backend cannot hold STS sessions",
                "use " + " or ".join(f'"{n}"' for n in [*able, "none"]),
            )
        return SessionCache(backend, self.settings.refresh_margin)

    def region_for(self, profile: profiles.Profile, flag: str | None = None) -> str | None:
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
        for backend in self._backends.values():
            backend.close()
