"""End to end: ``forexd run`` as a subprocess, its socket, its SQLite file, real signals."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProc, run_cli, write_config

pytestmark = pytest.mark.e2e

# A half-year of the bundled OANDA EURUSD H1 sample, replayed at full speed.
FAST_CONFIG = """
[feed]
source = "bundled"
speed = 0
end = "{end}"

[[symbols]]
symbol = "EURUSD"
strategy = "sma_cross"
params = {{ fast = 10, slow = 20, units = 10000 }}
"""


def _config(tmp: Path, end: str = "2017-07-01") -> Path:
    return write_config(tmp / f"forexd-{end}.toml", FAST_CONFIG.format(end=end))


def _db(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(data_dir / "forexd.db")


def test_daemon_trades_reports_status_and_exits_cleanly_on_sigterm(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """A replay through the daemon trades, shows in ctl status, persists, stops on SIGTERM."""
    data = short_tmp / "data"
    launched = time.time()
    d = daemon_factory(data, _config(short_tmp))
    ready = d.wait_for("ready")
    # since_exec_s counts the imports too (the process's own start), startup_s does not.
    # (/proc counts in 10 ms ticks: allow two)
    assert 0 < ready["startup_s"] < ready["since_exec_s"] <= time.time() - launched + 0.02
    d.wait_for("feed_exhausted", symbol="EURUSD")
    status = d.status()
    assert "running" == status["state"]
    for key in (
        "version",
        "pid",
        "uptime_s",
        "budget",
        "threads",
        "rss_mb",
        "loop_lag_ms",
        "symbols",
        "account",
    ):
        assert key in status
    assert {
        "usable_cpus",
        "cpu_slots",
        "train_workers",
        "blas_threads",
        "max_concurrent_symbols",
    } <= set(status["budget"])
    assert status["threads"]["peak"] >= status["threads"]["now"] >= 1
    assert {"p50", "p99", "max"} <= set(status["loop_lag_ms"])
    sym = status["symbols"][0]
    assert "EURUSD" == sym["symbol"]
    assert "finished" == sym["state"]
    assert sym["bars_seen"] > 3000
    assert sym["orders_sent"] > 10
    assert sym["last_bar_time"].startswith("2017-06-30")
    assert {"balance", "equity"} <= set(status["account"])

    assert 0 == d.signal(signal.SIGTERM)
    assert not (data / "run" / "ctl.sock").exists()
    assert not (data / "run" / "forexd.pid").exists()
    with _db(data) as conn:
        orders = conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0]
        fills = conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
        equity = conn.execute("SELECT COUNT(*) FROM equity").fetchone()[0]
        statuses = {r[0] for r in conn.execute("SELECT DISTINCT status FROM orders")}
        units = conn.execute("SELECT COALESCE(SUM(units), 0) FROM fills").fetchone()[0]
        pos = conn.execute("SELECT units FROM positions WHERE symbol = 'EURUSD'").fetchone()[0]
    assert orders == sym["orders_sent"]
    assert fills >= orders - 1  # the last order may still wait for its next bar
    assert equity > 0
    assert statuses <= {"filled", "submitted"}
    assert units == pos == sym["position_units"]
    assert d.lines and all(
        {"timestamp", "level", "event", "component"} <= set(line) for line in d.lines
    )
    assert all(line["timestamp"].endswith("Z") for line in d.lines)


def test_restart_resumes_the_paper_account_where_it_stopped(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """A second run continues after the last processed bar with the same account."""
    data = short_tmp / "data"
    first = daemon_factory(data, _config(short_tmp, "2017-04-01"), "--exit-when-done")
    assert 0 == first.wait()
    with _db(data) as conn:
        fills_1 = conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
        pos_1 = conn.execute("SELECT units FROM positions").fetchone()[0]
        (last_ts_1, bars_1) = conn.execute(
            "SELECT last_bar_ts, bars_seen FROM actor_progress"
        ).fetchone()
        balance_1 = conn.execute(
            "SELECT balance FROM equity ORDER BY rowid DESC LIMIT 1"
        ).fetchone()[0]

    second = daemon_factory(data, _config(short_tmp, "2017-07-01"), "--exit-when-done")
    started = second.wait_for("actor_started", symbol="EURUSD")
    assert pos_1 == started["position_units"]
    assert started["resume_after"] is not None
    assert 0 == second.wait()
    with _db(data) as conn:
        fills_2 = conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
        ids = [r[0] for r in conn.execute("SELECT client_id FROM orders")]
        (last_ts_2, bars_2) = conn.execute(
            "SELECT last_bar_ts, bars_seen FROM actor_progress"
        ).fetchone()
        first_bar_2 = conn.execute(
            "SELECT MIN(bar_ts) FROM orders WHERE bar_ts > ?", (last_ts_1,)
        ).fetchone()[0]
        initial = conn.execute("SELECT initial_balance FROM paper_account").fetchone()[0]
        candles = conn.execute("SELECT COUNT(*) FROM candles").fetchone()[0]
    assert len(ids) == len(set(ids))
    assert fills_2 > fills_1
    assert last_ts_2 > last_ts_1
    assert bars_2 > bars_1
    assert first_bar_2 is not None and first_bar_2 > last_ts_1
    assert 100_000.0 == initial
    assert bars_2 == candles  # every bar seen once across both runs, none replayed twice
    assert balance_1 != 100_000.0


def test_second_daemon_on_the_same_data_dir_is_refused(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Only one daemon per data directory: the second exits 4 with a clear message."""
    data = short_tmp / "data"
    first = daemon_factory(data, _config(short_tmp))
    first.wait_for("ready")
    res = run_cli("run", "--data-dir", str(data), "--config", str(_config(short_tmp)))
    assert 4 == res.returncode
    assert "already running" in res.stderr
    assert "Traceback" not in res.stderr
    assert "running" == first.status()["state"]
    assert 0 == first.signal(signal.SIGINT)


