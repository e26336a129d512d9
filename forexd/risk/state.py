"""The risk gate's persistent state: everything it must remember across a restart.

This model lives in the pure risk layer, not in ``forexd/storage``, so that the gate and the
file share one schema by construction: the gate exports exactly what the store writes, and
there is no second, hand-mapped copy of the fields to drift. ``forexd.storage.riskstate``
only adds the file format (version, checksum, locking) around it.

Bumping :data:`SCHEMA_VERSION` is required for any change an older forexd could not read;
the store refuses a file of another version rather than guess.
"""

from __future__ import annotations

from datetime import date
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from forexd.risk.limits import DenialReason, StateCause, TradingState

SCHEMA_VERSION: Final = 1
AUDIT_LOG_MAX = 500  # guessed: months of operator actions, a few hundred KB at most
PNL_DAYS_KEPT = 62  # two months of daily realised P&L for `ctl status` and reports
ACCOUNT_SCOPE = "account"

Actor = Literal["operator", "risk", "repair"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScopeState(_Model):
    """Trading state of the account or of one symbol, with why and since when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: TradingState = TradingState.ACTIVE
    cause: StateCause = StateCause.NONE
    note: str = ""
    since_ns: int = 0


class AuditRecord(_Model):
    """One change of trading state, by the risk rules or by an operator.

    Attributes:
        ts_ns: when it happened (epoch ns, UTC; the simulated clock in a backtest).
        scope: ``"account"`` or a symbol.
        old_state: state before the change.
        new_state: state after it (equal to ``old_state`` for a no-op resume).
        cause: the cause now recorded for the scope.
        actor: who made the change.
        note: the operator's note, or the rule's explanation with the numbers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts_ns: int
    scope: str
    old_state: TradingState
    new_state: TradingState
    cause: StateCause
    actor: Actor
    note: str


class RiskState(_Model):
    """Serialisable risk state of one account (the payload of ``risk_state.json``).

    Attributes:
        schema_version: layout version of this model (:data:`SCHEMA_VERSION`).
        account_id: the broker account this state belongs to.
        created_ns: when the state was first created (or rebuilt by a repair).
        updated_ns: time of the last change the gate recorded.
        account: the account-wide trading state.
        symbols: per-symbol trading states (symbols never touched are active).
        fx_day: FX day that ``day_start_equity`` belongs to.
        day_start_equity: equity at the first observation of ``fx_day`` (USD).
        equity_peak: highest equity observed since the last drawdown reset (USD).
        last_equity: most recent equity observed (USD).
        realized_pnl_by_day: realised P&L net of commission per FX day (USD), bounded.
        order_times_ns: approved order times inside the order-rate window.
        fills_applied_seq: sequence number of the last fill applied (high-water mark), so a
            replayed fill is never counted twice.
        approvals: orders approved (including clipped ones).
        clipped: approvals whose units were reduced to fit a limit.
        denials: orders denied, by reason.
        audit: the most recent state changes, oldest first, at most :data:`AUDIT_LOG_MAX`.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    account_id: str = Field(min_length=1)
    created_ns: int
    updated_ns: int
    account: ScopeState = Field(default_factory=ScopeState)
    symbols: dict[str, ScopeState] = Field(default_factory=dict)
    fx_day: date | None = None
    day_start_equity: float | None = None
    equity_peak: float | None = None
    last_equity: float | None = None
    realized_pnl_by_day: dict[date, float] = Field(default_factory=dict)
    order_times_ns: list[int] = Field(default_factory=list)
    fills_applied_seq: int = Field(0, ge=0)
    approvals: int = Field(0, ge=0)
    clipped: int = Field(0, ge=0)
    denials: dict[DenialReason, int] = Field(default_factory=dict)
    audit: list[AuditRecord] = Field(default_factory=list)

    @classmethod
    def fresh(cls, account_id: str, now_ns: int) -> RiskState:
        """A new state: everything active, no equity seen, no counters."""
        return cls(account_id=account_id, created_ns=now_ns, updated_ns=now_ns)
