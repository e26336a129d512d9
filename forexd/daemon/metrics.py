"""Optional Prometheus endpoint (``[metrics] enabled = true``; needs ``forexd[metrics]``).

The HTTP server of prometheus-client runs in its own thread, and a scrape must never read
the actors' state while the loop mutates it. So a loop task takes a snapshot every
``refresh_s`` (the same snapshot ``ctl status`` returns) and the collector only reads the
latest one: an immutable view swapped in one assignment.

Prometheus rules followed here (docs/service.md lists every metric):

- counters (``*_total``) and histogram buckets, ``_count`` and ``_sum`` only ever grow
  while the process lives: a drop reads as a restart and breaks ``rate()``. They come from
  counters the daemon keeps since start, never from a window of recent samples;
- base units in the name (``_seconds``, ``_bytes``, ``_units``), and points in time as
  ``*_timestamp_seconds`` (Unix time) rather than ages that change between scrapes;
- states as one gauge per possible value (1 for the current one, 0 for the others), so
  ``== 1`` selects and ``changes()`` counts;
- the standard ``process_*`` and ``python_*`` families on the daemon's own registry.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from forexd import __version__
from forexd.daemon.looplag import LagHistogram
from forexd.domain import NS_PER_S, iso_to_ns
from forexd.errors import ConfigError, ForexdError

TRADING_STATES = ("active", "reducing", "halted")
ACTOR_STATES = ("starting", "running", "paused", "restarting", "failed", "finished", "stopped")


@dataclass(slots=True)
class MetricsView:
    """What one scrape reads: replaced as a whole by the refresh task, never mutated.

    Attributes:
        snapshot: the latest ``ctl status`` object.
        lag: the loop-lag histogram since start.
        broker_up: whether the latest account request to the broker succeeded.
        bar_seen_at: per symbol, wall-clock time (Unix s) its bar count last grew, or when
            the daemon started if no bar has arrived yet.
    """

    snapshot: dict[str, Any]
    lag: LagHistogram
    broker_up: bool
    bar_seen_at: dict[str, float] = field(default_factory=dict)


class MetricsState:
    """Loop side: folds each status snapshot into the next :class:`MetricsView`."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.view: MetricsView | None = None
        self._bars: dict[str, int] = {}
        self._bar_seen_at: dict[str, float] = {}

    def update(
        self, snapshot: dict[str, Any] | None, lag: LagHistogram, now: float
    ) -> MetricsView | None:
        """Take a snapshot (``None``: the broker could not be reached) and publish a view.

        The last good snapshot stays published while the broker is unreachable, so the
        counters keep their values and only ``forexd_broker_up`` changes.
        """
        if snapshot is None:
            if self.view is None:
                return None
            self.view = MetricsView(self.view.snapshot, lag, False, dict(self._bar_seen_at))
            return self.view
        for s in snapshot.get("symbols", []):
            sym, bars = s["symbol"], s["bars_seen"]
            if sym not in self._bar_seen_at:
                # Until its first bar, a symbol is as fresh as the daemon's start.
                self._bar_seen_at[sym] = self.started_at if bars == 0 else now
            elif bars > self._bars[sym]:
                self._bar_seen_at[sym] = now
            self._bars[sym] = bars
        self.view = MetricsView(snapshot, lag, True, dict(self._bar_seen_at))
        return self.view


