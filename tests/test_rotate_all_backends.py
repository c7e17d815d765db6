"""`broker rotate` with the key in more than one backend (a default `broker migrate` keeps
the source's copy): every copy gets the new key, and no step advises deleting a key that a
store still serves."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from broker.aws import iam_keys
from broker.backend import Item
from broker.errors import AWSError, BackendError
from broker.services import rotate
from tests.support.backends import SecondMemory
from tests.support.contexts import home_context
from tests.support.iam import access_keys, create_iam_user, iam_client
from tests.support.stores import Stores

SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _add_profile(home, name: str) -> None:
    home.aws_config.write_text(home.aws_config.read_text() + f"\n[profile {name}]\n"
                               "region = us-east-1\n")


class TwoStores:
    """An IAM user whose key is kept twice: in `memory` (broker's default backend) and in
    `memory2` with a TOTP seed beside it, as after `broker migrate` kept the source."""

    def __init__(self, home, moto_server: str) -> None:
        self.moto = moto_server
        self.user, self.old_id, secret = create_iam_user(moto_server)
        self.profile = f"p-{uuid.uuid4().hex[:6]}"
        _add_profile(home, self.profile)
        self.key = Item(aws_access_key_id=self.old_id, aws_secret_access_key=secret)
        self.ctx = home_context(home, {self.profile: self.key}, more={"memory2": SecondMemory})
        self.ctx.backend("memory2").set(self.profile, self.key.replace(totp=SEED))
        self.sleeps: list[float] = []

    def run(self, **kwargs) -> rotate.RotationResult:
        return rotate.rotate(self.ctx, self.profile, sleep=self.sleeps.append, **kwargs)

    def stored(self, backend: str) -> Item:
        item = self.ctx.backend(backend).get(self.profile)
        assert item is not None
        return item

    def key_ids(self) -> dict[str, str]:
        return {b: self.stored(b)["aws_access_key_id"] for b in ("memory", "memory2")}

    def iam(self) -> set[str]:
        return access_keys(self.moto, self.user)


@pytest.fixture
def two(in_home, sts, moto_server) -> TwoStores:
    return TwoStores(in_home, moto_server)


def test_every_backend_holding_the_key_gets_the_new_one(two, sts):
    lines: list[str] = []
    result = two.run(backend="memory2", progress=lines.append)  # the copy, not the default
    new_id = result.new_key_id
    assert two.key_ids() == {"memory": new_id, "memory2": new_id}
    assert two.iam() == {new_id}  # the old key is gone: no store serves it any more
    assert result.backends == ["memory2", "memory"]
    assert two.stored("memory2")["totp"] == SEED  # each copy keeps its own other fields
    assert "totp" not in two.stored("memory")
    assert any("memory2, memory" in line for line in lines), lines


def test_a_backend_holding_another_key_is_left_alone(two):
    other = two.key.replace(aws_access_key_id="AKIAANOTHERKEY000001")
    two.ctx.backend("memory2").set(two.profile, other)
    lines: list[str] = []
    result = two.run(progress=lines.append)
    assert two.stored("memory")["aws_access_key_id"] == result.new_key_id
    assert two.stored("memory2") == other
    assert result.backends == ["memory"]
    assert any("AKIAANOTHERKEY000001" in line and "left alone" in line for line in lines)


def test_a_backend_that_cannot_be_read_stops_the_rotation_first(two, sts, monkeypatch):
    def unreadable(*_args, **_kwargs):
        raise BackendError("injected: cannot decrypt")

    monkeypatch.setattr(two.ctx.backend("memory2"), "get", unreadable)
    with pytest.raises(rotate.RotationFailed) as info:
        two.run()
    assert "'memory2'" in info.value.message and "nothing was changed" in info.value.message
    assert info.value.exit_code == BackendError.exit_code
    assert sts.actions("CreateAccessKey") == []
    assert two.iam() == {two.old_id}
    assert two.stored("memory")["aws_access_key_id"] == two.old_id


def test_a_copy_that_cannot_be_updated_puts_the_others_back(two, monkeypatch):
    def read_only(*_args, **_kwargs):
        raise BackendError("injected: read-only")

    monkeypatch.setattr(two.ctx.backend("memory2"), "set", read_only)
    with pytest.raises(rotate.RotationFailed) as info:
        two.run()
    assert "memory2" in info.value.message and "deleted again" in info.value.message
    assert two.key_ids() == {"memory": two.old_id, "memory2": two.old_id}
    assert two.iam() == {two.old_id}


def test_a_copy_that_ignores_writes_puts_the_others_back(two, monkeypatch):
    """memory2 answers the write but keeps its old item: memory, already written, gets the
    old key back, and the new key, held by no store that reads back, is deleted again."""
    monkeypatch.setattr(two.ctx.backend("memory2"), "set", lambda *_a, **_k: None)
    with pytest.raises(rotate.RotationFailed) as info:
        two.run()
    message = info.value.message
    assert "was not stored in backend memory2" in message and "deleted again" in message
    assert two.key_ids() == {"memory": two.old_id, "memory2": two.old_id}
    assert two.iam() == {two.old_id}


def test_the_new_key_never_working_puts_back_every_copy(two, monkeypatch):
    real = iam_keys.caller_identity

    def only_the_old_key(creds, region):
        if creds.access_key_id != two.old_id:
            raise AWSError("GetCallerIdentity: InvalidClientTokenId")
        return real(creds, region)

    monkeypatch.setattr(iam_keys, "caller_identity", only_the_old_key)
    with pytest.raises(rotate.RotationFailed) as info:
        two.run(attempts=2)
    assert "was deleted again" in info.value.message
    assert two.key_ids() == {"memory": two.old_id, "memory2": two.old_id}
    assert two.iam() == {two.old_id}


def test_a_full_key_slot_held_by_a_store_is_never_advised_for_deletion(two):
    """IAM allows two keys per user; the second one is stored for another profile."""
    second = iam_client(two.moto).create_access_key(UserName=two.user)["AccessKey"]
    two.ctx.backend("memory2").set("laptop", Item(
        aws_access_key_id=second["AccessKeyId"],
        aws_secret_access_key=second["SecretAccessKey"],
    ))
    with pytest.raises(rotate.RotationFailed) as info:
        two.run()
    hint = info.value.hint
    assert "delete-access-key" not in hint, hint
    assert second["AccessKeyId"] in hint and "laptop in memory2" in hint
    assert two.iam() == {two.old_id, second["AccessKeyId"]}


@pytest.fixture
def stores(in_home, monkeypatch, capsys, tmp_path) -> Iterator[Stores]:
    made = Stores(in_home, monkeypatch, capsys, tmp_path)
    yield made
    made.close()


def test_the_command_names_every_backend_it_updated(stores: Stores, sts, moto_server):
    user, old_id, secret = create_iam_user(moto_server)
    profile = f"p-{uuid.uuid4().hex[:6]}"
    _add_profile(stores.home, profile)
    stores.provide("memory")
    stores.provide("memory2")
    key = Item(aws_access_key_id=old_id, aws_secret_access_key=secret)
    stores.seed("memory", {profile: key})
    stores.seed("memory2", {profile: key})
    code, _, err = stores.broker("rotate", profile, "--backend", "memory")
    assert code == 0, err
    (new_id,) = access_keys(moto_server, user)
    assert f"{old_id} -> {new_id}" in err and "stored in memory, memory2" in err
    assert stores.contents("memory2", [profile])[profile]["aws_access_key_id"] == new_id
