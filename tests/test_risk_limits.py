"""Tests of the risk limits, the FX day and the risk gate's states and decisions."""

# STYLE.md asks for asserts that read `expected == actual`; SIM300 calls that a Yoda condition.

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from forexd.domain import INSTRUMENTS, NS_PER_S
from forexd.errors import UnknownSymbolError
from forexd.risk import (
    Approval,
    Denial,
    DenialReason,
    Holding,
    RiskGate,
    RiskLimits,
    RiskState,
    StateCause,
    TradingState,
    fx_day,
    fx_day_start_ns,
)

EQUITY = 100_000.0
UNLIMITED = RiskLimits(
    max_units_per_symbol=None,
    max_gross_exposure_usd=None,
    max_net_exposure_usd=None,
    max_open_positions=None,
    max_orders_per_minute=None,
    daily_loss_limit_usd=None,
    max_drawdown=None,
)


def utc_ns(text: str) -> int:
    """Epoch ns of an ISO UTC timestamp."""
    parsed = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    return int(parsed.timestamp()) * NS_PER_S


# Wednesday 2024-06-12 10:00 New York (EDT), well inside FX day 2024-06-12.
T0 = utc_ns("2024-06-12T14:00:00")


def make_gate(**limits: object) -> RiskGate:
    """A fresh gate with every limit off except those given."""
    return RiskGate(UNLIMITED.model_copy(update=limits), RiskState.fresh("acct-1", 0))


def check(
    gate: RiskGate,
    units: int,
    *,
    symbol: str = "EURUSD",
    price: float = 1.25,
    positions: dict[str, Holding] | None = None,
    equity: float = EQUITY,
    now_ns: int = T0,
) -> Approval | Denial:
    """Call ``gate.check`` with test defaults."""
    return gate.check(
        symbol, units, price=price, positions=positions or {}, equity=equity, now_ns=now_ns
    )


def approved_units(decision: Approval | Denial) -> int:
    """The approved units, failing the test on a denial."""
    assert isinstance(decision, Approval), decision
    return decision.units


def denial_reason(decision: Approval | Denial) -> DenialReason:
    """The denial reason, failing the test on an approval."""
    assert isinstance(decision, Denial), decision
    return decision.reason


# -- FX day ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        # Winter (EST, UTC-5): the roll is at 22:00 UTC.
        ("2024-01-10T21:59:59", date(2024, 1, 10)),
        ("2024-01-10T22:00:00", date(2024, 1, 11)),
        # Summer (EDT, UTC-4): the roll is at 21:00 UTC.
        ("2024-06-12T20:59:59", date(2024, 6, 12)),
        ("2024-06-12T21:00:00", date(2024, 6, 13)),
        # March switch: Friday 8th still EST, Sunday 10th already EDT.
        ("2024-03-08T21:59:59", date(2024, 3, 8)),
        ("2024-03-08T22:00:00", date(2024, 3, 9)),
        ("2024-03-10T06:59:59", date(2024, 3, 10)),  # 01:59:59 EST, just before the gap
        ("2024-03-10T07:00:00", date(2024, 3, 10)),  # 03:00:00 EDT, just after it
        ("2024-03-10T20:59:59", date(2024, 3, 10)),
        ("2024-03-10T21:00:00", date(2024, 3, 11)),
        # November switch: Friday 1st still EDT, Sunday 3rd already EST.
        ("2024-11-01T20:59:59", date(2024, 11, 1)),
        ("2024-11-01T21:00:00", date(2024, 11, 2)),
        ("2024-11-03T05:30:00", date(2024, 11, 3)),  # 01:30 EDT, first pass of the fold
        ("2024-11-03T06:30:00", date(2024, 11, 3)),  # 01:30 EST, second pass of the fold
        ("2024-11-03T21:59:59", date(2024, 11, 3)),
        ("2024-11-03T22:00:00", date(2024, 11, 4)),
    ],
)
def test_fx_day_rolls_at_five_pm_new_york_across_dst(instant: str, expected: date) -> None:
    """The FX day changes at 17:00 New York, whether EST or EDT applies."""
    assert expected == fx_day(utc_ns(instant))


