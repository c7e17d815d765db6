"""The recording proxy the tests used to have: now :class:`broker.testing.local_sts.LocalSTS`,
which records every request's parameters (``actions()``, ``url``, ``reset()``) and also
enforces AWS's STS rules. Kept so older imports keep working."""

from __future__ import annotations

from broker.testing.local_sts import LocalSTS as Recorder

__all__ = ["Recorder"]
