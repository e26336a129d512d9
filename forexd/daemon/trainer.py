"""The runtime trainer of one ML symbol: restore, schedule, train, promote, hand over.

The strategy (:class:`~forexd.strategies.ml.MlStrategy`) only decides. This object owns
everything else about its model: loading the champion from the registry when the actor
(re)starts, the retraining schedule, the training cycle, the registry rows and the
promotion, and the training figures ``ctl status`` shows. A promoted champion is *handed
over* (``hand_over``, an async callback): in the daemon that puts a message in the
symbol actor's inbox, so the actor — the only writer of its state — installs it on
whichever strategy it trades with at that moment (after a reload too).

A cycle: the bar times it is given are copied at once (the actor's ring buffer keeps
moving while the job waits for a worker); everything heavy — reading candles, features,
labels, walk-forward, the final fit, the comparison, writing the artifact — is one job in
the compute pool (symbol semaphore, bounded workers, ``train_timeout_s``); the registry
rows go through the storage writer afterwards (see :mod:`forexd.storage.model_registry`).
With ``challengers = K > 1`` the cycle trains K such jobs (seeds ``seed .. seed + K - 1``)
in parallel and judges them together with the champion in spawned workers; the best may
be promoted (:mod:`forexd.daemon.challengers`). Failures are recorded on the stats and
logged with the cycle id; the champion keeps trading. Cancellation (shutdown, a reload that
drops the model) is never swallowed.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import numpy.typing as npt

from forexd.daemon.cleanup import run_cleanup
from forexd.daemon.compute import JobTimeoutError
from forexd.daemon.training import TrainServices
from forexd.domain import ns_to_iso
from forexd.errors import ForexdError
from forexd.models.champion import LiveChampion, RetrainSchedule, promote
from forexd.storage.db import now_ns
from forexd.storage.model_registry import ModelRecord, ModelRegistry
from forexd.strategies.ml_params import MlParams

if TYPE_CHECKING:
    from forexd.daemon.trainjob import CycleHandle
    from forexd.models.promotion import Champion
    from forexd.models.trainer import CycleResult

HandOver = Callable[[LiveChampion], Awaitable[None]]
"""Gives a promoted champion to whoever trades with it (the actor's inbox)."""


def champion_summary(record: ModelRecord) -> dict[str, Any]:
    """What ``ctl status`` shows about a champion."""
    m = record.metrics
    return {
        "model_id": record.model_id,
        "kind": record.kind,
        "trained_at": ns_to_iso(record.created_ns),
        "data_to": ns_to_iso(record.data_to_ts),
        "oos_log_loss": m.get("oos_log_loss"),
        "oos_accuracy": m.get("oos_accuracy"),
        "oos_sharpe": m.get("oos_sharpe"),
    }


class ModelTrainer:
    """Trains and promotes one symbol's model; see the module note.

    Args:
        ctx: the daemon's training services.
        symbol: the instrument.
        params: the ``ml`` strategy's parameters (training config and schedule).
        hand_over: called with every champion promoted by a cycle.
    """

    def __init__(
        self, ctx: TrainServices, symbol: str, params: MlParams, hand_over: HandOver
    ) -> None:
        self.ctx = ctx
        self.symbol = symbol
        self.params = params
        self._hand_over = hand_over
        self._log: Any = ctx.log.bind(symbol=symbol)
        self._champion: LiveChampion | None = None
        self._schedule = RetrainSchedule(params.lookback_candles, params.retrain_every_bars)
        self._state = "idle"
        self._cycle_id: str | None = None
        self._cycles = 0
        self._last_cycle: dict[str, Any] | None = None
        self._last_error: str | None = None

    @property
    def champion(self) -> LiveChampion | None:
        """The newest champion this trainer loaded or promoted."""
        return self._champion

    def retarget(self, params: MlParams) -> None:
        """New parameters (a reload): later cycles use them; the champion is kept."""
        self.params = params
        self._schedule.lookback = params.lookback_candles
        self._schedule.every_bars = params.retrain_every_bars

    # -- restore ------------------------------------------------------------------------

    def restore(self) -> LiveChampion | None:
        """Load the symbol's champion from the registry (blocking: run it off the loop).

        A champion that cannot be loaded (corrupt artifact, missing torch) is an error on
        the symbol's status, not a crash: the symbol trades nothing until a cycle trains a
        new champion, which the schedule then asks for at once.
        """
        from forexd.models.artifacts import load_model
        from forexd.models.promotion import Champion

        self._champion = None
        self._schedule.reset()
        registry = ModelRegistry(self.ctx.paths.db, self.ctx.paths.models)
        try:
            record = registry.champion_for(self.symbol)
            if record is None:
                self._log.info("no_champion", hint="the first training cycle will train one")
                return None
            model = load_model(registry.artifact_path(record), n_jobs=1)
            live = LiveChampion.of(
                Champion.from_model(model, record.model_id), champion_summary(record)
            )
        except ForexdError as exc:
            self._last_error = f"champion not loaded: {exc}"
            self._log.error("champion_load_failed", error=str(exc))
            return None
        self._champion = live
        self._log.info(
            "champion_loaded",
            model_id=record.model_id,
            kind=record.kind,
            trained_at=ns_to_iso(record.created_ns),
        )
        return live

    def forget_champion(self, reason: str) -> None:
        """The strategy refused the champion (``reason``): train a new one at once."""
        self._champion = None
        self._schedule.reset()
        self._last_error = reason

    # -- schedule ----------------------------------------------------------------------

    def wants_training(self, bars_seen: int) -> bool:
        """Whether a scheduled cycle is due after ``bars_seen`` bars (see RetrainSchedule)."""
        return self._schedule.due(bars_seen, has_champion=self._champion is not None)

    # -- the cycle ----------------------------------------------------------------------

    async def train_cycle(self, bar_times: npt.NDArray[np.int64], reason: str) -> None:
        """Train, evaluate and maybe promote a challenger; raises nothing but cancellation.

        Args:
            bar_times: open times of the bars the actor holds (may be a view of its ring
                buffer: it is copied before the first await).
            reason: ``schedule``, ``operator``, ``reload`` … (logged).
        """
        times = np.array(bar_times, dtype=np.int64, copy=True)
        if len(times) == 0:
            return
        from forexd.daemon.trainjob import CycleHandle

        cycle_id = f"{self.symbol}-{secrets.token_hex(4)}"
        log = self.ctx.log.bind(symbol=self.symbol, cycle_id=cycle_id)
        # The daemon's job queue (daemon/jobs.py): this cycle is the job ctl jobs shows, the
        # operator's queued one (ctl train) if there is one, else a new scheduled job.
        jobs = self.ctx.jobs
        job = None
        if jobs is not None:
            kind = "operator" if reason == "operator" else "retrain"
            job = jobs.adopt(self.symbol, kind, timeout_s=self.params.train_timeout_s)
            if job is None:
                log.info("training_cycle_skipped", reason="its job was cancelled while queued")
                return

        def on_phase(name: str) -> None:  # from the worker thread
            self._set_phase(name)
            log.info("training_phase", phase=name)
            if jobs is not None and job is not None:
                jobs.set_phase(job.id, name)

        progress = (
            None if jobs is None or job is None else functools.partial(jobs.set_progress, job.id)
        )
        handle = CycleHandle(cycle_id, on_phase, progress)
        scope = anyio.CancelScope()  # ctl cancel JOB ends this cycle only, not the actor
        if jobs is not None and job is not None:
            jobs.on_cancel(job.id, scope.cancel)
        params = self.params  # ctl train --lookback-candles N: this cycle only
        if job is not None and job.lookback_candles is not None:
            params = params.model_copy(update={"lookback_candles": job.lookback_candles})
        self._cycles += 1
        self._cycle_id, self._state = handle.cycle_id, "queued"
        started = time.perf_counter()
        log.info("training_cycle_started", reason=reason, until=ns_to_iso(int(times[-1])))
        outcome: dict[str, Any] = {"cycle_id": handle.cycle_id, "reason": reason}
        try:
            with scope:
                outcome |= await self._run(handle, times, log, params)
            if scope.cancelled_caught:
                outcome["error"] = self._fail(log, handle.cycle_id, "cancelled (ctl cancel)")
            else:
                self._last_error = None
        except JobTimeoutError as exc:
            outcome["error"] = self._fail(log, handle.cycle_id, f"training timed out: {exc}")
        except ForexdError as exc:
            outcome["error"] = self._fail(log, handle.cycle_id, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug in one cycle must not stop trading; logged in full
            log.exception("training_cycle_crashed")
            outcome["error"] = self._fail(log, handle.cycle_id, f"internal error: {exc!r}")
        finally:
            handle.abandon()  # on cancellation too: the worker stops at its next check
            self._state = "idle"
            if jobs is not None and job is not None:  # a shutdown leaves no model_id either
                error = outcome.get("error")
                if error is None and "model_id" not in outcome:
                    error = "interrupted: the daemon is stopping"
                jobs.finish(job.id, error=error, outcome=outcome.get("decision"))
        # Only reached when not cancelled: a shutdown does not wait for cleanup.
        report = await anyio.to_thread.run_sync(run_cleanup)
        outcome |= {
            "finished_at": ns_to_iso(now_ns()),
            "duration_s": round(time.perf_counter() - started, 3),
            **report.log_fields(),  # hooks run/skipped/failed, RSS before/after
        }
        self._last_cycle = outcome
        log.info("training_cycle_finished", **{k: v for k, v in outcome.items() if k != "cycle_id"})

    def _set_phase(self, name: str) -> None:
        # Called from the worker thread: a plain attribute store is atomic under the GIL,
        # and ctl status reads it on the loop.
        self._state = name

    def _fail(self, log: Any, cycle_id: str, message: str) -> str:
        self._last_error = f"cycle {cycle_id}: {message}"
        log.error("training_cycle_failed", error=message)
        return message

    async def _run(
        self, handle: Any, times: npt.NDArray[np.int64], log: Any, params: MlParams
    ) -> dict[str, Any]:
        ctx, symbol = self.ctx, self.symbol
        if ctx.writer is not None:
            await ctx.writer.flush()  # the newest candles are queued, not yet committed
        registry = ModelRegistry(ctx.paths.db, ctx.paths.models, ctx.writer)
        current = self._champion.champion if self._champion is not None else None
        device = "cpu"
        if params.model.uses_torch:
            from forexd.models.device import choose_device

            device = choose_device(params.device)
        if params.challengers > 1:
            return await self._run_challengers(handle, times, log, params, registry, device)
        result, record = await self._train_challenger(
            handle, times, params, registry, current, device
        )
        self._state = "registering"
        try:
            await registry.aregister(record)
        except ForexdError:
            registry.artifact_path(record).unlink(missing_ok=True)  # no row, no file
            raise
        verdict = result.comparison
        promoted = promote(result, record.model_id, champion_summary(record))
        if promoted is not None:
            await registry.aset_champion(symbol, record.model_id)
            self._champion = promoted
            log.info("model_promoted", model_id=record.model_id, reason=verdict.reason)
            await self._hand_over(promoted)
        one = {"model_id": record.model_id, "seed": params.seed, "status": "ok", "rank": 1,
               "score": verdict.challenger_log_loss,  # an agent's return is in the reason
               "promoted": promoted is not None, "error": None}  # fmt: skip
        return {
            "model_id": record.model_id,
            "decision": "promoted" if promoted is not None else "kept_champion",
            "decision_reason": verdict.reason,
            "promoted": record.model_id if promoted is not None else None,
            "challengers": [one],
            "champion_score": verdict.champion_log_loss,
            "oos_log_loss": record.metrics["oos_log_loss"],
            "oos_sharpe": record.metrics["oos_sharpe"],
            "folds": len(result.walk_forward.folds),
            "seconds": result.seconds,
        }

    async def _run_challengers(
        self,
        handle: CycleHandle,
        times: npt.NDArray[np.int64],
        log: Any,
        params: MlParams,
        registry: ModelRegistry,
        device: str,
    ) -> dict[str, Any]:
        """K > 1: train in parallel, judge together, register all, promote the best."""
        from forexd.daemon.challengers import train_and_judge
        from forexd.models.promotion import Comparison

        current = self._champion.champion if self._champion is not None else None

        async def train_one(sub: CycleHandle, p: MlParams) -> tuple[CycleResult, ModelRecord]:
            # No champion given: the challengers are judged together, not in their jobs.
            return await self._train_challenger(sub, times, p, registry, None, device)

        trained, verdict = await train_and_judge(
            self.ctx, self.symbol, times, train_one, handle, params, registry, current,
            device, log,
        )  # fmt: skip
        done = {t.record.model_id: t for t in trained if t.record is not None}
        best = next((e["model_id"] for e in verdict.entries if e["rank"] == 1), None)
        shown = done[verdict.promoted or best or next(iter(done))]
        assert shown.result is not None and shown.record is not None
        promoted = None
        if verdict.promoted is not None:
            result = replace(shown.result, comparison=Comparison(True, verdict.reason))
            promoted = promote(result, shown.record.model_id, champion_summary(shown.record))
        if promoted is not None:
            await registry.aset_champion(self.symbol, promoted.model_id)
            self._champion = promoted
            log.info("model_promoted", model_id=promoted.model_id, reason=verdict.reason)
            await self._hand_over(promoted)
        return {
            "model_id": shown.record.model_id,
            "decision": "promoted" if promoted is not None else "kept_champion",
            "decision_reason": verdict.reason,
            "promoted": None if promoted is None else promoted.model_id,
            "challengers": verdict.entries,
            "champion_score": verdict.champion_score,
            "evaluation": verdict.evaluation,
            "oos_log_loss": shown.record.metrics["oos_log_loss"],
            "oos_sharpe": shown.record.metrics["oos_sharpe"],
            "folds": len(shown.result.walk_forward.folds),
            "seconds": shown.result.seconds,
        }

    async def _train_challenger(
        self,
        handle: Any,
        times: npt.NDArray[np.int64],
        params: MlParams,
        registry: ModelRegistry,
        current: Champion | None,
        device: str,
    ) -> tuple[CycleResult, ModelRecord]:
        """One challenger trained (and compared with ``current``) in the compute pool, or as
        a Ray task when the daemon has a cluster (``ctx.executor``); its artifact is written,
        its registry row returned for the caller to register."""
        from forexd.daemon.trainjob import training_job, training_job_in_process

        ctx, symbol = self.ctx, self.symbol
        if ctx.executor is not None:  # candles out, the model back (daemon/trainremote.py)
            from forexd.daemon.trainremote import train_remote

            return await train_remote(
                ctx, ctx.executor, handle, symbol=symbol, times=times, params=params,
                registry=registry, champion=current,
            )  # fmt: skip
        job: Any
        if ctx.pool.executor == "processes":
            job = functools.partial(
                training_job_in_process,
                params,
                ctx.paths,
                ctx.budget,
                handle.cycle_id,
                symbol,
                times,
                current,
                device,
            )
        else:
            job = functools.partial(
                training_job, params, ctx, registry, handle, symbol, times, current, device
            )
        return await ctx.pool.run(job, timeout_s=params.train_timeout_s, device=device)

    # -- observation --------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Champion, training state, the last cycle and the last error, for ``ctl status``."""
        return {
            "state": self._state,
            "cycle_id": self._cycle_id,
            "cycles": self._cycles,
            "champion": self._champion.info if self._champion is not None else None,
            "last_cycle": self._last_cycle,
            "last_error": self._last_error,
            "model": self.params.model.kind,
            "retrain_every_bars": self.params.retrain_every_bars,
        }