@pytest.mark.parametrize(
    ("day", "start"),
    [
        (date(2024, 3, 9), "2024-03-08T22:00:00"),  # Saturday's day starts Friday EST
        (date(2024, 3, 11), "2024-03-10T21:00:00"),  # Monday's day starts Sunday EDT
        (date(2024, 11, 4), "2024-11-03T22:00:00"),  # Monday's day starts Sunday EST
    ],
)
def test_fx_day_start_is_five_pm_new_york_on_the_previous_date(day: date, start: str) -> None:
    """``fx_day_start_ns`` gives the UTC instant of 17:00 New York the day before."""
    assert utc_ns(start) == fx_day_start_ns(day)


@given(st.integers(min_value=0, max_value=4_102_444_800 * NS_PER_S))
def test_every_instant_lies_inside_the_bounds_of_its_fx_day(ts_ns: int) -> None:
    """``fx_day`` and ``fx_day_start_ns`` agree for any instant (1970–2100)."""
    day = fx_day(ts_ns)
    assert fx_day_start_ns(day) <= ts_ns < fx_day_start_ns(date.fromordinal(day.toordinal() + 1))


# -- limits model -----------------------------------------------------------------------------


def test_limits_reject_unknown_keys() -> None:
    """A misspelt limit is an error, not a silently ignored key."""
    with pytest.raises(ValidationError, match="max_unit"):
        RiskLimits.model_validate({"max_unit": 5})


@pytest.mark.parametrize("off", [False, "off", "false", "None"])
def test_false_or_off_switches_a_limit_off(off: object) -> None:
    """TOML has no null, so ``false`` (or ``off`` from the environment) disables a limit."""
    assert None is RiskLimits.model_validate({"max_drawdown": off}).max_drawdown


def test_limits_reject_a_drawdown_above_one() -> None:
    """Drawdown is a fraction of the peak, so 20 (meaning 20 %) is refused."""
    with pytest.raises(ValidationError, match="max_drawdown"):
        RiskLimits(max_drawdown=20)


# -- input checks ---------------------------------------------------------------------------


def test_unknown_symbol_is_denied() -> None:
    """An order in a symbol forexd does not trade is denied, not raised."""
    assert DenialReason.UNKNOWN_SYMBOL == denial_reason(check(make_gate(), 100, symbol="XAUUSD"))


@pytest.mark.parametrize(
    ("units", "price", "equity"),
    [(0, 1.25, EQUITY), (100, float("nan"), EQUITY), (100, 0.0, EQUITY), (100, 1.25, float("inf"))],
)
def test_bad_input_is_denied(units: int, price: float, equity: float) -> None:
    """Zero units, a bad price or a non-finite equity is denied as bad input."""
    decision = check(make_gate(), units, price=price, equity=equity)
    assert DenialReason.BAD_INPUT == denial_reason(decision)


def test_held_position_in_unknown_symbol_is_denied() -> None:
    """Exposure cannot be computed over an unknown holding, so the order is denied."""
    gate = make_gate(max_gross_exposure_usd=1e9)
    decision = check(gate, 100, positions={"XAUUSD": Holding(5, 2000.0)})
    assert DenialReason.UNKNOWN_SYMBOL == denial_reason(decision)


# -- exposure limits ------------------------------------------------------------------------


def test_order_within_all_limits_is_approved_unchanged() -> None:
    """An order that fits every limit is approved as requested."""
    decision = check(RiskGate(RiskLimits(), RiskState.fresh("a", 0)), 10_000)
    assert Approval("EURUSD", 10_000, 10_000, None, False) == decision


def test_order_beyond_max_units_is_clipped_to_the_limit() -> None:
    """Buying 800 on top of 500 with a 1,000 cap approves 500."""
    gate = make_gate(max_units_per_symbol=1_000)
    decision = check(gate, 800, positions={"EURUSD": Holding(500, 1.25)})
    assert Approval("EURUSD", 500, 800, DenialReason.MAX_UNITS, False) == decision


def test_order_at_max_units_is_denied() -> None:
    """With the position already at the cap, a further buy is denied."""
    gate = make_gate(max_units_per_symbol=1_000)
    decision = check(gate, 1, positions={"EURUSD": Holding(1_000, 1.25)})
    assert DenialReason.MAX_UNITS == denial_reason(decision)


def test_flip_is_clipped_to_max_units_on_the_other_side() -> None:
    """Selling 3,000 from +500 with a 1,000 cap ends at -1,000."""
    gate = make_gate(max_units_per_symbol=1_000)
    decision = check(gate, -3_000, positions={"EURUSD": Holding(500, 1.25)})
    assert -1_500 == approved_units(decision)


