"""Strategies: pure decision code shared by the live daemon and the backtest.

``STRATEGIES`` is the one registry of names; the CLI and the config derive their choices
from it.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from forexd.errors import ConfigError
from forexd.strategies.base import Strategy, StrategyParams
from forexd.strategies.ml import MlStrategy
from forexd.strategies.sma_cross import SmaCross

STRATEGIES: dict[str, Any] = {SmaCross.name: SmaCross, MlStrategy.name: MlStrategy}


def build_strategy(name: str, params: Mapping[str, Any], where: str = "strategy") -> Strategy:
    """Instantiate a registered strategy with validated parameters.

    Args:
        name: registry name (``sma_cross``).
        params: raw parameter values (from TOML or ``--param k=v``).
        where: what to call the input in an error message (a config key, a CLI flag).

    Raises:
        ConfigError: unknown strategy, unknown parameter, or a value out of range.
    """
    cls = _load_plugin(name, where) if ":" in name else STRATEGIES.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, list(STRATEGIES), n=1)
        raise ConfigError(
            f"{where}: unknown strategy {name!r}"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; choose one of {', '.join(sorted(STRATEGIES))}"
        )
    try:
        parsed: StrategyParams = cls.Params(**dict(params))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        # (cli helper) A misspelled parameter: name the closest one and list them all.
        unknown = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden"]
        if unknown:
            valid = list(cls.Params.model_fields)
            close = difflib.get_close_matches(unknown[0], valid, n=1)
            problems += (f" (did you mean {close[0]!r}?)" if close else "") + (
                f"; {name}'s parameters and defaults: {params_help(cls.Params)}"
            )
        raise ConfigError(f"{where} ({name}): {problems}") from None
    strategy: Strategy = cls(parsed)
    return strategy


def params_help(model: type[BaseModel]) -> str:
    """``fast=10, slow=20, ...``: every field of a parameter model and its default."""

    def default(field: Any) -> str:
        if field.is_required():
            return "required"
        value = field.get_default(call_default_factory=True)
        return "{...}" if isinstance(value, BaseModel) else repr(getattr(value, "value", value))

    return ", ".join(f"{n}={default(f)}" for n, f in model.model_fields.items())


def _load_plugin(spec: str, where: str) -> Any:
    """Load a user strategy given as ``package.module:ClassName``.

    The class follows the :class:`Strategy` protocol and has a ``Params`` model, like
    :class:`SmaCross`. This is how users run their own strategies without forking forexd.
    """
    module_name, _, attr = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"{where}: cannot load strategy {spec!r} ({exc}); check the module is importable "
            "(PYTHONPATH) and the class name"
        ) from None
    if not hasattr(cls, "Params") or not hasattr(cls, "decide"):
        raise ConfigError(f"{where}: {spec!r} is not a strategy (needs Params and decide())")
    return cls


__all__ = ["STRATEGIES", "Strategy", "build_strategy", "params_help"]
