"""The real ``pass`` command on a throwaway store, keys in a throwaway GnuPG home."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from broker.testing.gnupg import GnupgHome


def pass_run(
    gnupg: GnupgHome, store: Path, *args: str, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The real ``pass`` command on ``store``; the secret goes on stdin (``insert -m``)."""
    env = {**os.environ, **gnupg.env, "PASSWORD_STORE_DIR": str(store)}
    return subprocess.run(
        ["pass", *args], input=input, env=env, capture_output=True, check=True, timeout=60
    )
