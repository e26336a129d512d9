"""An RL agent on the live bar path: its recurrent state carried from one bar to the next.

Each bar costs one feature row and one LSTM step from the state the previous bar left. The
state is (re)built by a burn-in — the LSTM run from a zero state over the last
``context_bars`` feature rows before the bar, the same burn-in the walk-forward evaluates a
test fold with — whenever there is no state to continue: the first bar after the champion
was loaded or promoted, after a restart (the state lives in memory only and is rebuilt from
the bars the actor warmed up with), and after a gap in the bars the runner saw (a bar that
is not the one after the last it stepped, e.g. the strategy was paused).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forexd.domain.bars import BarHistory
from forexd.features import FeatureSpec, compute_features, compute_features_last
from forexd.models.rl_ppo import RlModel


class RecurrentRunner:
    """Deterministic actions of ``model`` bar by bar (see the module note).

    Args:
        model: the agent.
        features: the feature spec it was trained on.
    """

    def __init__(self, model: RlModel, features: FeatureSpec) -> None:
        self.model = model
        self.features = features
        self._state: Any = None
        self._last_ts: int | None = None
        self.rebuilds = 0

    @property
    def history_bars(self) -> int:
        """Bars a rebuild reads: the feature warm-up plus the burn-in."""
        return self.features.history_bars + self.model.context_rows

    def reset(self) -> None:
        """Forget the state: the next bar rebuilds it from history."""
        self._state, self._last_ts = None, None

    def sign(self, history: BarHistory) -> int | None:
        """The agent's target sign (-1/0/+1) after the newest bar; ``None``: too few bars."""
        times = history.times(2)
        if len(history) < self.history_bars:
            return None
        continues = self._state is not None and len(times) == 2 and int(times[0]) == self._last_ts
        if continues:
            need = self.features.history_bars
            cols = (history.opens(need), history.highs(need), history.lows(need))
            row = compute_features_last(
                *cols, history.closes(need), history.times(need), self.features
            )
            proba, self._state = self.model.step(row, self._state)
        else:
            proba, self._state = self._rebuild(history)
            self.rebuilds += 1
        self._last_ts = int(times[-1])
        if not np.isfinite(proba).all():
            return None
        return int(self.model.classes[int(np.argmax(proba))])

    def _rebuild(self, history: BarHistory) -> tuple[Any, Any]:
        need = self.history_bars
        cols = (history.opens(need), history.highs(need), history.lows(need))
        x = compute_features(*cols, history.closes(need), history.times(need), self.features)
        rows = x.matrix[-(self.model.context_rows + 1) :]
        proba, state = self.model.run(rows)
        return proba[-1], state
