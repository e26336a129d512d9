"""Scoring on a cycle's window in spawned comparison workers gives exactly the verdict the
one-challenger comparison gives inside its training job: same window, same refit, same
scores (classifiers by log loss, agents by return)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forexd.daemon.verdict import CHAMPION_REF
from forexd.models.artifacts import save_model
from forexd.models.promotion import Champion, Comparison
from forexd.rl.compare import compare_models
from forexd.rl.compare_worker import ModelRef
from forexd.rl.trainer import costs_of, train_cycle
from forexd.rl.window_eval import plan_window
from forexd.strategies.ml_params import MlParams
from tests._fxdata import one_thread
from tests._mlsupport import SMALL_WF, bundled_candles

FOREST = {"kind": "random_forest", "hyperparameters": {"n_estimators": 12, "max_depth": 4}}
TINY_PPO = {"kind": "recurrent_ppo", "hyperparameters": {
    "timesteps": 256, "n_steps": 64, "batch_size": 32, "n_epochs": 2, "episode_bars": 96,
    "hidden_sizes": [8], "lstm_hidden_size": 8, "context_bars": 12}}  # fmt: skip


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


def _judged_both_ways(
    params: MlParams, tmp_path: Path
) -> tuple[Comparison, dict[str, dict[str, Any]], int]:
    """A champion trained on earlier bars; a challenger judged against it in its cycle and
    again on the planned window in spawned workers."""
    old = train_cycle(bundled_candles(900, end=1500), params, symbol="EURUSD",
                      pip_size=0.0001, n_jobs=1)  # fmt: skip
    path = tmp_path / "champion.fxm"
    save_model(old.model, path)
    champion = Champion.from_model(old.model, "champ")
    candles = bundled_candles(900, end=1700)
    result = train_cycle(candles, params, symbol="EURUSD", pip_size=0.0001, n_jobs=1,
                         champion=champion)  # fmt: skip
    data = candles.tail(params.lookback_candles)
    plan = plan_window(
        params, data, symbol="EURUSD", champion_to_ts=champion.data_to_ts,
        train_rows=result.train_rows, test_rows=result.walk_forward.config.fold_test_size,
    )  # fmt: skip
    refs = [ModelRef("seed0", None, config=params), ModelRef(CHAMPION_REF, str(path))]
    compared = compare_models(
        refs, data, symbol="EURUSD", workers=2, timeout_s=300, window=plan,
        costs=costs_of(params), units=params.units,
    )  # fmt: skip
    by_name = {o.name: o.result for o in compared.outcomes}
    assert ["ok", "ok"] == [o.status for o in compared.outcomes], compared.outcomes
    return result.comparison, by_name, plan.rows


@pytest.mark.slow
def test_worker_log_loss_equals_the_in_job_comparison(tmp_path: Path) -> None:
    """Champion and refitted challenger get the in-job log losses, to the last bit."""
    params = MlParams(lookback_candles=800, walk_forward=SMALL_WF, model=FOREST)
    verdict, scores, rows = _judged_both_ways(params, tmp_path)
    assert verdict.rows == rows >= 10
    assert verdict.challenger_log_loss == scores["seed0"]["score"]
    assert verdict.champion_log_loss == scores[CHAMPION_REF]["score"]
    assert verdict.challenger_accuracy == scores["seed0"]["accuracy"]
    assert verdict.champion_accuracy == scores[CHAMPION_REF]["accuracy"]


@pytest.mark.slow
def test_worker_return_of_an_agent_equals_the_in_job_comparison(tmp_path: Path) -> None:
    """An agent refitted in the worker is the in-job last-fold agent: same returns."""
    pytest.importorskip("sb3_contrib", reason="the rl extra (sb3-contrib) is not installed")
    params = MlParams(lookback_candles=700, walk_forward=SMALL_WF, model=TINY_PPO)
    verdict, scores, rows = _judged_both_ways(params, tmp_path)
    chall, champ = scores["seed0"]["score"], scores[CHAMPION_REF]["score"]
    expected = f"return {chall:+.4%} vs champion {champ:+.4%} over {rows} bars"
    assert expected in verdict.reason
