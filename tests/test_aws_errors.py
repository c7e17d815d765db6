"""AWS's refusals become broker errors that keep AWS's words and name the right next step.

The ClientErrors are built as botocore builds them (its query parser for STS's XML, or the
same response dict); the connection errors come from real connections to local sockets
where that is cheap, and are constructed where it is not (a connect timeout).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import boto3
import botocore.session
import pytest
from botocore import parsers
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    InvalidRegionError,
    NoRegionError,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)

from broker.aws.credentials import Credentials
from broker.aws.errors_map import describe_duration, mask_key_id, skew_from_message, translate
from broker.errors import (
    AuthenticationError,
    AWSError,
    ClockSkewError,
    ConfigError,
    ExitCode,
    KeyRejected,
    MFACodeRefused,
    NetworkError,
    Throttled,
    UsageError,
)

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
LONG_LIVED = Credentials(KEY_ID, SECRET)
TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6" * 4
SESSION = Credentials("ASIAQWERTYUIOPASDFGH", "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo", TOKEN)
ROLE = "arn:aws:iam::222222222222:role/dev"
USER = "arn:aws:iam::111111111111:user/alice"
ASSUME = f"AssumeRole {ROLE}"

EXPIRED = (
    "Signature expired: 20261130T061000Z is now earlier than 20261130T080500Z "
    "(20261130T082000Z - 15 min.)"
)
NOT_YET = (
    "Signature not yet current: 20181120T211543Z is still later than 20181120T211529Z "
    "(20181120T211029Z + 5 min.)"
)
INVALID_TOKEN = "The security token included in the request is invalid."
WRONG_SECRET = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation "
    "for details."
)
MFA_INVALID = "MultiFactorAuthentication failed with invalid MFA one time pass code. "
MFA_UNVALIDATED = (
    "MultiFactorAuthentication failed, unable to validate MFA code.  Please verify your MFA "
    "serial number is valid and associated with this user."
)
MFA_BOTH = (
    "MultiFactorAuthentication failed, must provide both MFA serial number and one time pass "
    "code."
)
CHAINING = (
    "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
    "role chaining."
)
MAX_SESSION = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
DENIED = f"User: {USER} is not authorized to perform: sts:AssumeRole on resource: {ROLE}"


def client_error(
    code: str, message: str, operation: str = "AssumeRole", status: int = 403, **meta: object
) -> ClientError:
    """A ClientError with the response dict botocore's parsers produce."""
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, **meta},
    }
    return ClientError(response, operation)  # type: ignore[arg-type]


def sts_xml_error(code: str, message: str, operation: str, headers: dict[str, str]) -> ClientError:
    """A ClientError from STS's own XML error body, through botocore's query parser."""
    model = botocore.session.get_session().get_service_model("sts").operation_model(operation)
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"
    ).encode()
    parsed = parsers.create_parser("query").parse(
        {"body": body, "headers": headers, "status_code": 403}, model.output_shape
    )
    return ClientError(parsed, operation)


def at(text: str) -> Callable[[], datetime]:
    moment = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    return lambda: moment


# --- clock skew -----------------------------------------------------------------------


def test_signature_expired_is_clock_skew_with_the_computed_skew():
    exc = sts_xml_error("SignatureDoesNotMatch", EXPIRED, "GetSessionToken", {})
    error = translate(exc, "GetSessionToken", credentials=LONG_LIVED)
    assert type(error) is ClockSkewError
    assert error.exit_code == 17
    assert error.skew_seconds == -(2 * 3600 + 10 * 60)  # signed 06:10, AWS's time 08:20
    assert "the clock here is 2 h 10 min behind AWS's" in error.message
    assert f"[AWS SignatureDoesNotMatch: {EXPIRED}]" in error.message
    assert "sudo hwclock -s" in error.hint and "wsl --shutdown" in error.hint
    assert "broker doctor" in error.hint
    assert "broker add" not in str(error)


def test_signature_not_yet_current_is_a_clock_ahead():
    error = translate(client_error("SignatureDoesNotMatch", NOT_YET), ASSUME)
    assert type(error) is ClockSkewError
    assert error.skew_seconds == 5 * 60 + 14
    assert "5 min 14 s ahead of AWS's, more than the 5 min AWS allows" in error.message
    assert NOT_YET in error.message


def test_without_aws_time_only_a_lower_bound_is_claimed():
    message = "Signature expired: 20261130T061000Z is now earlier than 20261130T080500Z"
    skew = skew_from_message(message)
    assert skew is not None and not skew.exact
    assert skew.seconds == -(3600 + 55 * 60)
    error = translate(client_error("InvalidSignatureException", message), "GetSessionToken")
    assert type(error) is ClockSkewError
    assert "at least 1 h 55 min behind" in error.message


