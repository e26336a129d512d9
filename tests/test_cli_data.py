"""`forexd data import` and `config check` as a user runs them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from forexd.feeds.loaders import bundled_sample_path
from tests.daemon_proc import run_cli

pytestmark = pytest.mark.e2e


def test_import_is_idempotent_and_bad_files_change_nothing(tmp_path: Path) -> None:
    """Importing twice adds nothing; a broken file is refused before anything is written."""
    data = tmp_path / "d"
    first = run_cli(
        "data",
        "import",
        str(bundled_sample_path()),
        "--symbol",
        "eurusd",
        "--timeframe",
        "H1",
        "--data-dir",
        str(data),
        "--json",
    )
    assert 0 == first.returncode, first.stderr
    out = json.loads(first.stdout)
    assert out["rows"] == out["inserted"] > 10_000
    again = json.loads(
        run_cli(
            "data",
            "import",
            str(bundled_sample_path()),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "H1",
            "--data-dir",
            str(data),
            "--json",
        ).stdout
    )
    assert 0 == again["inserted"]
    bad = tmp_path / "bad.csv"
    bad.write_text("time,open,high,low,close\n2018-01-01T00:00:00,1.2,1.1,1.3,1.2\n")
    res = run_cli("data", "import", str(bad), "--symbol", "EURUSD", "--data-dir", str(data))
    assert 2 == res.returncode
    assert str(bad) in res.stderr and "Traceback" not in res.stderr
    with sqlite3.connect(data / "forexd.db") as conn:
        assert out["rows"] == conn.execute("SELECT COUNT(*) FROM candles").fetchone()[0]


def test_unknown_symbol_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    """An unknown symbol lists the known ones; a missing file is named."""
    res = run_cli(
        "data",
        "import",
        str(bundled_sample_path()),
        "--symbol",
        "XAUBTC",
        "--data-dir",
        str(tmp_path),
    )
    assert 2 == res.returncode and "EURUSD" in res.stderr
    res = run_cli(
        "data",
        "import",
        str(tmp_path / "nope.csv"),
        "--symbol",
        "EURUSD",
        "--data-dir",
        str(tmp_path),
    )
    assert 2 == res.returncode and "nope.csv" in res.stderr
    assert "Traceback" not in res.stderr


def test_replay_from_the_store_after_import(tmp_path: Path) -> None:
    """feed.source = "store" replays imported candles through the daemon."""
    data = tmp_path / "d"
    assert (
        0
        == run_cli(
            "data",
            "import",
            str(bundled_sample_path()),
            "--symbol",
            "EURUSD",
            "--timeframe",
            "H1",
            "--data-dir",
            str(data),
        ).returncode
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text("[feed]\nsource = 'store'\nspeed = 0\nend = '2017-03-01'\n")
    res = run_cli(
        "run",
        "--config",
        str(cfg),
        "--data-dir",
        str(data),
        "--exit-when-done",
        "--log-format",
        "json",
    )
    assert 0 == res.returncode, res.stderr
    events = [json.loads(line) for line in res.stdout.splitlines()]
    done = next(e for e in events if e["event"] == "feed_exhausted")
    assert done["bars_seen"] > 900


def test_config_check_prints_effective_settings_and_flags_bad_keys(tmp_path: Path) -> None:
    """config check shows resolved paths; a bad file exits 2 naming the key."""
    good = tmp_path / "g.toml"
    good.write_text("[feed]\nspeed = 5\n")
    res = run_cli("config", "check", str(good), "--json")
    assert 0 == res.returncode
    body = json.loads(res.stdout)
    assert 5.0 == body["settings"]["feed"]["speed"]
    assert "resolved_paths" in body["settings"]
    bad = tmp_path / "b.toml"
    bad.write_text("[risk]\nmax_drawdown = 7\n")
    res = run_cli("config", "check", str(bad))
    assert 2 == res.returncode and "risk.max_drawdown" in res.stderr


def test_hw_reports_the_budget(tmp_path: Path) -> None:
    """forexd hw --json shows usable CPUs and a budget that fits them."""
    res = run_cli("hw", "--json")
    assert 0 == res.returncode, res.stderr
    budget = json.loads(res.stdout)["budget"]
    assert budget["train_workers"] * budget["blas_threads"] <= budget["cpu_slots"]
