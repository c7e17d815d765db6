"""`broker mfa enroll` against moto's IAM behind the recording proxy.

moto's CreateVirtualMFADevice returns a real base32 seed and EnableMFADevice accepts
any codes, so the tests check what broker sends: two consecutive pyotp codes of the
seed it stored first. Crashes are simulated in-process by failing a step.
"""

from __future__ import annotations

import contextlib

import boto3
import pytest

from broker.aws.iam_mfa import DeviceExists, IamMfa
from broker.aws.totp import parse_seed
from broker.backend import Item
from broker.errors import BackendError, ConfigError, CredentialsNotFound, UsageError
from broker.services import credentials
from broker.services import mfa as mfa_service
from broker.testing.memory import MemoryBackend
from tests.conftest import ACCOUNT, TEST_KEY_ID, TEST_SECRET, follow_clock
from tests.support.contexts import home_context, store_key
from tests.support.otp import T0, FakeClock, pyotp_code

SERIAL = f"arn:aws:iam::{ACCOUNT}:mfa/moto"  # moto's caller is always user/moto
CONFIG = """\
# my AWS config: keep these comments
[default]
region = ap-northeast-1

# the development account
[profile dev]
role_arn = arn:aws:iam::123456789012:role/dev-role
# a comment after the last setting

[profile base]
region = eu-west-1

[profile admin]
role_arn = arn:aws:iam::123456789012:role/admin
source_profile = base
"""


class Crash(BaseException):
    """A process killed at this point: nothing after it runs, no cleanup either."""


def forget_mfa_devices(client) -> None:
    """Deactivate and delete the MFA devices these tests make (moto is shared by the
    whole session: no global reset)."""
    for device in client.list_mfa_devices(UserName="moto")["MFADevices"]:
        client.deactivate_mfa_device(UserName="moto", SerialNumber=device["SerialNumber"])
    for device in client.list_virtual_mfa_devices()["VirtualMFADevices"]:
        client.delete_virtual_mfa_device(SerialNumber=device["SerialNumber"])


@pytest.fixture
def iam(moto_server, sts):
    """moto's IAM holding the user 'moto' (the caller of the test key), with no MFA device."""
    client = boto3.client(
        "iam", endpoint_url=moto_server, region_name="us-east-1",
        aws_access_key_id=TEST_KEY_ID, aws_secret_access_key=TEST_SECRET,
    )
    with contextlib.suppress(client.exceptions.EntityAlreadyExistsException):
        client.create_user(UserName="moto")
    forget_mfa_devices(client)
    sts.reset()
    yield client
    forget_mfa_devices(client)


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr("broker.aws.totp.CLOCK", fake)
    return fake


@pytest.fixture
def ctx(in_home, iam, clock, sts, monkeypatch):
    follow_clock(sts, clock.now, monkeypatch)  # the local STS checks codes at the fake time
    in_home.aws_config.write_text(CONFIG)
    context = home_context(in_home)
    store_key(context, "dev")
    store_key(context, "base")
    return context


def stored(ctx, name="dev") -> Item:
    item = ctx.backend("memory").get(name)
    assert item is not None
    return item


def assigned(iam) -> list[str]:
    return [d["SerialNumber"] for d in iam.list_mfa_devices(UserName="moto")["MFADevices"]]


def unassigned(iam) -> list[str]:
    devices = iam.list_virtual_mfa_devices(AssignmentStatus="Unassigned")["VirtualMFADevices"]
    return [d["SerialNumber"] for d in devices]


