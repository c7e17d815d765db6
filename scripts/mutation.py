"""Mutation testing of broker's critical modules with mutmut (not part of CI: too slow).

Run it through ``scripts/mutation``, which makes the virtualenv and installs mutmut first::

    scripts/mutation                          # every module below, one worker
    scripts/mutation paths cli-errors         # some modules
    scripts/mutation --workers 2 chain        # more CPU
    scripts/mutation --list                   # the modules and the tests run for each
    scripts/mutation --report                 # the last results again, no run

Each module is mutated in its own copy of the working tree (``--workdir``, default
``$XDG_CACHE_HOME/broker-mutation``), with mutmut's settings from ``[tool.mutmut]`` in
pyproject.toml and, per module, ``only_mutate`` = that file and the test selection = the
tests below. mutmut keeps its results there: a second run retests only the functions that
changed. Prints, per module, the score (killed / mutants), the time, and every surviving
mutant with its diff. See docs/mutation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Module:
    path: str
    tests: tuple[str, ...]


#: The critical modules and the tests that cover them. Only tests that call the module in
#: the pytest process can kill a mutant: a `broker` subprocess imports the unmutated code.
MODULES: dict[str, Module] = {
    "session-cache": Module("broker/aws/session_cache.py", (
        "tests/test_invariants_cache.py", "tests/test_chain.py",
        "tests/test_invariants_mfa.py", "tests/test_revocation.py",
    )),
    "chain": Module("broker/aws/chain.py", (
        "tests/test_invariants_chain.py", "tests/test_invariants_cache.py", "tests/test_chain.py",
    )),
    "mfa": Module("broker/aws/mfa.py", (
        "tests/test_invariants_mfa.py", "tests/test_totp_sources.py",
    )),
    "mfa-ledger": Module("broker/aws/mfa_ledger.py", (
        "tests/test_invariants_mfa.py", "tests/test_totp_sources.py",
    )),
    "present": Module("broker/services/present.py", (
        "tests/test_invariants_present.py", "tests/test_invariants_env.py",
    )),
    "server": Module("broker/services/server.py", (
        "tests/test_invariants_server.py", "tests/test_invariants_env.py",
        "tests/test_server.py", "tests/test_server_limits.py",
    )),
    "child": Module("broker/services/child.py", (
        "tests/test_invariants_server.py", "tests/test_server.py",
        "tests/test_invariants_present.py",
    )),
    "cli-errors": Module("broker/cli/errors.py", (
        "tests/test_invariants_cli.py", "tests/test_invariants_cli_help.py",
    )),
    "profiles": Module("broker/aws/profiles.py", (
        "tests/test_profiles.py", "tests/test_invariants_profiles.py",
        "tests/test_invariants_chain.py", "tests/test_invariants_cache.py",
        "tests/test_broker_item.py",
    )),
    "config": Module("broker/config.py", (
        "tests/test_invariants_config.py", "tests/test_config.py",
        "tests/test_invariants_settings.py",
    )),
    "paths": Module("broker/paths.py", (
        "tests/test_invariants_paths.py", "tests/test_runtime_dirs.py",
    )),
}

#: What mutmut's statuses count as: killed (the tests failed), or not.
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
IGNORED = {"skipped"}
#: Copied into each work tree; everything else comes from ``git ls-files``.
SKIP_PARTS = {".git", ".venv", "mutants", "__pycache__", ".pytest_cache", ".mypy_cache",
              ".ruff_cache", ".hypothesis"}


@dataclass
class Result:
    name: str
    path: str
    statuses: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None
    error: str = ""

    @property
    def total(self) -> int:
        return sum(1 for s in self.statuses.values() if s not in IGNORED)

    @property
    def killed(self) -> int:
        return sum(1 for s in self.statuses.values() if s in KILLED)

    @property
    def score(self) -> float:
        return 100.0 * self.killed / self.total if self.total else 0.0

    def survivors(self) -> list[tuple[str, str]]:
        return sorted((n, s) for n, s in self.statuses.items() if s not in KILLED | IGNORED)


def _files() -> list[Path]:
    """The working tree's files: tracked and untracked-not-ignored (as a clone would be,
    plus what is being written now)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, check=True, capture_output=True,
        ).stdout.decode()
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file()]
    return [Path(n) for n in names
            if not SKIP_PARTS & set(Path(n).parts) and (REPO / n).is_file()]


def sync_tree(target: Path) -> None:
    """Make ``target`` a copy of the working tree, keeping mutmut's ``mutants/`` and the
    timestamps of unchanged files (mutmut reuses results for unchanged sources)."""
    target.mkdir(parents=True, exist_ok=True)
    wanted = {str(p) for p in _files()}
    for path in sorted(target.rglob("*"), reverse=True):
        relative = path.relative_to(target)
        if relative.parts[0] == "mutants":
            continue
        if path.is_file() and str(relative) not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    for name in sorted(wanted):
        source, copy = REPO / name, target / name
        if copy.exists() and copy.read_bytes() == source.read_bytes():
            continue
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, copy)


def configure(tree: Path, module: Module) -> None:
    """Point the copy's ``[tool.mutmut]`` at one module and its tests."""
    import tomlkit

    pyproject = tree / "pyproject.toml"
    document = tomlkit.parse(pyproject.read_text(encoding="utf-8"))
    tool = document.setdefault("tool", tomlkit.table())
    mutmut = tool.setdefault("mutmut", tomlkit.table())
    mutmut["only_mutate"] = [module.path]
    mutmut["pytest_add_cli_args_test_selection"] = list(module.tests)
    new = tomlkit.dumps(document)
    if new != pyproject.read_text(encoding="utf-8"):
        pyproject.write_text(new, encoding="utf-8")


