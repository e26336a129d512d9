"""Typed configuration: a TOML file, overridden by ``FOREXD_*`` environment variables.

Precedence (highest first): command-line flags (applied by ``cli.py``), environment
variables (``FOREXD_FEED__SPEED=0`` sets ``[feed] speed``; ``__`` separates nesting), the
TOML file, the defaults below. Every key is validated at load; an unknown key or a bad
value fails with the key's dotted name and the file it came from.

pydantic-settings was chosen over msgspec because it already merges environment
variables with nested models and reports every bad key at once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from forexd.domain import get_instrument
from forexd.domain.strategy_registry import check_strategy_name, strategy_params
from forexd.domain.timeframes import Timeframe
from forexd.errors import ConfigError, ForexdError
from forexd.risk import RiskLimits, SizingConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
BrokerKind = Literal["paper", "oanda"]
FeedKind = Literal["replay", "oanda"]

BUNDLED_SOURCE = "bundled"
STORE_SOURCE = "store"


class _Section(BaseModel):
    # allow_inf_nan=False (integrity, issue 10): an `inf` balance or cost is never meant.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ComputeConfig(_Section):
    """Compute budget overrides; ``None`` means derive from the hardware (``forexd hw``)."""

    usable_cpus: int | None = Field(None, ge=1, description="override detected usable CPUs")
    reserve_cpus: int | None = Field(None, ge=0, description="CPUs kept for the event loop")
    train_workers: int | None = Field(None, ge=1, description="concurrent heavy jobs")
    blas_threads: int | None = Field(None, ge=1, description="BLAS/OpenMP threads per job")
    max_concurrent_symbols: int | None = Field(
        None, ge=1, description="symbols allowed in the heavy phase at once"
    )
    executor: Literal["threads", "processes"] = Field(
        "threads", description="heavy jobs in worker threads, or spawned processes (GIL-bound)"
    )
    # --- scale-out (issue 13; docs/scaling.md) ---
    backend: Literal["local", "ray"] = Field(
        "local", description="where training/search jobs run: this machine, or a Ray cluster"
    )
    ray_address: str = Field(
        "auto", description="Ray cluster: 'auto', 'host:port' of the head, or 'local'"
    )
    ray_fallback: Literal["error", "local"] = Field(
        "error", description="an unreachable cluster: exit 2, or warn and run locally"
    )
    task_timeout_s: float | None = Field(
        None, gt=0, description="a training/search task running longer is cancelled"
    )


class OandaConfig(_Section):
    """OANDA v20 connection (live trading)."""

    account_id: str = ""
    token: SecretStr = SecretStr("")
    environment: Literal["practice", "live"] = "practice"
    api_url: str | None = Field(None, description="override the REST base URL (tests)")
    stream_url: str | None = Field(None, description="override the streaming base URL")
    request_timeout_s: float = Field(
        10.0, gt=0, le=120, description="read timeout of one REST request; then it is retried"
    )
    account_refresh_s: float = Field(
        5.0, gt=0, le=3600, description="account summary refresh period (never per bar)"
    )
    absent_after_s: float = Field(
        60.0,
        ge=5,
        le=86400,
        description="an order with a lost answer that OANDA's records still lack this long "
        "after sending is taken as never executed",
    )
    drift_check_s: float = Field(
        30.0, gt=0, le=86400, description="positions compared with the broker this often"
    )
    drift_policy: Literal["halt", "adopt"] = Field(
        "halt", description="on a position mismatch: halt (reduce-only) or adopt the broker's"
    )


class BrokerConfig(_Section):
    """Which broker executes orders, and the paper broker's costs."""

    kind: BrokerKind = "paper"
    account_id: str = Field(
        "paper", min_length=1, description="paper account name (OANDA uses oanda.account_id)"
    )
    initial_balance: float = Field(100_000.0, gt=0, description="paper account start, USD")
    spread_pips: float = Field(0.8, ge=0, le=100, description="paper full spread in pips")
    slippage_pips: float = Field(0.0, ge=0, le=100, description="paper adverse slippage")
    commission_per_million: float = Field(
        0.0, ge=0, description="paper commission, USD per 1M USD notional"
    )
    oanda: OandaConfig = OandaConfig()


class FeedConfig(_Section):
    """Where bars come from. ``source``: ``bundled`` sample, ``store`` (SQLite) or a file."""

    kind: FeedKind = "replay"
    source: str = Field(
        BUNDLED_SOURCE, description="`bundled`, `store`, or a file path ({symbol} is expanded)"
    )
    format: Literal["auto", "histdata", "oanda-lean", "csv"] = "auto"
    timeframe: Timeframe = "H1"
    speed: float = Field(0.0, ge=0, description="0 = as fast as possible, N = N times real time")
    max_sleep_s: float = Field(
        5.0, gt=0, description="longest pause between two replayed bars (caps weekend gaps)"
    )
    start: str | None = Field(None, description="ISO date/time: replay bars from here")
    end: str | None = Field(None, description="ISO date/time: replay bars before this")


class SymbolConfig(_Section):
    """One traded symbol and the strategy that trades it."""

    symbol: str
    strategy: str = "sma_cross"
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    data: str | None = Field(
        None, description="this symbol's replay source (a file, `store` or `bundled`)"
    )
    sizing: SizingConfig | None = Field(
        None, description="size positions by risk instead of the strategy's own units"
    )

    @field_validator("symbol")
    @classmethod
    def _known_symbol(cls, value: str) -> str:
        try:
            return get_instrument(value).symbol
        except ForexdError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        return check_strategy_name(value)


