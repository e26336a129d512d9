"""The supervisor: start-up, the main wait, shutdown — in that order, top-down.

``Daemon.run`` owns one anyio task group. Start-up takes the pid lock, fixes the compute
budget and thread caps, connects to the Ray cluster retraining runs on (only with
``[compute] backend = "ray"``), starts the storage writer, restores the broker, reconciles,
loads the replay data, starts one supervised actor per symbol (each reports ready through
``task_group.start``), then the loop-lag monitor and the control server. The main phase
waits for a stop request (signal, ``ctl stop``, or every feed exhausted when asked to
exit then).

Shutdown order is fixed by construction, within ``shutdown_timeout_s``: every producer of
writes is stopped and waited for (actors with their training tasks, the live feed, the
risk persister: :class:`Service` gives each a scope and a "done" event), then the final
flush, then the risk state is persisted, then the writer is closed, then the Ray
connection. Nothing can use the writer (or the cluster) after it closed, because everything
that could has already ended.

Signal handlers only record the signal (anyio's signal receiver; before the loop runs,
:mod:`~forexd.daemon.stopsignals`); the loop acts on it. A stop signal during start-up
cancels the start-up (blocking start-up steps run in worker threads, so they do not hold
the signal back) and goes straight to the shutdown above. A second SIGINT/SIGTERM forces
an immediate exit.

Why it is over 400 lines: start-up, supervision, shutdown and the reload entry are one
object's life cycle, read top-down; the restart policy, the stop signals, the OANDA broker
link and the actors' parts already live in modules of their own.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
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
from forexd.daemon import stopsignals
from forexd.daemon.backends import ClusterOwner, connect_cluster
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
from forexd.daemon.offloop import run_abandonable
from forexd.daemon.paths import DaemonPaths
from forexd.daemon.pidlock import PidLock
from forexd.daemon.preload import preload_training_stack
from forexd.daemon.reconcile import reconcile
from forexd.daemon.reload import apply_reload
from forexd.daemon.restarts import RestartPolicy
from forexd.daemon.riskruntime import RiskRuntime
from forexd.daemon.sdnotify import Notifier, watchdog_task
from forexd.daemon.threads import ThreadLimiter, ThreadWatermark
from forexd.daemon.trainer import ModelTrainer
from forexd.daemon.training import TrainContext
from forexd.domain.timeframes import TIMEFRAME_SECONDS
from forexd.errors import ConfigError, DataError, ForexdError, first_leaf
from forexd.feeds.base import is_replay
from forexd.models.executor import JobExecutor
from forexd.risk import Holding
from forexd.storage.db import StorageWriter, open_sync
from forexd.strategies import build_strategy
from forexd.strategies.ml import MlStrategy

if TYPE_CHECKING:
    import pandas as pd  # replay frames; pandas itself loads only when a replay is built

THREAD_SAMPLE_S = 1.0
WATCHDOG_MAX_LAG_S = 10.0  # a loop stalled longer than this stops feeding systemd's watchdog
EXECUTOR_CLOSE_TIMEOUT_S = 10.0  # ray.shutdown; a cluster that hangs is left behind (a guess)

Started = TaskStatus[None]


class Service:
    """A background task the shutdown stops on purpose, in order, and waits for."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.scope: anyio.CancelScope | None = None  # made in the loop (anyio needs one)
        self.done = anyio.Event()
        self.launched = False

    async def run(
        self,
        body: Callable[..., Awaitable[None]],
        *,
        reports_ready: bool = True,
        task_status: Started = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``body`` (which takes ``task_status`` when ``reports_ready``) in the scope."""
        self.launched = True
        self.scope = anyio.CancelScope()
        try:
            with self.scope:
                if reports_ready:
                    await body(task_status=task_status)
                else:
                    task_status.started()
                    await body()
        finally:
            self.done.set()

    async def stop(self) -> None:
        """Cancel the task and wait until it has really ended (no-op if never launched)."""
        if self.scope is not None:
            self.scope.cancel()
        if self.launched:
            await self.done.wait()


def _open_store(path: Path) -> None:
    """Create or migrate the store (worker thread: a migration can take a while)."""
    open_sync(path).close()


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
        self.ready = anyio.Event()
        self._startup_scope: anyio.CancelScope | None = None  # made in run(), in the loop
        self._writer_svc = Service("storage writer")
        self._persist_svc = Service("risk persister")
        self._feed_svc = Service("feed")
        self._actors_svc = Service("actors")
        self._reloads_svc = Service("signal reloads")
        self._reload_tg: TaskGroup | None = None
        self._reload_lock = anyio.Lock()  # SIGHUP and ctl reload never interleave
        self.reloads_failed = 0
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
        self.executor: JobExecutor | None = None  # [compute] backend = "ray": see _startup
        self._cluster = ClusterOwner()  # the thread that connects and disconnects Ray
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
        self.exec_at = time.time() - process_age_s(self.process)  # /proc: not on the loop

    # -- top level --------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stopped; returns normally after a clean shutdown."""
        # File lock and pid write: quick, but file-system calls all the same (off the loop;
        # fcntl/msvcrt locks belong to the process, not the thread that took them).
        await anyio.to_thread.run_sync(self._pidlock.acquire)
        try:
            async with anyio.create_task_group() as tg:
                self._startup_scope = anyio.CancelScope()
                await tg.start(self._watch_signals)
                with self._startup_scope:
                    if not self.stop_requested.is_set():
                        await self._startup(tg)
                await self.stop_requested.wait()
                await self._shutdown(tg)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._pidlock.release)
        self.log.info("stopped", reason=self.stop_reason)

    def request_stop(self, reason: str) -> None:
        """Ask for a graceful shutdown (idempotent); cancels a start-up in progress."""
        if not self.stop_requested.is_set():
            self.stop_reason = reason
            self.stop_requested.set()
            if self._startup_scope is not None:
                self._startup_scope.cancel()

    # -- start-up ---------------------------------------------------------------------

    async def _startup(self, tg: TaskGroup) -> None:
        # On the loop thread on purpose, once: OpenMP's thread-count setting is per calling
        # thread (threadpoolctl reads a few /proc and library files for it).
        caps = self.thread_limiter.apply(self.budget.blas_threads)
        self.log.info(
            "starting",
            version=__version__,
            pid=os.getpid(),
            data_dir=str(self.paths.data_dir),
            budget=self.budget.to_dict(),
            thread_caps=caps if isinstance(caps, dict) else str(caps),
        )
        # Blocking steps run in threads; a stop signal abandons them (run_abandonable) so a
        # start-up never holds a shutdown back.
        if self.settings.compute.backend == "ray":  # first: nothing to undo if unreachable
            await self._connect_cluster()
        await run_abandonable(_open_store, self.paths.db)
        await tg.start(self._writer_svc.run, self.writer.run)
        broker = await self._make_broker(tg)
        self.broker = broker
        report = await reconcile(self.paths.db, broker, self.writer, get_logger("reconcile"))
        await anyio.to_thread.run_sync(self.risk.load)
        self.risk.bind(self.holdings, self.writer.flush)
        await tg.start(partial(self._persist_svc.run, self.risk.persist_loop, reports_ready=False))
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
                    executor=self.executor,
                ),
            ),
            present=self._present_policy(feed),
        )
        await tg.start(self.lag.run)
        tg.start_soon(self._sample_threads)
        await self._preload_learning()
        await tg.start(self._actors_svc.run, partial(self._run_actors, deps))
        await tg.start(self._reloads_svc.run, self._run_reloads)
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
        # Everything alive now (modules, pandas/sklearn internals, config, replay frames)
        # lives as long as the daemon: move it out of the collector's sight. A full
        # gc.collect() holds the GIL, from any thread, for as long as it scans; with these
        # objects in the scan that was ~200 ms per pass after each training cycle, i.e.
        # loop lag (docs/benchmarks.md). Cycles among them, if any, are never freed.
        gc.freeze()
        self.state = "running"
        self.ready_at = time.time()
        self.ready.set()
        self.notifier.ready(f"trading {len(self.actors)} symbol(s)")
        self.log.info(
            "ready",
            startup_s=round(self.ready_at - self.started_at, 3),
            # From the process's start, imports included (startup_s counts from the
            # Daemon object, after them): what an operator waits for.
            since_exec_s=round(self.ready_at - self.exec_at, 3),
            symbols=list(self.actors),
            socket=str(self.paths.socket),
            hint=f"forexd ctl status --data-dir {self.paths.data_dir}",
        )

    async def _connect_cluster(self) -> None:
        """Connect to the Ray cluster retraining runs on (``ray.init`` blocks: a thread).

        Raises:
            ClusterUnreachableError: unreachable, and ``ray_fallback = "error"`` (exit 2).
        """
        log = get_logger("compute")

        def warn(message: str) -> None:  # ray_fallback = "local"
            log.warning("ray_unreachable", detail=message)

        executor, described = await self._cluster.call(
            connect_cluster, self.settings.compute, self.budget, warn
        )
        if executor is not None:
            self.executor = executor
            self.jobs.run_on(executor.backend, str(described.get("address", "")))
        log.info("compute_backend", **described)

    async def _preload_learning(self) -> None:
        """Import the learning stack of the configured ml symbols before any actor starts.

        Before the actors: two threads importing sklearn at once (one symbol's restore,
        another's first cycle) can fail with "partially initialized module" (its package
        imports are circular), and before the start-up ``gc.freeze()``: imported later,
        thousands of modules enter every full collection (docs/benchmarks.md).
        """
        specs = []
        for sym in self.settings.active_symbols:
            try:
                strategy = build_strategy(sym.strategy, sym.params, where=sym.symbol)
            except ForexdError:
                continue  # start_actor reports it
            if isinstance(strategy, MlStrategy):
                specs.append(strategy.params.model)
        if specs:
            loaded = await run_abandonable(preload_training_stack, specs)
            self.log.info("training_stack_preloaded", modules=loaded)

    def _present_policy(self, feed: Any) -> PresentPolicy:
        """Recorded feeds trade every bar they play; a live feed only the present."""
        if is_replay(feed) or getattr(feed, "recorded", False):
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
            # Reads every paper order and fill: grows with history, so off the loop.
            return await run_abandonable(
                PaperBroker.restore, self.paths.db, self.writer, cfg.initial_balance, costs
            )
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
            await tg.start(self._feed_svc.run, feed.run)
            return feed
        # Loading the frames imports pandas, in the worker thread: not on the loop.
        frames = await self.load_frames(self.settings.active_symbols)
        from forexd.feeds.replay import ReplayFeed

        return ReplayFeed(frames, speed=fcfg.speed, max_sleep_s=fcfg.max_sleep_s)

    async def load_frames(self, symbols: list[SymbolConfig]) -> dict[str, pd.DataFrame]:
        """:meth:`load_frame` for each symbol, in a thread (file parsing, SQLite reads).

        Abandoned if cancelled (a stop signal during start-up): the thread only reads.
        """
        frames: dict[str, pd.DataFrame] = {}
        for sym in symbols:
            frames[sym.symbol] = await run_abandonable(self.load_frame, sym)
        return frames

    def load_frame(self, sym: SymbolConfig) -> pd.DataFrame:
        from forexd.feeds import loaders  # file parsing only when replaying files
        from forexd.feeds.frames import clip_frame
        from forexd.storage.candles import read_store

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
        async with anyio.create_task_group() as actors_tg:
            self._actors_tg = actors_tg
            for sym in self.settings.active_symbols:
                await self.start_actor(sym)
            task_status.started()
            if self.exit_when_done:
                while any(not a.done.is_set() for a in self.actors.values()):
                    await next(a for a in self.actors.values() if not a.done.is_set()).done.wait()
                await self.ready.wait()  # a short feed may end before start-up finished
                self.request_stop("all feeds exhausted")
            await anyio.sleep_forever()

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
        policy = RestartPolicy()
        reported = False
        while True:
            started_at = time.monotonic()
            try:
                async with anyio.create_task_group() as life:
                    await life.start(actor.run)
                    if not reported:
                        reported = True
                        task_status.started()
                return
            except Exception as exc:
                cfg = self.settings.actors  # read each time: a reload may change it
                decision = policy.after_crash(cfg, started_at=started_at, now=time.monotonic())
                cause = first_leaf(exc)
                actor.last_error = f"{type(cause).__name__}: {cause}"
                actor.log.exception(
                    "actor_crashed",
                    crashes_in_window=decision.crashes_in_window,
                    restart_in_s=None if decision.give_up else decision.delay_s,
                )
                if decision.give_up:
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
                await anyio.sleep(decision.delay_s)
                actor.restarts += 1

    # -- background -------------------------------------------------------------------

    async def _run_reloads(self, *, task_status: Started = anyio.TASK_STATUS_IGNORED) -> None:
        """Host SIGHUP reloads; the shutdown cancels them before it stops the actors."""
        async with anyio.create_task_group() as reloads:
            self._reload_tg = reloads
            task_status.started()
            await anyio.sleep_forever()

    async def _watch_signals(self, *, task_status: Started = anyio.TASK_STATUS_IGNORED) -> None:
        if sys.platform == "win32":  # pragma: no cover - Windows stops via the service
            task_status.started()
            return
        try:
            with anyio.open_signal_receiver(
                signal.SIGTERM, signal.SIGINT, signal.SIGHUP
            ) as signals:
                # Listening now; a stop signal that came before (imports, start-up) was
                # recorded by stopsignals and is acted on here, before start-up begins.
                early = stopsignals.take_pending()
                if early is not None:
                    self._on_stop_signal(early)
                task_status.started()
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        self.log.info("signal_received", signal="SIGHUP", state=self.state)
                        if self._reload_tg is None or self.state != "running":
                            self.log.warning("reload_ignored", reason=f"daemon is {self.state}")
                        else:
                            self._reload_tg.start_soon(self._reload_from_signal)
                        continue
                    self._on_stop_signal(signum)
        finally:
            # The receiver restored the default actions (SIGTERM kills, SIGINT raises):
            # record again, so a late signal cannot turn a clean exit into a failure
            # (only where `forexd run` installed them: an in-process test keeps its own).
            stopsignals.reinstall()

    def _on_stop_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stop_requested.is_set():
            self.log.warning("forced_exit", signal=name)
            os._exit(1)
        self.log.info("signal_received", signal=name, state=self.state)
        self.request_stop(name)

    async def _reload_from_signal(self) -> None:
        """SIGHUP: reload in its own task, so stop signals are seen meanwhile.

        A failure is already logged and counted by :meth:`reload`; a reload bug must not
        take a trading daemon down.
        """
        with contextlib.suppress(Exception):
            await self.reload("SIGHUP")

    async def _sample_threads(self) -> None:
        while True:
            await anyio.to_thread.run_sync(self.threads.sample)  # reads /proc: off the loop
            await anyio.sleep(THREAD_SAMPLE_S)

    # -- shutdown ---------------------------------------------------------------------

    async def _shutdown(self, tg: TaskGroup) -> None:
        """Stop in dependency order (see the module note); works after a partial start-up."""
        was = self.state
        self.state = "stopping"
        self.notifier.stopping(f"stopping: {self.stop_reason}")
        self.log.info("stopping", reason=self.stop_reason, during=was)
        with anyio.move_on_after(self.settings.shutdown_timeout_s, shield=True) as scope:
            # 1. Producers of writes: actors (and their training tasks), then the feed
            #    and the risk persister. Each is waited for, not just cancelled.
            await self._reloads_svc.stop()
            for actor in self.actors.values():
                actor.accepting_orders = False
            await self._actors_svc.stop()
            await self._feed_svc.stop()
            await self._persist_svc.stop()
            if self._writer_svc.launched and not self._writer_svc.done.is_set():
                # 2. Final flush, 3. the risk state (after the fills it counted are on
                # disk), 4. close the writer and wait for its connection to close.
                await self.writer.flush()
                if self.risk.gate is not None:
                    await self.risk.persist()
                await self.writer.close()
                await self._writer_svc.done.wait()
            elif self.risk.gate is not None:
                await anyio.to_thread.run_sync(self.risk.persist_now)
            if self._api is not None:
                await self._api.aclose()
            if self.executor is not None:  # every cycle has ended: no task is waited for
                with anyio.move_on_after(EXECUTOR_CLOSE_TIMEOUT_S):
                    await self._cluster.call(self.executor.close)
            self._cluster.stop()
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

    # -- observation ------------------------------------------------------------------

    def holdings(self) -> dict[str, Holding]:
        """Every symbol's position (held + in flight) and mark price, for the risk gate."""
        return {
            sym: Holding(a.core.position_units + a.core.pending_units, a.last_bar.close)
            for sym, a in self.actors.items()
            if a.last_bar is not None
        }


def process_age_s(process: psutil.Process) -> float:
    """Seconds since this process started, to ~10 ms where /proc tells it.

    psutil's ``create_time()`` adds the start tick to a boot time known to the second only,
    so on Linux the age is read as ``/proc/uptime`` minus the process's start tick instead.
    """
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux
        return time.time() - process.create_time()
