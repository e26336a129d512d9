"""``GET /instruments/{instrument}/candles`` of the fake OANDA server (§3 of the subset doc).

Candles are computed from the prices pushed into the fake, so a test's "truth" and the
candles it is compared with come from the same ticks. ``time`` is a candle's start;
``volume`` its tick count; ``complete`` is false while its end is after the server clock.
Periods without a tick have no candle. Sub-hour granularities align to the epoch; hourly
and daily ones to ``dailyAlignment`` o'clock in ``alignmentTimezone``. ``W`` and ``M``
granularities and ``smooth`` are not implemented.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tests.fake_oanda_book import NS, SPECS, Tick, parse_time

GRANULARITY_S = {
    "S5": 5,
    "S10": 10,
    "S15": 15,
    "S30": 30,
    "M1": 60,
    "M2": 120,
    "M4": 240,
    "M5": 300,
    "M10": 600,
    "M15": 900,
    "M30": 1800,
    "H1": 3600,
    "H2": 7200,
    "H3": 10800,
    "H4": 14400,
    "H6": 21600,
    "H8": 28800,
    "H12": 43200,
    "D": 86400,
}
DEFAULT_COUNT = 500
MAX_COUNT = 5000
_COMPONENTS = {"M": "mid", "B": "bid", "A": "ask"}


def _bad(message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"errorMessage": message}


def candles(
    instrument: str,
    query: Mapping[str, str],
    ticks: list[Tick],
    now_ns: int,
) -> tuple[int, dict[str, Any]]:
    """Answer one candles request: ``(status, body)``, times left as epoch ns."""
    if instrument not in SPECS:
        return _bad("Invalid value specified for 'instrument'")
    granularity = query.get("granularity", "S5")
    if granularity not in GRANULARITY_S:
        return _bad("Invalid value specified for 'granularity'")
    price = query.get("price", "M")
    if not price or any(c not in _COMPONENTS for c in price):
        return _bad("Invalid value specified for 'price'")
    try:
        count = int(query.get("count", DEFAULT_COUNT))
        start = parse_time(query["from"]) if "from" in query else None
        end = parse_time(query["to"]) if "to" in query else None
        alignment = int(query.get("dailyAlignment", 17))
        period = GRANULARITY_S[granularity] * NS
        # Only hourly and longer candles need the zone: resolve it only then.
        zone_name = query.get("alignmentTimezone", "America/New_York")
        zone = _zone(zone_name) if period >= 3600 * NS else timezone.utc
    except (ValueError, ZoneInfoNotFoundError) as exc:
        return _bad(f"Invalid value specified: {exc}")
    if "count" in query and start is not None and end is not None:
        return _bad("'count' cannot be specified together with both 'from' and 'to'")
    if count > MAX_COUNT or count < 1:
        return _bad("Maximum value for 'count' exceeded")
    if end is not None and end > now_ns:
        return _bad("Invalid value specified for 'to'. Time is in the future")
    if not 0 <= alignment <= 23:
        return _bad("Invalid value specified for 'dailyAlignment'")
    buckets = _aggregate(ticks, period, alignment, zone)
    starts = sorted(buckets)
    include_first = query.get("includeFirst", "true") != "false"
    if start is not None:
        starts = [s for s in starts if s > start or (s == start and include_first)]
    if end is not None:
        starts = [s for s in starts if s < end]
    if start is not None and end is not None:
        if len(starts) > MAX_COUNT:
            return _bad("Maximum value for 'count' exceeded")
    elif start is not None:
        starts = starts[:count]
    else:
        starts = starts[-count:]
    spec = SPECS[instrument]
    out = []
    for s in starts:
        b = buckets[s]
        candle: dict[str, Any] = {"complete": s + period <= now_ns, "volume": b["n"], "time": s}
        for code in price:
            name = _COMPONENTS[code]
            digits = spec.display_precision + (1 if name == "mid" else 0)
            candle[name] = {k: f"{b[name][k]:.{digits}f}" for k in "ohlc"}
        out.append(candle)
    return 200, {"instrument": instrument, "granularity": granularity, "candles": out}


def _aggregate(
    ticks: list[Tick], period: int, alignment: int, zone: tzinfo
) -> dict[int, dict[str, Any]]:
    buckets: dict[int, dict[str, Any]] = {}
    for tick in ticks:
        start = _bucket(tick.ts, period, alignment, zone)
        values = {"bid": tick.bid, "ask": tick.ask, "mid": (tick.bid + tick.ask) / 2}
        b = buckets.get(start)
        if b is None:
            b = buckets[start] = {"n": 0}
            for name, v in values.items():
                b[name] = {"o": v, "h": v, "l": v, "c": v}
        b["n"] += 1
        for name, v in values.items():
            ohlc: dict[str, Decimal] = b[name]
            ohlc.update(h=max(ohlc["h"], v), l=min(ohlc["l"], v), c=v)
    return buckets


def _zone(name: str) -> tzinfo:
    # UTC without the tz database: Windows has none unless the tzdata package is installed.
    return timezone.utc if name == "UTC" else ZoneInfo(name)


def _bucket(ts: int, period: int, alignment: int, zone: tzinfo) -> int:
    if period < 3600 * NS:
        return ts - ts % period
    local = datetime.fromtimestamp(ts // NS, tz=zone)
    anchor = local.replace(hour=alignment, minute=0, second=0, microsecond=0)
    if anchor > local:
        anchor -= timedelta(days=1)
    anchor_ns = int(anchor.timestamp()) * NS
    return anchor_ns + (ts - anchor_ns) // period * period
