"""The one registry of strategy names, from which the config, the CLI and the strategies
package all derive.

Built-in strategies are registered by import path, exactly like a user's own strategy
(``package.module:Class``). So reading the names — the config's check of ``strategy =``,
the command line's ``--strategy`` choices — imports no strategy code, and
``forexd.config`` does not import ``forexd.strategies`` at all; a strategy's class is
imported when its parameters are checked or it is built. This sits in the domain layer
because every layer above (strategies, backtest, config, daemon) needs the same names;
it imports pydantic only to turn a parameter error into one clear message.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ValidationError

from forexd.errors import ConfigError

BUILTIN_STRATEGIES: Mapping[str, str] = MappingProxyType(
    {
        "sma_cross": "forexd.strategies.sma_cross:SmaCross",
        "ml": "forexd.strategies.ml:MlStrategy",
    }
)
"""Registry name → ``module:Class`` of each built-in strategy (the class's ``name``)."""

STRATEGY_NAMES: tuple[str, ...] = tuple(sorted(BUILTIN_STRATEGIES))
"""The built-in names, sorted: the choices a command line offers."""


def is_plugin_spec(name: str) -> bool:
    """Whether ``name`` names a user strategy (``package.module:Class``), not a built-in."""
    return ":" in name


def check_strategy_name(name: str) -> str:
    """Return ``name`` if it is registered or has the plugin form, else raise.

    Raises:
        ValueError: an unknown name (the message lists the registered ones); pydantic
            turns it into an error on the config key.
    """
    if name in BUILTIN_STRATEGIES or is_plugin_spec(name):
        return name
    close = difflib.get_close_matches(name, list(STRATEGY_NAMES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"unknown strategy {name!r}{hint}; choose one of {', '.join(STRATEGY_NAMES)} "
        "or give your own as 'package.module:Class'"
    )


def strategy_class(name: str, where: str = "strategy") -> Any:
    """Import the class registered as ``name``, or named by a ``package.module:Class`` spec.

    The class follows the ``Strategy`` protocol and has a ``Params`` model, like
    ``SmaCross``; this is how users run their own strategies without forking forexd.

    Args:
        name: a registry name (``sma_cross``) or a plugin spec.
        where: what to call the input in an error message (a config key, a CLI flag).

    Raises:
        ConfigError: unknown name, a module or class that cannot be imported, or a class
            that is not a strategy.
    """
    try:
        spec = BUILTIN_STRATEGIES.get(name) or check_strategy_name(name)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
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


def strategy_params(name: str, params: Mapping[str, Any], where: str = "strategy") -> BaseModel:
    """Validate ``params`` for strategy ``name``; returns its ``Params`` instance.

    Raises:
        ConfigError: unknown strategy, unknown parameter, or a value out of range; the
            message names ``where``, the strategy and each bad parameter.
    """
    cls = strategy_class(name, where)
    try:
        parsed: BaseModel = cls.Params(**dict(params))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
        )
        # A misspelled parameter: name the closest one and list them all with defaults.
        unknown = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden"]
        if unknown:
            valid = list(cls.Params.model_fields)
            close = difflib.get_close_matches(unknown[0], valid, n=1)
            problems += (f" (did you mean {close[0]!r}?)" if close else "") + (
                f"; {name}'s parameters and defaults: {params_help(cls.Params)}"
            )
        raise ConfigError(f"{where} ({name}): {problems}") from None
    return parsed


def params_help(model: type[BaseModel]) -> str:
    """``fast=10, slow=20, ...``: every field of a parameter model and its default."""

    def default(field: Any) -> str:
        if field.is_required():
            return "required"
        value = field.get_default(call_default_factory=True)
        return "{...}" if isinstance(value, BaseModel) else repr(getattr(value, "value", value))

    return ", ".join(f"{n}={default(f)}" for n, f in model.model_fields.items())
