"""Invariants of broker's settings: durations parsed to the exact second (and nothing
else accepted), and each precedence order, level by level with both levels set."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest

from broker import config
from broker.aws import profiles
from broker.cli import fast
from broker.errors import ConfigError, UsageError
from broker.services.context import Context
from broker.testing.context import memory_context


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0), ("1", 1), ("59", 59), ("3600", 3600), ("129600", 129600),
        ("1s", 1), ("59s", 59), ("1m", 60), ("90m", 5400), ("1h", 3600), ("36h", 129600),
        ("1h1m1s", 3661), ("1h30m", 5400), ("2m30s", 150), (" 2H ", 7200), ("1H30M", 5400),
        (0, 0), (3600, 3600),
    ],
)
def test_durations_parse_to_the_exact_second(text, seconds):
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", " ", "h", "m30", "1x", "1h30", "30m1", "-5", -5, "1.5h", "1e3", "0x10", "1 h",
     "²", "٣", "1h-1m", "one hour", "1hh"],
)
def test_anything_else_is_not_a_duration(text):
    with pytest.raises(UsageError, match="not a duration") as info:
        config.parse_duration(text, what="--duration")
    assert type(info.value) is UsageError and info.value.exit_code == 2
    assert "--duration" in info.value.message


def test_a_bad_duration_in_the_config_file_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for key in ("BROKER_SESSION_DURATION", "BROKER_REFRESH_MARGIN"):
        monkeypatch.delenv(key, raising=False)
    path = tmp_path / "config.toml"
    path.write_text('session_duration = "8 hours"\n')
    with pytest.raises(ConfigError, match="session_duration") as info:
        config.load(path)
    assert type(info.value) is ConfigError and info.value.exit_code == 3
    path.write_text("refresh_margin = true\n")
    with pytest.raises(ConfigError, match="refresh_margin"):
        config.load(path)


# --- broker's own settings: environment over file over default --------------------------

SETTINGS = {
    "session_duration": ("BROKER_SESSION_DURATION", '"2h"', "3h", 7200, 10800,
                         config.DEFAULT_SESSION_DURATION),
    "refresh_margin": ("BROKER_REFRESH_MARGIN", '"10m"', "20m", 600, 1200,
                       config.DEFAULT_REFRESH_MARGIN),
    "session_cache": ("BROKER_SESSION_CACHE", '"none"', "keyctl", "none", "keyctl", None),
}


@pytest.mark.parametrize("key", SETTINGS)
def test_environment_beats_file_beats_default(tmp_path, monkeypatch, key):
    env_name, file_value, env_value, from_file, from_env, default = SETTINGS[key]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name, *_ in SETTINGS.values():
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "config.toml"
    path.write_text("")
    assert getattr(config.load(path), key) == default
    path.write_text(f"{key} = {file_value}\n")
    assert getattr(config.load(path), key) == from_file
    monkeypatch.setenv(env_name, env_value)
    assert getattr(config.load(path), key) == from_env


# --- which backend holds a profile's key ---------------------------------------------------

BACKEND_LEVELS = ["--backend", "BROKER_BACKEND", "broker_backend", "config file"]


def _context(settings_backend: str | None) -> Context:
    return memory_context(Path("/x"), credential_backend=settings_backend, session_cache=None)


@pytest.mark.parametrize(
    "levels",
    [*combinations(BACKEND_LEVELS, 2), *((level,) for level in BACKEND_LEVELS)],
    ids=lambda levels: " over ".join(levels),
)
def test_credential_backend_precedence_pairwise(monkeypatch, levels):
    value = {level: f"backend-{i}" for i, level in enumerate(BACKEND_LEVELS)}
    monkeypatch.delenv("BROKER_BACKEND", raising=False)
    if "BROKER_BACKEND" in levels:
        monkeypatch.setenv("BROKER_BACKEND", value["BROKER_BACKEND"])
    text = "[profile p]\n"
    if "broker_backend" in levels:
        text += f"broker_backend = {value['broker_backend']}\n"
    profile = profiles.parse(text, Path("/x")).get("p")
    ctx = _context(value["config file"] if "config file" in levels else None)
    explicit = value["--backend"] if "--backend" in levels else None
    assert ctx.credential_backend_name(profile, explicit) == value[levels[0]]


def test_without_any_choice_the_best_available_backend(monkeypatch):
    monkeypatch.delenv("BROKER_BACKEND", raising=False)
    ctx = _context(None)
    profile = profiles.parse("[profile p]\n", Path("/x")).get("p")
    assert ctx.credential_backend_name(profile) == ctx.registry.best_credential_backend()


@pytest.mark.parametrize(
    ("env", "file", "expected"),
    [
        ("memory", "keyctl", "memory"),  # environment over file
        (None, "memory", "memory"),
        ("none", "memory", None),  # "none" turns caching off
        ("NONE", None, None),
        (None, "none", None),
    ],
)
def test_session_cache_precedence(monkeypatch, env, file, expected):
    monkeypatch.delenv("BROKER_SESSION_CACHE", raising=False)
    if env is not None:
        monkeypatch.setenv("BROKER_SESSION_CACHE", env)
    ctx = memory_context(Path("/x"), credential_backend=None, session_cache=file)
    assert ctx.session_cache_name() == expected


# --- the profile used when none is named -------------------------------------------------


@pytest.mark.parametrize(
    ("default_profile", "profile", "expected"),
    [("a", "b", "a"), (None, "b", "b"), ("a", None, "a"), (None, None, "default")],
)
def test_default_profile_precedence_on_both_paths(monkeypatch, default_profile, profile,
                                                  expected):
    for name, value in (("AWS_DEFAULT_PROFILE", default_profile), ("AWS_PROFILE", profile)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert profiles.default_profile_name() == expected
    parsed = fast._parse_export([])  # the cached path must agree with the full one
    if expected == "default":
        assert parsed is None or parsed[0] == "default"
    else:
        assert parsed == (expected, "env")
