"""What a `broker` process imports, measured with ``python -X importtime``."""

from __future__ import annotations

import subprocess
import sys


def imported_modules(env: dict[str, str], *args: str) -> set[str]:
    """Top-level module names imported by `broker ARGS`, from -X importtime."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "broker", *args],
        env=env, capture_output=True, text=True, timeout=60, start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "broker" in names
    return names
