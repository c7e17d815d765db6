"""STS calls. The only module that imports boto3/botocore, and only when called.

The endpoint comes from the usual AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_STS``), which botocore honours by itself.
"""

from __future__ import annotations

import time
from typing import Any

from broker.aws.credentials import Credentials
from broker.errors import AuthenticationError, AWSError, NetworkError

#: STS needs a region for its regional endpoint; any works for these calls.
FALLBACK_REGION = "us-east-1"


def _client(service: str, creds: Credentials, region: str | None) -> Any:
    import boto3
    import botocore.session

    # Ignore AWS_PROFILE/AWS_DEFAULT_PROFILE: the caller's profile may be the very one
    # being resolved, or one that does not exist; broker passes explicit keys anyway.
    core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
    session = boto3.session.Session(
        botocore_session=core,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token,
        region_name=region or FALLBACK_REGION,
    )
    return session.client(service)


def client(service: str, creds: Credentials, region: str | None) -> Any:
    """A boto3 client for ``service`` (sts, iam) signed with ``creds``."""
    return _client(service, creds, region)


def _from_response(response: dict[str, Any]) -> Credentials:
    c = response["Credentials"]
    return Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], c["Expiration"])


def translate(exc: Exception, action: str) -> Exception:
    """A botocore exception as a broker error with the next step; never a secret."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        message = (error.get("Message") or "").split("\n")[0][:200]
        if code in ("InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"):
            return AuthenticationError(
                f"{action}: AWS rejected the stored access key ({code})",
                "check it is active in IAM, then re-add it with `broker add PROFILE`",
            )
        if code == "ExpiredToken":
            return AuthenticationError(
                f"{action}: the session expired", "run `broker clear PROFILE` and try again"
            )
        if code == "AccessDenied" and "MultiFactorAuthentication" in message:
            return AuthenticationError(
                f"{action}: AWS rejected the MFA code",
                "wait for the next code (each is accepted once) and check the mfa_serial",
            )
        if code == "ValidationError" and "DurationSeconds" in message:
            return AWSError(f"{action}: {message}", "choose a shorter --duration")
        return AWSError(f"{action}: {code}: {message}", "check the profile in ~/.aws/config")
    if isinstance(exc, EndpointConnectionError):
        return NetworkError(
            f"{action}: cannot reach {exc.kwargs.get('endpoint_url', 'STS')}",
            "check the network, the region and AWS_ENDPOINT_URL",
        )
    if isinstance(exc, BotoCoreError):
        return AWSError(f"{action}: {exc}", "check the network and the profile")
    return exc


def get_session_token(
    master: Credentials,
    region: str | None,
    duration: int,
    serial: str | None = None,
    code: str | None = None,
) -> Credentials:
    params: dict[str, Any] = {"DurationSeconds": duration}
    if serial:
        params.update(SerialNumber=serial, TokenCode=code)
    try:
        response = _client("sts", master, region).get_session_token(**params)
    except Exception as exc:
        raise translate(exc, "GetSessionToken") from None
    return _from_response(response)


def assume_role(
    source: Credentials,
    region: str | None,
    role_arn: str,
    *,
    duration: int,
    session_name: str | None = None,
    external_id: str | None = None,
    serial: str | None = None,
    code: str | None = None,
) -> Credentials:
    params: dict[str, Any] = {
        "RoleArn": role_arn,
        "RoleSessionName": session_name or f"broker-{int(time.time())}",
        "DurationSeconds": duration,
    }
    if external_id:
        params["ExternalId"] = external_id
    if serial:
        params.update(SerialNumber=serial, TokenCode=code)
    try:
        response = _client("sts", source, region).assume_role(**params)
    except Exception as exc:
        raise translate(exc, f"AssumeRole {role_arn}") from None
    return _from_response(response)
