"""Scoring a cycle's champion and challengers on its latest window, in comparison workers.

A cycle with one challenger judges it inside its training job
(:func:`forexd.models.promotion.compare_with_champion`; for agents
:mod:`forexd.rl.trainer`). A cycle with K challengers (:mod:`forexd.daemon.challengers`)
judges all of them and the champion at once, in the spawned workers of
:func:`forexd.rl.compare.compare_models` (killable, bounded waits), with the same rule:

* :func:`plan_window` (the parent, once per cycle): the latest out-of-sample window and the
  rows a challenger is refitted on before it, exactly as the one-challenger comparison
  picks them. Classifiers: the labelled bars after the champion's data plus the label purge,
  at most one walk-forward test fold (without a champion: the last test fold), the refit on
  as many rows as the final model ending before the purge and embargo. Agents: the last
  walk-forward fold's bars after the champion's data, the refit on that fold's training bars.
* :func:`score_on_window` (a worker, per model): the champion as it is, a challenger as its
  refit on the bars before the window (:func:`refit`, so it never grades bars it trained
  on). Classifiers are scored by log loss on the window's labelled bars (lower is better),
  agents by their return on the account trading the window in the backtest simulation
  (higher is better). A model that cannot predict the window (its warm-up reaches into it)
  gets ``score = None`` and the reason.

Refitting in the worker, rather than returning the refitted model from the training job,
keeps the training job (and what crosses the process boundary) as it is; it costs one fit
per challenger — the refit the one-challenger comparison does too, and for an agent one
more fit than its in-job comparison, which reuses the last fold's agent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from forexd.domain import get_instrument, ns_to_iso
from forexd.domain.bars import FloatArray
from forexd.features import FeatureSpec, compute_features
from forexd.models.promotion import predict_window, refit_rows, window_start
from forexd.models.trainconfig import Candles, TrainConfig, make_labels

if TYPE_CHECKING:
    from forexd.models.trained import TrainedModel
    from forexd.rl.compare_worker import ModelRef, WorkerSetup

ScoreName = Literal["log_loss", "return"]

AGENT_THRESHOLD = 0.5  # an agent's signs are its actions; the threshold is not read


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """Where a cycle's models are scored (sent to every comparison worker).

    Attributes:
        score: ``log_loss`` (classifiers, lower is better) or ``return`` (agents, higher).
        start: first row of the window (index into the cycle's candles).
        end: one past its last row.
        rows: labelled bars (classifiers) or traded bars (agents) in the window.
        fit_from: first row a challenger's refit trains on.
        fit_to: one past the last.
        labels: the labels over the candles (classifiers; ``None`` for agents).
        entry_threshold: the champion's threshold when its artifact records none.
        window_from: open time of the window's first bar (ISO).
        window_to: open time of its last bar.
    """

    score: ScoreName
    start: int
    end: int
    rows: int
    fit_from: int
    fit_to: int
    labels: FloatArray | None
    entry_threshold: float
    window_from: str | None
    window_to: str | None

    @property
    def lower_is_better(self) -> bool:
        """Whether a lower score is better (log loss) or a higher one (return)."""
        return self.score == "log_loss"


def plan_window(
    config: TrainConfig,
    data: Candles,
    *,
    symbol: str,
    champion_to_ts: int | None,
    train_rows: int,
    test_rows: int,
) -> WindowPlan:
    """The window and refit rows of a cycle over ``data`` (the cycle's candles).

    Args:
        config: the challengers' configuration (they differ by seed only).
        data: the last ``lookback_candles`` candles, as the training jobs read them.
        symbol: the instrument (its pip size makes the labels).
        champion_to_ts: the champion's last training row's time; ``None``: no champion.
        train_rows: rows the final challenger trained on (``CycleResult.train_rows``).
        test_rows: rows of one walk-forward test fold (classifiers).

    Raises:
        InsufficientDataError: too few candles for the agents' folds (the training jobs
            that read the same candles would have failed first).
    """
    feats = compute_features(data.open, data.high, data.low, data.close, data.ts, config.features)
    first = feats.first_valid_index
    if config.model.is_rl:
        from forexd.models.rl_ppo import rl_params
        from forexd.rl.trainer import _plan  # the walk-forward folds of an agent's cycle

        end = len(data) - 1  # no decision on the last bar (it is only a fill)
        fit_from, fit_to, start, stop = _plan(
            config, first, end, rl_params(config.model).context_bars
        )[-1]
        if champion_to_ts is not None:
            last_seen = int(np.searchsorted(data.ts, champion_to_ts, side="right")) - 1
            start = max(start, last_seen + 1)
        rows = max(0, stop - start)
        return _plan_of("return", data, start, stop, rows, (fit_from, fit_to), None, config)
    y = make_labels(config.label, data.high, data.low, data.close, get_instrument(symbol).pip_size)
    labelled = np.flatnonzero(np.isfinite(y[first:]))
    end = first + int(labelled[-1]) + 1 if len(labelled) else first
    start = window_start(config, data.ts, champion_to_ts, first=first, end=end, test_rows=test_rows)
    rows = int(np.count_nonzero(np.isfinite(y[start:end]))) if start < end else 0
    fit = refit_rows(config, start, first, train_rows)
    return _plan_of("log_loss", data, start, end, rows, fit, y, config)


def _plan_of(
    score: ScoreName,
    data: Candles,
    start: int,
    end: int,
    rows: int,
    fit: tuple[int, int],
    labels: FloatArray | None,
    config: TrainConfig,
) -> WindowPlan:
    span = start < end
    return WindowPlan(
        score=score,
        start=start,
        end=end,
        rows=rows,
        fit_from=fit[0],
        fit_to=fit[1],
        labels=labels,
        entry_threshold=config.entry_threshold,
        window_from=ns_to_iso(int(data.ts[start])) if span else None,
        window_to=ns_to_iso(int(data.ts[end - 1])) if span else None,
    )


def refit(config: TrainConfig, x: FloatArray, setup: WorkerSetup) -> TrainedModel:
    """The default refit of a challenger: its pipeline on the plan's rows before the window.

    Args:
        config: the challenger's configuration (its seed included).
        x: its feature matrix over ``setup.candles``.
        setup: the comparison's shared setup (candles, costs, threads, device, the plan).
    """
    plan = setup.window
    assert plan is not None  # only window jobs refit
    a, b = plan.fit_from, plan.fit_to
    if config.model.is_rl:
        from forexd.rl.fit import fit_rl

        return fit_rl(
            config.model, setup.symbol, setup.candles, x, first=a, end=b, costs=setup.costs,
            units=setup.units, seed=config.seed, device=setup.device,
            blas_threads=setup.threads, feature_names=config.features.names,
        )  # fmt: skip
    from forexd.models.fit import fit_model

    assert plan.labels is not None  # classifiers' plans carry the labels
    return fit_model(
        config.model, x[a:b], plan.labels[a:b], n_jobs=setup.threads, seed=config.seed,
        device=setup.device,
    )  # fmt: skip


def score_on_window(ref: ModelRef, setup: WorkerSetup) -> dict[str, Any]:
    """The score of one model on the plan's window (runs in a comparison worker).

    ``ref.config`` set: a challenger, refitted by ``ref.refit`` (``module:function`` called
    as ``refit(config, x, setup)``); else the champion, loaded by ``ref.loader``.
    """
    from forexd.rl.compare_worker import free_device_memory, load_function

    plan = setup.window
    assert plan is not None
    started = time.perf_counter()
    c = setup.candles
    if ref.config is not None:
        config: TrainConfig = ref.config
        x = compute_features(c.open, c.high, c.low, c.close, c.ts, config.features).matrix
        model = load_function(ref.refit)(config, x, setup)
        threshold = AGENT_THRESHOLD
    else:
        model = load_function(ref.loader)(ref.path, setup.device)
        features = FeatureSpec(**model.metadata["features"])
        x = compute_features(c.open, c.high, c.low, c.close, c.ts, features).matrix
        threshold = float(model.metadata.get("entry_threshold", plan.entry_threshold))
    out: dict[str, Any] = {"kind": model.spec.kind, "score_name": plan.score, "rows": plan.rows}
    out |= _score(model, x, plan, setup, threshold)
    out["seconds"] = time.perf_counter() - started
    del model
    memory = free_device_memory(setup.device)
    if memory is not None:
        out["cuda_memory"] = memory
    return out


def _score(
    model: TrainedModel, x: FloatArray, plan: WindowPlan, setup: WorkerSetup, threshold: float
) -> dict[str, Any]:
    start, end = plan.start, plan.end
    need = model.context_rows
    if plan.labels is not None:
        from forexd.models.metrics import accuracy, log_loss

        proba = predict_window(model, x, start, end)
        if proba is None:
            return {"score": None, "unscorable": _unscorable(need)}
        y = plan.labels[start:end]
        known = np.isfinite(y)
        return {
            "score": log_loss(y[known], proba[known], model.classes),
            "accuracy": accuracy(y[known], proba[known], model.classes),
        }
    from forexd.rl.sim import BarSim, model_signs, simulate_signs

    if start - need < 0 or not np.isfinite(x[start - need : end]).all():
        return {"score": None, "unscorable": _unscorable(need)}
    sim = BarSim(setup.symbol, setup.candles, costs=setup.costs, units=setup.units)
    run = simulate_signs(sim, start, model_signs(model, x, start, end, threshold))
    return {"score": run.total_pnl / float(run.equity[0]), "pnl": run.total_pnl}


def _unscorable(context_rows: int) -> str:
    return (
        f"it cannot be scored on the window: its features (and {context_rows} rows of "
        "context) are not complete there"
    )
