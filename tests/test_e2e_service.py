"""Running it like a service: sd_notify, SIGHUP reload, ctl pause/resume/flatten/logs."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import pytest

from forexd.feeds.loaders import bundled_sample_path
from tests.daemon_proc import DaemonProc, write_config

pytestmark = pytest.mark.e2e

PACED = """
[feed]
source = "bundled"
speed = 36000.0   # 10 H1 bars per second: slow enough to act on a running replay
max_sleep_s = 0.1

[[symbols]]
symbol = "EURUSD"
params = {{ fast = 3, slow = 7, units = {units} }}
{extra}
"""


def test_systemd_notify_sequence_ready_watchdog_stopping(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """With NOTIFY_SOCKET the daemon says READY=1, feeds WATCHDOG=1, then STOPPING=1."""
    sock_path = short_tmp / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(30)
        cfg = write_config(short_tmp / "c.toml", PACED.format(units=10000, extra=""))
        d = daemon_factory(
            short_tmp / "data",
            cfg,
            env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"},
        )
        got: list[str] = []
        while not any("READY=1" in m for m in got):
            got.append(sock.recv(4096).decode())
        while not any("WATCHDOG=1" in m for m in got):
            got.append(sock.recv(4096).decode())
        d.proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in got):
            got.append(sock.recv(4096).decode())
        assert 0 == d.wait()
    order = [
        next(i for i, m in enumerate(got) if key in m)
        for key in ("READY=1", "WATCHDOG=1", "STOPPING=1")
    ]
    assert sorted(order) == order
    assert any("STATUS=trading 1 symbol(s)" in m for m in got)


def test_sighup_reload_adds_a_symbol_and_changes_params_without_dropping_positions(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """SIGHUP applies a new symbol and new parameters; an invalid file is rejected."""
    sample = short_tmp / "sample.csv.gz"
    sample.write_bytes(bundled_sample_path().read_bytes())
    cfg = write_config(short_tmp / "c.toml", PACED.format(units=10000, extra=""))
    d = daemon_factory(short_tmp / "data", cfg)
    d.wait_for("ready")
    d.wait_for("order_filled", symbol="EURUSD")
    before = {s["symbol"]: s for s in d.status()["symbols"]}["EURUSD"]
    write_config(
        cfg,
        PACED.format(
            units=20000,
            extra=f"""
[[symbols]]
symbol = "USDCHF"
data = "{sample}"
params = {{ fast = 5, slow = 12 }}

[risk]
max_open_positions = 4
""",
        ),
    )
    d.proc.send_signal(signal.SIGHUP)
    reloaded = d.wait_for("reloaded")
    assert ["USDCHF"] == reloaded["added"]
    assert ["EURUSD"] == reloaded["strategies_changed"]
    assert reloaded["risk_limits_changed"] is True
    d.wait_for("order_filled", symbol="USDCHF")
    status = {s["symbol"]: s for s in d.status()["symbols"]}
    assert {"EURUSD", "USDCHF"} == set(status)
    assert status["EURUSD"]["bars_seen"] >= before["bars_seen"]
    assert 0 == status["EURUSD"]["restarts"]

    write_config(cfg, "[feed]\nspeed = 'fast'\n")
    res = d.ctl("reload")
    assert 2 == res.returncode
    assert "feed.speed" in res.stderr and "Traceback" not in res.stderr
    write_config(cfg, PACED.format(units=20000, extra="[broker]\nspread_pips = 3\n"))
    res = d.ctl("reload")
    assert 2 == res.returncode and "broker changed, which needs a restart" in res.stderr
    missing = short_tmp / "missing.csv"
    write_config(
        cfg,
        PACED.format(
            units=30000,
            extra=f"""
