"""Optional Prometheus endpoint (``[metrics] enabled = true``; needs ``forexd[metrics]``).

The HTTP server of prometheus-client runs in its own thread, and a scrape must never read
the actors' state while the loop mutates it. So a loop task takes a snapshot every
``refresh_s`` (the same snapshot ``ctl status`` returns) and the collector only reads the
latest one: an immutable dict swapped in one assignment.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio

from forexd.domain import NS_PER_S, iso_to_ns
from forexd.errors import ConfigError

LAG_BUCKETS_MS = (0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0)


class StatusCollector:
    """Turns the latest status snapshot into Prometheus metric families."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] = {}
        self.lag_samples_ms: list[float] = []

    def collect(self) -> Iterator[Any]:
        """Called by prometheus-client on each scrape (in its thread)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        snap, lags = self.snapshot, self.lag_samples_ms
        if not snap:
            return
        yield GaugeMetricFamily(
            "forexd_os_threads", "OS threads of the process", value=snap["threads"]["now"]
        )
        yield GaugeMetricFamily("forexd_rss_bytes", "resident memory", value=snap["rss_mb"] * 2**20)
        yield GaugeMetricFamily(
            "forexd_equity_usd", "account equity", value=snap["account"]["equity"]
        )
        buckets, acc = [], 0
        for bound in LAG_BUCKETS_MS:
            acc = sum(1 for v in lags if v <= bound)
            buckets.append((str(bound / 1000), acc))
        buckets.append(("+Inf", len(lags)))
        yield HistogramMetricFamily(
            "forexd_loop_lag_seconds",
            "event-loop wake-up delay (recent window)",
            buckets=buckets,
            sum_value=sum(lags) / 1000,
        )
        bars = CounterMetricFamily("forexd_bars", "bars processed", labels=["symbol"])
        orders = CounterMetricFamily("forexd_orders", "orders sent", labels=["symbol"])
        fills = CounterMetricFamily("forexd_fills", "fills recorded", labels=["symbol"])
        position = GaugeMetricFamily("forexd_position_units", "net position", labels=["symbol"])
        model_age = GaugeMetricFamily(
            "forexd_model_age_seconds", "age of the champion model", labels=["symbol"]
        )
        cycles = CounterMetricFamily(
            "forexd_training_cycles", "training cycles run", labels=["symbol"]
        )
        cycle_s = GaugeMetricFamily(
            "forexd_training_last_cycle_seconds",
            "duration of the last training cycle",
            labels=["symbol"],
        )
        for s in snap["symbols"]:
            sym = s["symbol"]
            bars.add_metric([sym], s["bars_seen"])
            orders.add_metric([sym], s["orders_sent"])
            position.add_metric([sym], s["position_units"])
            fills.add_metric([sym], s["fills"])
            training = s.get("training") or {}
            if training.get("cycles") is not None:
                cycles.add_metric([sym], training["cycles"])
            last = training.get("last_cycle") or {}
            if last.get("duration_s") is not None:
                cycle_s.add_metric([sym], last["duration_s"])
            champion = training.get("champion") or {}
            if champion.get("trained_at"):
                age = time.time() - iso_to_ns(champion["trained_at"]) / NS_PER_S
                model_age.add_metric([sym], round(age, 3))
        yield from (bars, orders, fills, position, model_age, cycles, cycle_s)
        denials = CounterMetricFamily(
            "forexd_order_denials", "orders denied by the risk gate", labels=["reason"]
        )
        for reason, n in (snap.get("risk", {}).get("denials") or {}).items():
            denials.add_metric([str(reason)], n)
        yield denials


async def serve_metrics(
    host: str,
    port: int,
    status: Callable[[], Awaitable[dict[str, Any]]],
    lag_samples: Callable[[], list[float]],
    refresh_s: float,
    log: Any,
) -> None:
    """Start the endpoint and refresh its snapshot until cancelled.

    Raises:
        ConfigError: prometheus-client is not installed, or the port is taken.
    """
    try:
        from prometheus_client import start_http_server
        from prometheus_client.core import CollectorRegistry
    except ImportError:
        raise ConfigError(
            "metrics.enabled needs prometheus-client: pip install 'forexd[metrics]'"
        ) from None
    registry = CollectorRegistry()
    collector = StatusCollector()
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"metrics: cannot listen on {host}:{port} ({exc}); choose another [metrics] port"
        ) from None
    log.info("metrics_listening", host=host, port=server.server_port)
    try:
        while True:
            collector.snapshot = await status()
            collector.lag_samples_ms = lag_samples()
            await anyio.sleep(refresh_s)
    finally:
        # shutdown() waits for the server thread's poll loop (up to 0.5 s) and the join up
        # to 5 s: a worker thread's job, never the event loop's.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_stop_server, server, thread)


def _stop_server(server: Any, thread: Any) -> None:
    server.shutdown()
    thread.join(timeout=5)
