"""Plugin discovery: broken plugins weaken broker but never break it; switching off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker.backend import Backend
from broker.errors import BackendUnavailable, ConfigError
from broker.registry import Registry
from broker.testing.memory import MemoryBackend
from tests.conftest import TEST_KEY_ID, TEST_SECRET


def fake_distribution(site: Path, name: str, module: str, source: str, ep_name: str) -> None:
    """A minimal installed distribution: a dist-info with an entry point, and its module."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[broker.backends]\n{ep_name} = {module}:Plugin\n"
    )
    (site / f"{module}.py").write_text(source)


GOOD = '''
from broker.backend import Availability, Backend, Capability

class Plugin(Backend):
    name = "extra"
    description = "a third-party test plugin"
    capabilities = Capability.LIST
    def availability(self):
        return Availability(False, "extra: not configured here")
'''


def test_broken_plugin_is_reported_and_the_rest_works(home, tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "broker-broken", "broker_broken_plugin",
                      "raise RuntimeError('boom at import')\n", "broken")
    env = {"PYTHONPATH": str(site)}
    result = home.run("backend", "list", "--json", env=env, check=True)
    by_name = {b["name"]: b for b in json.loads(result.stdout)}
    assert by_name["broken"]["broken"] is True
    assert "boom at import" in by_name["broken"]["reason"]
    assert by_name["broken"]["distribution"] == "broker-broken"
    assert "plugin 'broken' from broker-broken is broken" in result.stderr
    assert by_name["keyctl"]["available"] is True
    home.add_key("dev")
    assert home.run("export", "dev", env=env).returncode == 0
    selected = home.run("list", "--backend", "broken", env=env)
    assert selected.returncode == 7 and "broken" in selected.stderr


