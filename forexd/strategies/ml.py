"""``ml``: trade a classifier's probabilities. The strategy only decides.

:meth:`MlStrategy.decide` is pure and fast: the champion's feature row from the last
``history_bars`` bars (:func:`~forexd.features.compute_features_last`), one
``predict_proba`` call (or the logistic fast path), and a threshold rule — long when P(up)
reaches ``entry_threshold`` (and beats P(down)), short likewise, and an open position is
kept while its side's probability stays at or above ``exit_threshold``. No champion yet:
no trade. An RL agent (``recurrent_ppo``) is different only in what it returns: its
champion carries a :class:`~forexd.models.rl_live.RecurrentRunner` (``LiveChampion.runner``)
that steps the agent's recurrent state one bar at a time, and its action is the target.

Training, restoring the champion from the registry and promotion are not the strategy's:
the daemon's trainer (:mod:`forexd.daemon.trainer`) and the backtest's
(:mod:`forexd.backtest.retrain`) run cycles and hand the winner over with
:meth:`MlStrategy.set_champion`; in the daemon that happens inside the symbol's actor, so
the champion changes between two bars, never during one.

Import note: forexd.features and forexd.models import forexd.strategies.base, which runs
this package's __init__, which imports this module. So this module imports nothing from
those two packages at import time; the one function the bar path needs is imported inside
:meth:`MlStrategy._proba` (a dict lookup once the packages are loaded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import structlog

from forexd.domain import Protection
from forexd.domain.bars import BarHistory, FloatArray
from forexd.errors import ForexdError

if TYPE_CHECKING:
    from forexd.models.champion import LiveChampion
    from forexd.strategies.ml_params import MlParams


class ChampionTooShortError(ForexdError):
    """A champion needs more history than the strategy keeps (retrain it)."""


class _ParamsClass:
    """``MlStrategy.Params``, resolved on first access (see the import note above)."""

    def __get__(self, obj: object, owner: type | None = None) -> type[MlParams]:
        from forexd.strategies.ml_params import MlParams

        return MlParams


class MlStrategy:
    """Trades the champion's probabilities (see the module note)."""

    name: ClassVar[str] = "ml"
    Params: ClassVar[_ParamsClass] = _ParamsClass()

    def __init__(self, params: MlParams) -> None:
        self.params = params
        self._live: LiveChampion | None = None
        # (bar ts, champion, probabilities) from predict_next, computed off the loop.
        self._prepared: tuple[int, LiveChampion, FloatArray | int | None] | None = None
        self._log: Any = structlog.get_logger().bind(component="strategy", strategy="ml")
        self.decide_errors = 0
        self.last_decide_error: str | None = None

    @property
    def warmup_bars(self) -> int:
        """History one prediction reads: the feature warm-up plus a GRU's window."""
        return self.params.features.history_bars + self.params.context_rows

    @property
    def champion(self) -> LiveChampion | None:
        """The model trading now, or ``None``."""
        return self._live

    def set_champion(self, live: LiveChampion | None) -> None:
        """Trade with ``live`` from the next bar (``None``: stop trading until one comes).

        Raises:
            ChampionTooShortError: the model reads more bars than this strategy keeps; the
                current champion stays.
        """
        if live is not None and live.champion.history_bars > self.warmup_bars:
            raise ChampionTooShortError(
                f"model {live.model_id} needs {live.champion.history_bars} bars of history "
                f"but this strategy keeps {self.warmup_bars}; retrain it"
            )
        self._live = live

    def protection(self, history: BarHistory) -> Protection | None:
        """Stop/target from the ATR when ``stop_atr`` is set (off by default)."""
        return self.params.protection_for(history)

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        """Target from the champion's probabilities; ``None`` without a champion."""
        live = self._live
        if live is None:
            return None
        need = live.champion.history_bars
        if len(history) < need:
            return None
        prepared, self._prepared = self._prepared, None
        try:
            if live.runner is not None:  # an RL agent: its action is the target
                return self._agent_target(live, history, prepared)
            if prepared is not None and prepared[0] == history.times(1)[0] and prepared[1] is live:
                proba = cast("FloatArray", prepared[2])  # predicted off the loop for this bar
            else:
                proba = self._proba(live, history, need)
        except ForexdError as exc:  # bad bars or a model that cannot predict: no trade
            self.decide_errors += 1
            self.last_decide_error = f"decide: {exc}"
            if self.decide_errors == 1:
                self._log.error("decide_failed", symbol=history.instrument.symbol, error=str(exc))
            return None
        return self._target(float(proba[live.up]), float(proba[live.down]), position_units)

    @property
    def predicts_off_loop(self) -> bool:
        """True when the champion has no microsecond fast path (forests, boosting, torch)."""
        live = self._live
        return live is not None and live.fast is None

    def predict_next(self, history: Any) -> None:
        """Worker thread: predict for ``history`` (a snapshot ending with the next bar).

        ``decide`` uses the result if it is for the same bar and champion; see
        :mod:`forexd.actors.inference`. Errors are left for ``decide`` to report.
        """
        live = self._live
        if live is None or len(history) < live.champion.history_bars:
            return
        try:
            if live.runner is not None:  # the agent steps its state here, off the loop
                self._prepared = (int(history.last_ts), live, live.runner.sign(history))
                return
            proba = self._proba(live, history, live.champion.history_bars)
        except ForexdError:
            return
        self._prepared = (int(history.last_ts), live, proba)

    def _agent_target(
        self, live: LiveChampion, history: BarHistory, prepared: tuple[int, Any, Any] | None
    ) -> int | None:
        """An RL agent's target: its action (-1/0/+1) times ``units``.

        The action stepped off the loop for this very bar and champion is used as is (the
        runner already carried its state past this bar); otherwise the runner steps here.
        """
        assert live.runner is not None
        if prepared is not None and prepared[0] == history.times(1)[0] and prepared[1] is live:
            sign = prepared[2]
        else:
            sign = live.runner.sign(history)
        return None if sign is None else int(sign) * self.params.units

    @staticmethod
    def _proba(live: LiveChampion, history: Any, need: int) -> FloatArray:
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
