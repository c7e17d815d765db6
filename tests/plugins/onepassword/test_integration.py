"""The integration name and version broker signs in with stay within the core's limits."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from broker_onepassword import OnePasswordBackend, _sdk
from broker_onepassword.testing import OnePasswordEmulator

from broker.errors import BackendError


@pytest.mark.parametrize(("version", "expected"), [
    ("0.1.0", "0.1.0"),
    ("0.1.1.dev3+gabc1234", "0.1.1.dev3+gabc1234"),  # 19 characters: allowed as is
    ("0.1.1.dev123+gabc1234.d20260101", "0.1.1"),  # a dev build's long version
    ("12.34.56rc1.post7.dev8+g0123456789abcdef", "12.34.56"),
    ("", "0"),
    ("   ", "0"),
    ("x" * 30, "x" * 20),
])
def test_version_within_limits(version: str, expected: str) -> None:
    shortened = _sdk.integration_version(version)
    assert shortened == expected
    assert 1 <= len(shortened) <= _sdk.MAX_INTEGRATION_VERSION


def test_name_within_limits() -> None:
    assert _sdk.integration_name() == "broker"
    assert len(_sdk.integration_name("b" * 60)) == 40
    assert _sdk.integration_name("  ") == "broker"


def test_a_dev_build_signs_in(emulator: OnePasswordEmulator,
                              make_backend: Callable[..., OnePasswordBackend],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator refuses what the core refuses; broker's dev version still signs in."""
    import broker

    monkeypatch.setattr(broker, "__version__", "0.1.1.dev1234+gabc1234.d20261130")
    assert make_backend().list() == []
    monkeypatch.setattr(_sdk, "integration_version", lambda: "0.1.1.dev1234+gabc1234.d2026")
    with pytest.raises(BackendError, match="integration version was too long"):
        make_backend().list()