def test_reducing_order_is_approved_even_above_max_units() -> None:
    """Limits lowered below a held position still let it shrink."""
    gate = make_gate(max_units_per_symbol=1_000)
    decision = check(gate, -500, positions={"EURUSD": Holding(5_000, 1.25)})
    assert Approval("EURUSD", -500, -500, None, True) == decision


def test_gross_exposure_clips_by_usd_notional_of_the_base() -> None:
    """EURUSD at 1.25 with 10,000 USD of room allows 8,000 units."""
    gate = make_gate(max_gross_exposure_usd=20_000.0)
    positions = {"USDJPY": Holding(-10_000, 150.0)}  # 10,000 USD of gross already
    decision = check(gate, 50_000, positions=positions, price=1.25)
    assert Approval("EURUSD", 8_000, 50_000, DenialReason.MAX_GROSS_EXPOSURE, False) == decision


def test_gross_exposure_counts_the_position_already_held_in_the_symbol() -> None:
    """Holding 4,000 EURUSD at 1.25 leaves room for 4,000 more under 10,000 USD gross."""
    gate = make_gate(max_gross_exposure_usd=10_000.0)
    decision = check(gate, 9_000, positions={"EURUSD": Holding(4_000, 1.25)}, price=1.25)
    assert Approval("EURUSD", 4_000, 9_000, DenialReason.MAX_GROSS_EXPOSURE, False) == decision


def test_flip_clipped_by_gross_exposure_becomes_a_partial_reduction() -> None:
    """Over the gross limit already, a flip from -1,000 is cut to the part that fits."""
    gate = make_gate(max_gross_exposure_usd=10_000.0)
    positions = {"USDCHF": Holding(10_500, 0.9), "EURUSD": Holding(-1_000, 1.25)}
    decision = check(gate, 3_000, positions=positions, price=1.25)
    assert Approval("EURUSD", 600, 3_000, DenialReason.MAX_GROSS_EXPOSURE, True) == decision


def test_gross_exposure_of_usd_base_pairs_is_the_unit_count() -> None:
    """A USDJPY unit is one USD of notional whatever its price."""
    gate = make_gate(max_gross_exposure_usd=20_000.0)
    decision = check(gate, -30_000, symbol="USDJPY", price=150.0)
    assert -20_000 == approved_units(decision)


def test_gross_exposure_full_is_denied() -> None:
    """With no gross room left a new position is denied."""
    gate = make_gate(max_gross_exposure_usd=10_000.0)
    positions = {"USDCHF": Holding(10_000, 0.9)}
    assert DenialReason.MAX_GROSS_EXPOSURE == denial_reason(check(gate, 1, positions=positions))


def test_net_exposure_allows_a_hedge_but_clips_one_sided_growth() -> None:
    """Long 10,000 USD of USDCAD leaves 5,000 USD net room long, 25,000 USD short."""
    positions = {"USDCAD": Holding(10_000, 1.35)}
    gate = make_gate(max_net_exposure_usd=15_000.0)
    assert 4_000 == approved_units(check(gate, 100_000, positions=positions, price=1.25))
    gate = make_gate(max_net_exposure_usd=15_000.0)
    assert -20_000 == approved_units(check(gate, -100_000, positions=positions, price=1.25))


def test_new_position_beyond_max_open_positions_is_denied() -> None:
    """A third symbol is refused when two positions are open and the limit is two."""
    positions = {"GBPUSD": Holding(1, 1.3), "USDJPY": Holding(-1, 150.0)}
    gate = make_gate(max_open_positions=2)
    assert DenialReason.MAX_OPEN_POSITIONS == denial_reason(check(gate, 10, positions=positions))


def test_adding_to_an_open_position_ignores_max_open_positions() -> None:
    """Growing a position already counted does not open a new one."""
    positions = {"EURUSD": Holding(5, 1.25), "USDJPY": Holding(-1, 150.0)}
    gate = make_gate(max_open_positions=2)
    assert 10 == approved_units(check(gate, 10, positions=positions))


# -- order rate -----------------------------------------------------------------------------


def test_order_rate_denies_beyond_the_limit_and_recovers_after_the_window() -> None:
    """The fourth order within 60 s is denied; 60 s after the first one it passes."""
    gate = make_gate(max_orders_per_minute=3)
    for i in range(3):
        approved_units(check(gate, 1, now_ns=T0 + i * NS_PER_S))
    assert DenialReason.ORDER_RATE == denial_reason(check(gate, 1, now_ns=T0 + 59 * NS_PER_S))
    assert 1 == approved_units(check(gate, 1, now_ns=T0 + 60 * NS_PER_S))