def test_garbage_on_the_control_socket_gets_an_error_and_the_daemon_carries_on(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Malformed, unknown and wrong-version requests are answered with errors."""
    data = short_tmp / "data"
    d = daemon_factory(data, _config(short_tmp))
    d.wait_for("ready")
    answers = []
    for payload in (
        b"this is not json\n",
        b"[1, 2]\n",
        b'{"v": 99, "cmd": "status"}\n',
        b'{"v": 1, "cmd": "launch_missiles"}\n',
        b'{"v": 1, "cmd": "status", "args": 5}\n',
        b"\xff\xfe\n",
    ):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(data / "run" / "ctl.sock"))
            s.sendall(payload)
            answers.append(json.loads(s.makefile().readline()))
    assert [False] * 6 == [a["ok"] for a in answers]
    codes = [a["error"]["code"] for a in answers]
    assert [
        "bad_json",
        "bad_request",
        "bad_version",
        "unknown_command",
        "bad_request",
        "bad_json",
    ] == codes
    assert oct(0o600) == oct((data / "run" / "ctl.sock").stat().st_mode & 0o777)
    status = d.status()
    assert status["control"]["bad_requests"] >= 6
    res = d.ctl("stop")
    assert 0 == res.returncode
    assert 0 == d.wait()


def test_ctl_without_a_daemon_says_so_and_exits_3(short_tmp: Path) -> None:
    """ctl against an empty data dir names the directory and how to start one."""
    res = run_cli("ctl", "status", "--data-dir", str(short_tmp / "nothing"))
    assert 3 == res.returncode
    assert "no forexd is running" in res.stderr
    assert str(short_tmp / "nothing") in res.stderr
    assert "Traceback" not in res.stderr


def test_ctl_finds_the_daemon_through_forexd_data_dir(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """FOREXD_DATA_DIR locates the daemon exactly like --data-dir."""
    data = short_tmp / "data"
    d = daemon_factory(data, _config(short_tmp))
    d.wait_for("ready")
    res = run_cli("ctl", "status", env={"FOREXD_DATA_DIR": str(data)})
    assert 0 == res.returncode, res.stderr
    assert "EURUSD" in res.stdout
    assert 0 == d.signal()


def test_a_bad_config_is_refused_naming_the_key(short_tmp: Path) -> None:
    """run with an invalid config exits 2, names the key, prints no traceback."""
    cfg = write_config(short_tmp / "bad.toml", "[feed]\nspeeed = 3\n[broker]\nspread_pips = -1\n")
    res = run_cli("run", "--config", str(cfg), "--data-dir", str(short_tmp / "d"))
    assert 2 == res.returncode
    assert "feed.speeed" in res.stderr
    assert "broker.spread_pips" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (short_tmp / "d" / "forexd.db").exists()
