"""``op://vault/item/[section/]field[?attribute=totp]`` references."""

from __future__ import annotations

import time
from collections.abc import Callable

import pyotp
import pytest
from broker_onepassword import OnePasswordBackend
from broker_onepassword.testing import OnePasswordEmulator, field

from broker.errors import AmbiguousMatch, ConfigError, NotFound
from broker.registry import Registry
from broker.secrets import ReferenceResolver
from broker.testing.contract import SAMPLE

SEED = SAMPLE["totp"]


@pytest.fixture
def stored(make_backend: Callable[..., OnePasswordBackend]) -> OnePasswordBackend:
    backend = make_backend()
    backend.set("dev", SAMPLE)
    return backend


def test_field_values(stored: OnePasswordBackend) -> None:
    assert stored.resolve("op://Broker/AWS dev/secret access key") == SAMPLE[
        "aws_secret_access_key"]
    assert stored.resolve("op://broker/aws dev/AWS/access key id") == SAMPLE["aws_access_key_id"]
    assert stored.resolve("op://Broker/AWS dev/aws_access_key_id") == SAMPLE[
        "aws_access_key_id"]  # by field id


def test_totp_attribute_gives_the_code(stored: OnePasswordBackend) -> None:
    before = pyotp.TOTP(SEED).now()
    code = stored.resolve("op://Broker/AWS dev/one-time password?attribute=totp")
    after = pyotp.TOTP(SEED).now()
    assert code in {before, after}
    assert stored.resolve("op://Broker/AWS dev/one-time password?attribute=otp") in {
        before, after, pyotp.TOTP(SEED).at(time.time())}
    # Without the attribute: the seed itself.
    assert stored.resolve("op://Broker/AWS dev/one-time password") == SEED


def test_resolving_costs_one_call(emulator: OnePasswordEmulator,
                                  stored: OnePasswordBackend,
                                  make_backend: Callable[..., OnePasswordBackend]) -> None:
    emulator.reset_calls()
    make_backend().resolve("op://Broker/AWS dev/mfa serial")
    assert emulator.calls(remote_only=True) == {"init_client": 1, "SecretsResolve": 1}


def test_resolve_many_is_one_call(emulator: OnePasswordEmulator,
                                  stored: OnePasswordBackend,
                                  make_backend: Callable[..., OnePasswordBackend]) -> None:
    emulator.reset_calls()
    refs = ["op://Broker/AWS dev/mfa serial", "op://Broker/AWS dev/access key id"]
    assert make_backend().resolve_many(refs) == {
        refs[0]: SAMPLE["mfa_serial"], refs[1]: SAMPLE["aws_access_key_id"]}
    assert emulator.calls(remote_only=True) == {"init_client": 1, "SecretsResolveAll": 1}
    with pytest.raises(NotFound, match="itemNotFound"):
        make_backend().resolve_many(["op://Broker/AWS none/mfa serial"])


@pytest.mark.parametrize("reference", [
    "op://Broker/AWS dev",  # no field
    "op://Broker/AWS dev/a/b/c",  # too deep
    "op://Broker/AWS dev@x/field",  # a character references cannot hold
    "op://Broker/AWS dev/field?attribute=TOTP",
    "op://Broker/AWS dev/field?attribute=type",  # the core refuses type, value, id, purpose
    "op://Broker/AWS dev/field?attribute=value",
    "op://Broker/AWS dev/field?attribute=id",
    "op://Broker/AWS dev/field?attribute=purpose",
    "op://Broker/AWS dev/one-time password?attribute=totp&ssh-format=openssh",
    "op://Broker/AWS dev/field?",  # a trailing "?"
    "pass:not/op",
])
def test_malformed_references_fail_offline(emulator: OnePasswordEmulator,
                                           stored: OnePasswordBackend, reference: str) -> None:
    emulator.reset_calls()
    with pytest.raises(ConfigError) as caught:
        stored.resolve(reference)
    assert "op://vault/item/[section/]field[?attribute=totp]" in caught.value.hint
    assert emulator.operations() == 0


def test_reference_errors(emulator: OnePasswordEmulator, stored: OnePasswordBackend) -> None:
    with pytest.raises(NotFound):
        stored.resolve("op://Broker/AWS missing/password")
    with pytest.raises(NotFound):
        stored.resolve("op://Nowhere/AWS dev/password")
    with pytest.raises(NotFound):
        stored.resolve("op://Broker/AWS dev/no such field")
    with pytest.raises(ConfigError, match="one-time password fields"):
        stored.resolve("op://Broker/AWS dev/mfa serial?attribute=totp")
    emulator.create_item("twin", [field("password", "a")])
    emulator.create_item("twin", [field("password", "b")])
    with pytest.raises(AmbiguousMatch):
        stored.resolve("op://Broker/twin/password")


def test_gpg_passphrase_for_another_plugin(emulator: OnePasswordEmulator) -> None:
    """How the pass backend gets its passphrase: the registry finds the "op" scheme."""
    emulator.create_item("GPG key", [field("password", "correct horse", "Concealed")],
                         category="Password")
    registry = Registry(settings_for={"onepassword": {"vault": "Broker"}})
    assert registry.scheme_backend("op") == "onepassword"
    resolver = ReferenceResolver(registry)
    assert resolver.resolve("op://Broker/GPG key/password") == "correct horse"