def test_order_rate_also_stops_reducing_orders() -> None:
    """A runaway loop is stopped even when its orders reduce."""
    gate = make_gate(max_orders_per_minute=1)
    approved_units(check(gate, 1))
    decision = check(gate, -1, positions={"EURUSD": Holding(10, 1.25)})
    assert DenialReason.ORDER_RATE == denial_reason(decision)


# -- daily loss -----------------------------------------------------------------------------


def test_daily_loss_switches_the_account_to_reducing_until_the_next_fx_day() -> None:
    """A 1,000 USD loss on the day blocks growth, allows reduction, and lifts at 17:00 NY."""
    gate = make_gate(daily_loss_limit_usd=1_000.0)
    gate.observe_equity(EQUITY, T0)
    gate.observe_equity(EQUITY - 1_000.0, T0 + NS_PER_S)
    assert TradingState.REDUCING == gate.state_of()
    positions = {"EURUSD": Holding(1_000, 1.25)}
    later = T0 + 2 * NS_PER_S
    grow = check(gate, 100, positions=positions, equity=EQUITY - 1_000.0, now_ns=later)
    assert DenialReason.DAILY_LOSS == denial_reason(grow)
    shrink = check(gate, -100, positions=positions, equity=EQUITY - 1_000.0, now_ns=later)
    assert -100 == approved_units(shrink)
    next_day = utc_ns("2024-06-12T21:00:00")
    gate.observe_equity(EQUITY - 1_000.0, next_day)
    assert TradingState.ACTIVE == gate.state_of()
    records = gate.drain_audit()
    assert [TradingState.REDUCING, TradingState.ACTIVE] == [r.new_state for r in records]
    assert ["risk", "risk"] == [r.actor for r in records]


def test_daily_loss_in_reducing_mode_clips_a_flip_to_a_flatten() -> None:
    """Selling 300 from +100 while reducing sends -100 only."""
    gate = make_gate(daily_loss_limit_usd=1_000.0)
    gate.observe_equity(EQUITY, T0)
    positions = {"EURUSD": Holding(100, 1.25)}
    decision = check(gate, -300, positions=positions, equity=EQUITY - 2_000.0)
    assert Approval("EURUSD", -100, -300, DenialReason.DAILY_LOSS, True) == decision


def test_daily_loss_baseline_survives_a_restart_within_the_fx_day() -> None:
    """Restored state keeps the day's start equity, so losses before a restart count."""
    gate = make_gate(daily_loss_limit_usd=1_000.0)
    gate.observe_equity(EQUITY, T0)
    gate.observe_equity(EQUITY - 600.0, T0 + NS_PER_S)
    restored = RiskGate(gate.limits, gate.snapshot())
    restored.observe_equity(EQUITY - 1_000.0, T0 + 2 * NS_PER_S)
    assert TradingState.REDUCING == restored.state_of()


# -- drawdown, operator actions ---------------------------------------------------------------


def test_drawdown_halts_the_account_until_an_operator_resumes() -> None:
    """A 10 % fall from the peak denies everything, across FX days, until resumed."""
    gate = make_gate(max_drawdown=0.10)
    gate.observe_equity(120_000.0, T0)
    gate.observe_equity(108_000.0, T0 + NS_PER_S)
    assert TradingState.HALTED == gate.state_of()
    positions = {"EURUSD": Holding(1_000, 1.25)}
    next_week = T0 + 7 * 86_400 * NS_PER_S
    decision = check(gate, -1_000, positions=positions, equity=108_000.0, now_ns=next_week)
    assert DenialReason.DRAWDOWN == denial_reason(decision)
    record = gate.resume(None, "reviewed the losses", now_ns=next_week + 1)
    assert (TradingState.HALTED, TradingState.ACTIVE) == (record.old_state, record.new_state)
    assert ("account", "operator") == (record.scope, record.actor)
    assert "equity peak re-based 120000.0 -> 108000.0" in record.note
    assert 10 == approved_units(check(gate, 10, equity=108_000.0, now_ns=next_week + 2))


def test_resume_after_daily_loss_rebases_the_day_start() -> None:
    """An operator override of the daily loss lets trading continue the same day."""
    gate = make_gate(daily_loss_limit_usd=1_000.0)
    gate.observe_equity(EQUITY, T0)
    gate.observe_equity(EQUITY - 1_500.0, T0 + 1)
    gate.resume(None, "news spike, intended", now_ns=T0 + 2)
    assert 10 == approved_units(check(gate, 10, equity=EQUITY - 1_500.0, now_ns=T0 + 3))
    assert TradingState.ACTIVE == gate.state_of()


