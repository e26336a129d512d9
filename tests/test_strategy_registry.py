"""The one strategy registry: config, CLI and the strategies package agree on names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from forexd.domain.strategy_registry import (
    BUILTIN_STRATEGIES,
    STRATEGY_NAMES,
    strategy_class,
    strategy_params,
)
from forexd.errors import ConfigError
from forexd.strategies import build_strategy


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_each_registered_name_is_the_name_its_class_declares(name: str) -> None:
    """The registry key and the class's own ``name`` cannot drift apart."""
    assert name == strategy_class(name).name


def test_a_plugin_spec_loads_like_a_builtin() -> None:
    """``package.module:Class`` resolves through the same registry as built-in names."""
    cls = strategy_class("tests.faulty_strategy:AlwaysRaises")
    assert "AlwaysRaises" == cls.__name__


def test_an_unknown_name_lists_the_registered_ones_and_the_plugin_form() -> None:
    """The error names the input, every registered name and how to give one's own."""
    with pytest.raises(ConfigError) as info:
        strategy_class("moon_phase", where="symbols[0]")
    message = str(info.value)
    assert message.startswith("symbols[0]: unknown strategy 'moon_phase'")
    assert all(name in message for name in BUILTIN_STRATEGIES)
    assert "package.module:Class" in message


def test_a_module_that_is_not_a_strategy_is_refused() -> None:
    """A plugin spec naming something without Params/decide() is a clear error."""
    with pytest.raises(ConfigError, match="is not a strategy"):
        strategy_class("forexd.errors:ConfigError")


def test_params_are_checked_without_building_the_strategy() -> None:
    """strategy_params returns the validated Params the strategy would be built with."""
    params = strategy_params("sma_cross", {"fast": 3, "slow": 9})
    assert (3, 9) == (params.fast, params.slow)  # type: ignore[attr-defined]
    assert params == build_strategy("sma_cross", {"fast": 3, "slow": 9}).params  # type: ignore[attr-defined]


def test_importing_config_or_strategies_loads_no_strategy_implementation() -> None:
    """Reading names imports no strategy code: config loads none, strategies only the contract."""
    code = (
        "import json, sys; import forexd.config, forexd.strategies; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('forexd.strategies'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert '["forexd.strategies", "forexd.strategies.base"]' == out.stdout.strip()
