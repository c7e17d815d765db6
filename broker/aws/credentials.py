"""The Credentials value object and its conversions. Standard library only."""

from __future__ import annotations

from datetime import datetime, timezone

from broker.backend import ACCESS_KEY_ID, EXPIRATION, SECRET_ACCESS_KEY, SESSION_TOKEN, Item
from broker.errors import BackendError


def utcnow() -> datetime:
    """The current time as an aware datetime in UTC."""
    return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as AWS_CREDENTIAL_EXPIRATION and credential_process use."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An ISO 8601 / RFC 3339 time (``...Z`` or with an offset, as STS, credential_process
    and :func:`format_time` write it) as an aware datetime; a time without an offset is
    taken as UTC.

    Raises:
        ValueError: ``text`` is not an ISO 8601 time (:meth:`datetime.fromisoformat`).
    """
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value


class Credentials:
    """A key pair, with a session token and expiry for temporary credentials."""

    __slots__ = ("access_key_id", "expiration", "secret_access_key", "session_token")

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        session_token: str | None = None,
        expiration: datetime | None = None,
    ) -> None:
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.session_token = session_token
        self.expiration = expiration

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credentials):
            return NotImplemented
        return (
            self.access_key_id == other.access_key_id
            and self.secret_access_key == other.secret_access_key
            and self.session_token == other.session_token
            and self.expiration == other.expiration
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:  # never show the secret parts
        return (
            f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key='***', "
            f"session_token={'***' if self.session_token else None}, "
            f"expiration={self.expiration})"
        )

    def seconds_left(self, now: datetime | None = None) -> float:
        """Seconds from ``now`` (default: the current time, UTC) until :attr:`expiration`;
        negative once expired, ``inf`` for a long-lived key (no expiration).
        """
        if self.expiration is None:
            return float("inf")
        return (self.expiration - (now or utcnow())).total_seconds()

    def to_item(self, **meta: str) -> Item:
        """The credentials as an :class:`~broker.backend.Item`: the key pair, the session token
        and the expiration (RFC 3339 UTC, :func:`format_time`) when set, plus ``meta`` as
        extra fields (the session cache adds ``issued`` and the key profile).
        """
        fields = {ACCESS_KEY_ID: self.access_key_id, SECRET_ACCESS_KEY: self.secret_access_key}
        if self.session_token:
            fields[SESSION_TOKEN] = self.session_token
        if self.expiration:
            fields[EXPIRATION] = format_time(self.expiration)
        fields.update(meta)
        return Item(fields)

    @classmethod
    def from_item(cls, item: Item, *, what: str = "item") -> Credentials:
        """Credentials from an item's ``aws_access_key_id``, ``aws_secret_access_key`` and
        optional ``aws_session_token`` and ``expiration`` fields (key fields stripped of
        blanks); ``what`` names the item in error messages.

        Raises:
            BackendError: a key field is missing or empty, or the expiration is malformed.
        """
        try:
            key_id = item[ACCESS_KEY_ID].strip()
            secret = item[SECRET_ACCESS_KEY].strip()
        except KeyError as exc:
            raise BackendError(
                f"{what} has no {exc.args[0]} field",
                "re-add the key with `broker add PROFILE`",
            ) from None
        if not key_id or not secret:
            raise BackendError(f"{what} has an empty key field", "re-add it with `broker add`")
        expiration = None
        if item.get(EXPIRATION):
            try:
                expiration = parse_time(item[EXPIRATION])
            except ValueError:
                raise BackendError(
                    f"{what} has a malformed expiration", "run `broker clear`"
                ) from None
        return cls(key_id, secret, item.get(SESSION_TOKEN) or None, expiration)
