"""Strategies: pure decision code shared by the live daemon and the backtest.

The names are registered in :mod:`forexd.domain.strategy_registry`, which the config and
the command line read too; importing this package imports no strategy but the contract,
so the ML strategy's learning code loads only where an ``ml`` strategy is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from forexd.domain.strategy_registry import strategy_class, strategy_params
from forexd.strategies.base import Strategy


def build_strategy(name: str, params: Mapping[str, Any], where: str = "strategy") -> Strategy:
    """Instantiate a registered strategy (or a ``package.module:Class``) with checked params.

    Args:
        name: registry name (``sma_cross``) or a plugin spec.
        params: raw parameter values (from TOML or ``--param k=v``).
        where: what to call the input in an error message (a config key, a CLI flag).

    Raises:
        ConfigError: unknown strategy, unknown parameter, or a value out of range.
    """
    parsed = strategy_params(name, params, where)
    strategy: Strategy = strategy_class(name, where)(parsed)
    return strategy


__all__ = ["Strategy", "build_strategy"]
