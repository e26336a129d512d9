"""The Prometheus endpoint follows Prometheus's rules, scraped from a real daemon."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from forexd.daemon.looplag import LAG_SAMPLES, LoopLagMonitor
from forexd.daemon.metrics import MetricsState, StatusCollector
from forexd.errors import BrokerError
from tests.daemon_proc import DaemonProc, write_config

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

PROMTOOL = shutil.which("promtool")

# A paced half-year replay: long enough for two scrapes to differ, with a daily loss limit
# small enough that the account goes to `reducing` (and back, on the next FX day).
CONFIG = """
log_level = "debug"

[feed]
source = "bundled"
speed = 1080000.0   # 300 H1 bars per second
max_sleep_s = 0.01
end = "2017-04-01"

[risk]
daily_loss_limit_usd = 20.0

[metrics]
enabled = true
port = 0
refresh_s = 0.1

[[symbols]]
symbol = "EURUSD"
params = { fast = 3, slow = 7, units = 10000 }
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(port: int) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def _monotonic(name: str) -> bool:
    """Samples Prometheus treats as counters: a drop reads as a process restart."""
    return name.endswith(("_total", "_bucket", "_count", "_sum")) and not name.startswith(
        ("python_gc_", "process_")
    )


def _assert_cumulative(samples: Samples, name: str) -> None:
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (n, labels), v in samples.items()
        if n == f"{name}_bucket"
    )
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), f"{name} buckets are not cumulative: {buckets}"
    assert buckets[-1][0] == float("inf")
    assert samples[(f"{name}_count", ())] == buckets[-1][1]


