"""IAM users and their access keys in moto's server (an administrator's way in)."""

from __future__ import annotations

import uuid
from typing import Any


def iam_client(moto_url: str) -> Any:
    """A boto3 IAM client on moto's server ``moto_url``, as an administrator."""
    import boto3

    return boto3.client(
        "iam", endpoint_url=moto_url, region_name="us-east-1",
        aws_access_key_id="AKIAADMIN0000000000", aws_secret_access_key="admin",
    )


def create_iam_user(moto_url: str, prefix: str = "rot") -> tuple[str, str, str]:
    """A new IAM user in moto with one access key: (user, key id, secret)."""
    user = f"{prefix}-{uuid.uuid4().hex[:10]}"
    iam = iam_client(moto_url)
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return user, key["AccessKeyId"], key["SecretAccessKey"]


def access_keys(moto_url: str, user: str) -> set[str]:
    """The ids of ``user``'s access keys in moto."""
    listed = iam_client(moto_url).list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {k["AccessKeyId"] for k in listed}
