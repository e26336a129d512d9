"""SQLite schema and its migrations, keyed by ``PRAGMA user_version``.

Each migration is a list of statements applied in one transaction; the version only moves
forward. A database written by a newer forexd (higher version than we know) is refused
rather than guessed at.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    # 1: the daemon skeleton
    [
        """CREATE TABLE candles (
            symbol TEXT NOT NULL, timeframe TEXT NOT NULL, ts INTEGER NOT NULL,
            open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL,
            volume REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (symbol, timeframe, ts)) WITHOUT ROWID""",
        """CREATE TABLE orders (
            client_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, units INTEGER NOT NULL,
            bar_ts INTEGER NOT NULL, created_ns INTEGER NOT NULL, status TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '', error TEXT, updated_ns INTEGER NOT NULL)""",
        "CREATE INDEX orders_status ON orders (status)",
        """CREATE TABLE fills (
            fill_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, symbol TEXT NOT NULL,
            units INTEGER NOT NULL, price REAL NOT NULL, commission REAL NOT NULL,
            ts INTEGER NOT NULL, realized_pnl REAL NOT NULL, recorded_ns INTEGER NOT NULL)""",
        "CREATE INDEX fills_symbol ON fills (symbol, ts)",
        """CREATE TABLE positions (
            symbol TEXT PRIMARY KEY, units INTEGER NOT NULL, avg_price REAL NOT NULL,
            realized_pnl REAL NOT NULL, commission REAL NOT NULL, updated_ns INTEGER NOT NULL)""",
        """CREATE TABLE equity (
            ts INTEGER NOT NULL, balance REAL NOT NULL, equity REAL NOT NULL,
            unrealized REAL NOT NULL, recorded_ns INTEGER NOT NULL)""",
        "CREATE INDEX equity_ts ON equity (ts)",
        """CREATE TABLE actor_progress (
            symbol TEXT PRIMARY KEY, last_bar_ts INTEGER NOT NULL, bars_seen INTEGER NOT NULL)""",
        """CREATE TABLE paper_account (
            id INTEGER PRIMARY KEY CHECK (id = 1), initial_balance REAL NOT NULL,
            created_ns INTEGER NOT NULL)""",
        """CREATE TABLE paper_orders (
            client_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, units INTEGER NOT NULL,
            bar_ts INTEGER NOT NULL, status TEXT NOT NULL, submitted_ns INTEGER NOT NULL)""",
        """CREATE TABLE paper_fills (
            fill_id TEXT PRIMARY KEY, client_id TEXT NOT NULL, symbol TEXT NOT NULL,
            units INTEGER NOT NULL, price REAL NOT NULL, commission REAL NOT NULL,
            ts INTEGER NOT NULL)""",
        """CREATE TABLE events (
            ts_ns INTEGER NOT NULL, kind TEXT NOT NULL, symbol TEXT, detail TEXT NOT NULL)""",
    ],
    # 2: the model registry (forexd.storage.model_registry). Artifacts live in files under
    # <data dir>/models/<SYMBOL>/; a row describes one and says whether it trades.
    [
        """CREATE TABLE models (
            model_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, kind TEXT NOT NULL,
            spec TEXT NOT NULL, feature_spec TEXT NOT NULL, label TEXT NOT NULL,
            data_from_ts INTEGER NOT NULL, data_to_ts INTEGER NOT NULL,
            metrics TEXT NOT NULL, created_ns INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('champion', 'challenger', 'retired')),
            artifact TEXT NOT NULL, cycle_id TEXT, updated_ns INTEGER NOT NULL)""",
        "CREATE INDEX models_symbol_status ON models (symbol, status, created_ns)",
    ],
    # 3: at most one paper fill per order, enforced by the database (issue 10). A forexd
    # before this version could book an order twice after a restart; those extra fills
    # happened to the paper account and stay in its history (flagged ``duplicate``), but
    # no new one can be written.
    [
        "ALTER TABLE paper_fills ADD COLUMN duplicate INTEGER NOT NULL DEFAULT 0",
        """UPDATE paper_fills SET duplicate = 1 WHERE rowid NOT IN (
            SELECT MIN(rowid) FROM paper_fills GROUP BY client_id)""",
        """CREATE UNIQUE INDEX paper_fills_one_per_order
            ON paper_fills (client_id) WHERE duplicate = 0""",
    ],
    # 4: protective stops on the paper broker (issue 12). An accepted order keeps its
    # protection (JSON, NULL for none) so a restart cannot queue it naked; the levels that
    # protect each open position, trailing moves included, survive a restart too.
    [
        "ALTER TABLE paper_orders ADD COLUMN protection TEXT",
        """CREATE TABLE paper_protection (
            symbol TEXT PRIMARY KEY, client_id TEXT NOT NULL, side INTEGER NOT NULL,
            stop REAL NOT NULL, take_profit REAL, trail REAL)""",
    ],
]

SCHEMA_VERSION = len(MIGRATIONS)
