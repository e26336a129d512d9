"""Typed configuration: TOML, FOREXD_* overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from forexd.config import load_settings
from forexd.daemon.paths import resolve_paths
from forexd.errors import ConfigError


def test_defaults_are_the_embedded_paper_demo() -> None:
    """With no file the daemon trades EURUSD from the bundled sample on paper."""
    s = load_settings(None)
    assert "paper" == s.broker.kind
    assert "bundled" == s.feed.source
    assert ["EURUSD"] == [x.symbol for x in s.active_symbols]


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FOREXD_FEED__SPEED beats [feed] speed; the file beats defaults."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[feed]\nspeed = 5\n[broker]\nspread_pips = 1.5\n")
    monkeypatch.setenv("FOREXD_FEED__SPEED", "7")
    s = load_settings(cfg)
    assert 7.0 == s.feed.speed
    assert 1.5 == s.broker.spread_pips


def test_cli_overrides_beat_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A --data-dir flag beats FOREXD_DATA_DIR."""
    monkeypatch.setenv("FOREXD_DATA_DIR", str(tmp_path / "env"))
    s = load_settings(None, data_dir=tmp_path / "flag")
    assert tmp_path / "flag" == s.data_dir


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("[feed]\nspeeed = 1\n", "feed.speeed: unknown key"),
        ("[broker]\nspread_pips = -1\n", "broker.spread_pips"),
        ("[[symbols]]\nsymbol = 'XAUBTC'\n", "unknown symbol 'XAUBTC'"),
        ("[[symbols]]\nsymbol = 'EURUSD'\n[[symbols]]\nsymbol = 'EURUSD'\n", "twice"),
        ("[[symbols]]\nsymbol = 'EURUSD'\nparams = {fast = 30, slow = 20}\n", "fast (30)"),
        ("[[symbols]]\nsymbol = 'EURUSD'\nstrategy = 'moon'\n", "symbols.0.strategy: Value"),
        ("shutdown_timeout_s = 'soon'\n", "shutdown_timeout_s"),
        ("[feed\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_file_and_key(tmp_path: Path, body: str, fragment: str) -> None:
    """Every bad key is reported with its dotted name and the file."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert fragment in str(info.value)
    assert str(cfg) in str(info.value)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    """A config path that does not exist is named."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_runtime_dir_defaults_under_the_data_dir(tmp_path: Path) -> None:
    """ctl and run agree: the socket lives in DATA/run unless configured."""
    paths = resolve_paths(load_settings(None, data_dir=tmp_path))
    assert tmp_path / "run" / "ctl.sock" == paths.socket
    assert tmp_path / "forexd.db" == paths.db


def test_an_overlong_socket_path_is_refused_with_the_fix(tmp_path: Path) -> None:
    """Unix socket paths over ~104 bytes get a message pointing at runtime_dir."""
    deep = tmp_path / ("x" * 120)
    with pytest.raises(ConfigError, match="runtime_dir"):
        resolve_paths(load_settings(None, data_dir=deep))