def test_new_distribution_is_seen_without_a_stale_index(home, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    env = {"PYTHONPATH": str(site)}
    first = json.loads(home.run("backend", "list", "--json", env=env, check=True).stdout)
    assert "extra" not in {b["name"] for b in first}
    fake_distribution(site, "broker-extra", "broker_extra_plugin", GOOD, "extra")
    second = {b["name"]: b for b in json.loads(
        home.run("backend", "list", "--json", env=env, check=True).stdout)}
    assert second["extra"]["available"] is False
    assert second["extra"]["reason"] == "extra: not configured here"
    assert second["extra"]["distribution"] == "broker-extra"


def test_disabled_plugins(home, tmp_path):
    result = home.run("backend", "list", "--json", env={"BROKER_DISABLED_PLUGINS": "pass"})
    assert "pass" not in {b["name"] for b in json.loads(result.stdout)}
    chosen = home.run("list", "--backend", "pass", env={"BROKER_DISABLED_PLUGINS": "pass"})
    assert chosen.returncode == 7 and "disabled" in chosen.stderr


def test_registry_in_process_extras_and_errors():
    registry = Registry(extra={"memory": MemoryBackend}, disabled=frozenset({"keyctl"}))
    assert "memory" in registry.names() and "keyctl" not in registry.names()
    assert isinstance(registry.create("memory"), Backend)
    with pytest.raises(ConfigError, match="no backend named"):
        registry.create("nosuch")
    with pytest.raises(BackendUnavailable, match="disabled"):
        registry.create("keyctl")


def test_construct_failure_is_a_clear_error():
    class Exploding(MemoryBackend):
        def __init__(self, **kwargs):
            raise ValueError("bad settings")

    registry = Registry(extra={"exploding": Exploding})
    with pytest.raises(BackendUnavailable, match="failed to start: ValueError: bad settings"):
        registry.create("exploding")


EAGER = '''
from broker.backend import Availability, Backend, Capability

class Plugin(Backend):
    name = "eager"
    description = "a third-party session cache"
    capabilities = Capability.LIST | Capability.STORE_SESSIONS | Capability.EXPIRY
    priority = {priority}
    def availability(self):
        return Availability(True)
    def get(self, name):
        return None
    def list(self):
        return []
'''


def test_priority_is_kept_in_the_index_and_read_again_when_the_class_changes(home, tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "broker-eager", "broker_eager_plugin", EAGER.format(priority=100),
                      "eager")
    # no __pycache__ in the site dir: a new entry there would change sys.path's stamp
    env = {"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}

    def cache() -> str:
        listing = json.loads(home.run("backend", "list", "--json", env=env, check=True).stdout)
        return next(b["name"] for b in listing if b["session_cache"])

    assert cache() == "eager"  # outranks keyctl (1) for the default session cache
    index = json.loads((Path(home.env["XDG_CACHE_HOME"]) / "broker" / "plugins.json").read_text())
    assert index["facts"]["eager"]["priority"] == 100
    assert index["facts"]["keyctl"]["priority"] == 1
    module = site / "broker_eager_plugin.py"
    module.write_text(EAGER.format(priority=0.5))
    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    assert cache() == "keyctl"  # the changed file was read again


def test_a_cached_exec_chooses_without_importing_other_plugins(home):
    from broker_keyctl import KeyctlBackend

    from tests.support.imports import imported_modules

    if not KeyctlBackend().availability().ok:
        pytest.skip("kernel keyring unavailable")
    home.add_key("dev")
    home.run("export", "dev", check=True)  # fills the session cache
    names = imported_modules(home.env, "export", "dev")
    assert "broker_keyctl" in names
    assert not names & {"broker_pass", "broker_onepassword"}, sorted(names)


def test_every_backend_created_gets_the_resolver():
    seen = []

    class Recording(MemoryBackend):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            seen.append(self._resolver)

    registry = Registry(extra={"recording": Recording})
    registry.create("recording")
    registry.availability("recording")
    registry.best_credential_backend()
    assert seen and all(r is registry.resolver for r in seen)
    assert registry.resolver("env:HOME") == os.environ["HOME"]


RAISING = '''
from broker.backend import Backend, Capability, Item

class Plugin(Backend):
    name = "raising"
    description = "a plugin whose availability check has a bug"
    capabilities = Capability.LIST | Capability.PERSISTENT
    items = {}
    def availability(self):
        raise RuntimeError("availability bug")
    def get(self, name):
        return Plugin.items.get(name)
    def set(self, name, item, *, expires_at=None):
        Plugin.items[name] = item
    def delete(self, name):
        return Plugin.items.pop(name, None) is not None
    def list(self):
        return sorted(Plugin.items)
'''


def test_an_availability_check_that_raises_is_unavailable_everywhere(home, tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "broker-raising", "broker_raising_plugin", RAISING, "raising")
    env = {"PYTHONPATH": str(site)}
    listed = home.run("list", "--backend", "raising", env=env)
    assert listed.returncode == 7, listed.stderr
    assert "raising" in listed.stderr and "RuntimeError" in listed.stderr
    assert "broker-raising" in listed.stderr  # the plugin, by its distribution
    assert "unexpected error" not in listed.stderr
    added = home.run("add", "zz", "--backend", "raising", env=env,
                     input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n")
    assert added.returncode == 7, added.stderr
    assert "broker-raising" in added.stderr and "availability bug" not in added.stderr
    assert "[profile zz]" not in home.aws_config.read_text()  # nothing was written
    shown = json.loads(home.run("backend", "list", "--json", env=env, check=True).stdout)
    row = next(b for b in shown if b["name"] == "raising")
    assert row["available"] is False and "RuntimeError" in row["reason"]
    assert "availability bug" not in row["reason"]  # a plugin's text may hold a secret


def test_the_broken_plugin_warning_is_said_once_per_command(home, tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "broker-broken", "broker_broken_plugin",
                      "raise RuntimeError('boom at import')\n", "broken")
    env = {"PYTHONPATH": str(site)}
    home.add_key("dev")
    index = Path(home.env["XDG_CACHE_HOME"]) / "broker" / "plugins.json"
    # export first: its import of the plugin writes site/__pycache__, which changes
    # sys.path's stamp between the cached path's registry and the full path's
    for args in (("export", "dev"), ("exec", "dev", "--", "true"), ("backend", "list"),
                 ("list",), ("doctor",)):
        index.unlink(missing_ok=True)  # each command learns the plugin is broken
        result = home.run(*args, env=env)
        assert result.stderr.count("plugin 'broken' from broker-broken is broken") <= 1, args
    assert result.stderr.count("plugin 'broken' from broker-broken is broken") == 1


def test_a_priority_that_is_not_a_number_makes_the_plugin_broken(home, tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "broker-eager", "broker_eager_plugin",
                      EAGER.format(priority='"9"'), "eager")
    env = {"PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    result = home.run("backend", "list", "--json", env=env, check=True)
    row = next(b for b in json.loads(result.stdout) if b["name"] == "eager")
    assert row["broken"] is True
    assert "priority '9' is not a number" in row["reason"]
    assert result.stderr.count("priority '9' is not a number") == 1
    assert next(b["name"] for b in json.loads(result.stdout) if b["session_cache"]) == "keyctl"
    index = json.loads((Path(home.env["XDG_CACHE_HOME"]) / "broker" / "plugins.json").read_text())
    assert index["facts"]["eager"]["broken"] is True


def test_an_entry_point_named_unlike_its_class_is_warned_about_and_wins(home, tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "broker-extra", "broker_extra_plugin",
                      GOOD.replace('"extra: not', '"other: not')
                      .replace('name = "extra"', 'name = "other"')
                      .replace("Availability(False", "Availability(True"),
                      "extra")
    env = {"PYTHONPATH": str(site)}
    result = home.run("backend", "list", env=env, check=True)
    warning = ("plugin 'extra' from broker-extra declares name = 'other'; broker calls it "
               "'extra', its entry point's name")
    assert result.stderr.count(warning) == 1, result.stderr
    made = subprocess.run(
        [sys.executable, "-c", "from broker.registry import Registry; "
         "print(Registry().create('extra').name)"],
        env={**home.env, **env}, capture_output=True, text=True, timeout=60, check=True,
    )
    assert made.stdout.strip() == "extra"  # what broker records (broker_backend...) is it


def test_backend_list_columns_fit_the_longest_name(home, tmp_path):
    site = tmp_path / "site"
    fake_distribution(site, "broker-acme", "broker_acme_plugin",
                      GOOD.replace('"extra', '"acme-enterprise-vault'), "acme-enterprise-vault")
    listed = home.run("backend", "list", env={"PYTHONPATH": str(site)}, check=True).stdout
    rows = [line for line in listed.splitlines() if not line.startswith(("    ", "("))]
    starts = {len(line) - len(line[3:].split(None, 1)[1]) for line in rows}
    assert len(rows) >= 4 and len(starts) == 1, listed  # the state column lines up


def test_a_session_cache_from_the_environment_is_named_as_such(home):
    env = {"BROKER_SESSION_CACHE": "pass"}  # installed, but holds no sessions
    result = home.run("export", "dev", env=env)
    assert result.returncode == 3
    assert "BROKER_SESSION_CACHE=pass" in result.stderr, result.stderr
    assert "session_cache = " not in result.stderr
    unknown = home.run("export", "dev", env={"BROKER_SESSION_CACHE": "acme-json"})
    assert unknown.returncode == 3
    assert "BROKER_SESSION_CACHE=acme-json" in unknown.stderr, unknown.stderr
    home.broker_config.write_text('session_cache = "pass"\n' + home.broker_config.read_text())
    configured = home.run("export", "dev")
    assert configured.returncode == 3
    assert "session_cache = 'pass'" in configured.stderr
    assert str(home.broker_config) in configured.stderr
