"""recurrent_ppo: the backtest env, determinism, safe artifacts, the cycle and live state."""

from __future__ import annotations

import io
import json
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from forexd.backtest.request import BacktestRequest
from forexd.backtest.runner import prepare_data, run_strategies
from forexd.brokers.ledger import CostModel
from forexd.domain.bars import BarHistory
from forexd.features import FeatureSpec, compute_features
from forexd.models.artifacts import load_model, save_model
from forexd.models.errors import ArtifactError, RlUnavailableError
from forexd.models.spec import ModelSpec
from forexd.models.trainconfig import Candles
from forexd.rl.sim import BarSim, simulate_signs
from tests._fxdata import one_thread
from tests._mlsupport import bundled_candles, bundled_frame

pytest.importorskip("sb3_contrib", reason="the rl extra (sb3-contrib) is not installed")

COSTS = CostModel(spread_pips=1.2, slippage_pips=0.3, commission_per_million=25.0)
TINY = {"timesteps": 256, "n_steps": 64, "batch_size": 32, "n_epochs": 2, "episode_bars": 96,
        "hidden_sizes": [8], "lstm_hidden_size": 8, "context_bars": 12}  # fmt: skip
SPEC = ModelSpec(kind="recurrent_ppo", hyperparameters=TINY)


class Replay:
    """A backtest strategy that plays a fixed target sequence, one target per bar."""

    name: ClassVar[str] = "replay"

    def __init__(self, targets: list[int]) -> None:
        self.targets = targets
        self.i = 0

    @property
    def warmup_bars(self) -> int:
        """No warm-up."""
        return 1

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        """The next target; ``None`` after the sequence."""
        i, self.i = self.i, self.i + 1
        return self.targets[i] if i < len(self.targets) else None


class ClipGate:
    """An order gate that caps |position| (as the risk gate's max_units_per_symbol)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap

    def check(
        self,
        symbol: str,
        units: int,
        position_units: int,
        price: float,
        ts: int,
        stop_distance: float | None = None,
    ) -> Any:
        """Clip the order so |position| stays within the cap."""
        from forexd.actors.core import GateDecision

        wanted = max(-self.cap, min(self.cap, position_units + units))
        return GateDecision(wanted - position_units)


def _features(c: Candles) -> tuple[np.ndarray, int]:
    f = compute_features(c.open, c.high, c.low, c.close, c.ts, FeatureSpec())
    return f.matrix, f.first_valid_index


@pytest.mark.parametrize("cap", [None, 6_000])
def test_episode_reward_sum_equals_backtest_pnl_to_the_cent(cap: int | None) -> None:
    """Summed env rewards equal the backtest's P&L for the same actions (costs, limits)."""
    from forexd.rl.env import TradingEnv

    candles = bundled_candles(700)
    x, first = _features(candles)
    gate = ClipGate(cap) if cap else None
    sim = BarSim("EURUSD", candles, costs=COSTS, units=10_000, gate=gate)
    env = TradingEnv(sim, np.nan_to_num(x), first=first, last=len(candles) - 1, episode_bars=400)
    actions = np.random.default_rng(3).integers(0, 3, size=400)
    start = first + 50
    env.reset(options={"start": start})
    rewards, done = [], False
    for a in actions:
        assert not done
        _, r, _, done, _ = env.step(int(a))
        rewards.append(r)
    targets = [(int(a) - 1) * 10_000 for a in actions]
    frame = bundled_frame().iloc[-700:].iloc[start : start + 401]
    request = BacktestRequest(symbols=("EURUSD",), costs=COSTS, initial_balance=100_000.0)
    data = prepare_data(request, frames={"EURUSD": frame})
    result = run_strategies(request, data, [Replay(targets)], gate=gate)
    assert len(result.fills) > 50
    assert result.metrics.final_equity - 100_000.0 == pytest.approx(sum(rewards), abs=0.005)


def test_observation_is_the_feature_row_of_the_closed_bar_without_lookahead() -> None:
    """The observation of bar t is the same whether or not later bars exist."""
    from forexd.rl.env import TradingEnv

    candles = bundled_candles(900)
    x, first = _features(candles)
    rng = np.random.default_rng(7)
    for t in sorted(rng.choice(np.arange(first + 1, len(candles) - 2), size=10, replace=False)):
        cols = (candles.ts, candles.open, candles.high, candles.low, candles.close)
        head = Candles(*(a[: t + 2] for a in cols))
        xh, _ = _features(head)
        full_env = TradingEnv(BarSim("EURUSD", candles, costs=COSTS, units=1000), x,
                              first=first, last=len(candles) - 1, episode_bars=1)  # fmt: skip
        head_env = TradingEnv(BarSim("EURUSD", head, costs=COSTS, units=1000), xh,
                              first=first, last=t + 1, episode_bars=1)  # fmt: skip
        full_obs, _ = full_env.reset(options={"start": int(t)})
        head_obs, _ = head_env.reset(options={"start": int(t)})
        np.testing.assert_allclose(head_obs, full_obs, rtol=1e-6)
        np.testing.assert_allclose(full_obs, x[t].astype(np.float32), rtol=1e-6)


