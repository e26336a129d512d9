"""What a backtest is asked to do: one typed, immutable request.

The CLI builds a :class:`BacktestRequest` (``forexd.cli.backtest_args.request_from_args``);
tests and notebooks build one directly. Everything the engines need to know about a run is
here, so a result can always say exactly what produced it (``BacktestResult.request``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from forexd.brokers.ledger import CostModel
from forexd.domain import get_instrument, iso_to_ns
from forexd.domain.strategy_registry import strategy_class
from forexd.errors import ConfigError, UnknownSymbolError
from forexd.feeds.loaders import CandleFormat
from forexd.strategies import build_strategy
from forexd.strategies.base import Strategy

EngineKind = Literal["event", "vectorised"]
ENGINES: tuple[EngineKind, ...] = ("event", "vectorised")
ALL_SYMBOLS = "*"  # rollover key that applies to every symbol without its own rate
DEFAULT_INITIAL_BALANCE = 100_000.0  # USD, the paper broker's default start

GridValue = int | float


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    """A backtest (or, with ``grid``, a parameter sweep) to run.

    Attributes:
        symbols: symbols to trade as one portfolio; empty means "infer from the data file
            name" (``DAT_ASCII_EURUSD_M1_2017.csv.gz`` is EURUSD).
        strategy: registry name (see ``forexd.domain.strategy_registry``) or ``module:Class``.
        params: fixed strategy parameters (validated by ``build_strategy``).
        grid: parameter name to the values to sweep; empty for a single run.
        rank_by: metric the sweep ranks by (see ``metrics.RANK_METRICS``).
        data: a candle file; ``{symbol}`` in the name is replaced per symbol. ``None``
            with ``from_store`` false means the bundled sample.
        data_format: loader format (``auto``, ``histdata``, ``oanda-lean``, ``csv``).
        from_store: read candles from the SQLite store at ``db_path`` instead of a file.
        db_path: the store (the CLI passes the resolved data directory's ``forexd.db``).
        timeframe: bar timeframe (``M1``...); ``None`` infers it from the bar spacing.
        start: keep bars at or after this ISO date/time (UTC if naive).
        end: keep bars before this ISO date/time.
        costs: spread, slippage and commission, as in the paper broker.
        initial_balance: account start in USD.
        rollover: symbol (or ``"*"`` for all) to the annual interest differential in
            percent (base minus quote) that a long position earns per night; a short pays
            it. Empty: no financing.
        engine: ``event`` drives the live ``SymbolCore`` and ``Ledger``; ``vectorised``
            evaluates ``VectorisedStrategy.targets`` with numpy (same fills, see the docs).
    """

    symbols: tuple[str, ...] = ()
    strategy: str = "sma_cross"
    params: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, tuple[GridValue, ...]] = field(default_factory=dict)
    rank_by: str = "sharpe"
    data: Path | None = None
    data_format: CandleFormat = "auto"
    from_store: bool = False
    db_path: Path | None = None
    timeframe: str | None = None
    start: str | None = None
    end: str | None = None
    costs: CostModel = field(default_factory=CostModel)
    initial_balance: float = DEFAULT_INITIAL_BALANCE
    rollover: Mapping[str, float] = field(default_factory=dict)
    engine: EngineKind = "event"

    def build_strategy(self, overrides: Mapping[str, Any] | None = None) -> Strategy:
        """The strategy with ``params`` (and ``overrides``) applied and validated.

        Raises:
            ConfigError: unknown strategy, unknown parameter or a value out of range.
        """
        merged = {**self.params, **(overrides or {})}
        return build_strategy(self.strategy, merged, where="--strategy/--param")

    def rollover_rate(self, symbol: str) -> float:
        """Annual differential in percent for ``symbol`` (0 when none is configured)."""
        return float(self.rollover.get(symbol, self.rollover.get(ALL_SYMBOLS, 0.0)))

    def validate(self) -> None:
        """Check everything that can be checked before data is loaded.

        Raises:
            ConfigError: the first problem found, naming the flag to change.
        """
        for symbol in self.symbols:
            try:
                get_instrument(symbol)
            except UnknownSymbolError as exc:
                raise ConfigError(f"--symbol {symbol}: {exc}") from None
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine {self.engine!r}: choose one of {', '.join(ENGINES)}")
        if not math.isfinite(self.initial_balance) or self.initial_balance <= 0:
            raise ConfigError(
                f"--initial-balance {self.initial_balance}: must be a positive amount of USD"
            )
        for name, value in (
            ("--spread-pips", self.costs.spread_pips),
            ("--slippage-pips", self.costs.slippage_pips),
            ("--commission-per-million", self.costs.commission_per_million),
        ):
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} {value}: must be zero or a positive number")
        for key, rate in self.rollover.items():
            if not math.isfinite(rate) or abs(rate) > 100:
                raise ConfigError(
                    f"--rollover {key}={rate}: give the annual rate differential in percent "
                    "(between -100 and 100)"
                )
        bounds = []
        for flag, text in (("--start", self.start), ("--end", self.end)):
            if text is None:
                continue
            try:
                bounds.append(iso_to_ns(text))
            except ValueError:
                raise ConfigError(
                    f"{flag} {text!r}: not an ISO 8601 date/time (e.g. 2017-03-01 or "
                    "2017-03-01T12:00)"
                ) from None
        if len(bounds) == 2 and bounds[0] >= bounds[1]:
            raise ConfigError(f"--start {self.start} is not before --end {self.end}")
        if self.from_store and self.db_path is None:
            raise ConfigError("--from-store: no store path was given (db_path is None)")
        if self.from_store and self.data is not None:
            raise ConfigError("--data and --from-store exclude each other; pass one")
        if self.grid:
            self._validate_grid()
        else:
            self.build_strategy()

    def _validate_grid(self) -> None:
        cls = strategy_class(self.strategy, where="--strategy")
        known = set(cls.Params.model_fields)
        for name, values in self.grid.items():
            if name not in known:
                raise ConfigError(
                    f"--grid {name}=...: {self.strategy} has no parameter {name!r}; "
                    f"its parameters are {', '.join(sorted(known))}"
                )
            if not values:
                raise ConfigError(f"--grid {name}=...: the range holds no value")
            if name in self.params:
                raise ConfigError(f"{name} is given both as --param and as --grid; keep one")

    def grid_points(self) -> Iterator[dict[str, GridValue]]:
        """Every combination of grid values (cartesian product, first axis slowest)."""
        names = list(self.grid)
        for values in itertools.product(*(self.grid[n] for n in names)):
            yield dict(zip(names, values, strict=True))

    @property
    def grid_size(self) -> int:
        """Number of combinations in the grid (1 without a grid)."""
        return math.prod(len(v) for v in self.grid.values()) if self.grid else 1


def parse_value(text: str) -> int | float | bool | str:
    """A ``--param`` value: int, then float, then true/false, else the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def parse_range(spec: str, flag: str = "--grid") -> tuple[str, tuple[GridValue, ...]]:
    """Parse ``name=start:stop:step`` (stop included) or ``name=v1,v2,...``.

    Integers stay integers when start, stop and step all are; float ranges are rounded to
    12 significant digits so ``0.1:0.3:0.1`` gives 0.1, 0.2, 0.3 and not 0.30000000000000004.

    Raises:
        ConfigError: not of that form, a zero or wrong-signed step, or non-numeric bounds.
    """
    name, sep, body = spec.partition("=")
    name = name.strip()
    if not sep or not name or not body:
        raise ConfigError(f"{flag} {spec!r}: expected NAME=START:STOP:STEP or NAME=V1,V2,...")
    if ":" not in body:
        values = tuple(_number(v, flag, spec) for v in body.split(","))
        return name, values
    parts = body.split(":")
    if len(parts) != 3:
        raise ConfigError(f"{flag} {spec!r}: expected NAME=START:STOP:STEP (three numbers)")
    start, stop, step = (_number(p, flag, spec) for p in parts)
    if step == 0 or (stop - start) * step < 0:
        raise ConfigError(
            f"{flag} {spec!r}: the step must be non-zero and go from START towards STOP"
        )
    count = math.floor((stop - start) / step + 1e-9) + 1
    if all(isinstance(v, int) for v in (start, stop, step)):
        return name, tuple(int(start + i * step) for i in range(count))
    return name, tuple(float(f"{start + i * step:.12g}") for i in range(count))


def _number(text: str, flag: str, spec: str) -> GridValue:
    value = parse_value(text.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{flag} {spec!r}: {text!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{flag} {spec!r}: {text!r} is not a finite number")
    return value


def parse_assignments(items: Sequence[str], flag: str) -> dict[str, Any]:
    """Parse repeated ``k=v`` flags into a dict (later ones win).

    Raises:
        ConfigError: an item has no ``=`` or an empty name.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: expected NAME=VALUE")
        out[key.strip()] = parse_value(value.strip())
    return out
