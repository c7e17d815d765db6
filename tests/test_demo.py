"""scripts/demo runs the whole flow with the 1Password backend too, on the emulator: no
1Password account needed (README, "Try it")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_demo_runs_the_onepassword_path_on_the_emulator():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"),
                           "--backend", "onepassword"], capture_output=True, text=True,
                          timeout=240, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Default backend is now onepassword" in out
    assert "Added the key for dev in backend onepassword" in out
    assert "vault:         AWS" in out
    assert ":assumed-role/dev-role/" in out
    assert "Demo finished" in out
