"""Parsers fuzzed: any input gives a result or a clear broker error, never a traceback."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import config
from broker.aws.profiles import parse, resolve_chain
from broker.errors import BrokerError

P = Path("/fuzz/config")
KEYS = ["region", "mfa_serial", "role_arn", "source_profile", "duration_seconds",
        "external_id", "role_session_name", "mfa_process", "credential_process", "x"]

line = st.one_of(
    st.text(max_size=40),
    st.builds(lambda n: f"[profile {n}]", st.text(max_size=8)),
    st.builds(lambda n: f"[{n}]", st.text(max_size=8)),
    st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(KEYS), st.text(max_size=12)),
    st.builds(lambda v: f"source_profile = {v}", st.sampled_from(["a", "b", "c", "default"])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, max_size=25))
def test_aws_config_parser_never_crashes(lines):
    text = "\n".join(lines)
    try:
        cfg = parse(text, P)
    except BrokerError as exc:
        assert exc.message and "\n" not in exc.message
        return
    for name in list(cfg.profiles)[:5]:
        try:
            chain = resolve_chain(cfg, name)
        except BrokerError as exc:
            assert exc.message
            continue
        assert chain.key_profile.name in cfg.profiles


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_duration_parser(text):
    try:
        seconds = config.parse_duration(text)
    except BrokerError as exc:
        assert "duration" in exc.message
        return
    assert seconds >= 0


toml_value = st.one_of(
    st.text(max_size=10).map(lambda s: '"' + s.replace("\\", "").replace('"', "") + '"'),
    st.integers(-5, 100000).map(str),
    st.sampled_from(["true", "[]", '["a", 1]', "{}", "1979-05-27", "= 1", "\"", "[x"]),
)
toml_line = st.one_of(
    st.builds(lambda k, v: f"{k} = {v}",
              st.sampled_from(["backend", "session_cache", "session_duration",
                               "refresh_margin", "disabled_plugins", "backends", "other"]),
              toml_value),
    st.sampled_from(["[backends.pass]", "[backends]", "[[backends]]", "prefix = 'x'"]),
    st.text(max_size=20),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(st.lists(toml_line, max_size=8))
def test_broker_config_parser_never_crashes(tmp_path, monkeypatch, lines):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines))
    try:
        settings_ = config.load(path)
    except BrokerError as exc:
        assert exc.message and "\n" not in exc.message.strip()
        return
    assert settings_.session_duration >= 0