def test_operator_halt_of_a_symbol_leaves_other_symbols_trading() -> None:
    """A halted symbol denies its orders; others are unaffected; resume restores it."""
    gate = make_gate()
    gate.halt("EURUSD", "bad feed", now_ns=T0)
    assert DenialReason.SYMBOL_HALTED == denial_reason(check(gate, 10))
    assert 10 == approved_units(check(gate, 10, symbol="GBPUSD"))
    gate.resume("EURUSD", "feed fixed", now_ns=T0 + 1)
    assert 10 == approved_units(check(gate, 10))


def test_operator_account_halt_denies_with_account_halted() -> None:
    """An operator halt is reported as ``account_halted``, not as a drawdown."""
    gate = make_gate()
    gate.halt(None, "maintenance", now_ns=T0)
    assert DenialReason.ACCOUNT_HALTED == denial_reason(check(gate, 10))


def test_operator_reduce_only_on_a_symbol_denies_growth() -> None:
    """A symbol in reducing mode refuses a new position with ``reducing_only``."""
    gate = make_gate()
    gate.reduce_only("EURUSD", "winding down", now_ns=T0)
    assert DenialReason.REDUCING_ONLY == denial_reason(check(gate, 10))
    assert TradingState.REDUCING == gate.state_of("EURUSD")
    assert TradingState.ACTIVE == gate.state_of("GBPUSD")


def test_operator_action_needs_a_note_and_a_known_symbol() -> None:
    """A blank note or an unknown symbol is refused before anything changes."""
    gate = make_gate(max_drawdown=0.10)
    gate.observe_equity(100_000.0, T0)
    gate.observe_equity(80_000.0, T0 + 1)
    gate.drain_audit()
    before = gate.snapshot()
    with pytest.raises(ValueError, match="note is required"):
        gate.resume(None, "  ", now_ns=T0 + 2)
    with pytest.raises(UnknownSymbolError, match="XAUUSD"):
        gate.halt("XAUUSD", "why not", now_ns=T0 + 2)
    assert ([], before) == (gate.drain_audit(), gate.snapshot())


def test_breach_does_not_override_an_operator_halt() -> None:
    """A drawdown during an operator halt keeps the operator's cause."""
    gate = make_gate(max_drawdown=0.10)
    gate.halt(None, "maintenance", now_ns=T0)
    gate.observe_equity(100_000.0, T0 + 1)
    gate.observe_equity(50_000.0, T0 + 2)
    assert StateCause.OPERATOR == gate.stats().account_cause


# -- counters, fills, snapshot ----------------------------------------------------------------


def test_stats_count_denials_by_reason_and_approvals() -> None:
    """``stats`` reports approvals, clips and denials by reason."""
    gate = make_gate(max_units_per_symbol=10)
    check(gate, 5)
    check(gate, 50)
    check(gate, 1, positions={"EURUSD": Holding(10, 1.25)})
    check(gate, 0)
    stats = gate.stats()
    expected = {DenialReason.MAX_UNITS: 1, DenialReason.BAD_INPUT: 1}
    assert (2, 1, expected) == (stats.approvals, stats.clipped, stats.denials)


def test_fill_is_applied_once_by_sequence() -> None:
    """A replayed fill (sequence at or below the mark) does not count twice."""
    gate = make_gate()
    assert gate.apply_fill(1, 120.0, 2.0, T0)
    assert not gate.apply_fill(1, 120.0, 2.0, T0)
    assert gate.apply_fill(2, -20.0, 1.0, T0 + 1)
    state = gate.snapshot()
    assert (2, {date(2024, 6, 12): 97.0}) == (state.fills_applied_seq, state.realized_pnl_by_day)


def test_snapshot_restores_an_identical_gate() -> None:
    """A gate rebuilt from its snapshot snapshots to the same state."""
    gate = make_gate(max_units_per_symbol=10, max_orders_per_minute=5, max_drawdown=0.5)
    check(gate, 50)
    gate.halt("GBPUSD", "test", now_ns=T0 + 1)
    gate.apply_fill(7, 1.0, 0.0, T0)
    snapshot = gate.snapshot()
    assert snapshot == RiskGate(gate.limits, snapshot).snapshot()


