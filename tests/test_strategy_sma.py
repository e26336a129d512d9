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
