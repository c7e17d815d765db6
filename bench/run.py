"""Benchmarks: the cached fast path against bare Python start-up.

    .venv/bin/python bench/run.py [--runs 30]

Sets up a throwaway HOME, moto's STS server on 127.0.0.1, a throwaway kernel
keyring, stores a test key and warms the session cache, then times (median of
N runs) and measures peak RSS of:

    python -c pass                          (the floor: bare interpreter start-up)
    broker exec dev -- true                 (cached)
    broker export dev --format json         (cached)

and prints each with its ratio to the floor. Run with the venv's interpreter:
a pyenv shim adds ~150 ms per start and would hide what broker costs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from broker.testing.gnupg import throwaway_gnupg_home
from broker.testing.local_sts import local_sts

BIN = Path(sys.executable).parent
CONFIG = """\
[default]
region = ap-northeast-1

[profile dev]
mfa_serial = arn:aws:iam::123456789012:mfa/dev-user
role_arn = arn:aws:iam::123456789012:role/dev-role

[profile cold]
role_arn = arn:aws:iam::123456789012:role/cold-role
"""


def bench_home(root: Path, keyring: str, url: str,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    """Make ``root`` a home for the cases: ~/.aws/config (:data:`CONFIG`), broker's
    settings with the kernel keyring ``keyring`` as the backend, the test key stored for
    ``dev`` and its session cached from the local STS at ``url``. Returns the environment
    to run broker with (``extra`` added, e.g. PYTHONPATH).

    Raises:
        subprocess.CalledProcessError: storing the key or the first export failed.
    """
    (root / ".aws").mkdir()
    (root / ".aws" / "config").write_text(CONFIG)
    config = root / "broker.toml"
    config.write_text(f'backend = "keyctl"\n[backends.keyctl]\nkeyring = "{keyring}"\n')
    env = {
        "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(root),
        "AWS_CONFIG_FILE": str(root / ".aws" / "config"),
        "AWS_ENDPOINT_URL": url,
        "BROKER_CONFIG": str(config),
        "XDG_CACHE_HOME": str(root / ".cache"),
        "XDG_STATE_HOME": str(root / ".state"),
        **(extra or {}),
    }
    broker = str(BIN / "broker")
    subprocess.run(
        [broker, "add", "dev"], input=b"AKIAIOSFODNN7EXAMPLE\nbench-secret-not-real\n",
        env=env, check=True, capture_output=True,
    )
    subprocess.run([broker, "export", "dev", "--mfa-code", "123456"], env=env, check=True,
                   capture_output=True)
    return env


def write_profiles(root: Path, count: int) -> Path:
    """A config with ``count`` profiles: a key profile per 10, the rest roles on it."""
    lines = ["[default]", "region = ap-northeast-1", ""]
    for i in range(count):
        if i % 10 == 0:
            lines += [f"[profile key{i}]", f"mfa_serial = arn:aws:iam::123456789012:mfa/u{i}", ""]
        else:
            base = i - i % 10
            lines += [f"[profile role{i}]", f"role_arn = arn:aws:iam::123456789012:role/r{i}",
                      f"source_profile = key{base}", ""]
    path = root / f"config-{count}"
    path.write_text("\n".join(lines))
    return path


def measure(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall time (ms) over ``runs`` runs, and peak RSS (MiB, or NaN if unknown).

    Peak RSS comes from /usr/bin/time: a child's own rusage would report this
    process's high-water mark, which a fork inherits.
    """
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - start) * 1000)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed")
    return statistics.median(times), peak_rss(argv, env)


def peak_rss(argv: list[str], env: dict[str, str]) -> float:
    """Peak RSS of ``argv`` (MiB) by /usr/bin/time, the highest of three runs; NaN without
    it. A child's own rusage would report this process's high-water mark, which a fork
    inherits."""
    if not os.path.exists("/usr/bin/time"):
        return float("nan")
    peaks = []
    for _ in range(3):
        timed = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True, check=False)
        peaks.append(int(timed.stderr.strip().splitlines()[-1]) / 1024)
    return max(peaks)


