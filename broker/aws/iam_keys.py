"""IAM access-key calls for `broker rotate`, and asking STS whose key this is.

boto3 is imported only when a call is made (through :func:`broker.aws.sts.client`).
Errors become broker errors through :func:`broker.aws.sts.translate`; no message
ever carries a secret (key ids are not secret and are named freely).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.aws import sts
from broker.aws.credentials import Credentials
from broker.errors import AWSError, UsageError


class KeyLimitReached(AWSError):
    """The user already has the two access keys IAM allows."""


@dataclass(frozen=True)
class Identity:
    """What GetCallerIdentity says about a key."""

    account: str
    arn: str

    @property
    def user_name(self) -> str:
        """The IAM user's name (the last part of ``arn:...:user/path/name``)."""
        kind, _, path = self.arn.rsplit(":", 1)[-1].partition("/")
        if kind != "user" or not path:
            raise UsageError(
                f"the key belongs to {self.arn}, not to an IAM user",
                "rotate root keys in the console; broker rotates IAM users' keys",
            )
        return path.rpartition("/")[2]


@dataclass(frozen=True)
class AccessKey:
    """One of a user's access keys, as ListAccessKeys shows it (never the secret)."""

    access_key_id: str
    status: str


def caller_identity(creds: Credentials, region: str | None) -> Identity:
    """sts:GetCallerIdentity signed with ``creds`` (works with any valid key, no MFA)."""
    try:
        response = sts.client("sts", creds, region).get_caller_identity()
    except Exception as exc:
        raise sts.translate(exc, "GetCallerIdentity", creds) from None
    return Identity(account=str(response["Account"]), arn=str(response["Arn"]))


def create_access_key(creds: Credentials, region: str | None, user: str) -> Credentials:
    """iam:CreateAccessKey for ``user``: the new long-lived key (id and secret)."""
    try:
        response = sts.client("iam", creds, region).create_access_key(UserName=user)
    except Exception as exc:
        if _code(exc) == "LimitExceeded":
            raise KeyLimitReached(
                f"CreateAccessKey for {user}: the user already has two access keys",
                "IAM allows two; delete the one broker does not hold",
            ) from None
        raise sts.translate(exc, f"CreateAccessKey for {user}", creds) from None
    key = response["AccessKey"]
    return Credentials(str(key["AccessKeyId"]), str(key["SecretAccessKey"]))


def delete_access_key(creds: Credentials, region: str | None, user: str, key_id: str) -> None:
    """iam:DeleteAccessKey ``key_id`` of ``user``."""
    try:
        sts.client("iam", creds, region).delete_access_key(UserName=user, AccessKeyId=key_id)
    except Exception as exc:
        raise sts.translate(exc, f"DeleteAccessKey {key_id}", creds) from None


def list_access_keys(creds: Credentials, region: str | None, user: str) -> list[AccessKey]:
    """iam:ListAccessKeys for ``user`` (ids and status only)."""
    try:
        response = sts.client("iam", creds, region).list_access_keys(UserName=user)
    except Exception as exc:
        raise sts.translate(exc, f"ListAccessKeys for {user}", creds) from None
    return [
        AccessKey(str(m["AccessKeyId"]), str(m.get("Status", "")))
        for m in response.get("AccessKeyMetadata", [])
    ]


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))
