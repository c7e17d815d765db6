"""The local STS (broker.testing.local_sts) refuses what AWS refuses, and accepts what AWS
accepts, at each rule's boundary: boto3 clients against the proxy in front of moto."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pyotp
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from broker.testing import aws_rules
from broker.testing.local_sts import LocalSTS, main
from tests.conftest import ACCOUNT, follow_clock, trust_policy

SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
CHAINING = ("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed "
            "by role chaining.")
MAX_SESSION = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
BAD_CODE = "MultiFactorAuthentication failed with invalid MFA one time pass code. "


def client(sts: LocalSTS, service: str, creds: dict[str, str] | None = None) -> Any:
    """A boto3 client of the local STS; botocore's own parameter checks are off, so the
    server's are what answers."""
    creds = creds or {}
    return boto3.client(
        service, endpoint_url=sts.url, region_name="us-east-1",
        config=Config(parameter_validation=False),
        aws_access_key_id=creds.get("AccessKeyId", User.key),
        aws_secret_access_key=creds.get("SecretAccessKey", User.secret),
        aws_session_token=creds.get("SessionToken"),
    )


class User:
    """An IAM user made in moto for this module, and its long-lived key."""

    name = key = secret = arn = ""


@pytest.fixture(scope="module", autouse=True)
def user(moto_server: str) -> None:
    iam = boto3.client("iam", endpoint_url=moto_server, region_name="us-east-1",
                       aws_access_key_id="AKIAADMIN0000000000", aws_secret_access_key="admin")
    User.name = f"rules-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=User.name)
    key = iam.create_access_key(UserName=User.name)["AccessKey"]
    User.key, User.secret = key["AccessKeyId"], key["SecretAccessKey"]
    User.arn = f"arn:aws:iam::{ACCOUNT}:user/{User.name}"


def make_role(moto_server: str, mfa: bool = False, max_session: int = 43_200,
              policy: str | None = None) -> str:
    iam = boto3.client("iam", endpoint_url=moto_server, region_name="us-east-1",
                       aws_access_key_id="AKIAADMIN0000000000", aws_secret_access_key="admin")
    name = f"role-{uuid.uuid4().hex[:8]}"
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=policy or trust_policy(mfa),
                    MaxSessionDuration=max_session)
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


@pytest.fixture
def device(sts: LocalSTS) -> str:
    """A registered virtual MFA device; the server clock stands still (codes are exact)."""
    serial = f"arn:aws:iam::{ACCOUNT}:mfa/{uuid.uuid4().hex[:8]}"
    sts.register_mfa_device(serial, SEED)
    moment = time.time()
    sts.rules.time_source = lambda: moment
    return serial


def code(sts: LocalSTS, serial: str, steps: int = 0) -> str:
    return sts.code(serial, at=sts.rules.now() + 30 * steps)


def refused(call: Any, status: int, error: str, message: str | None = None, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    assert (response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]) == (
        status, error), response
    if message is not None:
        assert response["Error"]["Message"] == message
    return str(response["Error"]["Message"])


def mfa_session(sts: LocalSTS, serial: str, steps: int = 0, **kwargs: Any) -> dict[str, str]:
    creds: dict[str, str] = client(sts, "sts").get_session_token(
        SerialNumber=serial, TokenCode=code(sts, serial, steps), **kwargs)["Credentials"]
    return creds


def assume(sts: LocalSTS, creds: dict[str, str] | None, role: str, **kwargs: Any) -> dict[str, str]:
    found: dict[str, str] = client(sts, "sts", creds).assume_role(
        RoleArn=role, RoleSessionName="tests", **kwargs)["Credentials"]
    return found


# --- role chaining and durations ------------------------------------------------------------


def test_role_chaining_is_capped_at_one_hour(sts, moto_server, device):
    role = make_role(moto_server)
    session = mfa_session(sts, device)
    assume(sts, session, role, DurationSeconds=3600)
    refused(client(sts, "sts", session).assume_role, 400, "ValidationError", CHAINING,
            RoleArn=role, RoleSessionName="tests", DurationSeconds=3601)
    # from a role session too, and the long-lived key is not chaining
    role_session = assume(sts, None, role, DurationSeconds=7200)
    refused(client(sts, "sts", role_session).assume_role, 400, "ValidationError", CHAINING,
            RoleArn=role, RoleSessionName="tests", DurationSeconds=3601)
    assume(sts, role_session, role, DurationSeconds=3600)
    sts.rules.role_chaining = False
    assume(sts, session, role, DurationSeconds=3601)


