"""STS calls. boto3/botocore are imported only here and in errors_map, and only when called.

Clients are made by a botocore session for the profile the command runs for, so the
endpoint, CA bundle, regional/FIPS/dual-stack and retry settings are that profile's, and
the usual AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_STS``, ``AWS_CA_BUNDLE``)
take precedence exactly as botocore applies them.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Any

from broker.aws.credentials import Credentials
from broker.errors import ConfigError

#: STS needs a region for its regional endpoint; any works for these calls.
FALLBACK_REGION = "us-east-1"


#: The profile whose client settings calls made in this context use (see profile_scope).
_scope: contextvars.ContextVar[str | None] = contextvars.ContextVar("profile", default=None)


@contextlib.contextmanager
def profile_scope(profile: str | None) -> Iterator[None]:
    """Within the block, STS and IAM clients use ``profile``'s client settings unless a
    call names its own: a command sets this once for the profile it runs for."""
    token = _scope.set(profile)
    try:
        yield
    finally:
        _scope.reset(token)


def _client(
    service: str, creds: Credentials, region: str | None, profile: str | None = None
) -> Any:
    import boto3
    import botocore.exceptions
    import botocore.session

    # A botocore session for the profile that makes the call, so its endpoint_url,
    # [services] block, ca_bundle, sts_regional_endpoints, use_fips_endpoint,
    # use_dualstack_endpoint, retry_mode and max_attempts apply exactly as in the AWS CLI
    # run with --profile, and nothing leaks from [default] or from AWS_PROFILE (the caller's
    # profile may be the very one being resolved). The explicit keys below take the
    # place of the profile's own credential settings.
    core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
    profile = profile or _scope.get()
    if profile is not None:
        core.set_config_variable("profile", profile)
    try:
        session = boto3.session.Session(
            botocore_session=core,
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            aws_session_token=creds.session_token,
            region_name=region or FALLBACK_REGION,
        )
        return session.client(service)
    except botocore.exceptions.ProfileNotFound:
        raise ConfigError(
            f"the AWS CLI finds no profile named {profile!r}",
            "check the profile's section header in ~/.aws/config",
        ) from None
    except botocore.exceptions.BotoCoreError as exc:
        raise ConfigError(
            f"cannot make an {service.upper()} client for profile {profile!r}: {exc}",
            "check the profile's endpoint_url, ca_bundle and retry settings in ~/.aws/config",
        ) from None


def client(
    service: str, creds: Credentials, region: str | None, profile: str | None = None
) -> Any:
    """A boto3 client for ``service`` (sts, iam) signed with ``creds``, with the client
    settings of ``profile`` as a botocore session for that profile applies them
    (``botocore.session.Session(profile=...).create_client``).

    Raises:
        ConfigError: botocore cannot build the client from the profile's settings.
    """
    return _client(service, creds, region, profile)


def _from_response(response: dict[str, Any]) -> Credentials:
    c = response["Credentials"]
    return Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], c["Expiration"])


def translate(
    exc: Exception,
    action: str,
    credentials: Credentials | None = None,
    key_profile: str | None = None,
) -> Exception:
    """A botocore exception as a broker error that keeps AWS's code and message and names the
    next step (see :func:`broker.aws.errors_map.translate`); never a secret. ``credentials``
    are those that signed the request, when known; ``key_profile`` the profile holding the
    long-lived key (default: the profile of :func:`profile_scope`), named in the next step."""
    from broker.aws import errors_map

    error = errors_map.translate(exc, action, credentials=credentials)
    return name_profiles(error, profile=_scope.get(), key_profile=key_profile or _scope.get())


def _translated(
    exc: Exception,
    action: str,
    credentials: Credentials,
    profile: str | None,
    key_profile: str | None,
) -> Exception:
    from broker.aws import errors_map

    error = errors_map.translate(exc, action, credentials=credentials)
    profile = profile or _scope.get()
    return name_profiles(error, profile=profile, key_profile=key_profile or profile)


def name_profiles(error: Exception, *, profile: str | None, key_profile: str | None) -> Exception:
    """``error`` with the ``PROFILE`` placeholders of its next step replaced by the real
    names: the key profile for `broker add`, the profile the command ran for otherwise."""
    from broker.errors import BrokerError

    if isinstance(error, BrokerError) and error.hint:
        hint = error.hint
        if key_profile:
            hint = hint.replace("`broker add PROFILE`", f"`broker add --replace {key_profile}`")
        if profile:
            hint = hint.replace("PROFILE`", f"{profile}`")
        error.hint = hint
    return error


def get_session_token(
    master: Credentials,
    region: str | None,
    duration: int,
    serial: str | None = None,
    code: str | None = None,
    *,
    profile: str | None = None,
    key_profile: str | None = None,
) -> Credentials:
    """GetSessionToken signed with the long-lived ``master`` key; ``duration`` in seconds;
    ``serial`` and ``code`` add MFA.

    Raises:
        AuthenticationError, AWSError, NetworkError: as :func:`translate`.
    """
    params: dict[str, Any] = {"DurationSeconds": duration}
    if serial:
        params.update(SerialNumber=serial, TokenCode=code)
    try:
        response = _client("sts", master, region, profile).get_session_token(**params)
    except Exception as exc:
        raise _translated(exc, "GetSessionToken", master, profile, key_profile) from None
    return _from_response(response)


def assume_role(
    source: Credentials,
    region: str | None,
    role_arn: str,
    *,
    duration: int | None,
    session_name: str | None = None,
    external_id: str | None = None,
    serial: str | None = None,
    code: str | None = None,
    profile: str | None = None,
    key_profile: str | None = None,
) -> Credentials:
    """AssumeRole signed with ``source``; ``duration`` in seconds (None: not sent, so AWS
    gives its default of one hour, as botocore does); ``serial`` and ``code`` add MFA.

    Raises:
        AuthenticationError, AWSError, NetworkError: as :func:`translate`.
    """
    params: dict[str, Any] = {
        "RoleArn": role_arn,
        "RoleSessionName": session_name or f"broker-{int(time.time())}",
    }
    if duration is not None:
        params["DurationSeconds"] = duration
    if external_id:
        params["ExternalId"] = external_id
    if serial:
        params.update(SerialNumber=serial, TokenCode=code)
    try:
        response = _client("sts", source, region, profile).assume_role(**params)
    except Exception as exc:
        raise _translated(exc, f"AssumeRole {role_arn}", source, profile, key_profile) from None
    return _from_response(response)
