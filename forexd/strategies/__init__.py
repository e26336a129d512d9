"""Strategies: pure decision code shared by the live daemon and the backtest.

``STRATEGIES`` is the one registry of names; the CLI and the config derive their choices
from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from forexd.errors import ConfigError
from forexd.strategies.base import Strategy, StrategyParams
from forexd.strategies.sma_cross import SmaCross

STRATEGIES: dict[str, Any] = {SmaCross.name: SmaCross}


def build_strategy(name: str, params: Mapping[str, Any], where: str = "strategy") -> Strategy:
    """Instantiate a registered strategy with validated parameters.

    Args:
        name: registry name (``sma_cross``).
        params: raw parameter values (from TOML or ``--param k=v``).
        where: what to call the input in an error message (a config key, a CLI flag).

    Raises:
        ConfigError: unknown strategy, unknown parameter, or a value out of range.
    """
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ConfigError(
            f"{where}: unknown strategy {name!r}; choose one of {', '.join(sorted(STRATEGIES))}"
        )
    try:
        parsed: StrategyParams = cls.Params(**dict(params))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{where} ({name}): {problems}") from None
    strategy: Strategy = cls(parsed)
    return strategy


__all__ = ["STRATEGIES", "Strategy", "build_strategy"]