def test_version_moves_on_every_change_worth_saving() -> None:
    """An approval, a denial and an operator action each bump the version."""
    gate = make_gate(max_units_per_symbol=10)
    versions = [gate.version]
    check(gate, 5)
    versions.append(gate.version)
    check(gate, 50, positions={"EURUSD": Holding(10, 1.25)})
    versions.append(gate.version)
    gate.halt(None, "x", now_ns=T0)
    versions.append(gate.version)
    assert versions == sorted(set(versions))


# -- properties -------------------------------------------------------------------------------

SYMBOLS = sorted(INSTRUMENTS)
# Sizes and limits of the same order of magnitude, so that every limit binds often.
prices = st.floats(min_value=0.5, max_value=2.5)
holdings = st.dictionaries(
    st.sampled_from(SYMBOLS),
    st.builds(Holding, st.integers(-300_000, 300_000), prices),
    max_size=len(SYMBOLS),
)
limits_st = st.builds(
    RiskLimits,
    max_units_per_symbol=st.one_of(st.none(), st.integers(1, 500_000)),
    max_gross_exposure_usd=st.one_of(st.none(), st.floats(1.0, 3e6)),
    max_net_exposure_usd=st.one_of(st.none(), st.floats(1.0, 2e6)),
    max_open_positions=st.one_of(st.none(), st.integers(1, 7)),
    max_orders_per_minute=st.none(),
    daily_loss_limit_usd=st.none(),
    max_drawdown=st.none(),
)
# (symbol, order units, price, units already held in the symbol): the held position is drawn
# apart so that adding to, reducing and flipping a position are all common cases.
orders = st.tuples(
    st.sampled_from(SYMBOLS),
    st.integers(-600_000, 600_000).filter(bool),
    prices,
    st.integers(-300_000, 300_000),
)


def exposures(positions: dict[str, Holding]) -> tuple[float, float]:
    """Gross and net USD notional of a book."""
    gross = net = 0.0
    for symbol, h in positions.items():
        notional = INSTRUMENTS[symbol].notional_account(h.units, h.price)
        gross += notional
        net += notional if h.units > 0 else -notional
    return gross, net


@settings(max_examples=300, deadline=None)
@given(limits_st, holdings, orders)
def test_approved_order_never_grows_exposure_beyond_the_limits(
    limits: RiskLimits, others: dict[str, Holding], order: tuple[str, int, float, int]
) -> None:
    """An approval shrinks |position|, or keeps each limit (or at least moves toward it)."""
    symbol, units, price, held = order
    positions = {**others, symbol: Holding(held, price)}
    gate = RiskGate(limits, RiskState.fresh("p", 0))
    decision = gate.check(symbol, units, price=price, positions=positions, equity=1e6, now_ns=T0)
    if isinstance(decision, Denial):
        return
    assert 0 < decision.units * units and abs(decision.units) <= abs(units)
    before = positions
    old = held
    new = old + decision.units
    assert decision.reducing == (abs(new) < abs(old) and new * old >= 0)
    if decision.reducing:
        return
    after = {**before, symbol: Holding(new, price)}
    _, net_before = exposures(before)
    gross, net = exposures(after)
    slack = 1 + 1e-9
    if limits.max_units_per_symbol is not None:
        assert abs(new) <= limits.max_units_per_symbol
    if limits.max_gross_exposure_usd is not None:
        assert gross <= limits.max_gross_exposure_usd * slack
    if limits.max_net_exposure_usd is not None:
        assert abs(net) <= limits.max_net_exposure_usd * slack or abs(net) < abs(net_before)
    if limits.max_open_positions is not None:
        assert sum(1 for h in after.values() if h.units) <= max(
            limits.max_open_positions, sum(1 for h in before.values() if h.units)
        )


@settings(max_examples=300, deadline=None)
@given(holdings, orders, st.booleans())
def test_reducing_mode_never_approves_an_exposure_increase(
    others: dict[str, Holding], order: tuple[str, int, float, int], account_wide: bool
) -> None:
    """In reducing mode every approval leaves |position| smaller, on the same side."""
    symbol, units, price, held = order
    positions = {**others, symbol: Holding(held, price)}
    gate = RiskGate(UNLIMITED, RiskState.fresh("p", 0))
    gate.reduce_only(None if account_wide else symbol, "property", now_ns=0)
    decision = gate.check(symbol, units, price=price, positions=positions, equity=1e6, now_ns=T0)
    if isinstance(decision, Approval):
        new = held + decision.units
        assert abs(new) < abs(held) and new * held >= 0