@pytest.mark.e2e
def test_two_scrapes_of_a_running_daemon_never_go_down(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """No counter, bucket, _count or _sum of a live daemon decreases between scrapes."""
    d = daemon_factory(short_tmp / "data", write_config(short_tmp / "m.toml", CONFIG))
    port = d.wait_for("metrics_listening", timeout=60)["port"]
    d.wait_for("order_filled", timeout=60)
    text1, first = _scrape(port)
    d.wait_for("risk_state_changed", timeout=60)
    exhausted = d.wait_for("feed_exhausted", symbol="EURUSD", timeout=120)
    while d.wait_for("metrics_refreshed", timeout=30)["timestamp"] <= exhausted["timestamp"]:
        pass  # each refresh is a log event; wait for one taken after the feed ended
    text2, second = _scrape(port)

    for key, before in first.items():
        if _monotonic(key[0]) and key in second:
            assert second[key] >= before, f"{key} went down: {before} -> {second[key]}"
    assert (
        second[("forexd_bars_total", (("symbol", "EURUSD"),))]
        > first[("forexd_bars_total", (("symbol", "EURUSD"),))]
    )
    for samples in (first, second):
        _assert_cumulative(samples, "forexd_loop_lag_seconds")
    assert (
        second[("forexd_loop_lag_seconds_count", ())] > first[("forexd_loop_lag_seconds_count", ())]
    )

    # Every risk-state change the daemon logged is counted, with its cause.
    logged = [e for e in d.lines if e.get("event") == "risk_state_changed"]
    counted = {
        labels: v for (n, labels), v in second.items() if n == "forexd_risk_state_changes_total"
    }
    assert len(logged) == sum(counted.values()) > 0
    reducing = (("cause", "daily_loss"), ("scope", "account"), ("state", "reducing"))
    assert sum(1 for e in logged if e["new"] == "reducing") == counted[reducing]
    account = {
        dict(labels)["state"]: v
        for (n, labels), v in second.items()
        if n == "forexd_risk_trading_state" and dict(labels)["scope"] == "account"
    }
    assert 1 == sum(account.values())
    assert {"active", "reducing", "halted"} == set(account)

    assert 1 == second[("forexd_broker_up", ())]
    info = [labels for (n, labels), _ in second.items() if n == "forexd_build_info"]
    assert "version" in dict(info[0])
    assert ("process_resident_memory_bytes", ()) in second
    assert ("process_start_time_seconds", ()) in second
    assert ("forexd_feed_staleness_seconds", (("symbol", "EURUSD"),)) in second
    assert ("forexd_actor_state", (("state", "finished"), ("symbol", "EURUSD"))) in second
    if PROMTOOL is not None:
        for text in (text1, text2):
            lint = subprocess.run(
                [PROMTOOL, "check", "metrics"],
                input=text,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert 0 == lint.returncode, lint.stdout + lint.stderr
    assert 0 == d.signal()


def test_loop_lag_histogram_counts_every_sample_past_the_percentile_window() -> None:
    """The exported histogram keeps counting after the 6,000-sample window is full."""
    monitor = LoopLagMonitor()
    for i in range(LAG_SAMPLES + 500):
        monitor.observe(0.0002 if i % 2 else 0.003)
    hist = monitor.histogram()
    assert LAG_SAMPLES + 500 == hist.count
    le_1ms = hist.cumulative[hist.bounds_s.index(0.001)]
    assert (LAG_SAMPLES + 500) // 2 == le_1ms
    assert list(hist.cumulative) == sorted(hist.cumulative)
    assert 0.0002 * 3250 + 0.003 * 3250 == pytest.approx(hist.sum_s)


def _status(bars: int, state: str = "running") -> dict[str, Any]:
    return {
        "threads": {"now": 5},
        "account": {"equity": 100_000.0, "balance": 100_000.0},
        "symbols": [
            {
                "symbol": "EURUSD",
                "state": state,
                "bars_seen": bars,
                "orders_sent": 1,
                "orders_rejected": 0,
                "fills": 1,
                "restarts": 0,
                "position_units": 1000,
                "last_bar_time": "2017-01-02T10:00:00Z",
                "training": None,
            }
        ],
        "risk": {},
        "storage": {},
    }


def _collect(collector: StatusCollector) -> Samples:
    out: Samples = {}
    for family in collector.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_feed_staleness_is_time_since_the_bar_count_last_grew() -> None:
    """Staleness grows while no bar arrives and drops to zero when one does."""
    state = MetricsState(started_at=1000.0)
    now = [1000.0]
    collector = StatusCollector(state, clock=lambda: now[0])
    hist = LoopLagMonitor().histogram()
    key = ("forexd_feed_staleness_seconds", (("symbol", "EURUSD"),))
    state.update(_status(0), hist, now=1001.0)
    now[0] = 1030.0
    assert 30.0 == _collect(collector)[key]  # no bar yet: as old as the daemon
    state.update(_status(5), hist, now=1031.0)
    state.update(_status(5), hist, now=1090.0)
    now[0] = 1100.0
    assert 69.0 == _collect(collector)[key]
    state.update(_status(6), hist, now=1100.0)
    assert 0.0 == _collect(collector)[key]


@pytest.mark.anyio
async def test_unreachable_broker_reads_as_down_and_keeps_the_counters() -> None:
    """A broker error during refresh sets forexd_broker_up 0; counters keep their values."""
    from forexd.daemon.metrics import refresh_once

    class Log:
        def __init__(self) -> None:
            self.warned: dict[str, object] = {}

        def warning(self, event: str, **kwargs: object) -> None:
            self.warned = kwargs

        def debug(self, event: str, **kwargs: object) -> None:
            pass

    state = MetricsState(started_at=0.0)
    lag = LoopLagMonitor().histogram

    async def good() -> dict[str, Any]:
        return _status(7)

    async def bad() -> dict[str, Any]:
        raise BrokerError("GET /summary: HTTP 503")

    log = Log()
    await refresh_once(state, good, lag, log)
    assert 1 == _collect(StatusCollector(state))[("forexd_broker_up", ())]
    await refresh_once(state, bad, lag, log)
    got = _collect(StatusCollector(state))
    assert 0 == got[("forexd_broker_up", ())]
    assert 7 == got[("forexd_bars_total", (("symbol", "EURUSD"),))]
    assert "HTTP 503" in str(log.warned["error"])


def test_actor_state_gauge_marks_exactly_the_current_state() -> None:
    """forexd_actor_state is 1 for the actor's state and 0 for every other."""
    state = MetricsState(started_at=0.0)
    state.update(_status(1, state="failed"), LoopLagMonitor().histogram(), now=1.0)
    got = _collect(StatusCollector(state))
    states = {
        dict(labels)["state"]: v for (n, labels), v in got.items() if n == "forexd_actor_state"
    }
    assert 1 == states.pop("failed")
    assert states and set(states.values()) == {0}
