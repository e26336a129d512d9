"""The strategy contract.

A strategy is pure: it sees a :class:`BarHistory` and the current position and returns the
position it wants (a *target* in signed units) or ``None`` for "no change". The engine, not
the strategy, knows whether it runs live or in a backtest. Strategies that can also compute
their targets over a whole array at once implement :class:`VectorisedStrategy`; the backtest
uses that for sweeps and must get the same trades as the event-driven path.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

from forexd.domain.bars import BarArrays, BarHistory, IntArray


class StrategyParams(BaseModel):
    """Base for a strategy's parameters: validated, immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@runtime_checkable
class Strategy(Protocol):
    """Decides a target position from recent bars."""

    name: ClassVar[str]

    @property
    def warmup_bars(self) -> int:
        """Bars of history needed before the first decision (and kept in the window)."""
        ...

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        """Return the wanted position in signed units, or ``None`` to keep the current one."""
        ...


@runtime_checkable
class VectorisedStrategy(Strategy, Protocol):
    """A strategy whose targets over a whole series can be computed at once."""

    def targets(self, bars: BarArrays) -> IntArray:
        """Target after each bar's close; ``np.iinfo(np.int64).min`` means "no change"."""
        ...


NO_CHANGE = int(np.iinfo(np.int64).min)


@runtime_checkable
class Trainable(Protocol):
    """A strategy that retrains its own model while the daemon trades.

    The actor calls :meth:`wants_training` after every bar; when it says yes (or an
    operator asked with ``ctl retrain``), the actor runs :meth:`train_cycle` as a
    background task in its own task group — never on the bar path — and never more
    than one cycle at a time per symbol. ``ctx`` is the runtime's ``TrainContext``
    (compute pool, data dir, storage, logger); the learning code it calls is synchronous
    and goes through ``ctx.pool.run``.
    """

    def restore(self, ctx: Any, symbol: str) -> None:
        """Load the symbol's current champion (blocking; once per actor life, at start)."""
        ...

    def wants_training(self, bars_seen: int) -> bool:
        """Whether a scheduled training cycle is due after this bar."""
        ...

    async def train_cycle(self, ctx: Any, history: BarHistory, reason: str) -> None:
        """Run one cycle (features, walk-forward, champion/challenger, cleanup)."""
        ...

    def training_stats(self) -> dict[str, Any]:
        """Champion, training state, last cycle figures for ``ctl status``."""
        ...
