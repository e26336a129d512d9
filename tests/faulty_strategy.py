"""A strategy that raises on every bar: fault injection for the isolation test."""

from __future__ import annotations

from pathlib import Path
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


class FlaggedParams(StrategyParams):
    """``flag``: while this file exists, ``decide`` raises; ``units``: the target after."""

    flag: str
    units: int = 1000


class FailsWhileFlagged:
    """Raises while a flag file exists (a bug fixed later), then holds ``units`` long."""

    name: ClassVar[str] = "fails_while_flagged"
    Params: ClassVar[type[FlaggedParams]] = FlaggedParams

    def __init__(self, params: FlaggedParams) -> None:
        self.params = params

    @property
    def warmup_bars(self) -> int:
        """No warm-up: decide on the first bar."""
        return 1

    def decide(self, history: BarHistory, position_units: int) -> int | None:
        """Fail while flagged, else hold the target."""
        if Path(self.params.flag).exists():
            raise RuntimeError("injected failure while flagged")
        return self.params.units
