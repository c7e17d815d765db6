"""Benchmarks: this working tree against an earlier commit, interleaved.

    .venv/bin/python bench/compare.py REV [--runs 30]

``bench/run.py`` gives figures for one version; between two of its runs the machine's
load moves absolute times by a third, more than most changes cost. This script answers
"is it slower than REV?" instead: it checks REV out into a throwaway git worktree, sets
up one home per version as run.py does (local STS on 127.0.0.1, a throwaway kernel
keyring, a stored test key, a warmed session cache), then times the cases one run of
each version after the other, so that both see the same load. It prints, per case, each
version's median wall time (ms) and peak RSS (MiB) and the ratio of this tree to REV.

REV runs from its checkout through PYTHONPATH, with this virtualenv's packages and
plugin entry points: it must have the same plugin names and modules (broker_keyctl,
broker_pass, broker_onepassword). Commits of the same dependency set compare fairly.
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
from collections.abc import Iterator
from pathlib import Path

from run import BIN, bench_home, peak_rss, write_profiles

from broker.testing.local_sts import local_sts

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """``rev`` checked out (detached) in a throwaway directory, removed afterwards.

    Raises SystemExit when git cannot check ``rev`` out (unknown revision, no git)."""
    where = Path(tempfile.mkdtemp(prefix="broker-compare-"))
    checkout = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where / "src"), rev],
        capture_output=True, text=True, check=False,
    )
    if checkout.returncode != 0:
        shutil.rmtree(where, ignore_errors=True)
        raise SystemExit(f"cannot check out {rev!r}: {checkout.stderr.strip()}")
    try:
        yield where / "src"
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(where / "src")], capture_output=True, check=False)
        shutil.rmtree(where, ignore_errors=True)


def home(label: str, source: Path | None, url: str,
         made: list[tuple[Path, str]]) -> dict[str, str]:
    """A throwaway home for one version: its environment, the key stored and a session
    cached (``source``: the checkout to run, None for this tree). The home and its
    keyring are added to ``made``, for the caller to remove."""
    root = Path(tempfile.mkdtemp(prefix=f"broker-compare-{label}-"))
    keyring = f"broker-compare-{uuid.uuid4().hex[:8]}"
    made.append((root, keyring))
    extra = {} if source is None else {"PYTHONPATH": f"{source}:{source / 'plugins'}"}
    return bench_home(root, keyring, url, extra)


def interleaved(argv: list[str], envs: dict[str, dict[str, str]],
                runs: int) -> dict[str, list[float]]:
    """Wall times (ms) of ``argv`` under each environment, one run of each in turn.

    Raises SystemExit when a run fails."""
    times: dict[str, list[float]] = {label: [] for label in envs}
    for _ in range(2):  # warm the page cache, the bytecode and the plugin index
        for env in envs.values():
            subprocess.run(argv, env=env, capture_output=True, check=False)
    for i in range(runs):
        order = list(envs.items()) if i % 2 == 0 else list(reversed(envs.items()))
        for label, env in order:
            start = time.perf_counter()
            result = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                    check=False)
            times[label].append((time.perf_counter() - start) * 1000)
            if result.returncode != 0:
                raise SystemExit(f"{label}: {' '.join(argv)} exited {result.returncode}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the commit to compare with (e.g. HEAD~3, a tag)")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    made: list[tuple[Path, str]] = []
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(worktree(args.rev))
        url = stack.enter_context(local_sts(BIN))
        try:
            envs = {"this tree": home("new", None, url, made),
                    args.rev: home("old", source, url, made)}
            broker = str(BIN / "broker")
            cases: list[tuple[str, list[str], int | None]] = [
                ("broker exec dev -- true (cached)", [broker, "exec", "dev", "--", "true"],
                 None),
                ("broker export dev --format json (cached)",
                 [broker, "export", "dev", "--format", "json"], None),
            ]
            for size in (5, 500):
                cases.append((f"broker list ({size} profiles)", [broker, "list"], size))
            print(f"{'case':<44}{'this tree':>11}{args.rev[:12]:>13}{'ratio':>8}"
                  f"{'RSS MiB':>9}{'(' + args.rev[:8] + ')':>11}")
            for label, argv, count in cases:
                run_envs = envs
                if count is not None:
                    run_envs = {name: dict(env, AWS_CONFIG_FILE=str(
                        write_profiles(Path(env["HOME"]), count))) for name, env in envs.items()}
                times = interleaved(argv, run_envs, args.runs)
                new, old = (statistics.median(times[name]) for name in run_envs)
                rss_new, rss_old = (peak_rss(argv, env) for env in run_envs.values())
                print(f"{label:<44}{new:>9.1f}ms{old:>11.1f}ms{new / old:>7.2f}x"
                      f"{rss_new:>9.1f}{rss_old:>11.1f}")
            print(f"({args.runs} runs of each, interleaved; {sys.executable}, "
                  f"{os.cpu_count()} cpus)")
        finally:
            with contextlib.suppress(Exception):
                from broker_keyctl import KeyctlBackend

                for _, keyring in made:
                    KeyctlBackend(settings={"keyring": keyring}).purge(every_namespace=True)
            for root, _ in made:
                shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
