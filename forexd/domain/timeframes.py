"""Bar timeframes: the names forexd accepts and how long a bar of each lasts.

One table for the config (``[feed] timeframe``), the command line's ``--timeframe``
choices, the backtest's annualisation and the training data's spacing check.
"""

from __future__ import annotations

from typing import Literal

Timeframe = Literal["M1", "M5", "M15", "M30", "H1", "H4", "D1"]

TIMEFRAME_SECONDS: dict[str, int] = {
    "M1": 60,
    "M5": 300,
    "M15": 900,
    "M30": 1800,
    "H1": 3600,
    "H4": 14400,
    "D1": 86400,
}
"""Seconds per bar of each :data:`Timeframe`, shortest first."""