def test_request_time_too_skewed_uses_the_servers_time_fields():
    exc = ClientError(
        {
            "Error": {
                "Code": "RequestTimeTooSkewed",
                "Message": "The difference between the request time and the current time is "
                "too large.",
                "RequestTime": "20261130T101500Z",
                "ServerTime": "2026-11-30T10:00:00Z",
                "MaxAllowedSkewMilliseconds": "900000",
            },
            "ResponseMetadata": {"HTTPStatusCode": 403},
        },
        "GetSessionToken",
    )
    error = translate(exc, "GetSessionToken")
    assert type(error) is ClockSkewError
    assert error.skew_seconds == 15 * 60
    assert "15 min 0 s ahead of AWS's" in error.message
    assert "[AWS RequestTimeTooSkewed: The difference between" in error.message


def test_request_expired_sizes_the_skew_from_the_date_header():
    exc = client_error(
        "RequestExpired", "Request has expired.", status=400,
        HTTPHeaders={"date": "Mon, 30 Nov 2026 08:20:00 GMT"},
    )
    error = translate(exc, "GetSessionToken", now=at("2026-11-30T05:20:00"))
    assert type(error) is ClockSkewError
    assert error.skew_seconds == -3 * 3600
    assert "3 h 0 min behind AWS's" in error.message
    assert "[AWS RequestExpired: Request has expired.]" in error.message


def test_request_expired_with_nothing_to_size_it_still_names_the_clock():
    error = translate(client_error("RequestExpired", "Request has expired."), "GetSessionToken")
    assert type(error) is ClockSkewError
    assert error.skew_seconds is None
    assert "more than 15 min off AWS's" in error.message
    assert "sudo hwclock -s" in error.hint


def test_a_clock_that_agrees_now_is_said_to_agree():
    exc = client_error(
        "RequestExpired", "Request has expired.",
        HTTPHeaders={"date": "Mon, 30 Nov 2026 08:20:00 GMT"},
    )
    error = translate(exc, "GetSessionToken", now=at("2026-11-30T08:20:03"))
    assert type(error) is ClockSkewError
    assert "yet the clock here is 3 s ahead of AWS's" in error.message
    assert error.hint.startswith("try again")


def test_durations_read_as_people_say_them():
    assert describe_duration(7200) == "2 h 0 min"
    assert describe_duration(7800) == "2 h 10 min"
    assert describe_duration(314) == "5 min 14 s"
    assert describe_duration(9) == "9 s"
    assert describe_duration(2 * 86_400 + 3600) == "2 d 1 h"


# --- the key, the session, the MFA code -------------------------------------------------


def test_an_unknown_or_inactive_key_is_the_keys_fault():
    error = translate(
        client_error("InvalidClientTokenId", INVALID_TOKEN, "GetSessionToken"),
        "GetSessionToken", credentials=LONG_LIVED,
    )
    assert type(error) is KeyRejected
    assert error.exit_code == 8
    assert "****************MPLE" in error.message
    assert KEY_ID not in str(error)
    assert "deleted or deactivated in IAM" in error.message
    assert f"[AWS InvalidClientTokenId: {INVALID_TOKEN}]" in error.message
    assert "broker add PROFILE" in error.hint


def test_a_refused_session_token_is_cleared_not_re_added():
    error = translate(
        client_error("InvalidClientTokenId", INVALID_TOKEN), ASSUME, credentials=SESSION
    )
    assert type(error) is AuthenticationError
    assert "broker clear PROFILE" in error.hint
    assert "broker add" not in str(error)
    assert INVALID_TOKEN in error.message


def test_a_wrong_secret_is_the_keys_fault():
    error = translate(
        client_error("SignatureDoesNotMatch", WRONG_SECRET, "GetSessionToken"),
        "GetSessionToken", credentials=LONG_LIVED,
    )
    assert type(error) is KeyRejected
    assert "secret of the stored key ****************MPLE does not match" in error.message
    assert "[AWS SignatureDoesNotMatch: The request signature we calculated" in error.message
    assert "broker add PROFILE" in error.hint


@pytest.mark.parametrize(
    ("message", "said"),
    [
        (MFA_INVALID, "AWS refused the MFA code"),
        (MFA_UNVALIDATED, "could not check the MFA code against the MFA serial"),
        (MFA_BOTH, "an MFA serial or code without the other"),
    ],
)
def test_a_refused_mfa_code_never_blames_the_key(message, said):
    error = translate(client_error("AccessDenied", message, "GetSessionToken"), "GetSessionToken")
    # only a code AWS refused as wrong is one another code may fix (a prompt asks again)
    expected = MFACodeRefused if message == MFA_INVALID else AuthenticationError
    assert type(error) is expected
    assert said in error.message
    assert f"[AWS AccessDenied: {message.strip()}]" in error.message
    assert "mfa_serial" in error.hint
    assert "broker add" not in str(error)


