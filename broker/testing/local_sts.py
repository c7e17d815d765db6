"""moto's STS/IAM server on 127.0.0.1: for tests, the demo and the benchmarks.

moto accepts any MFA code and evaluates no trust policy; use it to exercise the real
flow, and assert what broker sends (see the recording proxy in the test suite).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_sts(bin_dir: Path | None = None, timeout: float = 30) -> Iterator[str]:
    """Run ``moto_server`` (from ``bin_dir``, default the interpreter's) until the block
    ends; yields its URL once it answers. The server is stopped by its own PID."""
    executable = (bin_dir or Path(sys.executable).parent) / "moto_server"
    port = free_port()
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
