"""Fixtures for the pass backend: real GnuPG, the real `pass` CLI, throwaway homes.

Keys are generated once per session into a template GNUPGHOME (short path under
/tmp for the agent's socket; ed25519/cv25519, protected by a real passphrase with a
cheap S2K count). Every test gets its own copy of that home, so deleting or
distrusting a key stays inside one test, and its own gpg-agent, which never caches
a passphrase (``default-cache-ttl 0``) and is stopped at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from broker_pass import PassBackend

from broker.testing.gnupg import GnupgHome, GnupgKey, throwaway_gnupg_home

PASSPHRASE = "correct horse battery staple ü"
SECOND_PASSPHRASE = "another passphrase for key two"
#: A made-up reference scheme, resolved by TEST_RESOLVER.
PASSPHRASE_REF = "test:gpg-passphrase"

# Never start a pinentry in tests (fail instead); never look keys up on the network.
GPG_CONF = "pinentry-mode error\nauto-key-locate local\nno-auto-key-retrieve\n"


def fake_resolver(reference: str) -> str:
    """The resolver a backend gets in tests: only the made-up scheme."""
    if reference == PASSPHRASE_REF:
        return PASSPHRASE
    raise AssertionError(f"unexpected reference {reference!r}")


def gpg(home: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gpg", "--homedir", home, "--batch", *args],
        input=input, capture_output=True, text=True, timeout=60, check=True,
    )


@dataclass(frozen=True)
class Keys:
    template: GnupgHome
    one: GnupgKey
    two: GnupgKey


@pytest.fixture(scope="session")
def keys() -> Iterator[Keys]:
    """Two ed25519/cv25519 keys, each with a passphrase, in a template home."""
    if shutil.which("gpg") is None or shutil.which("gpgconf") is None:
        pytest.skip("GnuPG is not installed")
    with throwaway_gnupg_home("Broker Test One <one@example.test>", PASSPHRASE,
                              gpg_conf=GPG_CONF) as template:
        two = template.add_key("Broker Test Two <two@example.test>", SECOND_PASSPHRASE)
        template.stop_agent()
        yield Keys(template, template.key, two)


@dataclass
class Env:
    """One test's world: its GNUPGHOME, password store and HOME."""

    gnupghome: str
    store: Path
    home: Path
    keys: Keys

    def init_store(self, *ids: str) -> None:
        """What `pass init ID...` leaves: the store and its .gpg-id."""
        self.store.mkdir(mode=0o700, exist_ok=True)
        (self.store / ".gpg-id").write_text("".join(f"{i}\n" for i in ids))

    def gpg(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return gpg(self.gnupghome, *args, input=input)

    def new_key(self, uid: str, passphrase: str | None) -> GnupgKey:
        """Another key, in this test's GNUPGHOME only."""
        return GnupgHome(Path(self.gnupghome), self.keys.one).add_key(uid, passphrase)

    def pass_cli(
        self, *args: str, input: str | None = None, passphrase: str | None = None,
        check: bool = True, env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `pass`; with ``passphrase``, gpg reads it from stdin (loopback)."""
        run_env = {**os.environ, **(env or {})}
        if passphrase is not None:
            run_env["PASSWORD_STORE_GPG_OPTS"] = (
                "--batch --pinentry-mode loopback --passphrase-fd 0"
            )
            input = passphrase + "\n" + (input or "")
        result = subprocess.run(
            ["pass", *args], input=input, capture_output=True, text=True, timeout=60,
            env=run_env, check=False, start_new_session=True,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pass {' '.join(args)} failed: {result.stderr}")
        return result

    passphrase_ref = PASSPHRASE_REF
    resolver = staticmethod(fake_resolver)

    def backend(self, namespace: str = "credentials", **settings: object) -> PassBackend:
        """A backend over this store whose passphrase comes from the test resolver."""
        merged: dict[str, object] = {"passphrase": PASSPHRASE_REF, **settings}
        return PassBackend(settings=merged, namespace=namespace, resolver=fake_resolver)

    def reopen(self, backend: PassBackend) -> PassBackend:
        """A second instance over the same storage (nothing cached from the first)."""
        return PassBackend(
            settings=backend.settings, namespace=backend.namespace, resolver=fake_resolver
        )


@pytest.fixture
def env(keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """An isolated HOME, a private copy of the keys' GNUPGHOME and an empty store path."""
    with throwaway_gnupg_home(copy_of=keys.template) as copy:
        gnupghome = str(copy.path)
        home = tmp_path / "home"
        home.mkdir()
        for name in list(os.environ):
            if name.startswith(("PASSWORD_STORE_", "GIT_", "BROKER_")) or name in (
                "GPG_TTY", "GPG_AGENT_INFO", "XDG_RUNTIME_DIR",
            ):
                monkeypatch.delenv(name)
        store = tmp_path / "store"
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("GNUPGHOME", gnupghome)
        monkeypatch.setenv("PASSWORD_STORE_DIR", str(store))
        monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
        monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
        monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        yield Env(gnupghome, store, home, keys)


@pytest.fixture
def store(env: Env) -> Env:
    """``env`` with the store initialised for key one, as `pass init` would."""
    env.init_store(env.keys.one.fingerprint)
    return env


@pytest.fixture
def make_backend(store: Env) -> Callable[..., PassBackend]:
    return store.backend