def _fit(candles: Candles, seed: int) -> Any:
    from forexd.rl.fit import fit_rl

    x, first = _features(candles)
    with one_thread():
        return fit_rl(SPEC, "EURUSD", candles, x, first, first + 300, costs=COSTS,
                      units=10_000, seed=seed)  # fmt: skip


@pytest.fixture(scope="module")
def agent() -> Any:
    """A tiny agent trained on bundled bars."""
    return _fit(bundled_candles(800), seed=5)


def test_same_seed_gives_the_same_actions_and_metrics(agent: Any) -> None:
    """Two fits with one seed trade identically (actions and metrics)."""
    from forexd.rl.sim import model_signs

    candles = bundled_candles(800)
    x, first = _features(candles)
    again = _fit(candles, seed=5)
    start, end = first + 320, len(candles) - 1
    signs_a = model_signs(agent, x, start, end, 0.5)
    signs_b = model_signs(again, x, start, end, 0.5)
    np.testing.assert_array_equal(signs_a, signs_b)
    sim = BarSim("EURUSD", candles, costs=COSTS, units=10_000)
    a = simulate_signs(sim, start, signs_a).metrics(6240.0)
    b = simulate_signs(sim, start, signs_b).metrics(6240.0)
    assert a == b


def test_batched_evaluation_equals_bar_by_bar_steps_with_carried_state(agent: Any) -> None:
    """One batched LSTM pass gives the probabilities of stepping bar by bar with state."""
    x, first = _features(bundled_candles(800))
    rows = x[first : first + 60]
    batched, _ = agent.run(rows)
    state = agent.initial_state()
    stepped = []
    for row in rows:
        p, state = agent.step(row, state)
        stepped.append(p)
    np.testing.assert_allclose(np.array(stepped), batched, atol=1e-5)


def test_artifact_round_trip_keeps_the_actions(agent: Any, tmp_path: Path) -> None:
    """A saved agent reloads (weights_only) and predicts exactly what it predicted before."""
    x, first = _features(bundled_candles(800))
    agent.metadata = {"features": FeatureSpec().model_dump(mode="json")}
    save_model(agent, tmp_path / "a.fxm")
    loaded = load_model(tmp_path / "a.fxm")
    assert loaded.backend == "rl"
    np.testing.assert_array_equal(agent.predict_proba(x[first:]), loaded.predict_proba(x[first:]))
    with zipfile.ZipFile(tmp_path / "a.fxm") as zf:
        assert sorted(zf.namelist()) == ["meta.json", "policy.pt"]


def test_loading_rejects_a_pickle_payload(agent: Any, tmp_path: Path) -> None:
    """A payload that needs unpickling of objects is refused and its code never runs."""
    agent.metadata = {}
    save_model(agent, tmp_path / "a.fxm")
    with zipfile.ZipFile(tmp_path / "a.fxm") as zf:
        meta = json.loads(zf.read("meta.json"))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (marker.touch, ())

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("meta.json", json.dumps(meta))
        zf.writestr("policy.pt", pickle.dumps({"policy": Evil()}))
    (tmp_path / "evil.fxm").write_bytes(buf.getvalue())
    with pytest.raises(ArtifactError, match="do not load"):
        load_model(tmp_path / "evil.fxm")
    assert not marker.exists()


def test_missing_rl_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without sb3-contrib the error says pip install 'forexd[rl]'."""
    from forexd.models.rl_ppo import import_rl

    monkeypatch.setitem(sys.modules, "sb3_contrib", None)
    with pytest.raises(RlUnavailableError, match=r"pip install 'forexd\[rl\]'"):
        import_rl()


def _feed(runner: Any, history: BarHistory, candles: Candles, out: list[int | None]) -> None:
    """Append every candle to ``history`` and record the runner's sign after each."""
    from forexd.domain import Bar

    for i in range(len(candles)):
        o, h, lo, c = (
            float(a[i]) for a in (candles.open, candles.high, candles.low, candles.close)
        )
        history.append(Bar("EURUSD", int(candles.ts[i]), o, h, lo, c))
        out.append(runner.sign(history))


