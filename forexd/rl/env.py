"""The gymnasium environment an RL agent trades in: the backtest, one bar per step.

* **Observation**: the standardised feature row of the bar just closed — the same
  :func:`~forexd.features.compute_features` matrix the supervised kinds read, so the same
  no-lookahead guarantee holds (row ``t`` depends on bars ``<= t`` only). The agent's own
  position is *not* part of it: a recurrent policy can infer it from its past actions, and
  leaving it out lets a whole test fold be evaluated in one batched LSTM pass.
* **Action**: ``Discrete(3)``, the target position short / flat / long (``ACTION_SIGNS``),
  of ``units`` units (or what the sizer and the order gate make of it, as in the backtest).
* **Reward**: the USD P&L the backtest books over the next bar, from
  :class:`~forexd.rl.sim.BarSim` (costs, fills, limits and sizing are the backtest's
  own code), times ``reward_scale`` (training uses a scale so rewards are O(1); ``info``
  always carries the unscaled ``pnl``).
* **Episodes**: ``episode_bars`` decisions from a start drawn uniformly (the env's seeded
  ``np_random``) in ``[first, last - episode_bars]``; ``reset(options={"start": i})`` fixes
  it. An episode is truncated when it reaches ``last`` (the last bar whose *fill* it may
  use: callers pass the end of the training rows, so no step reads a test bar).

This module imports gymnasium at import time; it is only imported by the ``rl`` code paths.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from forexd.domain.bars import FloatArray
from forexd.rl.sim import ACTION_SIGNS, BarSim


class TradingEnv(gym.Env):
    """Trade one symbol bar by bar (see the module note).

    Args:
        sim: the backtest simulation over the candles.
        observations: standardised feature rows aligned with the candles (``[n, F]``).
        first: first bar an episode may start at (its row must be finite).
        last: last bar an episode may reach (the fill/mark of the final step).
        episode_bars: decisions per episode (capped by the range).
        reward_scale: multiplies the USD P&L to give the reward.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - gymnasium's own attribute

    def __init__(
        self,
        sim: BarSim,
        observations: FloatArray,
        *,
        first: int,
        last: int,
        episode_bars: int,
        reward_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if len(observations) != len(sim.candles) or not 0 <= first < last < len(sim.candles):
            raise ValueError(
                f"episode range [{first}, {last}] or {len(observations)} observation rows do "
                f"not fit {len(sim.candles)} bars"
            )
        if not np.isfinite(observations[first:last]).all():
            raise ValueError(f"observations hold NaN/inf between rows {first} and {last}")
        self.sim = sim
        self.obs = np.ascontiguousarray(observations, dtype=np.float32)
        self.first = first
        self.last = last
        self.episode_bars = max(1, min(episode_bars, last - first))
        self.reward_scale = reward_scale
        n_features = observations.shape[1]
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(n_features,), dtype=np.float32)
        self.action_space = spaces.Discrete(len(ACTION_SIGNS))
        self._end = last

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[FloatArray, dict[str, Any]]:
        """Start an episode (``options={"start": i}`` fixes the first bar)."""
        super().reset(seed=seed)
        if options is not None and "start" in options:
            start = int(options["start"])
        else:
            span = self.last - self.first - self.episode_bars
            start = self.first + int(self.np_random.integers(0, span + 1))
        if not self.first <= start < self.last:
            raise ValueError(f"start {start} is outside [{self.first}, {self.last})")
        self._end = min(self.last, start + self.episode_bars)
        self.sim.reset(start)
        return self.obs[start], {"bar": start, "equity": self.sim.equity}

    def step(self, action: Any) -> tuple[FloatArray, float, bool, bool, dict[str, Any]]:
        """Hold the chosen target through the next bar; reward its P&L."""
        sign = ACTION_SIGNS[int(action)]
        pnl, cost = self.sim.step(sign)
        t = self.sim.t
        truncated = t >= self._end
        info = {"bar": t, "pnl": pnl, "costs": cost, "equity": self.sim.equity}
        return self.obs[t], pnl * self.reward_scale, False, truncated, info