def test_assume_role_durations(sts, moto_server):
    role = make_role(moto_server, max_session=7200)
    call = client(sts, "sts").assume_role
    assert refused(call, 400, "ValidationError", RoleArn=role, RoleSessionName="tests",
                   DurationSeconds=899).endswith("must have value greater than or equal to 900")
    assume(sts, None, role, DurationSeconds=900)
    assume(sts, None, role, DurationSeconds=7200)
    refused(call, 400, "ValidationError", MAX_SESSION, RoleArn=role, RoleSessionName="tests",
            DurationSeconds=7201)
    assert refused(call, 400, "ValidationError", RoleArn=role, RoleSessionName="tests",
                   DurationSeconds=43_201).endswith("less than or equal to 43200")
    default = make_role(moto_server, max_session=3600)
    assume(sts, None, default, DurationSeconds=3600)
    refused(call, 400, "ValidationError", MAX_SESSION, RoleArn=default, RoleSessionName="tests",
            DurationSeconds=3601)


def test_get_session_token_durations(sts):
    call = client(sts, "sts").get_session_token
    refused(call, 400, "ValidationError", DurationSeconds=899)
    call(DurationSeconds=900)
    call(DurationSeconds=129_600)
    assert refused(call, 400, "ValidationError", DurationSeconds=129_601).startswith(
        "1 validation error detected: Value '129601' at 'durationSeconds'")


def test_no_session_token_from_session_credentials(sts, device):
    session = mfa_session(sts, device)
    refused(client(sts, "sts", session).get_session_token, 403, "AccessDenied")


# --- the clock ------------------------------------------------------------------------------


@pytest.fixture
def signed_at(sts, monkeypatch) -> Iterator[list[float]]:
    """botocore signs at moment[0]; the server's clock says 2026-11-30 08:20:00 UTC."""
    moment = [0.0]
    follow_clock(sts, lambda: moment[0], monkeypatch)
    server = 1_796_026_800.0  # 20261130T082000Z
    sts.rules.time_source = lambda: server
    yield moment


def test_a_request_more_than_15_minutes_old_is_refused(sts, signed_at):
    server = sts.rules.now()
    signed_at[0] = server - 900 + 5
    client(sts, "sts").get_caller_identity()
    signed_at[0] = server - 900 - 5
    refused(client(sts, "sts").get_caller_identity, 403, "SignatureDoesNotMatch",
            "Signature expired: 20261130T080455Z is now earlier than 20261130T080500Z "
            "(20261130T082000Z - 15 min.)")
    signed_at[0] = server - 7800  # the example of the brief: two hours behind
    refused(client(sts, "sts").get_caller_identity, 403, "SignatureDoesNotMatch",
            "Signature expired: 20261130T061000Z is now earlier than 20261130T080500Z "
            "(20261130T082000Z - 15 min.)")


def test_a_request_more_than_15_minutes_ahead_is_refused(sts, signed_at):
    server = sts.rules.now()
    signed_at[0] = server + 900 - 5
    client(sts, "iam").list_roles()  # IAM keeps the same window
    signed_at[0] = server + 900 + 5
    refused(client(sts, "sts").get_caller_identity, 403, "SignatureDoesNotMatch",
            "Signature not yet current: 20261130T083505Z is still later than 20261130T083500Z "
            "(20261130T082000Z + 15 min.)")
    sts.rules.clock = False
    client(sts, "sts").get_caller_identity()


def test_clock_offset_moves_the_server_clock(sts):
    client(sts, "sts").get_caller_identity()
    sts.rules.clock_offset = -7200  # the server is behind: the request is from its future
    assert "is still later than" in refused(
        client(sts, "sts").get_caller_identity, 403, "SignatureDoesNotMatch")
    sts.advance(4 * 3600)  # now two hours ahead: the request is from its past
    assert "is now earlier than" in refused(
        client(sts, "sts").get_caller_identity, 403, "SignatureDoesNotMatch")
    sts.reset()  # the calls only
    assert sts.rules.clock_offset == 7200
    sts.reset(rules=True)
    client(sts, "sts").get_caller_identity()