def cold_exec_per_backend(root: Path, base_env: dict[str, str], keyring: str,
                          runs: int) -> list[tuple[str, float, float, float, float]]:
    """A cold `broker exec` (session cache cleared each time) with each backend holding the
    key: median ms, 1Password calls, 1Password requests (as its rate limits count them,
    sign-in included) and gpg processes per exec. Also prints the requests of `add` and
    `list` with the onepassword backend."""
    import broker_onepassword.testing as onepassword_emulator

    shim = root / "shim"
    shim.mkdir()
    gpg_log = root / "gpg.log"
    real_gpg = shutil.which("gpg") or "/usr/bin/gpg"
    (shim / "gpg").write_text(f'#!/bin/sh\necho x >> "{gpg_log}"\nexec {real_gpg} "$@"\n')
    (shim / "gpg").chmod(0o755)
    # the GnuPG home, its agent stopped at the end
    with throwaway_gnupg_home("broker-bench@example.invalid") as gnupg:
        op_state = root / "op-state.json"
        emulator = onepassword_emulator.OnePasswordEmulator(op_state)
        env = dict(
            base_env,
            PATH=f"{shim}:{base_env['PATH']}",
            PASSWORD_STORE_DIR=str(root / ".password-store"),
            OP_SERVICE_ACCOUNT_TOKEN=emulator.token,
            **gnupg.env,
            **onepassword_emulator.child_environment(op_state),
        )
        subprocess.run(["pass", "init", gnupg.key.uid], env=env, check=True, capture_output=True)
        broker = str(BIN / "broker")
        rows = []
        for backend in ("keyctl", "pass", "onepassword"):
            config = root / f"broker-{backend}.toml"
            config.write_text(
                f'backend = "{backend}"\n[backends.keyctl]\nkeyring = "{keyring}"\n'
                '[backends.onepassword]\nvault = "Broker"\n'
            )
            benv = dict(env, BROKER_CONFIG=str(config))
            emulator.reset_calls()
            subprocess.run([broker, "add", "cold"],
                           input=b"AKIAIOSFODNN7EXAMPLE\nbench-secret-not-real\n",
                           env=benv, check=True, capture_output=True)
            if backend == "onepassword":
                added = emulator.requests()
                emulator.reset_calls()
                subprocess.run([broker, "list"], env=benv, check=True, capture_output=True)
                print(f"1Password requests: `broker add` (first on a machine) "
                      f"{added.get('read', 0)} read + {added.get('write', 0)} write; "
                      f"`broker list` {emulator.request_total()}")
            times, op_calls, op_requests, gpg_runs = [], [], [], []
            for _ in range(runs):
                subprocess.run([broker, "clear"], env=benv, check=True, capture_output=True)
                emulator.reset_calls()
                gpg_log.write_text("")
                start = time.perf_counter()
                subprocess.run([broker, "exec", "cold", "--", "true"], env=benv, check=True,
                               stdin=subprocess.DEVNULL)
                times.append((time.perf_counter() - start) * 1000)
                op_calls.append(emulator.operations())
                op_requests.append(emulator.request_total())
                gpg_runs.append(len(gpg_log.read_text().splitlines()))
            rows.append((backend, statistics.median(times), statistics.mean(op_calls),
                         statistics.mean(op_requests), statistics.mean(gpg_runs)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="broker-bench-"))
    keyring = f"broker-bench-{uuid.uuid4().hex[:8]}"
    stack = contextlib.ExitStack()
    url = stack.enter_context(local_sts(BIN))
    try:
        env = bench_home(root, keyring, url)
        broker = str(BIN / "broker")
        cases = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("broker exec dev -- true (cached)", [broker, "exec", "dev", "--", "true"]),
            ("broker export dev --format json (cached)",
             [broker, "export", "dev", "--format", "json"]),
        ]
        results = []
        for label, argv in cases:
            measure(argv, env, 3)  # warm the page cache and the plugin index
            results.append((label, *measure(argv, env, args.runs)))
        for count in (5, 500):
            list_env = dict(env, AWS_CONFIG_FILE=str(write_profiles(root, count)))
            argv = [broker, "list"]
            measure(argv, list_env, 2)
            results.append((f"broker list ({count} profiles)",
                            *measure(argv, list_env, max(5, args.runs // 3))))
        floor = results[0][1]
        print(f"{'case':<44}{'median ms':>10}{'ratio':>8}{'peak RSS MiB':>14}")
        for label, ms, rss in results:
            print(f"{label:<44}{ms:>10.1f}{ms / floor:>7.2f}x{rss:>14.1f}")
        print()
        cold = cold_exec_per_backend(root, env, keyring, max(5, args.runs // 3))
        print(f"{'cold exec (GetSessionToken + AssumeRole)':<44}{'median ms':>10}"
              f"{'1Password calls':>17}{'requests':>10}{'gpg runs':>10}")
        for backend, ms, op_calls, op_requests, gpg_runs in cold:
            print(f"{'backend ' + backend:<44}{ms:>10.1f}{op_calls:>17.1f}"
                  f"{op_requests:>10.1f}{gpg_runs:>10.1f}")
        print(f"({args.runs} runs each, {sys.executable}, {os.cpu_count()} cpus)")
    finally:
        stack.close()
        try:
            from broker_keyctl import KeyctlBackend

            KeyctlBackend(settings={"keyring": keyring}).purge(every_namespace=True)
        except Exception as exc:
            print(f"warning: could not purge keyring {keyring}: {exc}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
