"""The account's risk book: trading states, equity baselines, counters and audit log.

:class:`RiskBook` is the state machine behind the risk gate: it watches equity (FX day
roll, equity peak, daily loss and drawdown breaches), records fills' realised P&L once each,
takes operator actions, and exports what must survive a restart as a :class:`RiskState`.
:class:`forexd.risk.gate.RiskGate` adds the per-order checks on top of it.

Transitions (the account unless a symbol is named):

- daily loss reached  → ``reducing`` (cause ``daily_loss``) until the next FX day;
- drawdown reached    → ``halted`` (cause ``drawdown``) until an operator resumes;
- operator ``halt`` / ``reduce_only`` / ``resume`` → as asked, with a mandatory note.

A breach never loosens a state: ``halted`` stays halted and an operator's ``reducing``
keeps its cause. Every transition is an :class:`AuditRecord`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from forexd.domain import INSTRUMENTS, Instrument
from forexd.errors import UnknownSymbolError
from forexd.risk.limits import (
    DenialReason,
    RiskLimits,
    StateCause,
    TradingState,
    fx_day,
    fx_day_start_ns,
)
from forexd.risk.state import (
    ACCOUNT_SCOPE,
    AUDIT_LOG_MAX,
    PNL_DAYS_KEPT,
    Actor,
    AuditRecord,
    RiskState,
    ScopeState,
)

_ACTIVE, _REDUCING, _HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED


@dataclass(frozen=True, slots=True)
class RiskGateStats:
    """Snapshot of the risk book (and gate) for ``ctl status``."""

    account_state: TradingState
    account_cause: StateCause
    symbol_states: dict[str, TradingState]
    fx_day: date | None
    day_start_equity: float | None
    equity_peak: float | None
    last_equity: float | None
    orders_in_window: int
    approvals: int
    clipped: int
    denials: dict[DenialReason, int]


class RiskBook:
    """Risk state of one account and the rules that change it.

    Not thread-safe, and needs no lock: it is only used from the event loop (or a
    backtest's single thread).

    Args:
        limits: the limits to enforce.
        state: the state to resume from (``RiskState.fresh`` for a new account).
        instruments: tradable instruments by canonical symbol.
    """

    def __init__(
        self,
        limits: RiskLimits,
        state: RiskState,
        *,
        instruments: Mapping[str, Instrument] = INSTRUMENTS,
    ) -> None:
        self._limits = limits
        self._instruments = dict(instruments)
        self._account_id = state.account_id
        self._created_ns = state.created_ns
        self._updated_ns = state.updated_ns
        self._account = state.account
        self._symbols = dict(state.symbols)
        self._fx_day = state.fx_day
        self._day_end_ns = 0 if state.fx_day is None else _next_day_start_ns(state.fx_day)
        self._day_start_equity = state.day_start_equity
        self._equity_peak = state.equity_peak
        self._last_equity = state.last_equity
        self._pnl_by_day = dict(state.realized_pnl_by_day)
        self._orders: deque[int] = deque(sorted(state.order_times_ns))
        self._fills_seq = state.fills_applied_seq
        self._approvals = state.approvals
        self._clipped = state.clipped
        self._denials = dict.fromkeys(DenialReason, 0)
        self._denials.update(state.denials)
        self._audit: deque[AuditRecord] = deque(state.audit, maxlen=AUDIT_LOG_MAX)
        self._undrained: deque[AuditRecord] = deque(maxlen=AUDIT_LOG_MAX)
        self._version = 0

    @property
    def account_id(self) -> str:
        """The account this book belongs to."""
        return self._account_id

    @property
    def limits(self) -> RiskLimits:
        """The limits in force."""
        return self._limits

    @property
    def version(self) -> int:
        """Counter bumped by every change worth persisting; compare it to decide to save."""
        return self._version

    # -- equity, day roll and breaches ----------------------------------------------------

    def observe_equity(self, equity: float, now_ns: int) -> None:
        """Feed an equity observation (each bar, each fill) so breaches act without orders.

        Transitions it causes are returned by :meth:`drain_audit`. Non-finite values are
        ignored (a broken price must not halt or resume anything).
        """
        if math.isfinite(equity):
            self._observe(equity, now_ns)

    def _observe(self, equity: float, now_ns: int) -> None:
        if now_ns >= self._day_end_ns:
            self._roll_day(equity, now_ns)
        if equity != self._last_equity:
            self._last_equity = equity
            self._version += 1
        peak = self._equity_peak
        if peak is None or equity > peak:
            self._equity_peak = peak = equity
        account = self._account
        lim = self._limits
        max_dd = lim.max_drawdown
        if max_dd is not None and account.state is not _HALTED and peak > 0:
            drop = peak - equity
            if drop >= max_dd * peak:
                note = (
                    f"equity {equity:.2f} is {drop / peak:.2%} below its peak {peak:.2f} "
                    f"(limit {max_dd:.2%}); an operator must resume"
                )
                self._set(None, _HALTED, StateCause.DRAWDOWN, note, now_ns, "risk")
                return
        max_loss = lim.daily_loss_limit_usd
        start = self._day_start_equity
        if max_loss is not None and account.state is _ACTIVE and start is not None:
            loss = start - equity
            if loss >= max_loss:
                note = (
                    f"FX day {self._fx_day} loss {loss:.2f} USD reached the limit "
                    f"{max_loss:.2f}; reducing only until the next FX day"
                )
                self._set(None, _REDUCING, StateCause.DAILY_LOSS, note, now_ns, "risk")

    def _roll_day(self, equity: float, now_ns: int) -> None:
        day = fx_day(now_ns)
        if self._fx_day is not None and day <= self._fx_day:
            self._day_end_ns = _next_day_start_ns(self._fx_day)
            return
        self._fx_day = day
        self._day_end_ns = _next_day_start_ns(day)
        self._day_start_equity = equity
        self._version += 1
        account = self._account
        if account.state is _REDUCING and account.cause is StateCause.DAILY_LOSS:
            note = f"new FX day {day}: daily loss limit re-armed"
            self._set(None, _ACTIVE, StateCause.NONE, note, now_ns, "risk")

    def apply_fill(
        self, seq: int, realized_pnl_usd: float, commission_usd: float, ts_ns: int
    ) -> bool:
        """Add a fill's realised P&L to its FX day, once.

        Fills must be applied in ``seq`` order (the storage sequence); one at or below the
        high-water mark was already counted and is ignored.

        Returns:
            Whether the fill was applied.
        """
        if seq <= self._fills_seq:
            return False
        self._fills_seq = seq
        day = fx_day(ts_ns)
        book = self._pnl_by_day
        book[day] = book.get(day, 0.0) + realized_pnl_usd - commission_usd
        if len(book) > PNL_DAYS_KEPT:
            for old in sorted(book)[: len(book) - PNL_DAYS_KEPT]:
                del book[old]
        self._touch(ts_ns)
        return True

    # -- operator actions -----------------------------------------------------------------

    def halt(self, symbol: str | None, operator_note: str, *, now_ns: int) -> AuditRecord:
        """Stop all orders for a symbol, or for the whole account with ``None``.

        Raises:
            ValueError: the note is blank (the audit log must say why).
            UnknownSymbolError: the symbol is not tradable.
        """
        return self._operator(symbol, _HALTED, StateCause.OPERATOR, operator_note, now_ns)

    def reduce_only(self, symbol: str | None, operator_note: str, *, now_ns: int) -> AuditRecord:
        """Allow only orders that shrink positions, for a symbol or (``None``) the account.

        Raises:
            ValueError: the note is blank.
            UnknownSymbolError: the symbol is not tradable.
        """
        return self._operator(symbol, _REDUCING, StateCause.OPERATOR, operator_note, now_ns)

    def resume(self, symbol: str | None, operator_note: str, *, now_ns: int) -> AuditRecord:
        """Return a symbol, or (``None``) the account, to ``active``.

        Resuming the account also re-bases the limit that stopped it, or the same breach
        would stop it again at the next check: after a drawdown halt the equity peak becomes
        the last equity seen; after a daily-loss stop the day's start equity does. The
        audit note records the old and new values.

        Raises:
            ValueError: the note is blank.
            UnknownSymbolError: the symbol is not tradable.
        """
        self._require_operator_input(symbol, operator_note)
        extra = ""
        last = self._last_equity
        if symbol is None and last is not None:
            cause = self._account.cause
            if cause is StateCause.DRAWDOWN:
                extra = f" [equity peak re-based {self._equity_peak} -> {last}]"
                self._equity_peak = last
            elif cause is StateCause.DAILY_LOSS:
                extra = f" [day start equity re-based {self._day_start_equity} -> {last}]"
                self._day_start_equity = last
        return self._operator(symbol, _ACTIVE, StateCause.NONE, operator_note, now_ns, extra)

    def _operator(
        self,
        symbol: str | None,
        state: TradingState,
        cause: StateCause,
        note: str,
        now_ns: int,
        extra: str = "",
    ) -> AuditRecord:
        self._require_operator_input(symbol, note)
        return self._set(symbol, state, cause, note.strip() + extra, now_ns, "operator")

    def _require_operator_input(self, symbol: str | None, note: str) -> None:
        # Checked before anything changes, so a refused action leaves no trace.
        if not note.strip():
            raise ValueError("an operator note is required: say why, for the audit log")
        if symbol is not None and symbol not in self._instruments:
            known = ", ".join(sorted(self._instruments))
            raise UnknownSymbolError(f"unknown symbol {symbol!r}; use one of {known}")

    def _set(
        self,
        symbol: str | None,
        state: TradingState,
        cause: StateCause,
        note: str,
        now_ns: int,
        actor: Actor,
    ) -> AuditRecord:
        old = self._account if symbol is None else self._symbols.get(symbol, ScopeState())
        new = ScopeState(state=state, cause=cause, note=note, since_ns=now_ns)
        if symbol is None:
            self._account = new
        else:
            self._symbols[symbol] = new
        record = AuditRecord(
            ts_ns=now_ns,
            scope=ACCOUNT_SCOPE if symbol is None else symbol,
            old_state=old.state,
            new_state=state,
            cause=cause,
            actor=actor,
            note=note,
        )
        self._audit.append(record)
        self._undrained.append(record)
        self._touch(now_ns)
        return record

    def _touch(self, now_ns: int) -> None:
        self._updated_ns = max(self._updated_ns, now_ns)
        self._version += 1

    # -- read side ------------------------------------------------------------------------

    def state_of(self, symbol: str | None = None) -> TradingState:
        """Effective state: the account's, or the stricter of the account's and a symbol's."""
        account = self._account.state
        if symbol is None:
            return account
        sym = self._symbols.get(symbol)
        if sym is None or sym.state.strictness <= account.strictness:
            return account
        return sym.state

    def drain_audit(self) -> list[AuditRecord]:
        """State changes since the last call, oldest first (for logging), each once."""
        out = list(self._undrained)
        self._undrained.clear()
        return out

    def stats(self) -> RiskGateStats:
        """Snapshot for ``ctl status``."""
        return RiskGateStats(
            account_state=self._account.state,
            account_cause=self._account.cause,
            symbol_states={s: v.state for s, v in self._symbols.items()},
            fx_day=self._fx_day,
            day_start_equity=self._day_start_equity,
            equity_peak=self._equity_peak,
            last_equity=self._last_equity,
            orders_in_window=len(self._orders),  # as of the last check
            approvals=self._approvals,
            clipped=self._clipped,
            denials={r: n for r, n in self._denials.items() if n},
        )

    def snapshot(self) -> RiskState:
        """The state to persist (what :class:`RiskGate` needs to resume exactly here)."""
        return RiskState(
            account_id=self._account_id,
            created_ns=self._created_ns,
            updated_ns=self._updated_ns,
            account=self._account,
            symbols=dict(self._symbols),
            fx_day=self._fx_day,
            day_start_equity=self._day_start_equity,
            equity_peak=self._equity_peak,
            last_equity=self._last_equity,
            realized_pnl_by_day=dict(self._pnl_by_day),
            order_times_ns=list(self._orders),
            fills_applied_seq=self._fills_seq,
            approvals=self._approvals,
            clipped=self._clipped,
            denials={r: n for r, n in self._denials.items() if n},
            audit=list(self._audit),
        )


def _next_day_start_ns(day: date) -> int:
    return fx_day_start_ns(day + timedelta(days=1))
