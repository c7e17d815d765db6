"""What the emulated native core raises.

The core's errors are exceptions whose ``msg`` is compact JSON ``{"name": ..., "message":
...}``, which the SDK's ``errors.raise_typed_exception`` turns into
``RateLimitExceededException``, ``DesktopSessionExpiredException`` or a plain
``Exception(message)``. Error *messages* are the native core's own (read from the library
and observed); the error *names* other than the typed ones are not all known and are
marked as guesses (:data:`GUESSED_NAME`): the Python layer only looks at
``RateLimitExceeded`` and ``DesktopSessionExpired``.
"""

from __future__ import annotations

import json

SUPPORT = "please contact 1Password at support@1password.com or https://developer.1password.com/joinslack"


#: Name guesses: the native core's error enum has more variants than we can observe.
GUESSED_NAME = "Internal"


class CoreError(Exception):
    """What the native core raises: ``msg`` is JSON (or a bare message)."""

    def __init__(self, msg: str) -> None:
        super().__init__(f"msg={msg!r}")
        self.msg = msg

    @classmethod
    def of(cls, name: str, message: str) -> CoreError:
        """The error the core raises for error ``name`` (its JSON ``{"name", "message"}``,
        compact), which the SDK's Python layer maps to its exception classes.
        """
        return cls(json.dumps({"name": name, "message": message}, separators=(",", ":")))


class ErrorNamespace:
    """Mirrors the generated ``Error`` class, whose variant is ``Error.Error``."""

    Error = CoreError
