"""Risk: limits every order must pass, trading states, and position sizing — all pure.

Nothing here does I/O or reads a clock; time comes in as ``now_ns``. The state the gate must
keep across restarts is :class:`RiskState`; ``forexd.storage.riskstate`` persists it.
"""

from __future__ import annotations

from forexd.risk.book import RiskBook, RiskGateStats
from forexd.risk.gate import Approval, Denial, Holding, RiskGate
from forexd.risk.limits import (
    ORDER_RATE_WINDOW_NS,
    DenialReason,
    RiskLimits,
    StateCause,
    TradingState,
    fx_day,
    fx_day_start_ns,
)
from forexd.risk.sizing import (
    SizingConfig,
    atr_stop_distance,
    kelly_fraction,
    kelly_units,
    units_for_risk,
)
from forexd.risk.state import (
    ACCOUNT_SCOPE,
    AUDIT_LOG_MAX,
    SCHEMA_VERSION,
    AuditRecord,
    RiskState,
    ScopeState,
)

__all__ = [
    "ACCOUNT_SCOPE",
    "AUDIT_LOG_MAX",
    "ORDER_RATE_WINDOW_NS",
    "SCHEMA_VERSION",
    "Approval",
    "AuditRecord",
    "Denial",
    "DenialReason",
    "Holding",
    "RiskBook",
    "RiskGate",
    "RiskGateStats",
    "RiskLimits",
    "RiskState",
    "ScopeState",
    "SizingConfig",
    "StateCause",
    "TradingState",
    "atr_stop_distance",
    "fx_day",
    "fx_day_start_ns",
    "kelly_fraction",
    "kelly_units",
    "units_for_risk",
]