# --- MFA codes ------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, -1, 1])
def test_codes_of_this_step_and_either_neighbour_are_accepted(sts, device, steps):
    client(sts, "sts").get_session_token(SerialNumber=device, TokenCode=code(sts, device, steps))


@pytest.mark.parametrize("steps", [-2, 2])
def test_codes_two_steps_away_are_refused(sts, device, steps):
    refused(client(sts, "sts").get_session_token, 403, "AccessDenied", BAD_CODE,
            SerialNumber=device, TokenCode=code(sts, device, steps))


def test_each_code_is_accepted_once(sts, device, moto_server):
    call = client(sts, "sts").get_session_token
    now = code(sts, device)
    call(SerialNumber=device, TokenCode=now)
    refused(call, 403, "AccessDenied", BAD_CODE, SerialNumber=device, TokenCode=now)
    role = make_role(moto_server)  # AssumeRole shares the device's ledger
    refused(client(sts, "sts").assume_role, 403, "AccessDenied", BAD_CODE, RoleArn=role,
            RoleSessionName="tests", SerialNumber=device, TokenCode=now)
    call(SerialNumber=device, TokenCode=code(sts, device, 1))
    sts.reset()  # a new test: the ledger is empty (the devices stay)
    call(SerialNumber=device, TokenCode=now)


def test_wrong_or_malformed_codes_and_unknown_devices(sts, device):
    call = client(sts, "sts").get_session_token
    good = code(sts, device)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    refused(call, 403, "AccessDenied", BAD_CODE, SerialNumber=device, TokenCode=wrong)
    refused(call, 403, "AccessDenied", aws_rules.UNKNOWN_DEVICE,
            SerialNumber=f"arn:aws:iam::{ACCOUNT}:mfa/nobody", TokenCode=good)
    refused(call, 403, "AccessDenied", aws_rules.BOTH_NEEDED, SerialNumber=device)
    refused(call, 400, "ValidationError", "1 validation error detected: Value '12345a' at "
            r"'tokenCode' failed to satisfy constraint: Member must satisfy regular expression "
            r"pattern: [\d]*", SerialNumber=device, TokenCode="12345a")
    sts.rules.mfa = False
    call(SerialNumber=device, TokenCode=wrong)


def test_seeds_are_learnt_from_create_virtual_mfa_device(sts):
    iam = client(sts, "iam")
    name = uuid.uuid4().hex[:8]
    made = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"]
    seed = made["Base32StringSeed"].decode()
    assert sts.code(made["SerialNumber"]) == pyotp.TOTP(seed).now()
    iam.delete_virtual_mfa_device(SerialNumber=made["SerialNumber"])


def test_codes_for_other_processes(sts, device, capsys):
    with urllib.request.urlopen(f"{sts.url}/_local_sts/code?serial={device}") as reply:
        assert reply.read().decode() == code(sts, device) == pyotp.TOTP(SEED).at(sts.rules.now())
    assert main(["code", device, sts.url]) == 0
    assert capsys.readouterr().out.strip() == code(sts, device)
    assert main(["code", "arn:aws:iam::1:mfa/none", sts.url]) == 1


# --- trust policies -------------------------------------------------------------------------


def test_a_role_that_does_not_exist_is_refused(sts):
    role = f"arn:aws:iam::{ACCOUNT}:role/no-such-role"
    refused(client(sts, "sts").assume_role, 403, "AccessDenied",
            f"User: {User.arn} is not authorized to perform: sts:AssumeRole on resource: {role}",
            RoleArn=role, RoleSessionName="tests")
    sts.rules.trust_policy = False
    assume(sts, None, role)