[[symbols]]
symbol = "GBPUSD"
data = "{missing}"
""",
        ),
    )
    res = d.ctl("reload")
    assert 2 == res.returncode and str(missing) in res.stderr
    assert 1 == sum(1 for line in d.lines if line.get("event") == "strategy_reloaded")
    assert {"EURUSD", "USDCHF"} == {s["symbol"] for s in d.status()["symbols"]}
    assert 0 == d.signal()


def test_pause_flatten_resume_and_logs(short_tmp: Path, daemon_factory: type[DaemonProc]) -> None:
    """pause stops new trades, flatten --yes closes the position, logs shows the trail."""
    cfg = write_config(short_tmp / "c.toml", PACED.format(units=10000, extra=""))
    d = daemon_factory(short_tmp / "data", cfg)
    d.wait_for("ready")
    d.wait_for("order_filled", symbol="EURUSD")
    assert 0 == d.ctl("pause", "EURUSD").returncode
    assert "paused" == d.status()["symbols"][0]["state"]
    refused = d.ctl("flatten", "EURUSD")
    assert 2 == refused.returncode and "--yes" in refused.stderr
    res = d.ctl("flatten", "EURUSD", "--yes", "--json")
    assert 0 == res.returncode, res.stderr
    flat = json.loads(res.stdout)["flattened"][0]
    if flat["client_id"] is not None:
        d.wait_for("order_filled", client_id=flat["client_id"], position_units=0)
    assert 0 == d.status()["symbols"][0]["position_units"]
    logs = d.ctl("logs", "--symbol", "EURUSD", "--json")
    events = [json.loads(line)["event"] for line in logs.stdout.splitlines()]
    assert "actor_paused" in events
    assert all(json.loads(line).get("symbol") == "EURUSD" for line in logs.stdout.splitlines())
    assert 0 == d.ctl("resume", "EURUSD").returncode
    assert "running" == d.status()["symbols"][0]["state"]
    unknown = d.ctl("pause", "GBPUSD")
    assert 2 == unknown.returncode and "not traded" in unknown.stderr
    assert 0 == d.signal()


def test_log_file_rotates_and_never_contains_secrets(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """log_file gets JSON lines; the OANDA token and account id never appear in it."""
    log = short_tmp / "logs" / "forexd.jsonl"
    token = "s3cr3t-token-" + "x" * 40
    cfg = write_config(
        short_tmp / "c.toml",
        f"""
log_file = "{log}"
log_file_max_mb = 0.002
[broker.oanda]
token = "{token}"
account_id = "101-004-1435156-001"
[feed]
speed = 0
end = "2017-03-01"
""",
    )
    d = daemon_factory(short_tmp / "data", cfg, "--exit-when-done")
    assert 0 == d.wait()
    files = sorted(log.parent.iterdir())
    assert len(files) > 1  # rotated
    text = "".join(f.read_text() for f in files) + "".join(d.raw)
    assert token not in text
    assert "1435156" not in text
    assert all(json.loads(line)["event"] for line in log.read_text().splitlines())
    assert log.stat().st_size <= 4096


def test_prometheus_endpoint_serves_daemon_metrics(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """[metrics] enabled: a scrape of the loopback endpoint shows lag, threads, positions."""
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = write_config(
        short_tmp / "c.toml",
        PACED.format(
            units=10000,
            extra=f"""
[metrics]
enabled = true
port = {port}
refresh_s = 0.1
""",
        ),
    )
    d = daemon_factory(short_tmp / "data", cfg)
    d.wait_for("metrics_listening")
    d.wait_for("order_filled", symbol="EURUSD")
    d.wait_for("order_filled", symbol="EURUSD")  # a refresh after the first fill
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        body = resp.read().decode()
    for name in (
        "forexd_loop_lag_seconds_bucket",
        "forexd_os_threads",
        "process_resident_memory_bytes",
        'forexd_bars_total{symbol="EURUSD"}',
        'forexd_fills_total{symbol="EURUSD"}',
        'forexd_position_units{symbol="EURUSD"}',
        "forexd_account_equity",
    ):
        assert name in body
    assert 0 == d.signal()
