"""Expensive ML predictions run in a worker thread on a snapshot; decide() only applies them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pandas as pd
import pytest

from forexd.actors.inference import HistorySnapshot, predict_ahead
from forexd.daemon.trainer import ModelTrainer
from forexd.daemon.training import TrainContext
from forexd.domain import Bar
from forexd.domain.bars import BarHistory
from forexd.models.champion import LiveChampion
from forexd.strategies import build_strategy
from forexd.strategies.ml import MlStrategy
from forexd.strategies.sma_cross import SmaCross
from tests._fxdata import one_thread
from tests._mlsupport import SMALL_WF, bundled_frame, history_of, store_candles, train_context

pytestmark = pytest.mark.anyio

RF = {"kind": "random_forest", "hyperparameters": {"n_estimators": 20, "max_depth": 4}}
PARAMS = {"lookback_candles": 600, "retrain_every_bars": 100, "walk_forward": SMALL_WF}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """The bundled sample, loaded once and outside the event loop."""
    return bundled_frame()


@pytest.fixture
def ctx(tmp_path: Path, frame: pd.DataFrame) -> TrainContext:
    """A TrainContext over a store holding the first 1,500 bundled bars (set up off-loop)."""
    context = train_context(tmp_path)
    store_candles(context.paths, frame.iloc[:1500])
    return context


def _bar(frame: pd.DataFrame, i: int) -> Bar:
    r = frame.iloc[i]
    return Bar("EURUSD", int(r.ts), r.open, r.high, r.low, r.close, r.volume)


async def _forest(ctx: TrainContext, frame: pd.DataFrame) -> tuple[MlStrategy, BarHistory]:
    """A strategy whose champion is a random forest trained by the runtime trainer."""
    strategy = build_strategy("ml", {**PARAMS, "model": RF})
    assert isinstance(strategy, MlStrategy)

    async def hand_over(live: LiveChampion) -> None:  # the actor does this live
        strategy.set_champion(live)

    trainer = ModelTrainer(ctx, "EURUSD", strategy.params, hand_over)
    strategy.set_champion(await anyio.to_thread.run_sync(trainer.restore))
    history = history_of(frame.iloc[:1500], strategy.warmup_bars + 8)
    await trainer.train_cycle(history.times().copy(), "test")
    assert strategy.champion is not None, trainer.stats()
    return strategy, history


def test_a_snapshot_is_the_history_after_the_bar_and_a_copy(frame: pd.DataFrame) -> None:
    """The snapshot equals the history once the bar is appended, and owns its arrays."""
    history = history_of(frame.iloc[:200], 50)
    bar = _bar(frame, 200)
    snap = HistorySnapshot(history, bar)
    history.append(bar)
    for name in ("opens", "highs", "lows", "closes", "times"):
        assert np.array_equal(getattr(history, name)(), getattr(snap, name)()), name
        assert np.array_equal(getattr(history, name)(7), getattr(snap, name)(7)), name
    assert len(history) == len(snap)
    history.append(_bar(frame, 201))  # the ring buffer moves on; the snapshot does not
    assert bar.ts == snap.times(1)[0] == snap.last_ts


async def test_a_cheap_strategy_never_leaves_the_loop(frame: pd.DataFrame) -> None:
    """An SMA strategy has no expensive prediction: nothing is sent to a thread."""
    strategy = SmaCross(SmaCross.Params(fast=3, slow=5))
    history = history_of(frame.iloc[:50], 20)
    assert not await predict_ahead(strategy, history, _bar(frame, 50))


async def test_a_random_forest_predicts_in_a_worker_thread_and_decide_uses_it(
    ctx: TrainContext, frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a forest champion the prediction runs off the loop; decide() agrees with it."""
    strategy, history = await _forest(ctx, frame)
    assert strategy.predicts_off_loop

    threads: list[str] = []
    real = MlStrategy._proba

    def recording(live: Any, hist: Any, need: int) -> Any:
        threads.append(threading.current_thread().name)
        return real(live, hist, need)

    monkeypatch.setattr(MlStrategy, "_proba", staticmethod(recording))
    loop_thread = threading.current_thread().name
    bar = _bar(frame, 1500)
    assert await predict_ahead(strategy, history, bar)
    history.append(bar)
    target = strategy.decide(history, 0)
    assert 1 == len(threads) and threads[0] != loop_thread  # predicted once, off the loop

    strategy._prepared = None  # the same decision computed on the loop agrees
    assert target == strategy.decide(history, 0)
    assert [threads[0], loop_thread] == threads


async def test_a_prediction_for_another_bar_is_not_used(
    ctx: TrainContext, frame: pd.DataFrame
) -> None:
    """A prepared prediction only serves the bar it was made for."""
    strategy, history = await _forest(ctx, frame)
    live = strategy._live
    assert live is not None
    history.append(_bar(frame, 1500))
    history.append(_bar(frame, 1501))
    fresh = MlStrategy._proba(live, history, live.champion.history_bars)
    expected = strategy._target(float(fresh[live.up]), float(fresh[live.down]), 0)
    # A certain prediction against the fresh one: applying it would flip the decision.
    forced = np.zeros_like(fresh)
    flip_down = fresh[live.up] >= fresh[live.down]
    forced[live.down if flip_down else live.up] = 1.0
    units = strategy.params.units
    forced_target = -units if flip_down else units
    assert expected != forced_target

    strategy._prepared = (_bar(frame, 1500).ts, live, forced)  # made for the previous bar
    assert expected == strategy.decide(history, 0)
    strategy._prepared = (_bar(frame, 1501).ts, live, forced)  # made for this bar: applied
    assert forced_target == strategy.decide(history, 0)
