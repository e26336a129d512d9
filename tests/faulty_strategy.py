"""A strategy that raises on every bar: fault injection for the isolation test."""

from __future__ import annotations

from typing import ClassVar

from forexd.domain.bars import BarHistory
from forexd.strategies.base import StrategyParams


class AlwaysRaisesParams(StrategyParams):
    """No parameters."""


class AlwaysRaises:
    """Raises from decide(), like a strategy or model with a bug."""

    name: ClassVar[str] = "always_raises"
    Params: ClassVar[type[AlwaysRaisesParams]] = AlwaysRaisesParams

    def __init__(self, params: AlwaysRaisesParams) -> None:
        self.params = params

    @property
    def warmup_bars(self) -> int:
        """No warm-up: fail at once."""
        return 1

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        """Always fail."""
        raise RuntimeError("injected strategy failure")
