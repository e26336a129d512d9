"""One training cycle of an RL kind: walk-forward in the backtest env, final fit, verdict.

The supervised cycle (:mod:`forexd.models.trainer`) scores classifiers on labels; an agent
has no labels, so its cycle differs where it must and nowhere else:

* **Folds**: the walk-forward layout of the supervised kinds (same ``n_folds``, scheme,
  test size, train size, embargo) over the last ``lookback_candles`` bars. No label purge
  is needed: a training step's reward reads bars before the fold's training end only, and
  the test fold's first observation is its own bar's feature row.
* **Out-of-sample metrics**: each fold's agent trades its test fold deterministically
  (the mode of its action distribution) in :class:`~forexd.rl.sim.BarSim` — the
  backtest's own costs and fills — after a burn-in over the ``context_bars`` feature rows
  before the fold. Accuracy and log loss are NaN (there is nothing to classify).
* **Champion or challenger**: on the last fold's bars after the champion's data (at least
  :data:`~forexd.models.promotion.MIN_COMPARE_ROWS`), the last fold's agent (trained on bars
  before the window: the same information cut-off as the champion) and the champion trade
  the same bars in the same simulation; the challenger wins when its return on the
  account beats the champion's by ``promote_margin`` (a fraction: 0.001 = 0.1 %).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from forexd.brokers.ledger import CostModel
from forexd.domain import ns_to_iso
from forexd.domain.bars import FloatArray, IntArray
from forexd.features import compute_features
from forexd.models.errors import InsufficientDataError, ModelError
from forexd.models.metrics import H1_PERIODS_PER_YEAR, summarise
from forexd.models.promotion import MIN_COMPARE_ROWS, Champion, Comparison
from forexd.models.rl_ppo import RlModel, rl_params
from forexd.models.trainconfig import Candles, TrainConfig
from forexd.models.walkforward import FoldResult, WalkForwardResult
from forexd.rl.fit import fit_rl
from forexd.rl.sim import BarSim, SimResult, model_signs, simulate_signs

if TYPE_CHECKING:
    from forexd.models.trainer import CycleResult

DEFAULT_UNITS = 10_000  # position size when the config has none (the ml strategy's default)


def _no_stop() -> None:
    return None


def costs_of(config: TrainConfig) -> CostModel:
    """The backtest costs an agent trains and is scored with."""
    wf = config.walk_forward
    return CostModel(wf.spread_pips, wf.slippage_pips, wf.commission_per_million)


def _plan(config: TrainConfig, first: int, end: int, ctx: int) -> list[tuple[int, int, int, int]]:
    """Folds ``(train_start, train_end, test_start, test_end)`` over decision bars."""
    wf = config.walk_forward
    rows = end - first
    lookback = min(rows, config.lookback_candles)
    start = end - lookback
    test = wf.test_size or max(1, lookback // 2 // wf.n_folds)
    first_test = end - wf.n_folds * test
    initial = first_test - wf.embargo_bars - start
    if initial < wf.min_train_rows or first_test - ctx < first:
        raise InsufficientDataError(
            f"recurrent_ppo walk-forward: the first fold would train on {initial} bars "
            f"({lookback} bars - {wf.n_folds} folds x {test} test bars - embargo "
            f"{wf.embargo_bars}), need {wf.min_train_rows}; raise lookback_candles"
        )
    size = wf.train_size or initial
    folds = []
    for k in range(wf.n_folds):
        s = first_test + k * test
        b = s - wf.embargo_bars
        a = start if wf.scheme == "anchored" else max(start, b - size)
        folds.append((a, b, s, s + test))
    return folds


def _fold(
    k: int,
    fold: tuple[int, int, int, int],
    sim: SimResult,
    model: RlModel,
    ts: IntArray,
    ppy: float,
) -> FoldResult:
    a, b, s, e = fold
    return FoldResult(
        index=k,
        train_start=a,
        train_end=b,
        test_start=s,
        test_end=e,
        train_rows=b - a,
        test_rows=e - s,
        labelled_test_rows=0,
        accuracy=float("nan"),
        log_loss=float("nan"),
        trading=sim.metrics(ppy),
        fit_seconds=float(model.info.get("fit_seconds", 0.0)),
        test_from=ns_to_iso(int(ts[s])),
        test_to=ns_to_iso(int(ts[e - 1])),
    )


def train_rl_challenger(
    candles: Candles,
    config: TrainConfig,
    *,
    symbol: str,
    n_jobs: int,
    bars_per_year: float,
    champion: Champion | None = None,
    device: str = "cpu",
    stop: Callable[[], None] = _no_stop,
    phase: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CycleResult:
    """The RL counterpart of :func:`forexd.models.trainer.train_challenger` (module note).

    Raises:
        InsufficientDataError: too few candles for the folds.
        RlUnavailableError: the ``rl`` extra is missing.
        FitError: an agent's training failed.
    """
    from forexd.models.trainer import CycleResult, model_metadata

    t0 = time.perf_counter()
    spec = config.model
    if len(candles) < config.lookback_candles:
        raise InsufficientDataError(
            f"a training cycle needs lookback_candles = {config.lookback_candles} candles, "
            f"got {len(candles)}; import more history or lower lookback_candles"
        )
    data = candles.tail(config.lookback_candles)
    if phase is not None:
        phase("training")
    feats = compute_features(data.open, data.high, data.low, data.close, data.ts, config.features)
    x, first = feats.matrix, feats.first_valid_index
    end = len(data) - 1  # the last bar is only a fill/mark: no decision is taken on it
    units = int(getattr(config, "units", DEFAULT_UNITS))
    costs = costs_of(config)
    sim = BarSim(symbol, data, costs=costs, units=units)
    ctx = rl_params(spec).context_bars
    folds = _plan(config, first, end, ctx)
    total = len(folds) + 1
    if progress is not None:
        progress(0, total)
    results: list[FoldResult] = []
    nets, costs_parts, pos_parts = [], [], []
    model: RlModel | None = None
    fit: dict[str, Any] = {
        "symbol": symbol,
        "candles": data,
        "x": x,
        "costs": costs,
        "units": units,
        "seed": config.seed,
        "device": device,
        "blas_threads": n_jobs,
        "stop": stop,
        "feature_names": feats.names,
    }
    for k, (a, b, s, e) in enumerate(folds):
        try:
            model = fit_rl(spec, first=a, end=b, **fit)
            run = simulate_signs(sim, s, model_signs(model, x, s, e, 0.5))
        except ModelError as exc:
            raise type(exc)(f"walk-forward fold {k + 1}/{len(folds)}: {exc}") from exc
        results.append(_fold(k, (a, b, s, e), run, model, data.ts, bars_per_year))
        nets.append(run.pnl / run.equity[:-1])
        costs_parts.append(run.costs / run.equity[:-1])
        pos_parts.append(np.sign(run.held).astype(np.float64))
        stop()
        if progress is not None:
            progress(k + 1, total)
    pooled = summarise(np.concatenate(nets), np.concatenate(costs_parts),
                       np.concatenate(pos_parts), bars_per_year)  # fmt: skip
    wf_config = config.walk_forward_config(
        end - max(first, end - config.lookback_candles), bars_per_year
    )
    wf_result = WalkForwardResult(
        spec=spec,
        config=wf_config,
        classes=(-1, 0, 1),
        window_start=folds[0][0],
        window_end=end,
        purge_bars=0,
        folds=tuple(results),
        accuracy=float("nan"),
        log_loss=float("nan"),
        trading=replace(pooled, trades=sum(f.trading.trades for f in results)),
    )
    t1 = time.perf_counter()
    a_final = (
        first
        if config.walk_forward.scheme == "anchored"
        else max(first, end - results[-1].train_rows)
    )
    final = fit_rl(spec, first=a_final, end=end + 1, **fit)
    final_s = time.perf_counter() - t1
    if progress is not None:
        progress(total, total)
    stop()
    if phase is not None:
        phase("evaluating")
    assert model is not None  # at least one fold ran
    comparison = _compare(champion, config, data, x, sim, model, folds[-1])
    final.metadata = model_metadata(
        config, data_from_ts=int(data.ts[a_final]), data_to_ts=int(data.ts[end]), units=units
    )
    return CycleResult(
        model=final,
        walk_forward=wf_result,
        comparison=comparison,
        data_from_ts=int(data.ts[a_final]),
        data_to_ts=int(data.ts[end]),
        train_rows=end + 1 - a_final,
        candles=len(data),
        seconds={"final_fit_s": round(final_s, 4), "total_s": round(time.perf_counter() - t0, 4)},
    )


def _compare(
    champion: Champion | None,
    config: TrainConfig,
    data: Candles,
    x: FloatArray,
    sim: BarSim,
    fold_model: RlModel,
    fold: tuple[int, int, int, int],
) -> Comparison:
    """Both sides trade the latest window in the same simulation (see the module note)."""
    margin = config.promote_margin
    if champion is None:
        return Comparison(True, "no champion yet", margin=margin)
    _, _, s, e = fold
    last_seen = int(np.searchsorted(data.ts, champion.data_to_ts, side="right")) - 1
    start = max(s, last_seen + 1)
    rows = max(0, e - start)
    verdict = Comparison(False, "", rows=rows, margin=margin, champion_id=champion.model_id)
    if rows < MIN_COMPARE_ROWS:
        return replace(
            verdict,
            reason=f"only {rows} bars since the champion's training data (need "
            f"{MIN_COMPARE_ROWS}); keeping the champion",
        )
    chall = simulate_signs(sim, start, model_signs(fold_model, x, start, e, 0.5))
    champ_x = compute_features(
        data.open, data.high, data.low, data.close, data.ts, champion.features
    ).matrix
    need = champion.model.context_rows
    if start - need < 0 or not np.isfinite(champ_x[start - need : e]).all():
        return replace(verdict, promote=True, reason="the champion cannot be scored on the window")
    threshold = float(champion.model.metadata.get("entry_threshold", config.entry_threshold))
    champ = simulate_signs(sim, start, model_signs(champion.model, champ_x, start, e, threshold))
    r_chall = chall.total_pnl / chall.equity[0]
    r_champ = champ.total_pnl / champ.equity[0]
    gain = r_chall - r_champ
    scores = (
        f"return {r_chall:+.4%} vs champion {r_champ:+.4%} over {rows} bars "
        f"({ns_to_iso(int(data.ts[start]))}..): gain {gain:+.4%}"
    )
    promote = gain >= margin
    reason = (
        f"{scores} >= margin {margin:+.4%}"
        if promote
        else f"{scores} < margin; keeping the champion"
    )
    return replace(
        verdict,
        promote=promote,
        reason=reason,
        window_from=ns_to_iso(int(data.ts[start])),
        window_to=ns_to_iso(int(data.ts[e - 1])),
    )


def rl_summary(result: CycleResult) -> dict[str, Any]:
    """Per-fold trading figures of an RL cycle, for the CLI and reports."""
    return {
        "folds": [
            {
                "fold": f.index + 1,
                "test_from": f.test_from,
                "test_to": f.test_to,
                **f.trading.to_dict(),
            }
            for f in result.walk_forward.folds
        ],
        "overall": result.walk_forward.trading.to_dict(),
    }


def train_cycle(
    candles: Candles,
    config: TrainConfig,
    *,
    symbol: str,
    pip_size: float,
    n_jobs: int,
    bars_per_year: float = float(H1_PERIODS_PER_YEAR),
    champion: Champion | None = None,
    device: str = "cpu",
    stop: Callable[[], None] = _no_stop,
    phase: Callable[[str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CycleResult:
    """One training cycle of any kind: the RL cycle for an agent, else the supervised one.

    The daemon's trainer, the backtest's retrain and ``forexd train`` call this, so an agent
    is trained, scored and promoted like any other kind. ``symbol`` is what an agent's
    simulation books USD P&L with; ``pip_size`` is the supervised cycle's.

    Raises:
        InsufficientDataError, FitError, RlUnavailableError, TorchUnavailableError: as
            :func:`train_rl_challenger` and :func:`forexd.models.trainer.train_challenger`.
    """
    if config.model.is_rl:
        return train_rl_challenger(
            candles, config, symbol=symbol, n_jobs=n_jobs, bars_per_year=bars_per_year,
            champion=champion, device=device, stop=stop, phase=phase, progress=progress,
        )  # fmt: skip
    from forexd.models.trainer import train_challenger

    return train_challenger(
        candles, config, pip_size=pip_size, n_jobs=n_jobs, bars_per_year=bars_per_year,
        champion=champion, device=device, stop=stop, phase=phase or _no_phase,
        progress=progress,
    )  # fmt: skip


def _no_phase(name: str) -> None:
    return None