def test_mfa_condition_needs_mfa(sts, moto_server, device):
    role = make_role(moto_server, mfa=True)
    message = f"User: {User.arn} is not authorized to perform: sts:AssumeRole on resource: {role}"
    refused(client(sts, "sts").assume_role, 403, "AccessDenied", message,
            RoleArn=role, RoleSessionName="tests")
    plain = client(sts, "sts").get_session_token()["Credentials"]
    refused(client(sts, "sts", plain).assume_role, 403, "AccessDenied", message,
            RoleArn=role, RoleSessionName="tests")
    # with MFA: the code on AssumeRole, or an MFA session
    assume(sts, None, role, SerialNumber=device, TokenCode=code(sts, device))
    assume(sts, mfa_session(sts, device, steps=1, DurationSeconds=900), role)


def test_role_chaining_keeps_the_mfa_context(sts, moto_server, device):
    first, second = make_role(moto_server, mfa=True), make_role(moto_server, mfa=True)
    with_mfa = assume(sts, None, first, SerialNumber=device, TokenCode=code(sts, device))
    assume(sts, with_mfa, second)
    open_role = make_role(moto_server)
    without = assume(sts, None, open_role)
    role_arn = client(sts, "sts", without).get_caller_identity()["Arn"]
    refused(client(sts, "sts", without).assume_role, 403, "AccessDenied",
            f"User: {role_arn} is not authorized to perform: sts:AssumeRole on resource: {second}",
            RoleArn=second, RoleSessionName="tests")


def test_bool_if_exists_holds_for_a_long_lived_key(sts, moto_server):
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": User.arn}, "Action": "sts:AssumeRole",
        "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}},
    }]})
    role = make_role(moto_server, policy=policy)
    assume(sts, None, role)  # the key is absent for a long-lived key
    plain = client(sts, "sts").get_session_token()["Credentials"]  # "false" for a session
    refused(client(sts, "sts", plain).assume_role, 403, "AccessDenied",
            RoleArn=role, RoleSessionName="tests")


def test_a_principal_that_is_not_trusted_is_refused(sts, moto_server):
    policy = json.dumps({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole",
                                       "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/other"}}})
    refused(client(sts, "sts").assume_role, 403, "AccessDenied", RoleSessionName="tests",
            RoleArn=make_role(moto_server, policy=policy))


# --- temporary keys -------------------------------------------------------------------------


def test_temporary_keys_start_with_asia_and_keep_their_identity(sts, moto_server, device):
    role = make_role(moto_server)
    session = mfa_session(sts, device)
    again = client(sts, "sts").get_session_token()["Credentials"]
    role_session = assume(sts, session, role)
    keys = [c["AccessKeyId"] for c in (session, again, role_session)]
    assert all(k.startswith("ASIA") and len(k) == 20 for k in keys) and len(set(keys)) == 3
    assert session["SessionToken"] != again["SessionToken"]
    identity = client(sts, "sts", role_session).get_caller_identity()["Arn"]
    assert identity == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role.split('/')[-1]}/tests"
    issued = sts.issued(session["AccessKeyId"])
    assert issued is not None and issued.mfa and not issued.role_session


def test_expired_credentials_are_refused(sts, monkeypatch):
    start = time.time()
    moment = [start]
    follow_clock(sts, lambda: moment[0], monkeypatch)
    session = client(sts, "sts").get_session_token(DurationSeconds=900)["Credentials"]
    assert session["Expiration"].timestamp() == pytest.approx(start + 900, abs=1)
    moment[0] = start + 899
    client(sts, "sts", session).get_caller_identity()
    moment[0] = start + 901
    refused(client(sts, "sts", session).get_caller_identity, 403, "ExpiredToken",
            "The security token included in the request is expired")
    sts.rules.expiry = False
    client(sts, "sts", session).get_caller_identity()


def test_every_request_is_recorded_refused_or_not(sts):
    call = client(sts, "sts").get_session_token
    refused(call, 400, "ValidationError", DurationSeconds=899)
    call(DurationSeconds=900)
    assert [c["DurationSeconds"] for c in sts.actions("GetSessionToken")] == ["899", "900"]
    assert [r[:2] for r in sts.refusals] == [("GetSessionToken", "ValidationError")]


def test_totp_is_rfc_6238():
    for step in (0, 1, 59_999_999):
        assert aws_rules.totp(SEED, step) == pyotp.TOTP(SEED).at(step * 30)