def test_enrol_end_to_end(ctx, sts, iam, clock, in_home, monkeypatch):
    order: list[str] = []
    backend = ctx.backend("memory")
    original_set = backend.set

    def watched_set(name, item, **kwargs):
        order.append(f"store after {[c['Action'] for c in sts.actions()]}")
        original_set(name, item, **kwargs)

    monkeypatch.setattr(backend, "set", watched_set)
    messages: list[str] = []
    result = mfa_service.enroll(ctx, "dev", progress=messages.append)

    assert (result.serial, result.user, result.resumed, result.already) == (
        SERIAL, "moto", False, False,
    )
    create, = sts.actions("CreateVirtualMFADevice")
    assert create["VirtualMFADeviceName"] == "moto"
    # the seed was stored (and read back) before EnableMFADevice was sent
    assert order == [f"store after {['GetCallerIdentity', 'CreateVirtualMFADevice']}"]
    item = stored(ctx)
    seed = parse_seed(item["totp"])
    assert item["mfa_serial"] == SERIAL
    assert item["aws_access_key_id"] == TEST_KEY_ID  # the other fields are kept
    assert seed.issuer == "Amazon Web Services" and seed.account == f"moto@{ACCOUNT}"
    assert result.seed == seed
    enable, = sts.actions("EnableMFADevice")
    step = int(T0 // 30)
    assert enable["UserName"] == "moto" and enable["SerialNumber"] == SERIAL
    assert enable["AuthenticationCode1"] == pyotp_code(seed.secret, step)
    assert enable["AuthenticationCode2"] == pyotp_code(seed.secret, step + 1)
    assert clock.t == pytest.approx((step + 1) * 30, abs=0.02)  # waited for the boundary
    assert "two consecutive codes" in "".join(clock.messages)
    assert assigned(iam) == [SERIAL]
    # ~/.aws/config: mfa_serial added to [profile dev], everything else as it was
    text = in_home.aws_config.read_text()
    assert text == CONFIG.replace(
        "role_arn = arn:aws:iam::123456789012:role/dev-role\n",
        f"role_arn = arn:aws:iam::123456789012:role/dev-role\nmfa_serial = {SERIAL}\n",
    )
    assert result.config_changed and result.config_path == in_home.aws_config
    assert any("Enabled" in m for m in messages)
    assert not any(seed.secret in m for m in messages + clock.messages)

    # and the next session uses the stored seed, never a code EnableMFADevice used
    credentials.obtain(ctx, "dev")
    gst, = sts.actions("GetSessionToken")
    assert gst["SerialNumber"] == SERIAL
    assert gst["TokenCode"] == pyotp_code(seed.secret, step + 2)


def test_resumed_after_a_crash_between_storing_and_enabling(ctx, sts, iam, monkeypatch, in_home):
    def crash(*args, **kwargs):
        raise Crash

    with monkeypatch.context() as patch, pytest.raises(Crash):
        patch.setattr(IamMfa, "enable", crash)
        mfa_service.enroll(ctx, "dev")
    first_seed = parse_seed(stored(ctx)["totp"])
    assert stored(ctx)["mfa_serial"] == SERIAL
    assert unassigned(iam) == [SERIAL] and assigned(iam) == []
    assert "mfa_serial" not in in_home.aws_config.read_text()

    sts.reset()
    result = mfa_service.enroll(ctx, "dev")
    assert result.resumed and not result.already
    assert sts.actions("CreateVirtualMFADevice") == []
    enable, = sts.actions("EnableMFADevice")
    assert result.seed == first_seed
    codes = (enable["AuthenticationCode1"], enable["AuthenticationCode2"])
    step = int(result_step(codes, first_seed.secret))
    assert codes == (pyotp_code(first_seed.secret, step), pyotp_code(first_seed.secret, step + 1))
    assert assigned(iam) == [SERIAL]
    assert f"mfa_serial = {SERIAL}" in in_home.aws_config.read_text()


def result_step(codes: tuple[str, str], secret: str) -> int:
    """The step whose code and its successor's are ``codes`` (near the fake clock)."""
    base = int(T0 // 30)
    for step in range(base - 5, base + 10):
        if (pyotp_code(secret, step), pyotp_code(secret, step + 1)) == codes:
            return step
    raise AssertionError("not two consecutive codes of the stored seed")


def test_resumed_after_a_crash_between_creating_and_storing(ctx, sts, iam, monkeypatch):
    def crash(*args, **kwargs):
        raise Crash

    with monkeypatch.context() as patch, pytest.raises(Crash):
        patch.setattr(mfa_service, "_keep_seed", crash)
        patch.setattr(IamMfa, "delete_device", crash)  # killed: no cleanup ran either
        mfa_service.enroll(ctx, "dev")
    assert "totp" not in stored(ctx)
    assert unassigned(iam) == [SERIAL]  # a device whose seed nobody kept

    sts.reset()
    result = mfa_service.enroll(ctx, "dev")
    # the seedless device can never be enabled safely: replaced, then enabled
    deleted, = sts.actions("DeleteVirtualMFADevice")
    assert deleted["SerialNumber"] == SERIAL
    assert len(sts.actions("CreateVirtualMFADevice")) == 2
    assert parse_seed(stored(ctx)["totp"]) == result.seed
    enable, = sts.actions("EnableMFADevice")
    assert enable["AuthenticationCode1"] == pyotp_code(result.seed.secret, int(T0 // 30))
    assert assigned(iam) == [SERIAL]


def test_a_failed_store_deletes_the_device_and_enables_nothing(ctx, sts, iam, monkeypatch):
    def broken(*args, **kwargs):
        raise BackendError("memory: disk full")

    monkeypatch.setattr(ctx.backend("memory"), "set", broken)
    with pytest.raises(BackendError, match="disk full"):
        mfa_service.enroll(ctx, "dev")
    assert sts.actions("EnableMFADevice") == []
    assert len(sts.actions("DeleteVirtualMFADevice")) == 1
    assert unassigned(iam) == [] and assigned(iam) == []


class DroppingMemory(MemoryBackend):
    """A backend that silently keeps only the fields it knows."""

    def set(self, name, item, *, expires_at=None):
        super().set(name, item.replace(totp=None), expires_at=expires_at)


def test_a_backend_that_drops_the_seed_is_caught_before_enabling(in_home, iam, sts, clock):
    in_home.aws_config.write_text(CONFIG)
    ctx = home_context(in_home, backend=DroppingMemory)
    store_key(ctx, "dev")
    with pytest.raises(BackendError, match="did not keep the TOTP seed"):
        mfa_service.enroll(ctx, "dev")
    assert sts.actions("EnableMFADevice") == []
    assert unassigned(iam) == [] and assigned(iam) == []


def test_enrolling_again_only_checks(ctx, sts, in_home):
    mfa_service.enroll(ctx, "dev")
    sts.reset()
    again = mfa_service.enroll(ctx, "dev")
    assert again.already and not again.config_changed
    assert sts.actions("CreateVirtualMFADevice") == sts.actions("EnableMFADevice") == []
    assert in_home.aws_config.read_text().count("mfa_serial") == 1


def test_config_written_after_an_interruption_following_enable(ctx, sts, in_home, monkeypatch):
    def crash(*args, **kwargs):
        raise Crash

    with monkeypatch.context() as patch, pytest.raises(Crash):
        patch.setattr("broker.aws.config_writer.write_profile_value", crash)
        mfa_service.enroll(ctx, "dev")
    result = mfa_service.enroll(ctx, "dev")
    assert result.already and result.config_changed
    assert f"mfa_serial = {SERIAL}" in in_home.aws_config.read_text()


def test_a_seed_broker_did_not_enrol_is_not_overwritten(ctx, sts):
    store_key(ctx, "dev", totp="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    with pytest.raises(UsageError) as info:
        mfa_service.enroll(ctx, "dev")
    assert "broker totp remove dev" in info.value.hint
    assert sts.actions("CreateVirtualMFADevice") == []


def test_a_profile_using_an_enabled_device_is_left_alone(ctx, sts, iam, in_home):
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName="phone")["VirtualMFADevice"]
    iam.enable_mfa_device(
        UserName="moto", SerialNumber=device["SerialNumber"],
        AuthenticationCode1="123456", AuthenticationCode2="654321",
    )
    in_home.aws_config.write_text(
        CONFIG.replace("[profile dev]\n", f"[profile dev]\nmfa_serial = {device['SerialNumber']}\n")
    )
    ctx.__dict__.pop("aws", None)
    with pytest.raises(UsageError, match="enabled already") as info:
        mfa_service.enroll(ctx, "dev")
    assert "broker totp set dev" in info.value.hint


def test_a_device_name_taken_by_an_enabled_device(ctx, sts, iam):
    mfa_service.enroll(ctx, "dev")
    with pytest.raises(DeviceExists, match="exists already") as info:
        mfa_service.enroll(ctx, "base")
    assert type(info.value) is DeviceExists and info.value.exit_code == 10
    assert "--device-name" in str(info.value)
    other = mfa_service.enroll(ctx, "base", device_name="moto-laptop")
    assert other.serial == f"arn:aws:iam::{ACCOUNT}:mfa/moto-laptop"


def test_a_role_profile_points_at_its_key_profile(ctx, sts):
    with pytest.raises(ConfigError) as info:
        mfa_service.enroll(ctx, "admin")
    assert "broker mfa enroll base" in info.value.hint
    assert sts.actions() == []


def test_no_key_stored(ctx, sts, in_home):
    with pytest.raises(CredentialsNotFound, match="no key stored") as info:
        mfa_service.enroll(ctx, "default")
    assert type(info.value) is CredentialsNotFound and info.value.exit_code == 5
    assert "broker add default" in str(info.value)


@pytest.fixture
def keyctl_home(in_home, iam, clock, sts, monkeypatch):
    follow_clock(sts, clock.now, monkeypatch)
    from broker_keyctl import KeyctlBackend

    if not KeyctlBackend().availability().ok:
        pytest.skip("kernel keyring unavailable")
    in_home.add_key("plain")
    return in_home


def test_the_cli_prints_the_seed_only_when_asked(keyctl_home, sts, capsys, clock):
    from broker.cli.app import run

    assert run(["mfa", "enroll", "plain"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert f"mfa_serial = {SERIAL}" in err and "Enabled" in err
    config = keyctl_home.aws_config.read_text()
    assert f"[profile plain]\nregion = us-west-2\nmfa_serial = {SERIAL}\n" in config

    assert run(["mfa", "enroll", "plain", "--show-seed", "--show-qr"]) == 0
    out, err = capsys.readouterr()
    assert "enrolled already" in err
    secret = next(line.split()[1] for line in out.splitlines() if line.startswith("seed: "))
    assert f"secret={secret}" in out and "otpauth://totp/" in out
    assert "No QR library" in err or "█" in out or "#" in out

    # the console code: the step EnableMFADevice used last is never handed out again
    assert run(["totp", "code", "plain"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == pyotp_code(secret, int(T0 // 30) + 2)
    assert "valid for 30 more seconds" in err
