"""``ml``: trade a classifier's probabilities, and retrain it while the daemon trades.

Two halves with different rules:

* **The bar path** (:meth:`MlStrategy.decide`) is pure and fast: the champion's feature row
  from the last ``history_bars`` bars (:func:`~forexd.features.compute_features_last`), one
  ``predict_proba`` call, and a threshold rule — long when P(up) reaches ``entry_threshold``
  (and beats P(down)), short likewise, and an open position is kept while its side's
  probability stays at or above ``exit_threshold``. No champion yet: no trade.
* **The training hook** (:class:`~forexd.strategies.base.Trainable`) runs in the actor's
  task group, never on the bar path. Everything heavy — reading candles, features, labels,
  walk-forward, the final fit, the champion comparison, writing the artifact — is one job in
  the daemon's compute pool (symbol semaphore, bounded workers, ``train_timeout_s``); the
  registry rows are written afterwards through the storage writer (see
  :mod:`forexd.storage.model_registry` for why). Failures of a cycle are recorded on its stats and
  logged with its ``cycle_id``; the champion keeps trading. Cancellation (shutdown) is
  never swallowed.

This strategy bridges the learning layer and the runtime, so it sits above the pure
strategies; it imports the learning code lazily (see the import note below).
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import numpy as np
import structlog

from forexd.daemon.cleanup import run_cleanup
from forexd.daemon.compute import JobTimeoutError
from forexd.domain import ns_to_iso
from forexd.domain.bars import BarHistory, FloatArray
from forexd.errors import ForexdError
from forexd.storage.db import now_ns

if TYPE_CHECKING:
    from forexd.models.promotion import Champion
    from forexd.models.trained import TrainedModel
    from forexd.storage.model_registry import ModelRecord
    from forexd.strategies.ml_cycle import CycleHandle
    from forexd.strategies.ml_params import MlParams

# Import note: forexd.features and forexd.models import forexd.strategies.base, which runs
# this package's __init__, which imports this module. So this module imports nothing from
# those two packages at import time (whichever of the three a program imports first, the
# other two would still be half-initialised here); the learning code is imported inside the
# methods that use it, by which time every package is complete. It costs a dict lookup.


class _ParamsClass:
    """``MlStrategy.Params``, resolved on first access (see the import note above)."""

    def __get__(self, obj: object, owner: type | None = None) -> type[MlParams]:
        from forexd.strategies.ml_params import MlParams

        return MlParams


FAST_PATH_TOLERANCE = 1e-9  # the fast logistic path must agree with sklearn to this


def _logistic_fast_path(model: TrainedModel) -> Callable[[FloatArray], FloatArray] | None:
    """One-row probabilities of a scaled logistic regression in plain numpy, or ``None``.

    sklearn's ``predict_proba`` spends ~0.4 ms per call on input validation, most of the
    bar path's budget; the arithmetic itself (scale, one dot product, softmax) takes a few
    microseconds. The fast path is only used after it reproduced sklearn on probe rows.
    """
    estimator = getattr(model, "estimator", None)
    steps = getattr(estimator, "named_steps", None)
    if steps is None or set(steps) != {"scale", "logistic"}:
        return None
    scale, logistic = steps["scale"], steps["logistic"]
    mean = np.asarray(scale.mean_, dtype=np.float64)
    std = np.asarray(scale.scale_, dtype=np.float64)
    coef = np.asarray(logistic.coef_, dtype=np.float64)
    intercept = np.asarray(logistic.intercept_, dtype=np.float64)

    def proba(row: FloatArray) -> FloatArray:
        z = coef @ ((row - mean) / std) + intercept
        if len(z) == 1:  # binary: sigmoid of one score
            p1 = 1.0 / (1.0 + np.exp(-z[0]))
            return np.array([1.0 - p1, p1])
        e = np.exp(z - z.max())
        out: FloatArray = e / e.sum()
        return out

    probes = np.random.default_rng(0).normal(size=(4, model.n_features)) * std + mean
    expected = model.predict_proba(probes)
    got = np.array([proba(r) for r in probes])
    if got.shape != expected.shape or not np.allclose(got, expected, atol=FAST_PATH_TOLERANCE):
        return None
    return proba


@dataclass(frozen=True, slots=True)
class _Live:
    """The champion with the columns of its "up" and "down" classes, resolved once."""

    champion: Champion
    up: int
    down: int
    info: dict[str, Any]
    fast: Callable[[FloatArray], FloatArray] | None

    @classmethod
    def of(cls, champion: Champion, info: dict[str, Any]) -> _Live:
        from forexd.models.errors import ArtifactError

        classes = [int(c) for c in champion.model.classes]
        down = -1 if -1 in classes else 0
        if 1 not in classes or down not in classes:
            raise ArtifactError(
                f"model {champion.model_id}: classes {classes} have no up (1) and down "
                "(-1, or 0 of 0/1) class to trade on"
            )
        fast = _logistic_fast_path(champion.model)
        return cls(champion, classes.index(1), classes.index(down), info, fast)


class MlStrategy:
    """Trades the champion's probabilities; retrains itself (see the module note)."""

    name: ClassVar[str] = "ml"
    Params: ClassVar[_ParamsClass] = _ParamsClass()

    def __init__(self, params: MlParams) -> None:
        self.params = params
        self._live: _Live | None = None
        self._symbol: str | None = None
        self._pending_ctx: Any = None
        self._log: Any = structlog.get_logger().bind(component="trainer")
        self._bars_at_last_cycle: int | None = None
        self._state = "idle"
        self._cycle_id: str | None = None
        self._cycles = 0
        self._last_cycle: dict[str, Any] | None = None
        self._last_error: str | None = None
        self._decide_errors = 0

    # -- the bar path -----------------------------------------------------------------

    @property
    def warmup_bars(self) -> int:
        """History one prediction reads: the feature warm-up plus a GRU's window."""
        return self.params.features.history_bars + self.params.context_rows

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        """Target from the champion's probabilities; ``None`` without a champion."""
        if self._pending_ctx is not None:
            self._restore_now(self._pending_ctx, history.instrument.symbol, on_bar_path=True)
        live = self._live
        if live is None:
            return None
        need = live.champion.history_bars
        if len(history) < need:
            return None
        try:
            proba = self._proba(live, history, need)
        except ForexdError as exc:  # bad bars or a model that cannot predict: no trade
            self._decide_errors += 1
            self._last_error = f"decide: {exc}"
            if self._decide_errors == 1:
                self._log.error("decide_failed", symbol=self._symbol, error=str(exc))
            return None
        return self._target(float(proba[live.up]), float(proba[live.down]), position_units)

    @staticmethod
    def _proba(live: _Live, history: BarHistory, need: int) -> FloatArray:
        from forexd.features.core import compute_features, compute_features_last

        model, spec = live.champion.model, live.champion.features
        cols = (history.opens(need), history.highs(need), history.lows(need), history.closes(need))
        if model.context_rows == 0:
            row = compute_features_last(*cols, history.times(need), spec)
            if live.fast is not None and np.isfinite(row).all():
                return live.fast(row)
            proba: FloatArray = model.predict_proba(row[np.newaxis, :])[0]
            return proba
        rows = compute_features(*cols, history.times(need), spec).matrix
        proba = model.predict_proba(rows[-(model.context_rows + 1) :])[-1]
        return proba

    def _target(self, p_up: float, p_down: float, position_units: int) -> int | None:
        p = self.params
        if p_up >= p.entry_threshold and p_up > p_down:
            return p.units
        if p_down >= p.entry_threshold and p_down > p_up:
            return -p.units
        if position_units > 0:
            return None if p_up >= p.exit_threshold else 0
        if position_units < 0:
            return None if p_down >= p.exit_threshold else 0
        return None

    # -- restore ------------------------------------------------------------------------

    def restore(self, ctx: Any, symbol: str | None = None) -> None:
        """Load the symbol's champion from the registry (blocking; the actor's thread).

        A champion that cannot be loaded (corrupt artifact, missing torch) is an error on
        the symbol's status, not a crash: the symbol trades nothing until a cycle trains a
        new champion. Without ``symbol`` (an actor that does not pass it) the load happens
        at the first bar, where the symbol is known.
        """
        if symbol is None:
            self._pending_ctx = ctx
            return
        self._restore_now(ctx, symbol, on_bar_path=False)

    def _restore_now(self, ctx: Any, symbol: str, *, on_bar_path: bool) -> None:
        from forexd.models.artifacts import load_model
        from forexd.models.errors import ArtifactError
        from forexd.models.promotion import Champion
        from forexd.storage.model_registry import ModelRegistry

        self._pending_ctx = None
        self._symbol = symbol
        self._log = ctx.log.bind(symbol=symbol)
        self._live = None
        self._bars_at_last_cycle = None
        registry = ModelRegistry(ctx.paths.db, ctx.paths.models)
        try:
            record = registry.champion_for(symbol)
            if record is None:
                self._log.info("no_champion", hint="the first training cycle will train one")
                return
            model = load_model(registry.artifact_path(record), n_jobs=1)
            live = _Live.of(Champion.from_model(model, record.model_id), _summary(record))
            if live.champion.history_bars > self.warmup_bars:
                raise ArtifactError(
                    f"model {record.model_id} needs {live.champion.history_bars} bars of "
                    f"history but this strategy keeps {self.warmup_bars}; retrain it"
                )
        except ForexdError as exc:
            self._last_error = f"champion not loaded: {exc}"
            self._log.error("champion_load_failed", error=str(exc))
            return
        self._live = live
        self._log.info(
            "champion_loaded",
            model_id=record.model_id,
            kind=record.kind,
            trained_at=ns_to_iso(record.created_ns),
            on_bar_path=on_bar_path,
        )

    # -- schedule ----------------------------------------------------------------------

    def wants_training(self, bars_seen: int) -> bool:
        """Due every ``retrain_every_bars`` bars, once ``lookback_candles`` bars were seen.

        After a restart the clock starts at the restored bar count if a champion was
        loaded (it is fresh enough), at zero otherwise (train as soon as there is data).
        """
        if self._bars_at_last_cycle is None:
            self._bars_at_last_cycle = bars_seen if self._live is not None else 0
        if bars_seen < self.params.lookback_candles:
            return False
        if bars_seen - self._bars_at_last_cycle < self.params.retrain_every_bars:
            return False
        self._bars_at_last_cycle = bars_seen
        return True

    # -- the cycle ----------------------------------------------------------------------

    async def train_cycle(self, ctx: Any, history: BarHistory, reason: str) -> None:
        """Train, evaluate and maybe promote a challenger; raises nothing but cancellation."""
        symbol = history.instrument.symbol
        if self._pending_ctx is not None:
            restore = functools.partial(
                self._restore_now, self._pending_ctx, symbol, on_bar_path=False
            )
            await anyio.to_thread.run_sync(restore)
        if history.last is None:
            return
        from forexd.strategies.ml_cycle import CycleHandle

        cycle_id = f"{symbol}-{secrets.token_hex(4)}"
        log = ctx.log.bind(symbol=symbol, cycle_id=cycle_id)
        # The daemon's job queue (daemon/jobs.py): this cycle is a job ctl jobs shows.
        jobs = getattr(ctx, "jobs", None)
        kind = "operator" if reason == "operator" else "retrain"
        job = (
            None
            if jobs is None
            else jobs.adopt(symbol, kind, timeout_s=self.params.train_timeout_s)
        )
        if jobs is not None and job is None:
            log.info("training_cycle_skipped", reason="its job was cancelled while queued")
            return

        def on_phase(name: str) -> None:  # from the worker thread
            self._set_phase(name)
            log.info("training_phase", phase=name)
            if jobs is not None and job is not None:
                jobs.set_phase(job.id, name)

        progress = None
        if jobs is not None and job is not None:
            progress = functools.partial(jobs.set_progress, job.id)
        handle = CycleHandle(cycle_id, on_phase, progress)
        scope = anyio.CancelScope()
        if jobs is not None and job is not None:
            jobs.on_cancel(job.id, scope.cancel)
        self._cycles += 1
        self._cycle_id, self._state = handle.cycle_id, "queued"
        started = time.perf_counter()
        log.info("training_cycle_started", reason=reason, until=ns_to_iso(history.last.ts))
        outcome: dict[str, Any] = {"cycle_id": handle.cycle_id, "reason": reason}
        try:
            lookback = None if job is None else job.lookback_candles
            with scope:
                outcome |= await self._run(ctx, handle, symbol, history, log, lookback)
            if scope.cancelled_caught:
                outcome["error"] = self._fail(log, handle, "cancelled (ctl cancel)")
            else:
                self._last_error = None
        except JobTimeoutError as exc:
            outcome["error"] = self._fail(log, handle, f"training timed out: {exc}")
        except ForexdError as exc:
            outcome["error"] = self._fail(log, handle, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug in one cycle must not stop trading; logged in full
            log.exception("training_cycle_crashed")
            outcome["error"] = self._fail(log, handle, f"internal error: {exc!r}")
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
            "rss_before_cleanup_mb": round(report.rss_before_mb, 1),
            "rss_after_cleanup_mb": round(report.rss_after_mb, 1),
        }
        self._last_cycle = outcome
        log.info("training_cycle_finished", **{k: v for k, v in outcome.items() if k != "cycle_id"})

    def _set_phase(self, name: str) -> None:
        # Called from the worker thread: a plain attribute store is atomic under the GIL,
        # and ctl status reads it on the loop.
        self._state = name

    def _fail(self, log: Any, handle: CycleHandle, message: str) -> str:
        self._last_error = f"cycle {handle.cycle_id}: {message}"
        log.error("training_cycle_failed", error=message)
        return message

    async def _run(
        self,
        ctx: Any,
        handle: CycleHandle,
        symbol: str,
        history: BarHistory,
        log: Any,
        lookback: int | None = None,
    ) -> dict[str, Any]:
        from forexd.models.promotion import Champion
        from forexd.storage.model_registry import ModelRegistry
        from forexd.strategies.ml_cycle import training_job, training_job_in_process

        if ctx.writer is not None:
            await ctx.writer.flush()  # the newest candles are queued, not yet committed
        registry = ModelRegistry(ctx.paths.db, ctx.paths.models, ctx.writer)
        champion = self._live.champion if self._live is not None else None
        device = "cpu"
        if self.params.model.uses_torch:
            from forexd.models.device import choose_device

            device = choose_device(self.params.device)
        params = self.params  # ctl train --lookback-candles N: this cycle only
        if lookback is not None:
            params = params.model_copy(update={"lookback_candles": lookback})
        if ctx.pool.executor == "processes":
            job: Any = functools.partial(
                training_job_in_process,
                params,
                ctx.paths,
                ctx.budget,
                handle.cycle_id,
                symbol,
                history.times().copy(),
                champion,
                device,
            )
        else:
            job = functools.partial(
                training_job,
                params,
                ctx,
                registry,
                handle,
                symbol,
                history.times(),
                champion,
                device,
            )
        result, record = await ctx.pool.run(
            job, timeout_s=self.params.train_timeout_s, device=device
        )
        self._state = "registering"
        try:
            await registry.aregister(record)
        except ForexdError:
            registry.artifact_path(record).unlink(missing_ok=True)  # no row, no file
            raise
        verdict = result.comparison
        if verdict.promote:
            await registry.aset_champion(symbol, record.model_id)
            promoted = Champion.from_model(result.model, record.model_id)
            self._live = _Live.of(promoted, _summary(record))
            log.info("model_promoted", model_id=record.model_id, reason=verdict.reason)
        return {
            "model_id": record.model_id,
            "decision": "promoted" if verdict.promote else "kept_champion",
            "decision_reason": verdict.reason,
            "oos_log_loss": record.metrics["oos_log_loss"],
            "oos_sharpe": record.metrics["oos_sharpe"],
            "folds": len(result.walk_forward.folds),
            "seconds": result.seconds,
        }

    # -- backtests ----------------------------------------------------------------------

    def train_in_backtest(
        self, candles: Any, symbol: str, *, timeframe_seconds: int, n_jobs: int = 1
    ) -> dict[str, Any]:
        """The daemon's cycle, synchronously, on the bars a backtest has replayed so far.

        Same learning code, same champion/challenger rule; the winner trades from the
        next bar. Differences from live, by construction: nothing is written to a
        registry, and live training finishes some bars after it starts (it runs in the
        background) while here it is instantaneous in simulated time. A failing cycle is
        recorded and the champion keeps trading, as live.

        Args:
            candles: ``forexd.models.trainconfig.Candles`` up to and including this bar.
            symbol: the instrument.
            timeframe_seconds: bar length, for annualising the out-of-sample metrics.
            n_jobs: threads for the model (the backtest's compute budget).
        """
        from forexd.domain import get_instrument
        from forexd.models.promotion import Champion
        from forexd.models.trainconfig import periods_per_year
        from forexd.models.trainer import train_challenger

        self._cycles += 1
        cycle_id = f"{symbol}-bt{self._cycles}"
        outcome: dict[str, Any] = {"cycle_id": cycle_id, "until": ns_to_iso(int(candles.ts[-1]))}
        try:
            result = train_challenger(
                candles,
                self.params,
                pip_size=get_instrument(symbol).pip_size,
                n_jobs=n_jobs,
                bars_per_year=periods_per_year(timeframe_seconds),
                champion=self._live.champion if self._live is not None else None,
            )
        except ForexdError as exc:
            self._last_error = outcome["error"] = f"{type(exc).__name__}: {exc}"
            self._last_cycle = outcome
            return outcome
        self._last_error = None
        verdict = result.comparison
        if verdict.promote:
            champion = Champion.from_model(result.model, cycle_id)
            metrics = result.metrics()
            self._live = _Live.of(
                champion,
                {
                    "model_id": cycle_id,
                    "kind": self.params.model.kind,
                    "trained_at": outcome["until"],
                    "oos_log_loss": metrics.get("oos_log_loss"),
                    "oos_sharpe": metrics.get("oos_sharpe"),
                },
            )
        outcome["decision"] = "promoted" if verdict.promote else "kept_champion"
        outcome["decision_reason"] = verdict.reason
        self._last_cycle = outcome
        return outcome

    # -- observation --------------------------------------------------------------------

    def training_stats(self) -> dict[str, Any]:
        """Champion, training state, the last cycle and the last error, for ``ctl status``."""
        return {
            "state": self._state,
            "cycle_id": self._cycle_id,
            "cycles": self._cycles,
            "champion": self._live.info if self._live is not None else None,
            "last_cycle": self._last_cycle,
            "last_error": self._last_error,
            "model": self.params.model.kind,
            "retrain_every_bars": self.params.retrain_every_bars,
        }


def _summary(record: ModelRecord) -> dict[str, Any]:
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
