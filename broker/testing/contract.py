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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from broker.backend import (
    ACCESS_KEY_ID,
    MFA_SERIAL,
    SECRET_ACCESS_KEY,
    TOTP,
    Availability,
    Backend,
    Capability,
    Item,
)

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
        raise NotImplementedError("provide a `backend` fixture")

    @pytest.fixture
    def reopen(self) -> Callable[[Backend], Backend]:
        """A new instance over the same storage (defaults to the same object)."""
        return lambda backend: backend

    def test_declares_name_and_capabilities(self, backend: Backend) -> None:
        assert isinstance(backend.name, str) and backend.name
        assert isinstance(backend.capabilities, Capability)

    def test_availability_is_ok_and_never_raises(self, backend: Backend) -> None:
        availability = backend.availability()
        assert isinstance(availability, Availability)
        assert availability.ok, availability.reason

    def test_missing_item_is_none(self, backend: Backend) -> None:
        assert backend.get("contract-missing") is None

    def test_round_trip_every_field(
        self, backend: Backend, reopen: Callable[[Backend], Backend]
    ) -> None:
        backend.set("contract-dev", SAMPLE)
        again = reopen(backend).get("contract-dev")
        assert isinstance(again, Item)
        assert dict(again) == dict(SAMPLE)

    def test_unknown_fields_are_kept(self, backend: Backend) -> None:
        item = SAMPLE.replace(region="ap-northeast-1", note="kept as is: ünïcødé")
        backend.set("contract-extra", item)
        assert backend.get("contract-extra") == item

    def test_set_replaces_whole_item(self, backend: Backend) -> None:
        backend.set("contract-dev", SAMPLE)
        smaller = Item({ACCESS_KEY_ID: "AKIAEXAMPLECONTRACT2", SECRET_ACCESS_KEY: "other"})
        backend.set("contract-dev", smaller)
        assert backend.get("contract-dev") == smaller

    def test_delete(self, backend: Backend) -> None:
        backend.set("contract-dev", SAMPLE)
        assert backend.delete("contract-dev") is True
        assert backend.get("contract-dev") is None
        assert backend.delete("contract-dev") is False

    def test_names_with_punctuation(self, backend: Backend) -> None:
        names = ["team-a.prod", "user_1", "dev@example"]
        for name in names:
            backend.set(name, SAMPLE.replace(note=name))
        for name in names:
            got = backend.get(name)
            assert got is not None and got["note"] == name

    def test_list(self, backend: Backend) -> None:
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
        backend.set("contract-dev", SAMPLE)
        item = backend.get("contract-dev")
        assert SAMPLE[SECRET_ACCESS_KEY] not in repr(item)
        assert SAMPLE[SECRET_ACCESS_KEY] not in repr(backend)

    def test_expiry(self, backend: Backend) -> None:
        if Capability.EXPIRY not in backend.capabilities:
            pytest.skip(f"{backend.name} does not declare EXPIRY")
        soon = datetime.now(timezone.utc) + timedelta(seconds=1)
        backend.set("contract-expiring", SAMPLE, expires_at=soon)
        assert backend.get("contract-expiring") == SAMPLE
        time.sleep(2.2)
        assert backend.get("contract-expiring") is None