def test_a_refused_mfa_code_says_to_wait_for_the_next_one():
    error = translate(client_error("AccessDenied", MFA_INVALID), ASSUME)
    assert "wait for the next code" in error.hint
    assert "broker doctor" in error.hint  # codes made from a seed need the clock


def test_iam_refusing_the_enrolment_codes_is_an_mfa_refusal():
    error = translate(
        client_error("InvalidAuthenticationCode", "Authentication code for device is not valid.",
                     "EnableMFADevice", status=400),
        "EnableMFADevice arn:aws:iam::111111111111:mfa/alice",
    )
    assert type(error) is MFACodeRefused and isinstance(error, AuthenticationError)
    assert "[AWS InvalidAuthenticationCode: Authentication code" in error.message


def test_an_expired_session_is_cleared():
    for code in ("ExpiredToken", "ExpiredTokenException"):
        error = translate(
            client_error(code, "The security token included in the request is expired"), ASSUME,
            credentials=SESSION,
        )
        assert type(error) is AuthenticationError
        assert "broker clear PROFILE" in error.hint
        assert f"[AWS {code}: The security token included in the request is expired]" in str(error)
        assert "broker add" not in str(error)


def test_session_credentials_stored_as_the_key_are_the_keys_fault():
    error = translate(
        client_error("AccessDenied", "Cannot call GetSessionToken with session credentials",
                     "GetSessionToken"),
        "GetSessionToken", credentials=Credentials("ASIAQWERTYUIOPASDFGH", SECRET),
    )
    assert type(error) is KeyRejected
    assert "temporary (session) key" in error.message
    assert "broker add PROFILE" in error.hint


# --- permissions, durations, regions, throttling ----------------------------------------


def test_access_denied_on_assume_role_points_at_the_trust_policy():
    error = translate(client_error("AccessDenied", DENIED), ASSUME)
    assert type(error) is AWSError
    assert error.exit_code == 10
    assert error.message.startswith(f"{ASSUME}: AWS refused {USER} the role")
    assert f"[AWS AccessDenied: {DENIED}]" in error.message
    assert f"trust policy of the role allows {USER}" in error.hint
    assert "mfa_serial" in error.hint and "sts:AssumeRole" in error.hint
    assert "broker add" not in str(error)


def test_an_explicit_deny_is_named():
    error = translate(client_error("AccessDenied", DENIED + " with an explicit deny"), ASSUME)
    assert type(error) is AWSError
    assert "an explicit Deny" in error.hint


def test_access_denied_on_an_iam_call_names_the_permission():
    message = (
        f"User: {USER} is not authorized to perform: iam:CreateVirtualMFADevice on resource: "
        "arn:aws:iam::111111111111:mfa/alice because no identity-based policy allows the "
        "iam:CreateVirtualMFADevice action"
    )
    error = translate(
        client_error("AccessDenied", message, "CreateVirtualMFADevice"),
        "CreateVirtualMFADevice alice",
    )
    assert type(error) is AWSError
    assert "allow iam:CreateVirtualMFADevice on arn:aws:iam::111111111111:mfa/alice" in error.hint
    assert "trust policy" not in error.hint


def test_role_chaining_durations_name_the_one_hour_limit():
    error = translate(client_error("ValidationError", CHAINING, status=400), ASSUME)
    assert type(error) is UsageError
    assert error.exit_code == 2
    assert "at most 1 h" in error.message
    assert f"[AWS ValidationError: {CHAINING}]" in error.message
    assert "--duration 1h" in error.hint and "--no-session" in error.hint


def test_max_session_duration_names_the_roles_maximum_and_the_fix():
    error = translate(client_error("ValidationError", MAX_SESSION, status=400), ASSUME)
    assert type(error) is UsageError
    assert "MaxSessionDuration of the role, which is 1 h unless raised" in error.message
    assert "aws iam update-role --role-name dev --max-session-duration" in error.hint
    assert MAX_SESSION in error.message


def test_an_out_of_range_duration_is_a_usage_error():
    message = (
        "1 validation error detected: Value '100' at 'durationSeconds' failed to satisfy "
        "constraint: Member must have value greater than or equal to 900"
    )
    error = translate(client_error("ValidationError", message, status=400), "GetSessionToken")
    assert type(error) is UsageError
    assert "15 min" in error.hint
    assert message in error.message


