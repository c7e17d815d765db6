"""Reliability: concurrency on an expiring cache, secrets never in any argv."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET


@pytest.fixture(autouse=True)
def _keyctl(home):
    from broker_keyctl import KeyctlBackend

    if not KeyctlBackend().availability().ok:
        pytest.skip("kernel keyring unavailable")


def _age_sessions(home, seconds_left: int) -> int:
    """Store every cached session again as if STS had issued it an hour ago and only
    ``seconds_left`` remained, through the session cache's own put(): the ``issued``
    field the freshness logic reads is written by broker itself, never forged here."""
    from types import SimpleNamespace
    from unittest import mock

    from broker_keyctl import KeyctlBackend

    from broker.aws import session_cache
    from broker.aws.credentials import Credentials
    from broker.backend import ACCESS_KEY_ID, EXPIRATION, SECRET_ACCESS_KEY, SESSION_TOKEN

    backend = KeyctlBackend(settings={"keyring": home.keyring}, namespace="sessions")
    cache = session_cache.SessionCache(backend, margin=300)
    soon = datetime.now(timezone.utc) + timedelta(seconds=seconds_left)
    an_hour_ago = SimpleNamespace(time=lambda: time.time() - 3600)
    count = 0
    for name in backend.list():
        item = backend.get(name)
        assert item is not None
        creds = Credentials.from_item(item)
        creds.expiration = soon
        meta = {
            k: v for k, v in item.items()
            if k not in (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, EXPIRATION, "issued")
        }
        with mock.patch.object(session_cache, "time", an_hour_ago):
            cache.put(name, creds, **meta)
        count += 1
    return count


def test_fifty_concurrent_exports_on_an_expiring_cache(home, sts):
    home.add_key("base")
    first = json.loads(home.run("export", "admin", "--format", "json", check=True).stdout)
    assert _age_sessions(home, 120) == 2  # inside the 5-minute refresh margin
    sts.reset()
    home.next_step()  # the refresh's code is then not the first fill's (AWS takes each once)

    def export(_: int):
        return home.run("export", "admin", "--format", "json", timeout=240)

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(export, range(50)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    keys = {json.loads(r.stdout)["AccessKeyId"] for r in results}
    assert len(keys) == 1 and keys != {first["AccessKeyId"]}
    assert len(sts.actions("GetSessionToken")) == 1
    assert len(sts.actions("AssumeRole")) == 1
    assert home.mfa_prompts() == 2  # the first fill and the one refresh
    listing = json.loads(home.run("list", "--json", check=True).stdout)
    admin = next(p for p in listing if p["name"] == "admin")
    assert admin["sessions"] and admin["sessions"][0]["seconds_left"] > 3000


def test_a_margin_longer_than_sessions_does_not_refresh_every_call(home, sts):
    home.add_key("dev")
    env = {"BROKER_REFRESH_MARGIN": "24h"}
    for _ in range(3):
        home.run("export", "dev", "--duration", "1h", env=env, check=True)
    assert len(sts.actions("AssumeRole")) == 1


class ArgvWatcher:
    """Samples every process's argv (/proc/*/cmdline) while a command runs."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = [s.encode() for s in secrets if s]
        self.hits: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    argv = (entry / "cmdline").read_bytes()
                except OSError:
                    continue
                for secret in self.secrets:
                    if secret in argv:
                        self.hits.append(argv.replace(b"\0", b" ").decode(errors="replace"))
            self.samples += 1

    def __enter__(self) -> ArgvWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_no_secret_in_any_argv_during_add_and_exec(home):
    with ArgvWatcher([TEST_SECRET]) as watcher:
        home.add_key("dev")
        result = home.run(
            "exec", "dev", "--", "sh", "-c", "sleep 0.3; printf %s \"$AWS_SESSION_TOKEN\"",
            check=True,
        )
    token = result.stdout.strip()
    assert token
    with ArgvWatcher([TEST_SECRET, token]) as second:
        home.run("exec", "dev", "--", "sleep", "0.3", check=True)
        home.run("export", "dev", "--format", "json", check=True)
    assert watcher.samples > 0 and second.samples > 0
    assert watcher.hits == [] and second.hits == []


def test_no_secret_reaches_home_or_tmpdir(home, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    home.env["TMPDIR"] = str(tmpdir)
    home.add_key("dev")
    home.run("exec", "dev", "--", "true", check=True)
    doc = json.loads(home.run("export", "dev", "--format", "json", check=True).stdout)
    home.run("list", check=True)
    home.run("clear", check=True)
    secrets = [TEST_SECRET, doc["SecretAccessKey"], doc["SessionToken"]]
    scanned = 0
    for base in (home.root, tmpdir):
        for path in base.rglob("*"):
            try:
                if not path.is_file() or path.stat().st_size > 5_000_000:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            scanned += 1
            for secret in secrets:
                assert secret.encode() not in data, path
    assert scanned > 0