def test_live_runner_carries_state_and_rebuilds_it_after_a_restart(agent: Any) -> None:
    """Bar-by-bar live actions equal the batched evaluation; a new runner rebuilds the state."""
    from forexd.domain import get_instrument
    from forexd.models.rl_live import RecurrentRunner
    from forexd.rl.sim import model_signs

    candles = bundled_candles(800)
    x, _ = _features(candles)
    spec = FeatureSpec()
    runner = RecurrentRunner(agent, spec)
    history = BarHistory(get_instrument("EURUSD"), runner.history_bars + 8)
    live: list[int | None] = []
    first_live = None
    with one_thread():  # one step per bar of a tiny LSTM: a second thread only adds waiting
        _feed(runner, history, candles, live)
    for i, sign in enumerate(live):
        if sign is not None and first_live is None:
            first_live = i
    assert first_live is not None and runner.rebuilds == 1
    batched = model_signs(agent, x, first_live, len(candles), 0.5)
    np.testing.assert_array_equal(np.array(live[first_live:]), batched)
    restarted = RecurrentRunner(agent, spec)
    assert restarted.sign(history) == int(
        model_signs(agent, x, len(candles) - 1, len(candles), 0.5)[0]
    )
    assert restarted.rebuilds == 1


def test_training_cycle_reports_per_fold_trading_metrics_after_costs() -> None:
    """train_cycle runs recurrent_ppo in walk-forward folds with OOS trading metrics."""
    from forexd.models.rl_ppo import RlModel
    from forexd.rl.trainer import train_cycle
    from forexd.strategies.ml_params import MlParams

    params = MlParams(
        model=SPEC, lookback_candles=700,
        walk_forward={"n_folds": 2, "min_train_rows": 100, "spread_pips": 1.0},
    )  # fmt: skip
    with one_thread():
        result = train_cycle(bundled_candles(1200), params, symbol="EURUSD", pip_size=0.0001,
                             n_jobs=1)  # fmt: skip
    assert isinstance(result.model, RlModel)
    folds = result.walk_forward.folds
    assert len(folds) == 2
    assert all(f.trading.bars == f.test_rows and f.train_end <= f.test_start for f in folds)
    assert all(np.isfinite(f.trading.total_return) for f in folds)
    assert result.model.info["timesteps"] >= TINY["timesteps"]
    assert result.comparison.promote


@pytest.mark.anyio
async def test_ml_symbol_trades_the_agent_with_state_rebuilt_after_a_restart(
    tmp_path: Path,
) -> None:
    """A daemon cycle promotes an agent; a restarted strategy acts identically bar by bar.

    The restarted one steps its agent off the loop (``predict_next`` on a history snapshot,
    as the actor does for expensive models) and must still match the one stepped in decide.
    """
    import anyio

    from forexd.actors.inference import HistorySnapshot
    from forexd.daemon.trainer import ModelTrainer
    from forexd.domain import Bar
    from forexd.models.champion import LiveChampion
    from forexd.strategies.ml import MlStrategy
    from forexd.strategies.ml_params import MlParams
    from tests._mlsupport import SMALL_WF, history_of, store_candles, train_context

    ctx = train_context(tmp_path)
    # set-up reads and writes files: off the loop (blockbuster guards async tests)
    await anyio.to_thread.run_sync(store_candles, ctx.paths, bundled_frame().iloc[:1500])
    params = MlParams(model=SPEC, lookback_candles=700, walk_forward=SMALL_WF, units=10_000)

    def restored() -> tuple[MlStrategy, ModelTrainer]:
        strategy = MlStrategy(params)

        async def hand_over(live: LiveChampion) -> None:
            strategy.set_champion(live)

        trainer = ModelTrainer(ctx, "EURUSD", params, hand_over)
        strategy.set_champion(trainer.restore())
        return strategy, trainer

    trained, trainer = await anyio.to_thread.run_sync(restored)
    frame = bundled_frame().iloc[:1500]
    history = history_of(frame, trained.warmup_bars + 8)
    with one_thread():
        await trainer.train_cycle(history.times(), "test")
    stats = trainer.stats()
    assert stats["last_error"] is None and stats["champion"]["kind"] == "recurrent_ppo", stats
    assert trained.champion is not None and trained.champion.runner is not None
    restarted, _ = await anyio.to_thread.run_sync(restored)
    assert restarted.champion is not None and restarted.champion.runner is not None
    h_live = history_of(frame, trained.warmup_bars + 8)
    h_restart = history_of(frame, trained.warmup_bars + 8)
    targets = []
    for r in bundled_frame().iloc[1500:1560].itertuples(index=False):
        bar = Bar("EURUSD", int(r.ts), r.open, r.high, r.low, r.close)
        assert restarted.predicts_off_loop
        restarted.predict_next(HistorySnapshot(h_restart, bar))
        h_live.append(bar)
        h_restart.append(bar)
        live, again = trained.decide(h_live, 0), restarted.decide(h_restart, 0)
        assert live == again
        targets.append(live)
    assert set(targets) <= {-10_000, 0, 10_000} and len(targets) == 60
    # the state was carried bar to bar: one burn-in each, on the first bar decided
    assert trained.champion.runner.rebuilds == 1
    assert restarted.champion.runner.rebuilds == 1
