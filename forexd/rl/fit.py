"""Training a ``recurrent_ppo`` agent in the bar simulator (:mod:`forexd.rl.sim`).

The agent itself (policy, storage, batched and step-wise inference) is
:mod:`forexd.models.rl_ppo`, a pure module the live strategy loads; training needs the
backtest's own objects (ledger, order gate, sizer), which the pure ``models`` layer may not
import, so it lives here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from forexd.brokers.ledger import CostModel
from forexd.domain.bars import FloatArray
from forexd.models.errors import FitError, InsufficientDataError
from forexd.models.rl_ppo import (
    RlModel,
    build_policy,
    import_rl,
    max_timesteps,
    policy_kwargs,
    rl_params,
)
from forexd.models.spec import ModelSpec
from forexd.models.trainconfig import Candles


def fit_rl(
    spec: ModelSpec,
    symbol: str,
    candles: Candles,
    x: FloatArray,
    first: int,
    end: int,
    *,
    costs: CostModel,
    units: int,
    seed: int,
    device: str = "cpu",
    blas_threads: int = 1,
    stop: Callable[[], None] | None = None,
    feature_names: list[str] | None = None,
) -> RlModel:
    """Train an agent on bars ``first..end - 1`` (the last step's fill is at ``end - 1``).

    Args:
        spec: a ``recurrent_ppo`` spec.
        symbol: the instrument (pip size, USD conversion).
        candles: the bars; ``x`` is aligned with them.
        x: the feature matrix (finite over ``first..end``).
        first: first training bar.
        end: one past the last bar a training step may read.
        costs: the backtest's costs.
        units: position size of an action.
        seed: seeds the policy, the rollouts and the episode starts.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        blas_threads: the compute budget's threads; caps ``timesteps``.
        stop: raises to abandon the fit (checked after every rollout).
        feature_names: stored with the model.

    Raises:
        RlUnavailableError: the ``rl`` extra is missing.
        InsufficientDataError: fewer bars than one rollout needs.
        FitError: the training raised or produced non-finite weights.
    """
    recurrent_ppo = import_rl()
    from stable_baselines3.common.callbacks import BaseCallback

    from forexd.rl.env import TradingEnv
    from forexd.rl.sim import BarSim

    params = rl_params(spec)
    started = time.perf_counter()
    if end - first < max(params.n_steps // 4, 16):
        raise InsufficientDataError(
            f"recurrent_ppo: {end - first} training bars, need at least "
            f"{max(params.n_steps // 4, 16)}; lengthen the lookback"
        )
    rows = x[first:end]
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale == 0] = 1.0  # a constant column carries no information; avoid 0/0
    obs = (x - mean) / scale
    sim = BarSim(symbol, candles, costs=costs, units=units)
    pip_usd = sim.instrument.to_account(
        units * sim.instrument.pip_size, float(candles.close[end - 1])
    )
    env = TradingEnv(
        sim,
        obs,
        first=first,
        last=end - 1,
        episode_bars=params.episode_bars,
        reward_scale=1.0 / pip_usd,  # rewards in pips of the position: O(1) for PPO
    )
    total = min(params.timesteps, max_timesteps(blas_threads))

    class _Stop(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            if stop is not None:
                stop()

    try:
        agent = recurrent_ppo(
            "MlpLstmPolicy",
            env,
            n_steps=params.n_steps,
            batch_size=params.batch_size,
            n_epochs=params.n_epochs,
            learning_rate=params.learning_rate,
            gamma=params.gamma,
            gae_lambda=params.gae_lambda,
            clip_range=params.clip_range,
            ent_coef=params.ent_coef,
            policy_kwargs=policy_kwargs(params),
            seed=seed,
            device=device,
            verbose=0,
        )
        agent.learn(total_timesteps=total, callback=_Stop())
    except Exception as exc:
        if stop is not None:
            stop()  # an abandoned fit raises its own error, not a FitError
        raise FitError(f"recurrent_ppo: training failed: {type(exc).__name__}: {exc}") from exc
    state = {k: v.detach().cpu().clone() for k, v in agent.policy.state_dict().items()}
    if not all(bool(v.isfinite().all()) for v in state.values() if v.is_floating_point()):
        raise FitError("recurrent_ppo: training produced NaN/inf weights; lower learning_rate")
    # The trading policy is rebuilt from the spec and the state dict, exactly as a load
    # would: what trades after training is what an artifact restores.
    policy = build_policy(spec, x.shape[1])
    policy.load_state_dict(state)
    info = {
        "fit_seconds": time.perf_counter() - started,
        "rows": end - first,
        "timesteps": int(agent.num_timesteps),
        "timesteps_requested": params.timesteps,
        "timesteps_capped": total < params.timesteps,
        "device": device,
        "torch_threads": int(__import__("torch").get_num_threads()),
    }
    return RlModel(spec, policy.to(device), mean, scale, device, x.shape[1], feature_names, info)
