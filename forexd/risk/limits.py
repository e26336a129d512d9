"""Risk limits, trading states, denial reasons and the FX trading day.

The limits are one validated pydantic model so the lead can embed it in the daemon's
configuration as a ``[risk]`` section. Every limit has a default; ``None`` switches that
limit off (an explicit, visible choice in the config file, never an accident of omission).

The FX day rolls at 17:00 America/New_York, the convention of the interbank market: the
session that opens at 17:00 New York on a Sunday is Monday's trading day. That instant moves
between 21:00 and 22:00 UTC with US daylight saving time, so it is computed with ``zoneinfo``
instead of a fixed UTC hour.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

from forexd.domain import NS_PER_S

NEW_YORK = ZoneInfo("America/New_York")
FX_DAY_ROLL = time(17, 0)
# Adding this to New York wall-clock time makes 17:00 land on midnight of the next date.
_ROLL_SHIFT = timedelta(hours=24 - FX_DAY_ROLL.hour)
ORDER_RATE_WINDOW_NS = 60 * NS_PER_S


class TradingState(str, enum.Enum):
    """What the account, or one symbol, may do.

    The effective state of an order is the stricter of its account's and its symbol's.
    """

    ACTIVE = "active"  # any order within the limits
    REDUCING = "reducing"  # only orders that shrink |position| in their symbol
    HALTED = "halted"  # no orders at all until an operator resumes

    @property
    def strictness(self) -> int:
        """Rank for "stricter of two states" (higher is stricter)."""
        return _STRICTNESS[self]


_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class StateCause(str, enum.Enum):
    """Why a scope is in its current trading state."""

    NONE = "none"  # active, nothing to explain
    OPERATOR = "operator"  # `forexd ctl halt|reduce|resume`
    DAILY_LOSS = "daily_loss"  # the FX day's loss reached the limit
    DRAWDOWN = "drawdown"  # equity fell too far below its peak
    REPAIR = "repair"  # the state file was rebuilt; an operator must look first


class DenialReason(str, enum.Enum):
    """Why the risk gate refused (or clipped) an order; counted for ``ctl status``."""

    SYMBOL_HALTED = "symbol_halted"
    ACCOUNT_HALTED = "account_halted"
    REDUCING_ONLY = "reducing_only"
    MAX_UNITS = "max_units"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    MAX_NET_EXPOSURE = "max_net_exposure"
    MAX_OPEN_POSITIONS = "max_open_positions"
    ORDER_RATE = "order_rate"
    DAILY_LOSS = "daily_loss"
    DRAWDOWN = "drawdown"
    UNKNOWN_SYMBOL = "unknown_symbol"
    MAX_RISK_AT_STOP = "max_risk_at_stop"  # the position's loss at its stop would be too big
    NO_STOP = "no_stop"  # [risk] require_stop is on and the opening order carries no stop
    BAD_INPUT = "bad_input"  # zero units, non-finite or non-positive price, non-finite equity


_OFF_WORDS = frozenset({"false", "off", "none", "null"})


class RiskLimits(BaseModel):
    """Hard limits the risk gate enforces on every order; ``None`` disables one.

    TOML has no null, so a config file switches a limit off with ``false`` (an environment
    variable with ``off``/``false``/``none``). The defaults are guesses sized for the paper
    broker's 100,000 USD account (at most 20× leverage, 5 % daily loss, 20 % drawdown):
    size them to your account.
    """

    # allow_inf_nan=False: `inf` is not "no limit" (that is `false`) and NaN compares false
    # with everything, so either would silently switch a limit off.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_units_per_symbol: int | None = Field(
        1_000_000, ge=1, description="largest |position| in one symbol, base-currency units"
    )
    max_gross_exposure_usd: float | None = Field(
        2_000_000.0, gt=0, description="sum of |notional| over all symbols, USD"
    )
    max_net_exposure_usd: float | None = Field(
        1_000_000.0, gt=0, description="|long notional − short notional| over all symbols, USD"
    )
    max_open_positions: int | None = Field(
        5, ge=1, description="symbols with a non-zero position at once"
    )
    max_orders_per_minute: int | None = Field(
        30, ge=1, description="approved orders in any 60 s window, all symbols together"
    )
    daily_loss_limit_usd: float | None = Field(
        5_000.0,
        gt=0,
        description="equity drop from the FX day's start that switches the account to reducing",
    )
    max_drawdown: float | None = Field(
        0.20,
        gt=0,
        le=1,
        description="fall from the equity peak, as a fraction, that halts the account",
    )

    max_risk_at_stop_usd: float | None = Field(
        None,
        gt=0,
        description="largest loss at the stop of one position (units × stop distance), USD",
    )
    require_stop: bool = Field(
        False, description="refuse an order that opens or grows a position without a stop-loss"
    )

    @field_validator(
        "max_units_per_symbol",
        "max_gross_exposure_usd",
        "max_net_exposure_usd",
        "max_open_positions",
        "max_orders_per_minute",
        "daily_loss_limit_usd",
        "max_drawdown",
        "max_risk_at_stop_usd",
        mode="before",
    )
    @classmethod
    def _false_means_off(cls, value: object) -> object:
        if value is False or (isinstance(value, str) and value.strip().lower() in _OFF_WORDS):
            return None
        return value


def fx_day(ts_ns: int) -> date:
    """The FX trading day an instant belongs to.

    The day ``D`` runs from 17:00 New York time on ``D - 1`` (inclusive) to 17:00 on ``D``
    (exclusive), whatever the daylight-saving offset.

    Args:
        ts_ns: epoch nanoseconds, UTC.
    """
    local = datetime.fromtimestamp(ts_ns // NS_PER_S, tz=NEW_YORK)
    # Aware datetime + timedelta is wall-clock arithmetic, which is what the roll needs.
    return (local + _ROLL_SHIFT).date()


def fx_day_start_ns(day: date) -> int:
    """Epoch nanoseconds at which the FX day ``day`` begins (17:00 New York the day before)."""
    prev = day - timedelta(days=1)
    # 17:00 is never in a DST gap or fold in New York (those are at 02:00).
    start = datetime.combine(prev, FX_DAY_ROLL, tzinfo=NEW_YORK)
    return int(start.astimezone(timezone.utc).timestamp()) * NS_PER_S
