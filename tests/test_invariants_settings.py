"""Invariants of broker's own settings file, value by value: what a malformed value tells
the user (the exact message, hint and exit code), which values and variables end up in
the settings, when the parsed copy of the file is used instead of parsing it again, and
what ``set_value`` leaves in the file."""

from __future__ import annotations

import contextlib
import datetime
import locale
import os
import stat
import sys
from pathlib import Path

import pytest

from broker import config
from broker.errors import ConfigError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DURATION_HINT = "use seconds (3600) or units like 1h, 90m, 1h30m"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """No BROKER_* variable set; broker's cache (the parsed copy) under ``tmp_path``."""
    for name in [n for n in os.environ if n.startswith("BROKER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def _refused(path: Path, text: str) -> ConfigError:
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        config.load(path)
    assert type(raised.value) is ConfigError and raised.value.exit_code == 3
    return raised.value


# --- a value of the wrong type: the key, and how to fix it ---------------------------------


@pytest.mark.parametrize(
    ("text", "what", "hint"),
    [
        ("session_cache = 1\n", "session_cache must be a string", "edit {}"),
        ("session_cache = true\n", "session_cache must be a string", "edit {}"),
        ("backend = 1\n", "backend must be a string", "edit {}"),
        ('backend = ["pass"]\n', "backend must be a string", "edit {}"),
        ("session_duration = [3600]\n", "session_duration must be a duration",
         'e.g. "1h" or 3600'),
        ("refresh_margin = true\n", "refresh_margin must be a duration", 'e.g. "1h" or 3600'),
        ("refresh_margin = 1.5\n", "refresh_margin must be a duration", 'e.g. "1h" or 3600'),
        ("backends = 1\n", "[backends.NAME] must be tables", "edit {}"),
        ('backends = "pass"\n', "[backends.NAME] must be tables", "edit {}"),
        ('[backends]\npass = "x"\n', "[backends.NAME] must be tables", "edit {}"),
        ('[backends.pass]\nprefix = "aws"\n[backends]\nkeyctl = 1\n',
         "[backends.NAME] must be tables", "edit {}"),
        ('disabled_plugins = "foo"\n', "disabled_plugins must be a list of names",
         'e.g. disabled_plugins = ["foo"]'),
        ('disabled_plugins = ["foo", 1]\n', "disabled_plugins must be a list of names",
         'e.g. disabled_plugins = ["foo"]'),
        ("disabled_plugins = 1\n", "disabled_plugins must be a list of names",
         'e.g. disabled_plugins = ["foo"]'),
    ],
)
def test_a_value_of_the_wrong_type_names_the_file_the_key_and_the_fix(home, text, what, hint):
    path = home / "config.toml"
    error = _refused(path, text)
    assert error.message == f"{path}: {what}"
    assert error.hint == hint.format(path)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('session_duration = "8 hours"\n', {}, "session_duration '8 hours' is not a duration"),
        ("refresh_margin = -5\n", {}, "refresh_margin -5 is not a duration"),
    ],
)
def test_a_malformed_duration_says_how_to_write_one(home, monkeypatch, text, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    path = home / "config.toml"
    error = _refused(path, text)
    assert error.message == f"{path}: {message}"
    assert error.hint == DURATION_HINT


@pytest.mark.parametrize(
    ("text", "variable", "value"),
    [
        ("", "BROKER_REFRESH_MARGIN", "soon"),
        ('session_duration = "1h"\n', "BROKER_SESSION_DURATION", "1h30"),
    ],
)
def test_a_malformed_duration_from_the_environment_names_the_variable(
    home, monkeypatch, text, variable, value
):
    monkeypatch.setenv(variable, value)
    error = _refused(home / "config.toml", text)
    assert error.message == f"{variable} {value!r} is not a duration"  # not the file
    assert error.hint == f"{DURATION_HINT}; or unset {variable}"


def test_a_duration_on_its_own_is_called_a_duration():
    with pytest.raises(UsageError) as raised:
        config.parse_duration("soon")
    assert raised.value.message == "duration 'soon' is not a duration"
    assert raised.value.hint == DURATION_HINT
    with pytest.raises(UsageError) as raised:
        config.parse_duration("1x", what="--ttl")
    assert raised.value.message == "--ttl '1x' is not a duration"
    assert raised.value.hint == DURATION_HINT


def test_invalid_toml_names_the_file_and_the_fix(home):
    path = home / "config.toml"
    error = _refused(path, "backend = \n")
    assert error.message.startswith(f"{path}: not valid TOML (") and error.message.endswith(")")
    assert error.hint == f"fix or remove {path}"
    with pytest.raises(ConfigError) as raised:
        config.set_value("backend", "pass", path)
    assert type(raised.value) is ConfigError
    assert raised.value.message.startswith(f"{path}: not valid TOML (")
    assert raised.value.hint == f"fix or remove {path}"
    assert path.read_text() == "backend = \n"  # left as it was


@pytest.mark.parametrize("kind", ["under a file", "a directory"])
def test_a_file_that_cannot_be_read_says_why(home, kind):
    if kind == "under a file":
        (home / "plain").write_text("")
        path, reason = home / "plain" / "config.toml", "Not a directory"
    else:
        path, reason = home / "config.d", "Is a directory"
        path.mkdir()
    with pytest.raises(ConfigError) as raised:
        config.load(path)
    assert type(raised.value) is ConfigError and raised.value.exit_code == 3
    assert raised.value.message == f"{path}: cannot read ({reason})"
    assert raised.value.hint == "check its permissions"


# --- what ends up in the settings ----------------------------------------------------------


def test_the_settings_name_the_file_they_came_from(home, monkeypatch):
    path = home / "config.toml"
    path.write_text('backend = "pass"\n')
    assert config.load(path).path == path
    assert config.load(home / "missing.toml").path == home / "missing.toml"
    monkeypatch.setenv("BROKER_CONFIG", str(path))
    settings = config.load()
    assert settings.path == path and settings.backend == "pass"


def test_a_missing_file_is_every_default(home):
    settings = config.load(home / "missing.toml")
    assert settings.backend is None and settings.session_cache is None
    assert settings.session_duration == 8 * 3600 == config.DEFAULT_SESSION_DURATION
    assert settings.refresh_margin == 300 == config.DEFAULT_REFRESH_MARGIN
    assert settings.disabled_plugins == frozenset()
    assert settings.backends == {}


def test_empty_strings_count_as_unset(home):
    path = home / "config.toml"
    path.write_text('backend = ""\nsession_cache = ""\n')
    settings = config.load(path)
    assert settings.backend is None and settings.session_cache is None


def test_disabled_plugins_are_the_files_and_the_variables_names_exactly(home, monkeypatch):
    path = home / "config.toml"
    path.write_text('disabled_plugins = ["a"]\n')
    assert config.load(path).disabled_plugins == frozenset({"a"})
    monkeypatch.setenv("BROKER_DISABLED_PLUGINS", "")
    assert config.load(path).disabled_plugins == frozenset({"a"})
    monkeypatch.setenv("BROKER_DISABLED_PLUGINS", " b, c,,d ")
    assert config.load(path).disabled_plugins == frozenset({"a", "b", "c", "d"})
    path.write_text("")
    monkeypatch.delenv("BROKER_DISABLED_PLUGINS")
    assert config.load(path).disabled_plugins == frozenset()


def test_backend_settings_are_a_copy_and_empty_for_an_unknown_backend(home):
    path = home / "config.toml"
    path.write_text('[backends.pass]\nprefix = "aws"\n')
    settings = config.load(path)
    assert settings.backend_settings("keyctl") == {}
    mine = settings.backend_settings("pass")
    assert mine == {"prefix": "aws"}
    mine["prefix"] = "changed"
    assert settings.backend_settings("pass") == {"prefix": "aws"}
    assert config.Settings(path).backend_settings("pass") == {}


def test_broker_variables_empty_means_unset(monkeypatch):
    assert config.environment("BROKER_DEBUG", {"BROKER_DEBUG": ""}) is None
    assert config.environment("BROKER_DEBUG", {"BROKER_DEBUG": "0"}) == "0"
    assert config.environment("BROKER_DEBUG", {}) is None
    monkeypatch.setenv("BROKER_DEBUG", "yes")
    assert config.environment("BROKER_DEBUG") == "yes"
    assert config.debug_requested() is True
    assert config.debug_requested({}) is False
    with pytest.raises(KeyError, match="BROKER_NOPE is not one of broker's environment"):
        config.environment("BROKER_NOPE", {"BROKER_NOPE": "1"})


# --- the parsed copy -----------------------------------------------------------------------


@pytest.fixture
def no_parse(monkeypatch):
    """Call to make parsing TOML an error from then on: what is loaded must come from the copy."""

    def refuse(*args, **kwargs):
        raise AssertionError("the TOML file was parsed again")

    return lambda: monkeypatch.setattr(tomllib, "load", refuse)


def test_an_unchanged_file_is_served_from_the_copy(home, no_parse):
    path = home / "config.toml"
    path.write_text('backend = "pass"\nrefresh_margin = "10m"\n[backends.pass]\nprefix = "a"\n')
    first = config.load(path)
    copy = home / "cache" / "broker" / "config.json"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    no_parse()
    second = config.load(path)
    expected = ("pass", 600, {"pass": {"prefix": "a"}})
    assert (first.backend, first.refresh_margin, first.backends) == expected
    assert (second.backend, second.refresh_margin, second.backends) == expected


def test_a_changed_file_is_parsed_again(home, no_parse):
    path = home / "config.toml"
    path.write_text('backend = "pass"\n')
    config.load(path)
    path.write_text('backend = "keyctl"\n')
    no_parse()
    with pytest.raises(AssertionError, match="parsed again"):
        config.load(path)


def test_a_date_reads_the_same_on_every_load(home):
    """TOML dates have no JSON form: such a file is parsed every time, never half-copied."""
    path = home / "config.toml"
    path.write_text("[backends.x]\nsince = 2024-01-02\n")
    loads = [config.load(path).backend_settings("x") for _ in range(3)]
    assert loads == [{"since": datetime.date(2024, 1, 2)}] * 3


# --- set_value -----------------------------------------------------------------------------


def test_set_value_makes_a_missing_file(home):
    path = home / "new" / "config.toml"
    assert config.set_value("backend", "pass", path) == path
    assert path.read_text() == 'backend = "pass"\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_set_value_none_removes_the_key_and_only_it(home):
    path = home / "config.toml"
    path.write_text('# mine\nbackend = "pass"\nrefresh_margin = "5m"\n')
    config.set_value("backend", None, path)
    assert path.read_text() == '# mine\nrefresh_margin = "5m"\n'
    config.set_value("backend", None, path)  # not there: nothing to do, no error
    assert path.read_text() == '# mine\nrefresh_margin = "5m"\n'


def test_set_value_writes_the_default_file(home, monkeypatch):
    path = home / "elsewhere.toml"
    monkeypatch.setenv("BROKER_CONFIG", str(path))
    assert config.set_value("session_cache", "none", None) == path
    assert path.read_text() == 'session_cache = "none"\n'
    assert config.load().session_cache == "none"


@contextlib.contextmanager
def _ascii_locale():
    """LC_CTYPE "C" (ASCII): what open() without an encoding would then use."""
    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


def test_the_file_is_utf8_whatever_the_locale(home):
    path = home / "config.toml"
    path.write_text('# Jörg\'s settings\n[backends.pass]\nprefix = "brök"\n', encoding="utf-8")
    with _ascii_locale():
        assert config.load(path).backend_settings("pass") == {"prefix": "brök"}
        config.set_value("backend", "pass", path)
        assert config.load(path).backend_settings("pass") == {"prefix": "brök"}
    assert path.read_text(encoding="utf-8") == (
        '# Jörg\'s settings\nbackend = "pass"\n\n[backends.pass]\nprefix = "brök"\n')
