import pytest

from broker import config
from broker.errors import ConfigError, UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600), ("1h", 3600), ("90m", 5400), ("1h30m", 5400), ("45s", 45), (" 2H ", 7200)],
)
def test_parse_duration(text, seconds):
    assert config.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1h30", "-5", "1.5h", "soon"])
def test_parse_duration_rejects(text):
    with pytest.raises(UsageError, match="not a duration"):
        config.parse_duration(text)


def test_settings_from_file_and_env(tmp_path, monkeypatch):
    path = tmp_path / "config.toml"
    path.write_text(
        'backend = "pass"\nrefresh_margin = "10m"\ndisabled_plugins = ["x"]\n'
        '[backends.pass]\nprefix = "aws"\n'
    )
    monkeypatch.setenv("BROKER_SESSION_DURATION", "2h")
    monkeypatch.setenv("BROKER_DISABLED_PLUGINS", "y,z")
    settings = config.load(path)
    assert settings.backend == "pass"
    assert settings.refresh_margin == 600
    assert settings.session_duration == 7200
    assert settings.disabled_plugins == {"x", "y", "z"}
    assert settings.backend_settings("pass") == {"prefix": "aws"}


def test_malformed_toml_is_a_config_error(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("backend = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path)


def test_set_value_keeps_comments_and_is_private(tmp_path):
    path = tmp_path / "sub" / "config.toml"
    path.parent.mkdir()
    path.write_text("# my notes\nrefresh_margin = \"5m\"  # keep\n")
    config.set_value("backend", "keyctl", path)
    text = path.read_text()
    assert "# my notes" in text and "# keep" in text and 'backend = "keyctl"' in text
    assert path.stat().st_mode & 0o777 == 0o600


def test_parsed_copy_follows_edits(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "config.toml"
    path.write_text('backend = "pass"\n')
    assert config.load(path).backend == "pass"
    assert (tmp_path / "cache" / "broker" / "config.json").exists()
    assert config.load(path).backend == "pass"  # served from the copy
    path.write_text('backend = "keyctl"\n')
    assert config.load(path).backend == "keyctl"
    path.unlink()
    assert config.load(path).backend is None