class StatusCollector:
    """Turns the latest :class:`MetricsView` into Prometheus metric families."""

    def __init__(self, state: MetricsState, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock

    def describe(self) -> Iterator[Any]:
        """Nothing up front: the families depend on the snapshot (no collect at register)."""
        return iter(())

    def collect(self) -> Iterator[Any]:
        """Called by prometheus-client on each scrape (in its thread)."""
        from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

        yield InfoMetricFamily(
            "forexd_build",
            "forexd version and the Python running it",
            value={"version": __version__, "python": platform.python_version()},
        )
        view = self.state.view
        if view is None:
            return
        snap = view.snapshot
        yield GaugeMetricFamily(
            "forexd_broker_up",
            "1 if the latest account request to the broker succeeded, else 0",
            value=1 if view.broker_up else 0,
        )
        yield GaugeMetricFamily(
            "forexd_os_threads", "OS threads of the process", snap["threads"]["now"]
        )
        yield GaugeMetricFamily(
            "forexd_account_equity", "account equity (account currency)", snap["account"]["equity"]
        )
        yield GaugeMetricFamily(
            "forexd_account_balance",
            "account balance (account currency)",
            snap["account"]["balance"],
        )
        yield self._lag(view.lag)
        yield from self._symbols(snap, view)
        yield from self._risk(snap.get("risk") or {})
        yield from self._storage(snap)

    @staticmethod
    def _lag(lag: LagHistogram) -> Any:
        from prometheus_client.core import HistogramMetricFamily

        buckets = [(repr(b), n) for b, n in zip(lag.bounds_s, lag.cumulative, strict=False)]
        buckets.append(("+Inf", lag.count))
        return HistogramMetricFamily(
            "forexd_loop_lag_seconds",
            "event-loop wake-up delay, every sample since start",
            buckets=buckets,
            sum_value=lag.sum_s,
        )

    def _symbols(self, snap: dict[str, Any], view: MetricsView) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def counter(name: str, doc: str) -> Any:
            return CounterMetricFamily(name, doc, labels=["symbol"])

        def gauge(name: str, doc: str) -> Any:
            return GaugeMetricFamily(name, doc, labels=["symbol"])

        bars = counter("forexd_bars", "bars processed")
        orders = counter("forexd_orders", "orders sent to the broker")
        rejected = counter("forexd_orders_rejected", "orders the broker rejected")
        fills = counter("forexd_fills", "fills recorded")
        restarts = counter("forexd_actor_restarts", "actor restarts after a crash")
        position = gauge("forexd_position_units", "net position in units of the base currency")
        last_bar = gauge(
            "forexd_last_bar_timestamp_seconds", "open time of the latest bar (Unix time)"
        )
        staleness = gauge(
            "forexd_feed_staleness_seconds",
            "seconds since the symbol's bar count last grew (resolution: the refresh interval)",
        )
        trained = gauge(
            "forexd_model_trained_timestamp_seconds", "when the champion model was trained"
        )
        cycles = counter("forexd_training_cycles", "training cycles run")
        cycle_s = gauge(
            "forexd_training_last_cycle_duration_seconds", "duration of the last training cycle"
        )
        actor_state = GaugeMetricFamily(
            "forexd_actor_state", "1 for the actor's current state", labels=["symbol", "state"]
        )
        now = self.clock()
        for s in snap["symbols"]:
            sym = s["symbol"]
            bars.add_metric([sym], s["bars_seen"])
            orders.add_metric([sym], s["orders_sent"])
            rejected.add_metric([sym], s["orders_rejected"])
            fills.add_metric([sym], s["fills"])
            restarts.add_metric([sym], s["restarts"])
            position.add_metric([sym], s["position_units"])
            for state in dict.fromkeys((*ACTOR_STATES, s["state"])):
                actor_state.add_metric([sym, state], 1 if state == s["state"] else 0)
            if s.get("last_bar_time"):
                last_bar.add_metric([sym], iso_to_ns(s["last_bar_time"]) / NS_PER_S)
            if sym in view.bar_seen_at:
                staleness.add_metric([sym], round(max(0.0, now - view.bar_seen_at[sym]), 3))
            training = s.get("training") or {}
            if training.get("cycles") is not None:
                cycles.add_metric([sym], training["cycles"])
            last = training.get("last_cycle") or {}
            if last.get("duration_s") is not None:
                cycle_s.add_metric([sym], last["duration_s"])
            champion = training.get("champion") or {}
            if champion.get("trained_at"):
                trained.add_metric([sym], iso_to_ns(champion["trained_at"]) / NS_PER_S)
        yield from (bars, orders, rejected, fills, restarts, position, actor_state)
        yield from (last_bar, staleness, trained, cycles, cycle_s)

    @staticmethod
    def _risk(risk: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        if not risk:
            return
        state = GaugeMetricFamily(
            "forexd_risk_trading_state",
            "1 for the current trading state of the account or a symbol (scope)",
            labels=["scope", "state"],
        )
        scopes = {"account": risk["account_state"], **risk.get("symbol_states", {})}
        for scope, current in scopes.items():
            for value in dict.fromkeys((*TRADING_STATES, current)):
                state.add_metric([scope, value], 1 if value == current else 0)
        yield state
        changes = CounterMetricFamily(
            "forexd_risk_state_changes",
            "trading-state changes by scope, new state and cause",
            labels=["scope", "state", "cause"],
        )
        for c in risk.get("state_changes", []):
            changes.add_metric([c["scope"], c["state"], c["cause"]], c["count"])
        yield changes
        denials = CounterMetricFamily(
            "forexd_order_denials", "orders denied by the risk gate", labels=["reason"]
        )
        for reason, n in (risk.get("denials") or {}).items():
            denials.add_metric([str(reason)], n)
        yield denials

    @staticmethod
    def _storage(snap: dict[str, Any]) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        storage = snap.get("storage") or {}
        if not storage:
            return
        yield CounterMetricFamily(
            "forexd_storage_statements", "SQL statements written", value=storage["statements"]
        )
        yield CounterMetricFamily(
            "forexd_storage_transactions", "write transactions committed", storage["transactions"]
        )
        yield CounterMetricFamily("forexd_storage_errors", "failed writes", value=storage["errors"])
        yield GaugeMetricFamily(
            "forexd_storage_queued", "statements waiting for the writer", value=storage["queued"]
        )


def build_registry(state: MetricsState) -> Any:
    """A registry with forexd's collector and the standard process/platform/GC collectors."""
    from prometheus_client import (
        GC_COLLECTOR,
        PLATFORM_COLLECTOR,
        PROCESS_COLLECTOR,
        CollectorRegistry,
    )

    registry = CollectorRegistry(auto_describe=False)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, StatusCollector(state)):
        registry.register(collector)
    return registry


async def refresh_once(
    state: MetricsState,
    status: Callable[[], Awaitable[dict[str, Any]]],
    lag: Callable[[], LagHistogram],
    log: Any,
) -> None:
    """Take one status snapshot into ``state``; a broker error marks the broker down."""
    try:
        snapshot: dict[str, Any] | None = await status()
    except ForexdError as exc:
        # Broker errors surface here (status asks the broker for the account); keep the
        # last snapshot so counters hold their values, and say the broker is down.
        if state.view is None or state.view.broker_up:
            log.warning("metrics_broker_unreachable", error=str(exc))
        snapshot = None
    state.update(snapshot, lag(), time.time())
    log.debug("metrics_refreshed", broker_up=snapshot is not None)


async def serve_metrics(
    host: str,
    port: int,
    status: Callable[[], Awaitable[dict[str, Any]]],
    lag: Callable[[], LagHistogram],
    refresh_s: float,
    log: Any,
    started_at: float | None = None,
) -> None:
    """Start the endpoint and refresh its snapshot until cancelled.

    Raises:
        ConfigError: prometheus-client is not installed, or the port is taken.
    """
    try:
        from prometheus_client import start_http_server
    except ImportError:
        raise ConfigError(
            "metrics.enabled needs prometheus-client: pip install 'forexd[metrics]'"
        ) from None
    state = MetricsState(time.time() if started_at is None else started_at)
    registry = build_registry(state)
    # The first snapshot before listening: a scrape never sees an endpoint without data.
    await refresh_once(state, status, lag, log)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"metrics: cannot listen on {host}:{port} ({exc}); choose another [metrics] port"
        ) from None
    log.info("metrics_listening", host=host, port=server.server_port)
    try:
        while True:
            await anyio.sleep(refresh_s)
            await refresh_once(state, status, lag, log)
    finally:
        # shutdown() waits for the server thread's poll loop (up to 0.5 s) and the join up
        # to 5 s: a worker thread's job, never the event loop's.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_stop_server, server, thread)


def _stop_server(server: Any, thread: Any) -> None:
    server.shutdown()
    thread.join(timeout=5)
