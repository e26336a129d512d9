"""The champion a strategy trades with, the one rule that promotes a challenger, and the
retraining schedule — shared by the live trainer and the backtest.

:func:`promote` turns a finished training cycle into the :class:`LiveChampion` to hand to
the strategy, or ``None`` when the comparison keeps the current champion. The live runtime
(:mod:`forexd.daemon.trainer`) and the backtest (:mod:`forexd.backtest.retrain`) both call
it, so a model that would be promoted in one is promoted in the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from forexd.models.errors import ArtifactError
from forexd.models.promotion import Champion
from forexd.models.trained import TrainedModel

if TYPE_CHECKING:
    from forexd.models.rl_live import RecurrentRunner
    from forexd.models.trainer import CycleResult

FloatArray = npt.NDArray[np.float64]

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
class LiveChampion:
    """A champion ready to trade: the columns of its "up" and "down" classes resolved once.

    Attributes:
        champion: the model and its feature spec.
        up: column of P(up) in ``predict_proba``.
        down: column of P(down).
        info: what ``ctl status`` shows about it (id, kind, dates, out-of-sample figures).
        fast: the numpy fast path of a logistic model, if it reproduced sklearn.
        runner: an RL agent's :class:`~forexd.models.rl_live.RecurrentRunner`, which
            carries its recurrent state from bar to bar (and rebuilds it from history on
            the first bar after a load, a promotion or a restart); ``None`` for classifiers.
    """

    champion: Champion
    up: int
    down: int
    info: dict[str, Any]
    fast: Callable[[FloatArray], FloatArray] | None
    runner: RecurrentRunner | None = None

    @property
    def model_id(self) -> str:
        """The registry id (the cycle id in a backtest)."""
        return self.champion.model_id

    @classmethod
    def of(cls, champion: Champion, info: dict[str, Any]) -> LiveChampion:
        """Resolve the class columns.

        Raises:
            ArtifactError: the model has no up and down class to trade on.
        """
        classes = [int(c) for c in champion.model.classes]
        down = -1 if -1 in classes else 0
        if 1 not in classes or down not in classes:
            raise ArtifactError(
                f"model {champion.model_id}: classes {classes} have no up (1) and down "
                "(-1, or 0 of 0/1) class to trade on"
            )
        fast = _logistic_fast_path(champion.model)
        runner = None
        if champion.model.backend == "rl":  # the agent's state is carried bar to bar
            from forexd.models.rl_live import RecurrentRunner
            from forexd.models.rl_ppo import RlModel

            assert isinstance(champion.model, RlModel)
            runner = RecurrentRunner(champion.model, champion.features)
        return cls(champion, classes.index(1), classes.index(down), info, fast, runner)


def promote(result: CycleResult, model_id: str, info: dict[str, Any]) -> LiveChampion | None:
    """The challenger of a finished cycle as the new champion, if its comparison says so.

    Args:
        result: the cycle (its ``comparison`` holds the champion/challenger verdict).
        model_id: the challenger's id (registry id live, cycle id in a backtest).
        info: the status summary to show for it.

    Returns:
        The champion to hand to the strategy, or ``None`` to keep the current one.

    Raises:
        ArtifactError: the challenger cannot trade (metadata or classes unusable).
    """
    if not result.comparison.promote:
        return None
    return LiveChampion.of(Champion.from_model(result.model, model_id), info)


class RetrainSchedule:
    """Due every ``every_bars`` bars once ``lookback`` bars were seen.

    The clock starts at the first bar count asked about if a champion exists (it is fresh
    enough), at zero otherwise (train as soon as there is data).

    Args:
        lookback: bars needed before the first cycle.
        every_bars: bars between scheduled cycles.
    """

    def __init__(self, lookback: int, every_bars: int) -> None:
        self.lookback = lookback
        self.every_bars = every_bars
        self._last: int | None = None

    def reset(self) -> None:
        """Start the clock again at the next question (after a restore)."""
        self._last = None

    def due(self, bars_seen: int, *, has_champion: bool) -> bool:
        """Whether a scheduled cycle is due after ``bars_seen`` bars (and book it if so)."""
        if self._last is None:
            self._last = bars_seen if has_champion else 0
        if bars_seen < self.lookback or bars_seen - self._last < self.every_bars:
            return False
        self._last = bars_seen
        return True
