"""IAM virtual MFA device calls for `broker mfa enroll`.

boto3 is imported only when a call is made (through :func:`broker.aws.sts.client`);
errors become broker errors through :func:`broker.aws.sts.translate`. The seed
CreateVirtualMFADevice returns is handed to the caller and never put in a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.aws import sts
from broker.aws.credentials import Credentials
from broker.errors import AuthenticationError, AWSError, UsageError

# Where a device stands, as seen by the user enrolling it.
ASSIGNED = "assigned"  # enabled for this user
UNASSIGNED = "unassigned"  # created, not enabled for anyone
OTHER_USER = "other user"  # enabled for someone else
MISSING = "missing"  # no such virtual device


class DeviceExists(AWSError):
    """A virtual MFA device with that name exists already."""

    def __init__(self, serial: str) -> None:
        super().__init__(
            f"a virtual MFA device named {serial.rpartition('/')[2]!r} exists already",
            "choose another name with --device-name",
        )
        self.serial = serial


@dataclass(frozen=True)
class Caller:
    """The IAM user a key belongs to (from sts:GetCallerIdentity)."""

    account: str
    arn: str
    user_name: str


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class IamMfa:
    """The calls, signed with the profile's own long-lived key (it has no MFA yet)."""

    def __init__(self, creds: Credentials, region: str | None) -> None:
        self.creds = creds
        self.region = region
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = sts.client(service, self.creds, self.region)
        return self._clients[service]

    def caller(self) -> Caller:
        """sts:GetCallerIdentity: the key's account, user ARN and user name (the last part of the
        ARN's path).

        Raises:
            UsageError: the key does not belong to an IAM user (a role or the root user).
            AuthenticationError, AWSError, NetworkError: as :func:`broker.aws.sts.translate`.
        """
        try:
            response = self._client("sts").get_caller_identity()
        except Exception as exc:
            raise sts.translate(exc, "GetCallerIdentity", self.creds) from None
        arn = str(response["Arn"])
        kind, _, path = arn.rsplit(":", 1)[-1].partition("/")
        if kind != "user" or not path:
            raise UsageError(
                f"the stored key belongs to {arn}, not to an IAM user",
                "enrol MFA for the IAM user whose access key broker holds",
            )
        return Caller(str(response["Account"]), arn, path.rpartition("/")[2])

    def create_device(self, name: str) -> tuple[str, str]:
        """iam:CreateVirtualMFADevice: its serial (ARN) and its base32 seed."""
        try:
            response = self._client("iam").create_virtual_mfa_device(VirtualMFADeviceName=name)
        except Exception as exc:
            if _code(exc) == "EntityAlreadyExists":
                account = self.caller().account
                raise DeviceExists(f"arn:aws:iam::{account}:mfa/{name}") from None
            raise sts.translate(exc, f"CreateVirtualMFADevice {name}", self.creds) from None
        device = response["VirtualMFADevice"]
        seed = device["Base32StringSeed"]  # a blob: the base32 text as bytes
        if isinstance(seed, bytes):
            seed = seed.decode("ascii", "replace")
        return str(device["SerialNumber"]), str(seed)

    def delete_device(self, serial: str) -> None:
        """iam:DeleteVirtualMFADevice for ``serial`` (AWS refuses while it is still enabled for a
        user).

        Raises:
            AuthenticationError, AWSError, NetworkError: as :func:`broker.aws.sts.translate`.
        """
        try:
            self._client("iam").delete_virtual_mfa_device(SerialNumber=serial)
        except Exception as exc:
            raise sts.translate(exc, f"DeleteVirtualMFADevice {serial}", self.creds) from None

    def user_devices(self, user: str) -> set[str]:
        """Serials of every MFA device enabled for ``user`` (virtual or not)."""
        found: set[str] = set()
        try:
            for page in self._client("iam").get_paginator("list_mfa_devices").paginate(
                UserName=user
            ):
                found.update(str(d["SerialNumber"]) for d in page.get("MFADevices", []))
        except Exception as exc:
            raise sts.translate(exc, f"ListMFADevices for {user}", self.creds) from None
        return found

    def status(self, serial: str, user: str) -> str:
        """Where ``serial`` stands for ``user``: ASSIGNED, UNASSIGNED, OTHER_USER or MISSING."""
        if serial in self.user_devices(user):
            return ASSIGNED
        try:
            pages = self._client("iam").get_paginator("list_virtual_mfa_devices").paginate(
                AssignmentStatus="Any"
            )
            for page in pages:
                for device in page.get("VirtualMFADevices", []):
                    if device.get("SerialNumber") == serial:
                        return OTHER_USER if device.get("User") else UNASSIGNED
        except Exception as exc:
            raise sts.translate(exc, "ListVirtualMFADevices", self.creds) from None
        return MISSING

    def enable(self, user: str, serial: str, code1: str, code2: str) -> None:
        """iam:EnableMFADevice with two consecutive codes."""
        try:
            self._client("iam").enable_mfa_device(
                UserName=user, SerialNumber=serial,
                AuthenticationCode1=code1, AuthenticationCode2=code2,
            )
        except Exception as exc:
            if _code(exc) == "InvalidAuthenticationCode":
                raise AuthenticationError(
                    f"EnableMFADevice: AWS rejected the two codes for {serial}",
                    "check this machine's clock (TOTP needs it right to within seconds), "
                    "then run the same command again: it resumes with the stored seed",
                ) from None
            raise sts.translate(exc, f"EnableMFADevice {serial}", self.creds) from None