def mutmut(tree: Path, *args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "mutmut"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for name in [n for n in env if n.startswith(("AWS_", "BROKER_"))]:
        del env[name]  # the tests make their own isolated homes
    if log is None:
        return subprocess.run([str(executable), *args], cwd=tree, env=env, text=True,
                              capture_output=True, check=False)
    with open(log, "w", encoding="utf-8") as stream:
        return subprocess.run([str(executable), *args], cwd=tree, env=env, text=True,
                              stdout=stream, stderr=subprocess.STDOUT, check=False)


_RESULT_LINE = re.compile(r"^\s*(\S+): (.+?)\s*$")


def statuses(tree: Path, module: Module) -> dict[str, str]:
    prefix = module.path.removesuffix(".py").replace("/", ".") + "."
    found = {}
    for line in mutmut(tree, "results", "--all", "true").stdout.splitlines():
        match = _RESULT_LINE.match(line)
        if match and match.group(1).startswith(prefix):
            found[match.group(1)] = match.group(2)
    return found


def _tests_fingerprint(tree: Path) -> str:
    """A hash of every test file: mutmut keeps a mutant's verdict until its function
    changes, so a verdict reached with other tests must be forgotten here."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((tree / "tests").rglob("*.py")):
        digest.update(str(path.relative_to(tree)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_module(name: str, module: Module, workdir: Path, workers: int) -> Result:
    tree = workdir / name
    sync_tree(tree)
    configure(tree, module)
    stamp = workdir / f"{name}.tests-sha256"
    fingerprint = _tests_fingerprint(tree)
    if not stamp.exists() or stamp.read_text() != fingerprint:
        shutil.rmtree(tree / "mutants", ignore_errors=True)  # the tests changed: all again
    stamp.write_text(fingerprint)
    log = workdir / f"{name}.log"
    print(f"mutation: {name}: mutating {module.path} against {', '.join(module.tests)} "
          f"(log: {log})", flush=True)
    started = time.monotonic()
    process = mutmut(tree, "run", "--max-children", str(workers), log=log)
    result = Result(name, module.path, seconds=time.monotonic() - started)
    if process.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        result.error = f"mutmut exited with {process.returncode}:\n" + "\n".join(tail)
    result.statuses = statuses(tree, module)
    _save(workdir, result)
    return result


def _save(workdir: Path, result: Result) -> None:
    summary = workdir / "summary.json"
    data = json.loads(summary.read_text()) if summary.exists() else {}
    data[result.name] = {"path": result.path, "seconds": result.seconds,
                         "statuses": result.statuses, "error": result.error}
    summary.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _load(workdir: Path, names: list[str]) -> list[Result]:
    summary = workdir / "summary.json"
    data = json.loads(summary.read_text()) if summary.exists() else {}
    return [Result(n, data[n]["path"], data[n]["statuses"], data[n]["seconds"], data[n]["error"])
            for n in names if n in data]


def report(results: list[Result], workdir: Path, diffs: bool) -> None:
    print()
    print(f"{'module':16} {'killed':>7} {'mutants':>8} {'score':>7} {'time':>8}  file")
    for r in results:
        took = f"{r.seconds / 60:.1f}m" if r.seconds is not None else "-"
        print(f"{r.name:16} {r.killed:7} {r.total:8} {r.score:6.1f}% {took:>8}  {r.path}")
    killed, total = sum(r.killed for r in results), sum(r.total for r in results)
    if len(results) > 1 and total:
        print(f"{'all':16} {killed:7} {total:8} {100.0 * killed / total:6.1f}%")
    for r in results:
        if r.error:
            print(f"\n{r.name}: {r.error}")
        survivors = r.survivors()
        if not survivors:
            continue
        print(f"\n{r.name}: {len(survivors)} not killed")
        for mutant, status in survivors:
            print(f"  {status:12} {mutant}")
            if diffs:
                shown = mutmut(workdir / r.name, "show", mutant).stdout
                body = [ln for ln in shown.splitlines()
                        if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))]
                for line in body:
                    print(f"      {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"modules to mutate (default: all): {', '.join(MODULES)}")
    parser.add_argument("--workers", type=int, default=1,
                        help="mutants tested at once (default 1: CPU is shared)")
    parser.add_argument("--workdir", type=Path,
                        default=Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                        / "broker-mutation")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results first")
    parser.add_argument("--list", action="store_true", help="show the modules and their tests")
    parser.add_argument("--report", action="store_true", help="show the last results only")
    parser.add_argument("--no-diffs", action="store_true", help="list survivors without diffs")
    args = parser.parse_args(argv)

    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    names = args.modules or list(MODULES)
    if args.list:
        for name in names:
            print(f"{name:16} {MODULES[name].path}\n{'':16} {' '.join(MODULES[name].tests)}")
        return 0
    workdir: Path = args.workdir.expanduser().resolve()
    if args.report:
        report(_load(workdir, names), workdir, not args.no_diffs)
        return 0
    if args.fresh:
        for name in names:
            shutil.rmtree(workdir / name, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    results = [run_module(name, MODULES[name], workdir, args.workers) for name in names]
    report(results, workdir, not args.no_diffs)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
