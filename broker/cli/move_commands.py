"""Commands registered on the main group (filled in by their feature)."""

from __future__ import annotations
