"""SMA crossover: live decisions equal vectorised targets; params are validated."""

from __future__ import annotations

import numpy as np
import pytest

from forexd.domain import Bar, get_instrument
from forexd.domain.bars import BarArrays, BarHistory
from forexd.errors import ConfigError
from forexd.strategies import build_strategy
from forexd.strategies.base import NO_CHANGE
from forexd.strategies.sma_cross import SmaCross, SmaCrossParams


def _random_walk(n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(1.1 + np.cumsum(rng.normal(0, 0.0004, n)), 5)


def test_live_decisions_equal_vectorised_targets_bar_for_bar() -> None:
    """decide() over a growing window equals targets() over the whole series."""
    inst = get_instrument("EURUSD")
    close = _random_walk(3000)
    strat = SmaCross(SmaCrossParams(fast=5, slow=17, units=1000))
    hist = BarHistory(inst, 17 + 3)
    live = []
    for i, c in enumerate(close):
        hist.append(Bar("EURUSD", i, c, c, c, c))
        t = strat.decide(hist, 0)
        live.append(NO_CHANGE if t is None else t)
    ts = np.arange(len(close), dtype=np.int64)
    vec = strat.targets(BarArrays.from_ohlc(inst, ts, close, close, close, close))
    assert live == vec.tolist()


def test_ties_are_no_change_and_warmup_is_silent() -> None:
    """Equal averages and too-short history give no target."""
    inst = get_instrument("EURUSD")
    strat = SmaCross(SmaCrossParams(fast=2, slow=4))
    hist = BarHistory(inst, 8)
    for i in range(3):
        hist.append(Bar("EURUSD", i, 1.1, 1.1, 1.1, 1.1))
        assert strat.decide(hist, 0) is None
    hist.append(Bar("EURUSD", 3, 1.1, 1.1, 1.1, 1.1))
    assert strat.decide(hist, 0) is None  # flat prices: fast == slow


def test_history_window_returns_the_latest_values_oldest_first() -> None:
    """The ring buffer keeps the last `capacity` bars contiguous."""
    hist = BarHistory(get_instrument("EURUSD"), 3)
    for i in range(5):
        hist.append(Bar("EURUSD", i, 1.0 + i, 2.0 + i, 0.5 + i, 1.5 + i))
    assert [3.5, 4.5, 5.5] == hist.closes().tolist()
    assert [4.5, 5.5] == hist.closes(2).tolist()
    assert [2, 3, 4] == hist.times().tolist()
    assert 3 == len(hist)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"fast": 20, "slow": 10}, "must be smaller"),
        ({"fast": 0}, "fast"),
        ({"speed": 3}, "speed"),
        ({"units": -5}, "units"),
    ],
)
def test_bad_parameters_are_refused_with_the_name(params: dict[str, int], fragment: str) -> None:
    """build_strategy names the strategy and the bad parameter."""
    with pytest.raises(ConfigError, match=fragment) as info:
        build_strategy("sma_cross", params, where="symbols[0]")
    assert "symbols[0] (sma_cross)" in str(info.value)


def test_unknown_strategy_lists_the_known_ones() -> None:
    """An unknown strategy name lists the registry."""
    with pytest.raises(ConfigError, match="sma_cross"):
        build_strategy("moon_phase", {})


def test_history_stays_correct_across_many_compactions() -> None:
    """Thousands of appends through a small window always show the latest values."""
    hist = BarHistory(get_instrument("EURUSD"), 5)
    for i in range(1003):
        hist.append(Bar("EURUSD", i, 1.0, 1.0, 1.0, 1.0 + i / 1e5))
        n = min(i + 1, 5)
        assert list(range(i + 1 - n, i + 1)) == hist.times().tolist()
    assert [100998, 100999, 101000, 101001, 101002] == hist.points().tolist()


def _window_target(hist: BarHistory, strat: SmaCross) -> int | None:
    """The decision recomputed from scratch over the history's window (the reference)."""
    p = strat.params
    if len(hist) < p.slow:
        return None
    pts = hist.points(p.slow).tolist()
    lhs, rhs = sum(pts[p.slow - p.fast :]) * p.slow, sum(pts) * p.fast
    return p.units if lhs > rhs else -p.units if lhs < rhs else None


def test_running_sums_equal_a_full_resum_when_decisions_skip_bars() -> None:
    """Bars appended without a decision (pause, warm-up) never leave the sums stale."""
    inst = get_instrument("EURUSD")
    close = _random_walk(4000, seed=11)
    strat = SmaCross(SmaCrossParams(fast=3, slow=9, units=100))
    hist = BarHistory(inst, 9 + 8)
    rng = np.random.default_rng(3)
    decided = 0
    for i, c in enumerate(close):
        hist.append(Bar("EURUSD", i, c, c, c, c))
        if rng.random() < 0.7:  # some bars are never decided on, as while paused
            decided += 1
            assert _window_target(hist, strat) == strat.decide(hist, 0), f"bar {i}"
    assert decided > 2000


def test_a_strategy_moved_to_another_history_follows_the_new_one() -> None:
    """A hot reload hands the strategy a new history: it re-sums instead of reusing sums."""
    inst = get_instrument("EURUSD")
    strat = SmaCross(SmaCrossParams(fast=2, slow=4, units=1))
    rising, falling = BarHistory(inst, 6), BarHistory(inst, 6)
    for i in range(6):
        rising.append(Bar("EURUSD", i, 1.0, 1.0, 1.0, 1.0 + i / 1e4))
        falling.append(Bar("EURUSD", i, 1.0, 1.0, 1.0, 1.0 - i / 1e4))
        strat.decide(rising, 0)
    assert 1 == strat.decide(rising, 0)  # asked twice for one bar: re-summed, same answer
    falling.append(Bar("EURUSD", 6, 1.0, 1.0, 1.0, 1.0 - 6 / 1e4))
    assert -1 == strat.decide(falling, 0)


def test_history_counts_every_bar_and_reads_see_unwritten_appends() -> None:
    """Batched appends are visible to every reader at once, whatever the capacity."""
    for capacity in (1, 7, 128, 300):
        hist = BarHistory(get_instrument("EURUSD"), capacity)
        for i in range(1000):
            hist.append(Bar("EURUSD", i, i + 0.25, i + 0.5, i - 0.5, i + 0.1))
            if i % 97 == 0 or i > 990:
                n = min(i + 1, capacity)
                assert list(range(i + 1 - n, i + 1)) == hist.times().tolist()
                assert [t + 0.25 for t in range(i + 1 - n, i + 1)] == hist.opens().tolist()
        assert 1000 == hist.total
        assert min(1000, capacity) == len(hist)
        assert round(999.1 * 10**5) == hist.points(1).tolist()[0]
