"""`broker rotate` against moto's IAM: end to end, and with a failure at each step."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from broker.aws import iam_keys
from broker.backend import Item
from broker.errors import AWSError, BackendError, Interrupted, UsageError
from broker.services import rotate
from tests.conftest import ACCOUNT
from tests.support.contexts import home_context, require_keyctl
from tests.support.iam import access_keys, create_iam_user


def _identity(sts_url: str, key_id: str, secret: str) -> str:
    client = boto3.client(
        "sts", endpoint_url=sts_url, region_name="us-east-1",
        aws_access_key_id=key_id, aws_secret_access_key=secret,
    )
    return str(client.get_caller_identity()["Arn"])


def _add_profile(home, name: str, body: str = "region = us-east-1\n") -> None:
    home.aws_config.write_text(home.aws_config.read_text() + f"\n[profile {name}]\n{body}")


# --- end to end ----------------------------------------------------------------------------


def test_rotate_end_to_end(home, sts, moto_server):
    require_keyctl()
    user, old_id, secret = create_iam_user(moto_server)
    profile = f"p-{uuid.uuid4().hex[:6]}"
    _add_profile(home, profile)
    home.run("add", profile, input=f"{old_id}\n{secret}\n", check=True)
    sts.reset()
    result = home.run("rotate", profile, check=True)
    exported = json.loads(
        home.run("export", profile, "--no-session", "--format", "json", check=True).stdout
    )
    new_id = exported["AccessKeyId"]
    assert new_id != old_id and new_id.startswith("AKIA")
    assert access_keys(moto_server, user) == {new_id}  # the old key is gone from IAM
    assert _identity(moto_server, new_id, exported["SecretAccessKey"]).endswith(f":user/{user}")
    assert f"{old_id} -> {new_id}" in result.stderr
    assert exported["SecretAccessKey"] not in result.stderr + result.stdout
    assert secret not in result.stderr + result.stdout
    created, = sts.actions("CreateAccessKey")
    deleted, = sts.actions("DeleteAccessKey")
    assert created["UserName"] == user
    assert deleted == {**deleted, "UserName": user, "AccessKeyId": old_id}
    assert [c["Action"] for c in sts.actions()] == [
        "GetCallerIdentity", "CreateAccessKey", "GetCallerIdentity", "DeleteAccessKey",
    ]


def test_rotate_with_mfa_keeps_the_item_fields_and_clears_sessions(home, sts, moto_server):
    require_keyctl()
    from broker_keyctl import KeyctlBackend

    user, old_id, secret = create_iam_user(moto_server)
    key_profile = f"k-{uuid.uuid4().hex[:6]}"
    serial = f"arn:aws:iam::{ACCOUNT}:mfa/{user}"
    _add_profile(home, key_profile, (
        f"mfa_serial = {serial}\nrole_arn = arn:aws:iam::{ACCOUNT}:role/r\n"
        f'mfa_process = "$BROKER_TEST_MFA" {serial}\n'
    ))
    sts.register_mfa_device(serial, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    _add_profile(home, f"{key_profile}-ro",
                 f"role_arn = arn:aws:iam::{ACCOUNT}:role/ro\nsource_profile = {key_profile}\n")
    home.run("add", key_profile, input=f"{old_id}\n{secret}\n", check=True)
    store = KeyctlBackend(settings={"keyring": home.keyring})
    stored = store.get(key_profile)
    assert stored is not None and stored["mfa_serial"] == serial
    store.set(key_profile, stored.replace(totp="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))
    sts.reset()

    # no MFA session yet: rotate makes one, with the code, before touching IAM
    home.run("rotate", key_profile, check=True)
    actions = [c["Action"] for c in sts.actions()]
    assert actions.index("GetSessionToken") < actions.index("CreateAccessKey")
    gst, = sts.actions("GetSessionToken")
    assert gst["SerialNumber"] == serial and [gst["TokenCode"]] == home.codes_given()

    # an MFA session is cached (from exec): rotate, named by a role profile on that key,
    # reuses it, then clears every session made from the old key
    home.next_step()  # rotate cleared the first MFA session: this export needs a new code
    home.run("export", f"{key_profile}-ro", check=True)
    first_new = store.get(key_profile)["aws_access_key_id"]  # type: ignore[index]
    sts.reset()
    home.run("rotate", f"{key_profile}-ro", check=True)
    assert sts.actions("GetSessionToken") == []
    item = store.get(key_profile)
    assert item is not None
    assert item["aws_access_key_id"] not in (old_id, first_new)
    assert item["mfa_serial"] == serial
    assert item["totp"] == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    assert access_keys(moto_server, user) == {item["aws_access_key_id"]}
    listing = {p["name"]: p for p in json.loads(home.run("list", "--json", check=True).stdout)}
    assert listing[key_profile]["sessions"] == []
    assert listing[f"{key_profile}-ro"]["sessions"] == []


def test_rotate_without_a_stored_key(home):
    require_keyctl()
    result = home.run("rotate", "plain")
    assert result.returncode == 5 and "broker add plain" in result.stderr


# --- in process: a failure at each step -------------------------------------------------------


@pytest.fixture
def rotation(in_home, sts, moto_server):
    user, old_id, secret = create_iam_user(moto_server)
    profile = f"p-{uuid.uuid4().hex[:6]}"
    _add_profile(in_home, profile)
    ctx = home_context(in_home, {profile: (old_id, secret)})

    class Rotation:
        def __init__(self) -> None:
            self.ctx, self.profile, self.user, self.old_id = ctx, profile, user, old_id
            self.sleeps: list[float] = []

        def run(self, **kwargs):
            return rotate.rotate(ctx, profile, sleep=self.sleeps.append, **kwargs)

        def stored(self) -> Item:
            item = ctx.backend("memory").get(profile)
            assert item is not None
            return item

        def iam(self) -> set[str]:
            return access_keys(moto_server, user)

        def usable(self) -> bool:
            item = self.stored()
            arn = _identity(moto_server, item["aws_access_key_id"], item["aws_secret_access_key"])
            return item["aws_access_key_id"] in self.iam() and arn.endswith(f":user/{user}")

    return Rotation()


def _fail(*args, **kwargs):
    raise AWSError("injected: AWS refused", "the injected hint")


def test_create_fails(rotation, monkeypatch):
    monkeypatch.setattr(iam_keys, "create_access_key", _fail)
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run()
    assert "no new key was created" in info.value.message
    assert f"the stored key {rotation.old_id} is still in use" in info.value.message
    assert info.value.exit_code == AWSError.exit_code
    assert rotation.stored()["aws_access_key_id"] == rotation.old_id
    assert rotation.iam() == {rotation.old_id}
    assert rotation.usable()


def test_two_keys_already(rotation, moto_server):
    other = create_second_key(moto_server, rotation.user)
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run()
    assert "already has two access keys" in info.value.message
    assert other in info.value.hint and "aws iam delete-access-key" in info.value.hint
    assert rotation.iam() == {rotation.old_id, other}
    assert rotation.usable()


def create_second_key(moto_url: str, user: str) -> str:
    from tests.support.iam import iam_client

    return str(iam_client(moto_url).create_access_key(UserName=user)["AccessKey"]["AccessKeyId"])


def test_store_fails_and_the_new_key_is_deleted_again(rotation, monkeypatch):
    store = rotation.ctx.backend("memory")

    def broken_set(*args, **kwargs):
        raise BackendError("injected: the store is read-only")

    monkeypatch.setattr(store, "set", broken_set)
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run()
    assert "could not be stored and was deleted again" in info.value.message
    assert info.value.hint == "fix the backend (`broker doctor`), then rotate again"
    assert rotation.iam() == {rotation.old_id}
    assert rotation.stored()["aws_access_key_id"] == rotation.old_id
    assert rotation.usable()


def test_a_store_refusal_with_its_own_next_step_gives_that_step(rotation, monkeypatch):
    """A read-only 1Password service account cannot be given write access: its own hint
    (make a new account) is the next step, not "fix the backend"."""
    store = rotation.ctx.backend("memory")

    def refused(*args, **kwargs):
        raise BackendError("injected: permission denied", "make a new service account")

    monkeypatch.setattr(store, "set", refused)
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run()
    assert info.value.hint == "make a new service account; then rotate again"
    assert rotation.iam() == {rotation.old_id}


def test_store_fails_and_so_does_the_clean_up(rotation, monkeypatch):
    store = rotation.ctx.backend("memory")
    monkeypatch.setattr(store, "set", lambda *a, **k: (_ for _ in ()).throw(OSError("disk")))
    monkeypatch.setattr(iam_keys, "delete_access_key", _fail)
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run()
    (new_id,) = rotation.iam() - {rotation.old_id}
    assert f"the new key {new_id} was created but could not be stored" in info.value.message
    assert "disk" not in info.value.message  # a plugin's own text is not shown
    assert info.value.hint == (
        f"delete the new key with `aws iam delete-access-key --user-name {rotation.user} "
        f"--access-key-id {new_id}`"
    )
    assert rotation.stored()["aws_access_key_id"] == rotation.old_id
    assert rotation.usable()


def _created(monkeypatch) -> list[str]:
    """The ids of the keys iam:CreateAccessKey makes from now on."""
    made: list[str] = []
    real = iam_keys.create_access_key

    def recording(*args, **kwargs):
        key = real(*args, **kwargs)
        made.append(key.access_key_id)
        return key

    monkeypatch.setattr(iam_keys, "create_access_key", recording)
    return made


def test_a_store_that_ignores_writes_never_loses_the_new_key(rotation, monkeypatch):
    """A backend whose set() answers but stores nothing (a 1Password CLI older than 2.23
    did that): the new key is read back, fresh, before the old one is deleted."""
    store = rotation.ctx.backend("memory")
    monkeypatch.setattr(store, "set", lambda *args, **kwargs: None)
    made = _created(monkeypatch)
    lines: list[str] = []
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run(progress=lines.append)
    (created,) = made
    message = info.value.message
    assert f"the new key {created} was not stored in backend memory" in message
    assert f"it holds the old key {rotation.old_id}" in message
    assert "so it was deleted again" in message
    assert rotation.old_id in message and "is still in use" in message
    assert rotation.iam() == {rotation.old_id}  # the old key is kept, the new one gone
    assert rotation.stored()["aws_access_key_id"] == rotation.old_id
    assert rotation.usable()
    assert not any("waiting until AWS accepts it" in line for line in lines)


def test_a_store_that_keeps_another_secret_is_caught(rotation, monkeypatch):
    store = rotation.ctx.backend("memory")
    real = store.set

    def garbled(name, item, **kwargs):
        real(name, item.replace(aws_secret_access_key=item["aws_secret_access_key"][:-1]))

    monkeypatch.setattr(store, "set", garbled)
    made = _created(monkeypatch)
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run()
    (created,) = made
    assert f"the new key {created} was not stored in backend memory" in info.value.message
    assert "its secret differs" in info.value.message
    assert rotation.iam() == {rotation.old_id}
    assert rotation.stored()["aws_access_key_id"] == rotation.old_id  # put back
    assert rotation.usable()


def test_a_store_that_ignores_writes_and_a_failed_clean_up(rotation, monkeypatch):
    monkeypatch.setattr(rotation.ctx.backend("memory"), "set", lambda *a, **k: None)
    monkeypatch.setattr(iam_keys, "delete_access_key", _fail)
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run()
    (new_id,) = rotation.iam() - {rotation.old_id}
    assert f"the new key {new_id} was not stored in backend memory" in info.value.message
    assert "could not be deleted again" in info.value.message
    assert info.value.exit_code == BackendError.exit_code
    assert info.value.hint.startswith(
        f"delete the new key with `aws iam delete-access-key --user-name {rotation.user} "
        f"--access-key-id {new_id}`"
    )
    assert rotation.usable()


def test_a_store_that_cannot_read_the_new_key_back(rotation, monkeypatch):
    """Whether it was stored cannot be told: the old item is written back, and the new
    key deleted, so that the store certainly holds a key IAM still has."""
    from broker.testing.memory import MemoryBackend

    store = rotation.ctx.backend("memory")
    real_set, real_get = store.set, MemoryBackend.get
    broken: list[bool] = []

    def set_then_break(name, item, **kwargs):
        real_set(name, item, **kwargs)
        broken.append(True)

    def get(self, name):
        if broken:
            raise BackendError("injected: cannot decrypt")
        return real_get(self, name)

    monkeypatch.setattr(store, "set", set_then_break)
    monkeypatch.setattr(MemoryBackend, "get", get)
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run()
    assert "the read failed: injected: cannot decrypt" in info.value.message
    assert "so it was deleted again" in info.value.message
    broken.clear()
    assert rotation.iam() == {rotation.old_id}
    assert rotation.stored()["aws_access_key_id"] == rotation.old_id
    assert rotation.usable()


def test_the_new_key_is_read_back_fresh(rotation, monkeypatch):
    """The read-back goes to the store, not to the instance that wrote (which may cache)."""
    store = rotation.ctx.backend("memory")
    real_get = store.get
    written: list[Item] = []

    def remembering_set(name, item, **kwargs):
        written.append(item)  # stores nothing, and this instance answers from what it wrote

    monkeypatch.setattr(store, "set", remembering_set)
    monkeypatch.setattr(store, "get", lambda name: written[-1] if written else real_get(name))
    with pytest.raises(rotate.RotationFailed, match="was not stored in backend memory"):
        rotation.run()
    assert rotation.iam() == {rotation.old_id}
    assert real_get(rotation.profile)["aws_access_key_id"] == rotation.old_id


def test_the_new_key_never_works(rotation, monkeypatch):
    real = iam_keys.caller_identity

    def only_the_old_key(creds, region):
        if creds.access_key_id != rotation.old_id:
            raise AWSError("GetCallerIdentity: InvalidClientTokenId")
        return real(creds, region)

    monkeypatch.setattr(iam_keys, "caller_identity", only_the_old_key)
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run(attempts=4)
    assert "never accepted the new key" in info.value.message
    assert "was deleted again" in info.value.message
    assert rotation.sleeps == [1.0, 2.0, 4.0]
    assert rotation.stored()["aws_access_key_id"] == rotation.old_id
    assert rotation.iam() == {rotation.old_id}
    assert rotation.usable()


def test_the_new_key_works_after_a_while(rotation, monkeypatch):
    real = iam_keys.caller_identity
    refusals = [1, 2]

    def eventually(creds, region):
        if creds.access_key_id != rotation.old_id and refusals:
            refusals.pop()
            raise AWSError("GetCallerIdentity: InvalidClientTokenId")
        return real(creds, region)

    monkeypatch.setattr(iam_keys, "caller_identity", eventually)
    result = rotation.run()
    assert result.verify_attempts == 3 and rotation.sleeps == [1.0, 2.0]
    assert rotation.iam() == {result.new_key_id}
    assert rotation.usable()


def test_interrupted_while_waiting(rotation, monkeypatch):
    real = iam_keys.caller_identity

    def interrupt(creds, region):
        if creds.access_key_id != rotation.old_id:
            raise KeyboardInterrupt
        return real(creds, region)

    monkeypatch.setattr(iam_keys, "caller_identity", interrupt)
    with pytest.raises(Interrupted) as info:
        rotation.run()
    new_id = rotation.stored()["aws_access_key_id"]
    assert new_id != rotation.old_id
    assert f"the old key {rotation.old_id} still exists in IAM" in info.value.message
    assert rotation.old_id in info.value.hint
    assert rotation.iam() == {rotation.old_id, new_id}
    assert rotation.usable()


def test_delete_old_fails(rotation, monkeypatch):
    monkeypatch.setattr(iam_keys, "delete_access_key", _fail)
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run()
    new_id = rotation.stored()["aws_access_key_id"]
    assert info.value.message.endswith(
        f"new key {new_id} created and stored but the old key {rotation.old_id} was not deleted"
    )
    assert info.value.hint == (
        f"delete it with `aws iam delete-access-key --user-name {rotation.user} "
        f"--access-key-id {rotation.old_id}`"
    )
    assert rotation.iam() == {rotation.old_id, new_id}
    assert rotation.usable()


def test_the_stored_key_does_not_work(rotation, monkeypatch):
    monkeypatch.setattr(iam_keys, "caller_identity", _fail)
    with pytest.raises(rotate.RotationFailed) as info:
        rotation.run()
    assert "nothing was changed" in info.value.message
    assert rotation.iam() == {rotation.old_id}


def test_progress_names_key_ids_never_secrets(rotation):
    lines: list[str] = []
    result = rotation.run(progress=lines.append)
    text = "\n".join(lines)
    assert rotation.old_id in text and result.new_key_id in text
    assert rotation.stored()["aws_access_key_id"] == result.new_key_id
    assert rotation.stored()["aws_secret_access_key"] not in text
    assert rotation.stored()["aws_secret_access_key"] not in repr(result)


def test_user_name_from_arns():
    assert iam_keys.Identity("1", "arn:aws:iam::1:user/u").user_name == "u"
    assert iam_keys.Identity("1", "arn:aws:iam::1:user/team/dev/u").user_name == "u"
    with pytest.raises(UsageError, match="not to an IAM user") as info:
        _ = iam_keys.Identity("1", "arn:aws:iam::1:root").user_name
    assert type(info.value) is UsageError and info.value.exit_code == 2


def test_another_profile_holding_the_key_is_refused_unless_forced(rotation, in_home,
                                                                   monkeypatch):
    """Deleting the old key would break another profile's copy: refused, exit 2, no key
    created; --force rotates and names the profile left with the old key."""
    other = f"b-{uuid.uuid4().hex[:6]}"
    _add_profile(in_home, other)
    _add_profile(in_home, f"{other}-role",
                 f"role_arn = arn:aws:iam::{ACCOUNT}:role/r\nsource_profile = {rotation.profile}\n")
    rotation.ctx.__dict__.pop("aws", None)
    store = rotation.ctx.backend("memory")
    store.set(other, rotation.stored())
    made = _created(monkeypatch)
    with pytest.raises(UsageError) as info:
        rotation.run()
    assert info.value.exit_code == 2
    assert f"{other} (backend memory)" in info.value.message
    assert f"{other}-role" not in info.value.message  # it uses the rotated key itself
    assert "--force" in info.value.hint
    assert made == [] and rotation.iam() == {rotation.old_id}
    lines: list[str] = []
    result = rotation.run(force=True, progress=lines.append)
    assert result.broken == [other]
    assert any(other in line and "stop working" in line for line in lines)
    assert store.get(other)["aws_access_key_id"] == rotation.old_id  # not its item
    assert rotation.iam() == {result.new_key_id}