class ActorConfig(_Section):
    """Crash handling of symbol actors."""

    restart_backoff_s: float = Field(0.5, gt=0, description="first restart delay")
    restart_backoff_max_s: float = Field(30.0, gt=0)
    max_crashes: int = Field(5, ge=1, description="crashes within the window before `failed`")
    crash_window_s: float = Field(300.0, gt=0)
    max_bar_age_bars: float = Field(
        1.0,
        gt=0,
        description="live feeds: a bar arriving more than this many bar periods after its "
        "close only warms the strategy (never traded)",
    )
    healthy_run_s: float = Field(
        60.0, gt=0, description="a life this long before a crash resets the restart backoff"
    )


class ControlConfig(_Section):
    """Control channel: a Unix socket, or loopback TCP with a token where there is none."""

    transport: Literal["auto", "unix", "tcp"] = "auto"
    tcp_host: str = "127.0.0.1"
    tcp_port: int = Field(0, ge=0, le=65535, description="0 = pick a free port")


class MetricsConfig(_Section):
    """Optional Prometheus endpoint (needs the ``metrics`` extra)."""

    enabled: bool = False
    host: str = Field(
        "127.0.0.1",
        description="loopback by default; another address only when set here explicitly",
    )
    port: int = Field(9108, ge=0, le=65535)
    refresh_s: float = Field(1.0, gt=0, description="how often the scraped snapshot updates")


def _default_symbols() -> list[SymbolConfig]:
    return [SymbolConfig(symbol="EURUSD", strategy="sma_cross", params={"fast": 10, "slow": 20})]


class Settings(BaseSettings):
    """The daemon's whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="FOREXD_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: Path | None = Field(None, description="state: forexd.db, risk state, models")
    runtime_dir: Path | None = Field(None, description="ctl.sock and forexd.pid")
    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"
    log_file: Path | None = Field(None, description="also write JSON logs here, rotated by size")
    log_file_max_mb: float = Field(10.0, gt=0, description="rotate the log file at this size")
    log_file_backups: int = Field(5, ge=1, le=100, description="rotated files kept")
    shutdown_timeout_s: float = Field(10.0, gt=0, le=600)
    equity_snapshot_every_bars: int = Field(
        60, ge=1, description="bars between equity snapshots (each fill adds one too)"
    )
    compute: ComputeConfig = ComputeConfig()
    broker: BrokerConfig = BrokerConfig()
    feed: FeedConfig = FeedConfig()
    actors: ActorConfig = ActorConfig()
    control: ControlConfig = ControlConfig()
    risk: RiskLimits = RiskLimits()
    metrics: MetricsConfig = MetricsConfig()
    symbols: list[SymbolConfig] = Field(default_factory=_default_symbols)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment beats the file (which arrives as init kwargs)."""
        return (env_settings, init_settings)

    @field_validator("symbols")
    @classmethod
    def _unique_symbols(cls, value: list[SymbolConfig]) -> list[SymbolConfig]:
        seen: set[str] = set()
        for item in value:
            if item.symbol in seen:
                raise ValueError(f"symbol {item.symbol} is configured twice")
            seen.add(item.symbol)
        return value

    @property
    def account_id(self) -> str:
        """The broker account whose risk state this daemon keeps."""
        if self.broker.kind == "oanda":
            return self.broker.oanda.account_id or "oanda"
        return self.broker.account_id

    @property
    def active_symbols(self) -> list[SymbolConfig]:
        """Symbols with ``enabled = true``."""
        return [s for s in self.symbols if s.enabled]


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key; `forexd config check` with no file prints every valid key"
        given = err.get("input")
        shown = "" if isinstance(given, Mapping | list) or given is None else f" (got {given!r})"
        lines.append(f"  {loc}: {msg}{shown}")
    return f"invalid configuration in {origin}:\n" + "\n".join(lines)


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file.

    Raises:
        ConfigError: the file is missing, unreadable or not valid TOML.
    """
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate the configuration.

    Args:
        path: a TOML file, or ``None`` for defaults plus environment.
        overrides: values from command-line flags; they beat the file and the environment.

    Raises:
        ConfigError: any problem, naming the file and the key.
    """
    raw = read_toml(path) if path is not None else {}
    origin = str(path) if path is not None else "defaults/environment (FOREXD_*)"
    try:
        settings = Settings(**raw)
        for key, value in overrides.items():
            if value is not None:
                *parents, leaf = key.split(".")  # "feed.speed" sets [feed] speed
                target: Any = settings
                for part in parents:
                    target = getattr(target, part)
                setattr(target, leaf, value)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None
    for i, sym in enumerate(settings.symbols):
        strategy_params(sym.strategy, sym.params, where=f"{origin}: symbols[{i}] ({sym.symbol})")
    return settings


def env_snapshot() -> dict[str, str]:
    """``FOREXD_*`` variables in effect (for ``config check``), secrets masked."""
    out = {}
    for key, value in os.environ.items():
        if key.startswith("FOREXD_"):
            out[key] = "***" if "TOKEN" in key or "SECRET" in key else value
    return out