@pytest.mark.parametrize(
    "code",
    ["Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"],
)
def test_throttling_says_wait_and_how_to_retry_more(code):
    error = translate(client_error(code, "Rate exceeded", status=400, RetryAttempts=4), ASSUME)
    assert type(error) is Throttled
    assert error.exit_code == 12
    assert "after 4 retries" in error.message
    assert f"[AWS {code}: Rate exceeded]" in error.message
    assert "AWS_MAX_ATTEMPTS" in error.hint and "retry_mode" in error.hint


def test_a_disabled_sts_region():
    message = (
        "STS is not activated in this region for account:222222222222. Your account "
        "administrator can activate STS in this region using the IAM Console."
    )
    error = translate(client_error("RegionDisabledException", message), ASSUME)
    assert type(error) is AWSError
    assert "not activated in this region" in error.message
    assert "Security Token Service endpoints" in error.hint
    assert f"[AWS RegionDisabledException: {message}]" in error.message


def test_a_failure_on_awss_side():
    error = translate(
        client_error("ServiceUnavailable", "Service is unavailable", status=503), ASSUME
    )
    assert type(error) is AWSError
    assert "try again in a minute" in error.hint


def test_any_other_refusal_keeps_awss_code_and_message():
    message = "The policy document is malformed: line 3"
    error = translate(client_error("MalformedPolicyDocument", message, status=400), ASSUME)
    assert type(error) is AWSError
    assert error.message == (
        f"{ASSUME}: AWS refused the request [AWS MalformedPolicyDocument: {message}]"
    )


# --- AWS's words: one line, short, without secrets --------------------------------------


def test_only_the_first_line_and_a_readable_length_are_kept():
    error = translate(client_error("Weird", "first line\nsecond line"), ASSUME)
    assert "[AWS Weird: first line]" in error.message
    error = translate(client_error("Weird", "x" * 500), ASSUME)
    said = error.message.split("[AWS Weird: ", 1)[1]
    assert len(said) <= 201 and said.endswith("…]")


def test_secrets_never_survive_and_key_ids_are_masked():
    message = (
        f"Credential={SESSION.access_key_id}/20261130/us-east-1/sts/aws4_request "
        f"secret={SESSION.secret_access_key} token={TOKEN[:60]} other key {KEY_ID}"
    )
    error = translate(client_error("Weird", message), f"DeleteAccessKey {KEY_ID}",
                      credentials=SESSION)
    text = str(error)
    for secret in (SESSION.access_key_id, SESSION.secret_access_key, TOKEN[:40], KEY_ID):
        assert secret not in text
    assert mask_key_id(SESSION.access_key_id) in text
    assert f"DeleteAccessKey {mask_key_id(KEY_ID)}" in text
    assert mask_key_id(KEY_ID) == "****************MPLE"


def test_anything_else_passes_through_unchanged():
    plain = ValueError("not from botocore")
    assert translate(plain, ASSUME) is plain
    ours = UsageError("already ours")
    assert translate(ours, ASSUME) is ours


# --- connections and local configuration ------------------------------------------------


