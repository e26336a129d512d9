"""The daemon on the fake OANDA server: its config, the prices a test plays, what it stored.

Shared by the end-to-end OANDA tests (``test_e2e_oanda*.py``). The daemon trades EURUSD on
M1 bars streamed by :class:`~tests.fake_oanda.FakeOanda`, 1,000 units per SMA(2, 4) signal
unless a test gives another ``[[symbols]]`` body.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tests.daemon_proc import DaemonProc, write_config
from tests.fake_oanda import ACCOUNT_ID, START_NS, FakeOanda

NS = 1_000_000_000
T0 = START_NS + 3600 * NS
# SMA(2, 4) on these mids: short after the fall, long after the rise, short again.
DOWN = [1.1000, 1.0990, 1.0980, 1.0970, 1.0960]
UP = [1.0975, 1.0990, 1.1005, 1.1020, 1.1035]
DOWN_AGAIN = [1.1020, 1.1000, 1.0980, 1.0960, 1.0940, 1.0930]
SMA_SYMBOL = "params = { fast = 2, slow = 4, units = 1000 }"


def live_config(
    fake: FakeOanda,
    path: Path,
    *,
    actors: str = "",
    oanda: str = "",
    extra: str = "",
    symbol: str = SMA_SYMBOL,
) -> Path:
    """A daemon config trading EURUSD on M1 bars from the fake.

    Args:
        fake: the running fake OANDA server.
        path: where to write the config.
        actors: more keys of the ``[actors]`` table.
        oanda: more keys of the ``[broker.oanda]`` table.
        extra: more tables (e.g. ``[risk]``).
        symbol: the body of the EURUSD ``[[symbols]]`` table after its ``symbol`` key.
    """
    return write_config(
        path,
        f"""
[actors]
# The fake plays minutes of prices in one burst: in server time a bar reaches the actor
# several periods after its close. Only the present is traded, so allow that age here.
max_bar_age_bars = 30
{actors}
{extra}
[broker]
kind = "oanda"
[broker.oanda]
account_id = "{ACCOUNT_ID}"
token = "{fake.token}"
api_url = "{fake.url}"
stream_url = "{fake.url}"
{oanda}
[feed]
kind = "oanda"
timeframe = "M1"
[[symbols]]
symbol = "EURUSD"
{symbol}
""",
    )


class Prices:
    """Pushes one price per minute on the fake, continuing where it left off."""

    def __init__(self, fake: FakeOanda, start: int = T0) -> None:
        self.fake = fake
        self.i = 0
        self.start = start
        fake.push_price("EUR_USD", start - 90 * NS, "1.10000", "1.10010")

    def push(self, mids: list[float]) -> None:
        """One price per minute for each mid (each closes the previous minute's bar)."""
        for mid in mids:
            ts = self.start + self.i * 60 * NS + NS
            self.fake.push_price("EUR_USD", ts, f"{mid - 0.00005:.5f}", f"{mid + 0.00005:.5f}")
            self.i += 1


def db_rows(data: Path) -> tuple[list[tuple[Any, ...]], int]:
    """(client_id, units, status, error) of every order, and the stored position."""
    with sqlite3.connect(data / "forexd.db") as conn:
        orders = conn.execute(
            "SELECT client_id, units, status, error FROM orders ORDER BY created_ns"
        ).fetchall()
        row = conn.execute("SELECT units FROM positions WHERE symbol = 'EURUSD'").fetchone()
    return orders, int(row[0]) if row else 0


def symbol_link(status: dict[str, Any]) -> dict[str, Any]:
    """The EURUSD entry of ``broker_link`` in ``ctl status``."""
    link: dict[str, Any] = status["broker_link"]["symbols"]["EURUSD"]
    return link


def start(factory: type[DaemonProc], fake: FakeOanda, root: Path, **config: str) -> DaemonProc:
    """Start a daemon on the fake (``config``: :func:`live_config`'s keywords) and wait
    until its price stream is connected."""
    root.mkdir(exist_ok=True)
    d = factory(root / "data", live_config(fake, root / "live.toml", **config))
    d.wait_for("ready")
    d.wait_for("oanda_stream_connected")
    return d
