"""Act as another local user: a throwaway unprivileged uid that no account uses.

``setpriv`` (util-linux) switches to a bare numeric uid and gid with no supplementary
groups, which is all the kernel looks at for sockets, /proc and file modes; no account
has to be created (nothing to clean up, nothing to race with on /etc/passwd). It needs
root (CAP_SETUID): elsewhere the tests that use it are skipped, saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
from typing import Any

import pytest

#: The system's interpreter: readable and runnable by any user, stdlib only.
PYTHON = "/usr/bin/python3"

#: Fetch argv[1] without following a redirect; print what came back as JSON.
FETCH = r"""
import http.client, json, sys, urllib.parse
parts = urllib.parse.urlsplit(sys.argv[1])
try:
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", parts.path or "/")
    response = conn.getresponse()
    print(json.dumps({"status": response.status, "location": response.getheader("Location"),
                      "body": response.read().decode("latin-1")}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__}))
"""

#: Open argv[2] idle connections to 127.0.0.1:argv[1], say "ready", hold them until stdin ends.
HOLD = r"""
import socket, sys
held = []
for _ in range(int(sys.argv[2])):
    held.append(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5))
print("ready", flush=True)
sys.stdin.read()
"""


def throwaway_uid() -> int:
    """A uid no account uses and no process runs as; skips when we cannot switch to one."""
    if os.geteuid() != 0:
        pytest.skip("acting as another local user needs root (setpriv --reuid)")
    if shutil.which("setpriv") is None or not os.access(PYTHON, os.X_OK):
        pytest.skip(f"setpriv (util-linux) or {PYTHON} is missing")
    used = {entry.pw_uid for entry in pwd.getpwall()}
    running = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            running.add(os.stat(f"/proc/{pid}").st_uid)
    uid = next(u for u in range(61_000, 62_000) if u not in used and u not in running)
    probe = as_user(uid, [PYTHON, "-c", "import os; print(os.getuid())"])
    if probe.returncode != 0 or probe.stdout.strip() != str(uid):
        pytest.skip(f"cannot run a process as uid {uid} here: {probe.stderr.strip()}")
    return uid


def command(uid: int, argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


def as_user(uid: int, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 30)
    return subprocess.run(
        command(uid, argv), capture_output=True, text=True, check=False, cwd="/",
        env={"PATH": "/usr/bin:/bin"}, **kwargs,
    )


def fetch_as(uid: int, url: str) -> dict[str, Any]:
    """What user ``uid`` gets for ``url`` (no redirect followed)."""
    done = as_user(uid, [PYTHON, "-c", FETCH, url])
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def hold_as(uid: int, port: int, count: int) -> subprocess.Popen[str]:
    """User ``uid`` holds ``count`` idle connections to ``port`` until stdin is closed."""
    process = subprocess.Popen(
        command(uid, [PYTHON, "-c", HOLD, str(port), str(count)]), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "ready", process.stderr.read() if process.stderr else line
    return process
