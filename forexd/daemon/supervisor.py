"""The supervisor: start-up, the main wait, shutdown — in that order, top-down.

``Daemon.run`` owns one anyio task group. Start-up takes the pid lock, fixes the compute
budget and thread caps, starts the storage writer, restores the broker, reconciles, loads
the replay data, starts one supervised actor per symbol (each reports ready through
``task_group.start``), then the loop-lag monitor and the control server. The main phase
waits for a stop request (signal, ``ctl stop``, or every feed exhausted when asked to
exit then). Shutdown stops new orders, cancels the actors, flushes storage and removes
the socket, within ``shutdown_timeout_s``.

Signal handlers only record the signal (anyio's signal receiver); the loop acts on it.
A second SIGINT/SIGTERM forces an immediate exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import deque
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pandas as pd
import psutil
from anyio.abc import TaskGroup, TaskStatus

from forexd import __version__
from forexd.actors.deps import ActorDeps
from forexd.actors.present import PresentPolicy
from forexd.actors.symbol import SymbolActor
from forexd.brokers.base import Broker
from forexd.brokers.ledger import CostModel
from forexd.brokers.paper import PaperBroker
from forexd.config import BUNDLED_SOURCE, STORE_SOURCE, Settings, SymbolConfig
from forexd.daemon.brokerlink import brokerguard_for, make_oanda_broker
from forexd.daemon.budget import budget_from_config
from forexd.daemon.compute import ComputePool
from forexd.daemon.control import ControlServer
from forexd.daemon.handlers import register_handlers
from forexd.daemon.hardware import detect_hardware
from forexd.daemon.jobs import TrainingJobs
from forexd.daemon.logsetup import get_logger
from forexd.daemon.looplag import LoopLagMonitor
from forexd.daemon.metrics import serve_metrics
from forexd.daemon.paths import DaemonPaths
from forexd.daemon.pidlock import PidLock
from forexd.daemon.reconcile import reconcile
from forexd.daemon.reload import apply_reload
from forexd.daemon.riskruntime import RiskRuntime
from forexd.daemon.sdnotify import Notifier, watchdog_task
from forexd.daemon.threads import ThreadLimiter, ThreadWatermark
from forexd.daemon.trainer import ModelTrainer
from forexd.daemon.training import TrainContext
from forexd.domain.timeframes import TIMEFRAME_SECONDS
from forexd.errors import ConfigError, DataError, ForexdError, first_leaf
from forexd.feeds.frames import clip_frame
from forexd.feeds.replay import ReplayFeed
from forexd.risk import Holding
from forexd.storage.candles import read_store
from forexd.storage.db import StorageWriter
from forexd.strategies import build_strategy

THREAD_SAMPLE_S = 1.0
WATCHDOG_MAX_LAG_S = 10.0  # a loop stalled longer than this stops feeding systemd's watchdog


class Daemon:
    """One running forexd; see the module note."""

    def __init__(
        self,
        settings: Settings,
        paths: DaemonPaths,
        *,
        exit_when_done: bool = False,
        config_path: Path | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.paths = paths
        self.exit_when_done = exit_when_done
        self.config_path = config_path
        self.overrides = overrides or {}
        self.notifier = Notifier.from_env(unset_environment=True)
        self.log = get_logger("supervisor")
        self.state = "starting"
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.stop_requested = anyio.Event()
        self.stop_reason = ""
        self._reload_lock = anyio.Lock()
        self.reloads_failed = 0
        self._actors_exited: anyio.Event | None = None
        self.lag = LoopLagMonitor()
        self.actors: dict[str, SymbolActor] = {}
        self.control = ControlServer(
            paths, settings.control.transport, settings.control.tcp_host, settings.control.tcp_port
        )
        self.hardware = detect_hardware()
        self.budget = budget_from_config(
            settings.compute, self.hardware, max(1, len(settings.active_symbols))
        )
        self.jobs = TrainingJobs()  # ctl jobs / train / cancel (daemon/jobs.py)
        self.pool = ComputePool(
            self.budget.train_workers,
            self.budget.max_concurrent_symbols,
            executor=settings.compute.executor,
        )
        self.threads = ThreadWatermark()
        self.thread_limiter = ThreadLimiter()
        self.writer = StorageWriter(paths.db)
        self.risk = RiskRuntime(
            settings.risk, paths.risk_state, paths.db, settings.account_id, get_logger("risk")
        )
        self.broker: Broker | None = None
        self._api: Any = None  # the OANDA client, shared by broker and feed
        self.guard: Any = None  # daemon.brokerguard.BrokerGuard when trading on OANDA
        self._pidlock = PidLock(paths.pidfile)
        self.process = psutil.Process()

    # -- top level --------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stopped; returns normally after a clean shutdown."""
        self._pidlock.acquire()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                tg.start_soon(self._watch_signals)
                await self._startup(tg)
                await self.stop_requested.wait()
                await self._shutdown(tg)
        finally:
            self._pidlock.release()
        self.log.info("stopped", reason=self.stop_reason)

    def request_stop(self, reason: str) -> None:
        """Ask for a graceful shutdown (idempotent)."""
        if not self.stop_requested.is_set():
            self.stop_reason = reason
            self.stop_requested.set()

    # -- start-up ---------------------------------------------------------------------

    async def _startup(self, tg: TaskGroup) -> None:
        caps = self.thread_limiter.apply(self.budget.blas_threads)
        self.log.info(
            "starting",
            version=__version__,
            pid=os.getpid(),
            data_dir=str(self.paths.data_dir),
            budget=self.budget.to_dict(),
            thread_caps=caps if isinstance(caps, dict) else str(caps),
        )
        await tg.start(self.writer.run)
        broker = await self._make_broker(tg)
        self.broker = broker
        report = await reconcile(self.paths.db, broker, self.writer, get_logger("reconcile"))
        await anyio.to_thread.run_sync(self.risk.load)
        self.risk.bind(self.holdings, self.writer.flush)
        tg.start_soon(self.risk.persist_loop)
        feed = self.feed = await self._make_feed(tg)
        # -- oanda (issue 11): the guard degrades, halts on drift, reduces while unresolved
        self.guard = await brokerguard_for(self, tg, report.position_mismatches)
        # -- end oanda
        deps = ActorDeps(
            writer=self.writer,
            broker=broker,
            feed=feed,
            db_path=self.paths.db,
            timeframe=self.settings.feed.timeframe,
            store_candles=self.settings.feed.source != STORE_SOURCE,
            equity_every_bars=self.settings.equity_snapshot_every_bars,
            risk=self.guard or self.risk,
            make_trainer=partial(
                ModelTrainer,
                TrainContext(
                    self.pool,
                    self.paths,
                    self.budget,
                    self.writer,
                    get_logger("trainer"),
                    jobs=self.jobs,
                ),
            ),
            present=self._present_policy(feed),
        )
        await tg.start(self.lag.run)
        tg.start_soon(self._sample_threads)
        self._actor_tg_scope = anyio.CancelScope()
        await tg.start(self._run_actors, deps)
        handlers = register_handlers(self)
        await tg.start(self.control.serve)
        mcfg = self.settings.metrics
        if mcfg.enabled:
            tg.start_soon(
                partial(
                    serve_metrics,
                    mcfg.host,
                    mcfg.port,
                    partial(handlers.status, {}),
                    self.lag.histogram,
                    mcfg.refresh_s,
                    get_logger("metrics"),
                    self.started_at,
                )
            )
        tg.start_soon(
            partial(
                watchdog_task, self.notifier, self.lag.recent_max_s, max_lag_s=WATCHDOG_MAX_LAG_S
            )
        )
        self.state = "running"
        self.ready_at = time.time()
        self.notifier.ready(f"trading {len(self.actors)} symbol(s)")
        self.log.info(
            "ready",
            startup_s=round(self.ready_at - self.started_at, 3),
            symbols=list(self.actors),
            socket=str(self.paths.socket),
            hint=f"forexd ctl status --data-dir {self.paths.data_dir}",
        )

    def _present_policy(self, feed: Any) -> PresentPolicy:
        """Recorded feeds trade every bar they play; a live feed only the present."""
        if isinstance(feed, ReplayFeed) or getattr(feed, "recorded", False):
            return PresentPolicy.recorded()
        return PresentPolicy.live(
            TIMEFRAME_SECONDS[self.settings.feed.timeframe],
            self.settings.actors.max_bar_age_bars,
            getattr(feed, "server_now_ns", time.time_ns),
        )

    async def _make_broker(self, tg: TaskGroup) -> Broker:
        cfg = self.settings.broker
        if cfg.kind == "paper":
            costs = CostModel(cfg.spread_pips, cfg.slippage_pips, cfg.commission_per_million)
            return PaperBroker.restore(self.paths.db, self.writer, cfg.initial_balance, costs)
        return await make_oanda_broker(self, tg)  # httpx only when trading live

    def _oanda_api(self) -> Any:
        if self._api is None:
            from forexd.brokers.oanda_api import OandaApi

            if not self.settings.broker.oanda.account_id:
                raise ConfigError(
                    "broker.oanda.account_id is empty; set it (and the token, "
                    "best via FOREXD_BROKER__OANDA__TOKEN)"
                )
            ocfg = self.settings.broker.oanda
            self._api = OandaApi.from_config(ocfg, timeout_s=ocfg.request_timeout_s)
        return self._api

    async def _make_feed(self, tg: TaskGroup) -> Any:
        fcfg = self.settings.feed
        if fcfg.kind == "oanda":
            from forexd.feeds.oanda import OandaFeed

            feed = OandaFeed(
                self._oanda_api(), [s.symbol for s in self.settings.active_symbols], fcfg.timeframe
            )
            await tg.start(feed.run)
            return feed
        frames = {s.symbol: self.load_frame(s) for s in self.settings.active_symbols}
        return ReplayFeed(frames, speed=fcfg.speed, max_sleep_s=fcfg.max_sleep_s)

    def load_frame(self, sym: SymbolConfig) -> pd.DataFrame:
        from forexd.feeds import loaders  # file parsing only when replaying files

        fcfg = self.settings.feed
        source = sym.data or fcfg.source
        if source == STORE_SOURCE:
            frame = read_store(self.paths.db, sym.symbol, fcfg.timeframe)
            origin = f"the store ({self.paths.db})"
        elif source == BUNDLED_SOURCE:
            if sym.symbol != loaders.BUNDLED_SYMBOL:
                raise ConfigError(
                    f"symbols: {sym.symbol}: the bundled sample only has "
                    f'{loaders.BUNDLED_SYMBOL}; set data = "FILE" for it or feed.source'
                )
            frame = loaders.load_candles(loaders.bundled_sample_path(), "oanda-lean")
            origin = "the bundled sample"
        else:
            path = source.format(symbol=sym.symbol)
            frame = loaders.load_candles(Path(path).expanduser(), fcfg.format)
            origin = path
        frame = clip_frame(frame, fcfg.start, fcfg.end)
        if frame.empty:
            raise DataError(
                f"{sym.symbol}: no bars to replay from {origin} "
                f"(feed.start={fcfg.start}, feed.end={fcfg.end})"
            )
        return frame

    # -- actors -----------------------------------------------------------------------

    async def _run_actors(
        self, deps: ActorDeps, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self._deps = deps
        self._actors_exited = exited = anyio.Event()
        try:
            with self._actor_tg_scope:
                async with anyio.create_task_group() as actors_tg:
                    self._actors_tg = actors_tg
                    for sym in self.settings.active_symbols:
                        await self.start_actor(sym)
                    task_status.started()
                    if self.exit_when_done:
                        while any(not a.done.is_set() for a in self.actors.values()):
                            await next(
                                a for a in self.actors.values() if not a.done.is_set()
                            ).done.wait()
                        self.request_stop("all feeds exhausted")
                    await anyio.sleep_forever()
        finally:
            exited.set()  # every actor has written its progress

    async def start_actor(self, sym: SymbolConfig) -> SymbolActor:
        """Start (and supervise) the actor of one configured symbol."""
        strategy = build_strategy(sym.strategy, sym.params, where=sym.symbol)
        actor = SymbolActor(sym.symbol, strategy, self._deps, self.log, sym.sizing)
        self.actors[sym.symbol] = actor
        await self._actors_tg.start(self._supervise, actor)
        return actor

    def stop_actor(self, symbol: str) -> None:
        """Stop trading ``symbol`` (its position is kept, not closed)."""
        actor = self.actors.pop(symbol)
        actor.accepting_orders = False
        actor.scope.cancel()
        actor.log.warning(
            "actor_stopped",
            position_units=actor.position.units,
            note="position kept; flatten it first if it should be closed",
        )

    async def _supervise(
        self, actor: SymbolActor, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run an actor; restart it with exponential backoff; park it as failed."""
        with actor.scope:
            await self._supervise_lives(actor, task_status)
        if not actor.done.is_set():
            actor.state = "stopped"
            actor.done.set()

    async def _supervise_lives(self, actor: SymbolActor, task_status: TaskStatus[None]) -> None:
        crashes: deque[float] = deque()
        backoff = self.settings.actors.restart_backoff_s
        reported = False
        while True:
            cfg = self.settings.actors  # read each time: a reload may change it
            try:
                async with anyio.create_task_group() as life:
                    await life.start(actor.run)
                    if not reported:
                        reported = True
                        task_status.started()
                return
            except Exception as exc:
                now = time.monotonic()
                crashes.append(now)
                while crashes and now - crashes[0] > cfg.crash_window_s:
                    crashes.popleft()
                cause = first_leaf(exc)
                actor.last_error = f"{type(cause).__name__}: {cause}"
                actor.log.exception("actor_crashed", crashes_in_window=len(crashes))
                if len(crashes) >= cfg.max_crashes:
                    actor.state = "failed"
                    actor.log.error(
                        "actor_failed",
                        max_crashes=cfg.max_crashes,
                        window_s=cfg.crash_window_s,
                        last_error=actor.last_error,
                    )
                    actor.done.set()
                    if not reported:
                        reported = True
                        task_status.started()
                    return
                actor.state = "restarting"
                if not reported:
                    reported = True
                    task_status.started()
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, cfg.restart_backoff_max_s)
                actor.restarts += 1

    # -- background -------------------------------------------------------------------

    async def _watch_signals(self) -> None:
        if sys.platform == "win32":  # pragma: no cover - Windows stops via the service
            return
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if signum == signal.SIGHUP:
                    # In its own task, through the same guarded path as ctl reload: this
                    # loop keeps reading signals (SIGTERM) while a reload runs.
                    self.log.info("signal_received", signal=name)
                    self._tg.start_soon(self._reload_on_signal)
                    continue
                if self.stop_requested.is_set():
                    self.log.warning("forced_exit", signal=name)
                    os._exit(1)
                self.log.info("signal_received", signal=name)
                self.request_stop(name)

    async def _sample_threads(self) -> None:
        while True:
            self.threads.sample()
            await anyio.sleep(THREAD_SAMPLE_S)

    # -- shutdown ---------------------------------------------------------------------

    async def _shutdown(self, tg: TaskGroup) -> None:
        self.state = "stopping"
        self.notifier.stopping(f"stopping: {self.stop_reason}")
        self.log.info("stopping", reason=self.stop_reason)
        with anyio.move_on_after(self.settings.shutdown_timeout_s, shield=True) as scope:
            for actor in self.actors.values():
                actor.accepting_orders = False
            self._actor_tg_scope.cancel()
            if self._actors_exited is not None:
                # Each actor writes its own progress as it stops; wait for that before
                # the writer closes.
                await self._actors_exited.wait()
            await self.writer.close()
            if self._api is not None:
                await self._api.aclose()
            if self.risk.gate is not None:
                await anyio.to_thread.run_sync(self.risk.persist_now)
        if scope.cancelled_caught:
            self.log.error("shutdown_timeout", timeout_s=self.settings.shutdown_timeout_s)
        tg.cancel_scope.cancel()

    # -- hot reload -------------------------------------------------------------------

    async def reload(self, origin: str = "ctl") -> dict[str, Any]:
        """Re-read the config and apply it without a restart (see :mod:`reload`).

        The one entry point of ``ctl reload`` and SIGHUP: one reload at a time, and every
        failure is logged (``reload_rejected``, or ``reload_failed`` with the traceback)
        and counted before it is raised to the caller.

        Raises:
            ForexdError: the new config is invalid or changes what needs a restart; the
                old configuration stays in force.
            Exception: a defect during the reload (logged in full; the daemon keeps running).
        """
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                return await apply_reload(self)
            except ForexdError as exc:
                self.reloads_failed += 1
                self.log.error("reload_rejected", origin=origin, reason=str(exc))
                raise
            except Exception:
                self.reloads_failed += 1
                self.log.exception("reload_failed", origin=origin)
                raise
            finally:
                self.notifier.ready(f"trading {len(self.actors)} symbol(s)")

    async def _reload_on_signal(self) -> None:
        """SIGHUP: reload; a failure is already logged and counted, the daemon carries on."""
        with contextlib.suppress(Exception):
            await self.reload("SIGHUP")

    # -- observation ------------------------------------------------------------------

    def holdings(self) -> dict[str, Holding]:
        """Every symbol's position (held + in flight) and mark price, for the risk gate."""
        return {
            sym: Holding(a.core.position_units + a.core.pending_units, a.last_bar.close)
            for sym, a in self.actors.items()
            if a.last_bar is not None
        }