@contextlib.contextmanager
def listener(answer: bytes | None) -> Iterator[int]:
    """A local TCP port that answers whatever is sent to it with ``answer`` and hangs up
    (None: says nothing until the test ends). botocore may connect more than once."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    done = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if answer is None:
                held.append(conn)
                continue
            with conn, contextlib.suppress(OSError):
                conn.recv(65536)  # the request (or TLS hello) first, then the answer
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        server.close()
        for conn in held:
            conn.close()


def sts_call(endpoint: str) -> Exception:
    client = boto3.client(
        "sts", region_name="us-east-1", endpoint_url=endpoint,
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=0.3),
    )
    try:
        client.get_caller_identity()
    except Exception as exc:
        return exc
    raise AssertionError("the call should have failed")


def test_an_unreachable_endpoint_is_a_network_error_naming_it():
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        exc = sts_call(url)
    assert isinstance(exc, EndpointConnectionError)
    error = translate(exc, "GetCallerIdentity")
    assert type(error) is NetworkError
    assert error.exit_code == 13
    assert f"cannot reach {url}" in error.message
    assert "AWS_ENDPOINT_URL_STS" in error.hint


def test_an_endpoint_that_does_not_answer():
    with listener(None) as port:
        exc = sts_call(f"http://127.0.0.1:{port}")
    assert isinstance(exc, ReadTimeoutError)
    error = translate(exc, "GetCallerIdentity")
    assert type(error) is NetworkError
    assert f"http://127.0.0.1:{port}/ did not answer in time" in error.message


def test_a_tls_failure_points_at_ca_bundle():
    handshake_failure = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])  # a TLS alert record
    with listener(handshake_failure) as port:
        exc = sts_call(f"https://127.0.0.1:{port}")
    assert isinstance(exc, SSLError)
    error = translate(exc, "GetCallerIdentity")
    assert type(error) is NetworkError
    assert f"TLS certificate verification failed for https://127.0.0.1:{port}/" in error.message
    assert "ca_bundle" in error.hint and "AWS_CA_BUNDLE" in error.hint


def test_a_connect_timeout_and_a_proxy_that_hides_its_password():
    error = translate(
        ConnectTimeoutError(endpoint_url="https://sts.us-east-1.amazonaws.com/"), "GetSessionToken"
    )
    assert type(error) is NetworkError
    assert "timed out connecting to https://sts.us-east-1.amazonaws.com/" in error.message
    error = translate(
        ProxyConnectionError(proxy_url="http://bob:hunter2@proxy:3128", error="refused"),
        "GetSessionToken",
    )
    assert type(error) is NetworkError
    assert "hunter2" not in str(error)
    assert "http://***@proxy:3128" in error.message
    assert "HTTPS_PROXY" in error.hint


def test_region_problems_are_configuration_errors():
    error = translate(NoRegionError(), "GetSessionToken")
    assert type(error) is ConfigError
    assert "AWS_REGION" in error.hint
    error = translate(InvalidRegionError(region_name="us east 1"), "GetSessionToken")
    assert type(error) is ConfigError
    assert "'us east 1' is not a region name" in error.message


def test_bad_parameters_are_named_without_their_values():
    client = boto3.client(
        "sts", region_name="us-east-1", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    )
    with pytest.raises(Exception) as caught:  # botocore checks before sending anything
        client.get_session_token(SerialNumber="arn:aws:iam::111111111111:mfa/a", TokenCode="12345")
    error = translate(caught.value, "GetSessionToken")
    assert type(error) is UsageError
    assert "TokenCode" in error.message and "12345" not in str(error)
    with pytest.raises(Exception) as caught:
        client.assume_role(RoleArn="arn:x", RoleSessionName="s")
    error = translate(caught.value, "AssumeRole arn:x")
    assert type(error) is ConfigError
    assert "role_arn (RoleArn)" in error.hint


# --- only the key's own faults suggest adding it again ----------------------------------

CASES: list[tuple[Exception, Credentials | None, type[Exception]]] = [
    (client_error("SignatureDoesNotMatch", EXPIRED), LONG_LIVED, ClockSkewError),
    (client_error("RequestTimeTooSkewed", "too large"), LONG_LIVED, ClockSkewError),
    (client_error("InvalidClientTokenId", INVALID_TOKEN), LONG_LIVED, KeyRejected),
    (client_error("UnrecognizedClientException", INVALID_TOKEN), None, KeyRejected),
    (client_error("InvalidClientTokenId", INVALID_TOKEN), SESSION, AuthenticationError),
    (client_error("SignatureDoesNotMatch", WRONG_SECRET), LONG_LIVED, KeyRejected),
    (client_error("SignatureDoesNotMatch", WRONG_SECRET), SESSION, AuthenticationError),
    (client_error("AccessDenied", MFA_INVALID), LONG_LIVED, MFACodeRefused),
    (client_error("AccessDenied", MFA_UNVALIDATED), LONG_LIVED, AuthenticationError),
    (client_error("AccessDenied", DENIED), SESSION, AWSError),
    (client_error("ExpiredToken", "expired"), SESSION, AuthenticationError),
    (client_error("Throttling", "Rate exceeded"), SESSION, Throttled),
    (client_error("ValidationError", CHAINING), SESSION, UsageError),
    (client_error("ValidationError", MAX_SESSION), LONG_LIVED, UsageError),
    (client_error("RegionDisabledException", "STS is not activated"), SESSION, AWSError),
    (EndpointConnectionError(endpoint_url="https://sts.amazonaws.com/"), None, NetworkError),
]


@pytest.mark.parametrize(("exc", "credentials", "expected"), CASES)
def test_adding_the_key_again_is_suggested_only_for_the_keys_faults(exc, credentials, expected):
    error = translate(exc, ASSUME, credentials=credentials)
    assert type(error) is expected
    assert ("broker add" in error.hint) == (expected is KeyRejected)


def test_every_exit_code_used_is_documented():
    for cls in (ClockSkewError, KeyRejected, Throttled, NetworkError, UsageError, AWSError):
        assert isinstance(cls.exit_code, ExitCode)
