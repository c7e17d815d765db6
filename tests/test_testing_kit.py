"""broker's test kit: a Context over memory backends, a throwaway GnuPG home, and the
1Password emulator shipped with its plugin (and importable from an installed tree)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker.backend import Item
from broker.testing.context import memory_context
from broker.testing.gnupg import GnupgHome, agent_pid, throwaway_gnupg_home
from broker.testing.memory import MemoryBackend

ROOT = Path(__file__).resolve().parents[1]


class Other(MemoryBackend):
    name = "other"


# --- memory_context --------------------------------------------------------------------


def test_a_memory_context_holds_the_keys_it_was_given(tmp_path):
    item = Item(aws_access_key_id="AKIAITEM", aws_secret_access_key="s", mfa_serial="arn:x")
    ctx = memory_context(tmp_path / "config.toml", {"dev": ("AKIADEV", "secret"), "it": item})
    store = ctx.backend("memory")
    assert store.get("dev") == Item(aws_access_key_id="AKIADEV", aws_secret_access_key="secret")
    assert store.get("it") == item
    assert ctx.settings.path == tmp_path / "config.toml"
    assert ctx.credential_backend_name() == "memory"
    assert ctx.session_cache_name() == "memory"


def test_each_memory_context_has_stores_of_its_own(tmp_path):
    one = memory_context(tmp_path / "c", {"dev": ("AKIAONE", "s")}, more={"other": Other})
    two = memory_context(tmp_path / "c", more={"other": Other})
    one.backend("other").set("x", Item(note="only in one"))
    assert two.backend("memory").get("dev") is None
    assert two.backend("other").get("x") is None
    # the instances one context opens share its store, as a real store's do
    assert one.backend("memory", "sessions").settings == one.backend("memory").settings
    assert memory_context(tmp_path / "c", backends={"memory": {"store": "s1"}}).backend(
        "memory").settings["store"] == "s1"


def test_memory_context_settings_pass_through(tmp_path, monkeypatch):
    monkeypatch.delenv("BROKER_SESSION_CACHE", raising=False)
    ctx = memory_context(tmp_path / "c", credential_backend=None, session_cache="none",
                         backend=Other)
    assert ctx.settings.backend is None
    assert ctx.session_cache_name() is None
    assert ctx.registry.backend_class("memory") is Other
    with pytest.raises(ValueError, match="backend="):
        memory_context(tmp_path / "c", more={"memory": Other})


# --- throwaway_gnupg_home -------------------------------------------------------------


needs_gpg = pytest.mark.skipif(
    shutil.which("gpg") is None or shutil.which("gpgconf") is None, reason="GnuPG is not installed"
)


def _alive(pid: int, wait: float = 0.0) -> bool:
    """Still running after ``wait`` seconds (a zombie, left to an init that does not reap
    it, counts as gone)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        if "\nState:\tZ" in status:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)


@needs_gpg
def test_a_throwaway_home_is_private_encrypts_and_goes_away_with_its_agent():
    with throwaway_gnupg_home() as gnupg:
        assert stat.S_IMODE(gnupg.path.stat().st_mode) == 0o700
        assert len(str(gnupg.path / "S.gpg-agent.extra")) < 100  # a socket path fits
        assert gnupg.env == {"GNUPGHOME": str(gnupg.path)}
        assert len(gnupg.key.fingerprint) == 40 and len(gnupg.key.subkey_id) == 16
        armored = gnupg.gpg("-e", "-a", "-r", gnupg.key.fingerprint, input="hello").stdout
        assert gnupg.gpg("-d", input=armored).stdout == "hello"
        pid = gnupg.agent_pid()
        assert pid is not None and _alive(pid)
        path = gnupg.path
    assert not path.exists()
    assert not _alive(pid, wait=5)  # an exiting process takes a moment
    assert agent_pid(path) is None


@needs_gpg
def test_a_protected_key_needs_its_passphrase_every_time():
    secret = "tiny-pony-lantern-3"
    with throwaway_gnupg_home("p@example.invalid", secret) as gnupg:
        assert gnupg.key.passphrase == secret
        armored = gnupg.gpg("-e", "-a", "-r", gnupg.key.uid, input="hello").stdout
        loopback = ("--pinentry-mode", "loopback", "--passphrase-fd", "0")
        wrong = gnupg.gpg(*loopback, "-d", input="wrong\n" + armored, check=False)
        assert wrong.returncode != 0
        for _ in range(2):  # nothing cached by the agent in between
            assert gnupg.gpg(*loopback, "-d", input=secret + "\n" + armored).stdout == "hello"
            assert gnupg.gpg("--pinentry-mode", "error", "-d", input=armored,
                             check=False).returncode != 0


@needs_gpg
def test_a_copied_home_has_the_keys_and_extra_configuration():
    with throwaway_gnupg_home() as template:
        second = template.add_key("second@example.invalid")
        with throwaway_gnupg_home(copy_of=template, gpg_conf="no-auto-key-retrieve\n") as copy:
            assert copy.path != template.path and copy.key == template.key
            assert not list(copy.path.glob("S.*"))  # not the template's agent's sockets
            listed = copy.gpg("--with-colons", "--list-secret-keys").stdout
            assert template.key.fingerprint in listed and second.fingerprint in listed
            assert (copy.path / "gpg.conf").read_text().endswith("no-auto-key-retrieve\n")
            assert copy.agent_pid() not in (None, template.agent_pid())
            assert isinstance(copy, GnupgHome)


# --- the 1Password emulator ships with its plugin ---------------------------------------


def test_the_emulator_is_packaged_with_the_onepassword_plugin():
    from setuptools import find_namespace_packages

    found = find_namespace_packages(where="plugins", include=["broker*"])
    assert "broker_onepassword.testing" in found
    assert "broker_onepassword.testing._site" in found  # its sitecustomize ships too
    assert (ROOT / "plugins/broker_onepassword/testing/_site/sitecustomize.py").is_file()
    assert not (ROOT / "broker" / "testing" / "onepassword_emulator.py").exists()


def test_the_installed_tree_imports_the_emulator_and_routes_a_child():
    from broker_onepassword import testing

    assert testing.SITE.is_dir()
    env = {**os.environ, **testing.child_environment("/nonexistent/op.json")}
    code = ("import sys, onepassword.lib.x86_64.op_uniffi_core as core; "
            "print('broker_onepassword.testing' in sys.modules, core.__spec__.origin)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=False, cwd="/")
    if "No module named 'onepassword.lib.x86_64'" in done.stderr:
        pytest.skip("the SDK has no x86_64 core on this machine")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "broker_onepassword.testing.shim"]
