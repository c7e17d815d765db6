"""The backend contract: every backend, built-in or third-party, passes these tests.

Use it from a plugin's test suite::

    import pytest
    from broker.testing.contract import BackendContract

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def backend(self, tmp_path):
            return MyBackend(settings={...})

        # optional: a second instance on the same storage, to prove persistence
        @pytest.fixture
        def reopen(self):
            return lambda b: MyBackend(settings=b.settings, namespace=b.namespace)

        # optional: settings with which it cannot work, to prove it says why
        @pytest.fixture
        def bad_settings(self):
            return [{}]  # no path: not available, and why

        # optional: an instance over another part of the same store (another prefix)
        @pytest.fixture
        def neighbour(self):
            return lambda b: MyBackend(settings={**b.settings, "prefix": "other"})

Fixtures left out skip the tests that need them; every other test runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from broker.backend import (
    ACCESS_KEY_ID,
    MFA_SERIAL,
    SECRET_ACCESS_KEY,
    TOTP,
    Availability,
    Backend,
    Capability,
    Check,
    Item,
)
from broker.errors import BrokerError
from broker.registry import Registry

SAMPLE = Item(
    {
        ACCESS_KEY_ID: "AKIAEXAMPLECONTRACT1",
        SECRET_ACCESS_KEY: "contract/Secret+Key=with/odd+chars0123456789",
        MFA_SERIAL: "arn:aws:iam::123456789012:mfa/contract-user",
        TOTP: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    }
)


class BackendContract:
    """Subclass and provide a ``backend`` fixture returning a fresh, empty backend."""

    @pytest.fixture
    def backend(self) -> Backend:  # pragma: no cover - overridden
        """Override: a fresh, empty, available instance of the backend under test."""
        raise NotImplementedError("provide a `backend` fixture")

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        """A new instance over the same storage (defaults to the same object)."""
        return lambda backend: backend

    @pytest.fixture
    def other_namespace(self) -> Callable[[Backend, str], Backend]:
        """``other_namespace(backend, namespace)``: an instance over the same storage in
        another namespace (default: the class made again with the same settings and
        resolver)."""
        return lambda backend, namespace: type(backend)(
            settings=backend.settings, namespace=namespace, resolver=backend._resolver
        )

    @pytest.fixture
    def neighbour(self) -> Callable[[Backend], Backend | None]:
        """An instance in the same namespace over another part of the same store, made
        with a different setting (a prefix, a folder, a title template), that must not
        see this one's items; None (the default) skips the test: no such setting."""
        return lambda backend: None

    @pytest.fixture
    def bad_settings(self) -> list[Mapping[str, Any]]:
        """Settings tables with which the backend cannot work here (a store that does not
        exist, a malformed value); empty (the default) skips the test."""
        return []

    def test_declares_name_and_capabilities(self, backend: Backend) -> None:
        """``name`` is a non-empty string and ``capabilities`` a :class:`Capability`."""
        assert isinstance(backend.name, str) and backend.name
        assert isinstance(backend.capabilities, Capability)

    def test_availability_is_ok_and_never_raises(self, backend: Backend) -> None:
        """The fixture's backend is available: ``availability()`` returns an ok
        :class:`Availability` (its reason is shown when it is not).
        """
        availability = backend.availability()
        assert isinstance(availability, Availability)
        assert availability.ok, availability.reason

    def test_missing_item_is_none(self, backend: Backend) -> None:
        """``get`` of a name never set returns None, not an error."""
        assert backend.get("contract-missing") is None

    def test_round_trip_every_field(
        self, backend: Backend, reopen: Callable[[Backend], Backend]
    ) -> None:
        """Every field of an item, the secret and TOTP seed included, comes back unchanged, from a
        reopened instance when the ``reopen`` fixture gives one (persistence).
        """
        backend.set("contract-dev", SAMPLE)
        again = reopen(backend).get("contract-dev")
        assert isinstance(again, Item)
        assert dict(again) == dict(SAMPLE)

    def test_unknown_fields_are_kept(self, backend: Backend) -> None:
        """Fields broker does not know (and non-ASCII values) are stored and returned as they are:
        ``broker migrate`` moves every field.
        """
        item = SAMPLE.replace(region="ap-northeast-1", note="kept as is: ünïcødé")
        backend.set("contract-extra", item)
        assert backend.get("contract-extra") == item

    def test_set_replaces_whole_item(self, backend: Backend) -> None:
        """``set`` replaces the whole item: fields of the previous one that the new one lacks
        are gone.
        """
        backend.set("contract-dev", SAMPLE)
        smaller = Item({ACCESS_KEY_ID: "AKIAEXAMPLECONTRACT2", SECRET_ACCESS_KEY: "other"})
        backend.set("contract-dev", smaller)
        assert backend.get("contract-dev") == smaller

    def test_delete(self, backend: Backend) -> None:
        """``delete`` returns True and the item is gone; deleting it again returns False."""
        backend.set("contract-dev", SAMPLE)
        assert backend.delete("contract-dev") is True
        assert backend.get("contract-dev") is None
        assert backend.delete("contract-dev") is False

    def test_names_with_punctuation(self, backend: Backend) -> None:
        """Profile names with ``-``, ``.``, ``_`` and ``@`` (all valid in ~/.aws/config) are
        kept apart and read back.
        """
        names = ["team-a.prod", "user_1", "dev@example"]
        for name in names:
            backend.set(name, SAMPLE.replace(note=name))
        for name in names:
            got = backend.get(name)
            assert got is not None and got["note"] == name

    def test_list(self, backend: Backend) -> None:
        """With LIST: ``list`` is sorted, includes what was set and no longer what was deleted."""
        if Capability.LIST not in backend.capabilities:
            pytest.skip(f"{backend.name} does not declare LIST")
        backend.set("contract-b", SAMPLE)
        backend.set("contract-a", SAMPLE)
        names = backend.list()
        assert names == sorted(names)
        assert {"contract-a", "contract-b"} <= set(names)
        backend.delete("contract-a")
        assert "contract-a" not in backend.list()

    def test_repr_hides_secrets(self, backend: Backend) -> None:
        """Neither a read item's repr nor the backend's shows the secret access key."""
        backend.set("contract-dev", SAMPLE)
        item = backend.get("contract-dev")
        assert SAMPLE[SECRET_ACCESS_KEY] not in repr(item)
        assert SAMPLE[SECRET_ACCESS_KEY] not in repr(backend)

    def test_expiry(self, backend: Backend) -> None:
        """With EXPIRY: an item set with ``expires_at`` one second ahead is returned before it
        and is gone (None) about two seconds later. Takes over 2 s.
        """
        if Capability.EXPIRY not in backend.capabilities:
            pytest.skip(f"{backend.name} does not declare EXPIRY")
        soon = datetime.now(timezone.utc) + timedelta(seconds=1)
        backend.set("contract-expiring", SAMPLE, expires_at=soon)
        assert backend.get("contract-expiring") == SAMPLE
        time.sleep(2.2)
        assert backend.get("contract-expiring") is None

    def test_get_many(self, backend: Backend) -> None:
        """``get_many`` answers every name asked (None for a missing one) and ``{}`` for none."""
        backend.set("contract-a", SAMPLE)
        backend.set("contract-b", SAMPLE.replace(note="b"))
        found = backend.get_many(["contract-a", "contract-missing", "contract-b"])
        assert found == {
            "contract-a": SAMPLE,
            "contract-missing": None,
            "contract-b": SAMPLE.replace(note="b"),
        }
        assert backend.get_many([]) == {}

    def test_namespaces_are_isolated(
        self, backend: Backend, other_namespace: Callable[[Backend, str], Backend]
    ) -> None:
        """Instances in two namespaces over the same storage do not see, list or delete each
        other's items (credentials, sessions and secrets never mix).
        """
        other = other_namespace(backend, "contract-other")
        self._isolated(backend, other)

    def test_neighbours_are_isolated(
        self, backend: Backend, neighbour: Callable[[Backend], Backend | None]
    ) -> None:
        """Two instances separated by a setting (``neighbour`` fixture) do not see, list or
        delete each other's items; skipped without that fixture.
        """
        other = neighbour(backend)
        if other is None:
            pytest.skip(f"{backend.name}: no `neighbour` fixture (no setting separates stores)")
        self._isolated(backend, other)

    @staticmethod
    def _isolated(backend: Backend, other: Backend) -> None:
        """Neither instance sees, lists or deletes what the other holds."""
        backend.set("contract-ns", SAMPLE)
        assert other.get("contract-ns") is None
        other.set("contract-ns", SAMPLE.replace(note="the other one"))
        assert backend.get("contract-ns") == SAMPLE
        again = other.get("contract-ns")
        assert again is not None and again["note"] == "the other one"
        if Capability.LIST in backend.capabilities:
            backend.set("contract-only-here", SAMPLE)
            assert "contract-only-here" not in other.list()
            backend.delete("contract-only-here")
        assert other.delete("contract-ns") is True
        assert backend.get("contract-ns") == SAMPLE
        assert other.get("contract-ns") is None
        other.close()

    def test_availability_with_bad_settings_says_why(
        self, backend: Backend, bad_settings: list[Mapping[str, Any]]
    ) -> None:
        """Refused at once (a BrokerError with its reason), or not available with a reason,
        never an exception from ``availability()``; and the registry, which is how broker
        meets the backend, reports it not available, with that reason, without raising."""
        if not bad_settings:
            pytest.skip(f"{backend.name}: no `bad_settings` fixture")
        cls = type(backend)
        for settings in bad_settings:
            try:
                broken = cls(settings=settings, namespace=backend.namespace)
            except BrokerError as exc:
                assert exc.message, settings
            else:
                availability = broken.availability()
                assert isinstance(availability, Availability)
                assert not availability.ok and availability.reason, settings
                broken.close()
            registry = Registry(settings_for={"contract": dict(settings)},
                                extra={"contract": cls})
            said = registry.availability("contract")
            assert not said.ok and said.reason, settings

    def test_availability_never_raises_on_odd_settings(self, backend: Backend) -> None:
        """Each setting replaced by a value of the wrong type: refused at construction (a
        BrokerError), or ``availability()`` answers (ok or not, with a reason)."""
        for key in backend.settings:
            for odd in (12345, ["a", "list"], {"a": "table"}, ""):
                settings = {**backend.settings, key: odd}
                try:
                    other = type(backend)(settings=settings, namespace=backend.namespace,
                                          resolver=backend._resolver)
                except BrokerError:
                    continue
                availability = other.availability()
                assert isinstance(availability, Availability), (key, odd)
                assert availability.ok or availability.reason, (key, odd)
                other.close()

    def test_close_twice_is_harmless(
        self, backend: Backend, reopen: Callable[[Backend], Backend]
    ) -> None:
        """``close`` may be called twice, and stored items survive it (read from a reopened
        instance when ``reopen`` gives one).
        """
        backend.set("contract-close", SAMPLE)
        backend.close()
        backend.close()
        assert reopen(backend).get("contract-close") == SAMPLE

    def test_checks_are_doctor_rows(self, backend: Backend) -> None:
        """``checks(used)``, for both values of ``used``, returns a list of :class:`Check` rows
        with a name, a summary and a status of ``ok``, ``warn`` or ``fail``.
        """
        for used in (False, True):
            rows = backend.checks(used)
            assert isinstance(rows, list)
            for row in rows:
                assert isinstance(row, Check)
                assert row.name and row.summary and row.status in ("ok", "warn", "fail")

    def test_secret_store(self, backend: Backend) -> None:
        """With SECRET_STORE: a stored secret resolves through its :meth:`secret_reference`, is
        not one of the items, and once deleted resolving it raises a BrokerError (a second
        delete returns False).
        """
        if Capability.SECRET_STORE not in backend.capabilities:
            pytest.skip(f"{backend.name} does not declare SECRET_STORE")
        backend.store_secret("contract-token", "contract token value", 60)
        reference = backend.secret_reference("contract-token")
        assert backend.resolve(reference) == "contract token value"
        assert backend.get("contract-token") is None  # apart from the items
        assert backend.delete_secret("contract-token") is True
        with pytest.raises(BrokerError):
            backend.resolve(reference)
        assert backend.delete_secret("contract-token") is False

    def test_secret_store_is_fit_for_login_tokens(self, backend: Backend) -> None:
        """With SECRET_STORE: the reference's scheme is one the backend declares in
        ``schemes`` (declare it under the ``broker.references`` entry points too, or
        `broker backend login` keeps nothing), and the store keeps secrets in memory only
        (no PERSISTENT, no SHARED): `backend login` uses no other, since a token is never
        written to disk nor synced.
        """
        if Capability.SECRET_STORE not in backend.capabilities:
            pytest.skip(f"{backend.name} does not declare SECRET_STORE")
        scheme = backend.secret_reference("contract-token").partition(":")[0]
        assert scheme in type(backend).schemes, (
            f"secret_reference() gives {scheme}: references, not a scheme in `schemes`")
        unfit = backend.capabilities & (Capability.PERSISTENT | Capability.SHARED)
        assert not unfit, f"SECRET_STORE with {unfit}: never used for login tokens"

    def test_sessions_stay_on_this_machine(self, backend: Backend) -> None:
        """A store fit for STS sessions (STORE_SESSIONS) is not SHARED: broker would never
        choose it as the default session cache, since sessions stay where they were made.
        """
        both = Capability.STORE_SESSIONS | Capability.SHARED
        assert backend.capabilities & both != both, (
            "STORE_SESSIONS with SHARED: never chosen as the session cache")
