"""The model registry: which models exist for a symbol, and which one trades.

Layout: each model is one artifact file, ``<data dir>/models/<SYMBOL>/<model_id>.fxm``
(written atomically by :func:`~forexd.models.artifacts.save_model`), and one row in the
SQLite table ``models`` (schema migration 2) holding what a listing needs without opening
the file: kind, spec, feature spec, label definition, the time range of the training
data, metrics and a status:

* ``champion``: the model that trades the symbol (at most one per symbol);
* ``challenger``: trained and evaluated, lost to the champion, kept with its metrics;
* ``retired``: was champion once, replaced by a newer one.

Writes, options weighed: the training job runs in a worker thread, and writing from there
through its own ``sqlite3`` connection would make a second writer next to the daemon's
:class:`~forexd.storage.db.StorageWriter` — the "database is locked" pattern the writer
exists to prevent. So the daemon writes through the writer's durable ``execute`` from the
event loop, after the job has returned (:meth:`ModelRegistry.aregister`,
:meth:`ModelRegistry.aset_champion`); the worker thread only writes the artifact file.
Offline tools (``forexd models promote``, ``forexd train --register``, tests) have no
writer and use one short transaction on their own connection.

Promotion is a single ``UPDATE`` (the new model becomes champion, the old champion is
retired), so it is atomic on either path and can never leave a symbol with two champions;
its ``EXISTS`` guard makes promoting an unknown id a no-op rather than retiring the champion.
Reads open their own read-only connection per call.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import anyio

from forexd.domain import ns_to_iso
from forexd.errors import ForexdError
from forexd.storage.db import now_ns, open_sync

if TYPE_CHECKING:
    from forexd.storage.db import StorageWriter

ModelStatus = Literal["champion", "challenger", "retired"]
MODEL_STATUSES: tuple[str, ...] = get_args(ModelStatus)
ARTIFACT_SUFFIX = ".fxm"

_COLUMNS = (
    "model_id, symbol, kind, spec, feature_spec, label, data_from_ts, data_to_ts, metrics, "
    "created_ns, status, artifact, cycle_id, updated_ns"
)
SQL_INSERT = f"INSERT INTO models ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SQL_PROMOTE = (
    "UPDATE models SET status = CASE WHEN model_id = ?1 THEN 'champion' ELSE 'retired' END, "
    "updated_ns = ?3 WHERE symbol = ?2 AND (model_id = ?1 OR status = 'champion') "
    "AND EXISTS (SELECT 1 FROM models WHERE model_id = ?1 AND symbol = ?2)"
)


class UnknownModelError(ForexdError):
    """No model with the given id is registered.

    A :class:`~forexd.errors.ForexdError`, not a learning-layer ``ModelError``: the storage
    adapter does not import the learning layer.
    """


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """One row of the registry.

    Attributes:
        model_id: ``<SYMBOL>-<UTC time>-<random>``; sorts by creation time per symbol.
        symbol: the instrument it trades.
        kind: model kind (``logistic``...).
        spec: the :class:`~forexd.models.ModelSpec` as JSON-ready values.
        feature_spec: the :class:`~forexd.features.FeatureSpec` it was trained on.
        label: the label definition it was trained on.
        data_from_ts: open time of the first training row (epoch ns).
        data_to_ts: open time of the last labelled training row (epoch ns).
        metrics: walk-forward and champion/challenger figures, JSON-ready.
        created_ns: when it was registered.
        status: ``champion``, ``challenger`` or ``retired``.
        artifact: file path relative to the models directory.
        cycle_id: the training cycle that produced it (``None`` for offline training).
        updated_ns: when the status last changed.
    """

    model_id: str
    symbol: str
    kind: str
    spec: dict[str, Any]
    feature_spec: dict[str, Any]
    label: dict[str, Any]
    data_from_ts: int
    data_to_ts: int
    metrics: dict[str, Any]
    created_ns: int
    status: str
    artifact: str
    cycle_id: str | None = None
    updated_ns: int = 0

    def row(self) -> tuple[Any, ...]:
        """Values for :data:`SQL_INSERT`."""
        return (
            self.model_id,
            self.symbol,
            self.kind,
            json.dumps(self.spec),
            json.dumps(self.feature_spec),
            json.dumps(self.label),
            self.data_from_ts,
            self.data_to_ts,
            json.dumps(self.metrics, allow_nan=True),
            self.created_ns,
            self.status,
            self.artifact,
            self.cycle_id,
            self.updated_ns or self.created_ns,
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ModelRecord:
        """Parse a row selected with the table's column order."""
        return cls(
            model_id=row[0],
            symbol=row[1],
            kind=row[2],
            spec=json.loads(row[3]),
            feature_spec=json.loads(row[4]),
            label=json.loads(row[5]),
            data_from_ts=int(row[6]),
            data_to_ts=int(row[7]),
            metrics=json.loads(row[8]),
            created_ns=int(row[9]),
            status=row[10],
            artifact=row[11],
            cycle_id=row[12],
            updated_ns=int(row[13]),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values, with ISO times next to the epoch ones."""
        return {
            "model_id": self.model_id,
            "symbol": self.symbol,
            "kind": self.kind,
            "status": self.status,
            "created_at": ns_to_iso(self.created_ns),
            "data_from": ns_to_iso(self.data_from_ts),
            "data_to": ns_to_iso(self.data_to_ts),
            "artifact": self.artifact,
            "cycle_id": self.cycle_id,
            "spec": self.spec,
            "feature_spec": self.feature_spec,
            "label": self.label,
            "metrics": self.metrics,
        }


def new_model_id(symbol: str, created_ns: int) -> str:
    """A unique, time-sortable model id (random suffix: two cycles in one second differ)."""
    when = datetime.fromtimestamp(created_ns / 1e9, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{symbol}-{when}-{secrets.token_hex(3)}"


class ModelRegistry:
    """Registry rows in the daemon's SQLite store plus artifact files; see the module note.

    Args:
        db_path: the store (``DaemonPaths.db``).
        models_dir: where artifacts live (``DaemonPaths.models``).
        writer: the daemon's storage writer; ``None`` offline (writes then use their own
            short transaction).
    """

    def __init__(
        self, db_path: Path, models_dir: Path, writer: StorageWriter | None = None
    ) -> None:
        self.db_path = db_path
        self.models_dir = models_dir
        self.writer = writer

    # -- paths ------------------------------------------------------------------------

    def relative_artifact(self, symbol: str, model_id: str) -> str:
        """Artifact path relative to :attr:`models_dir` (what the row stores)."""
        return f"{symbol}/{model_id}{ARTIFACT_SUFFIX}"

    def artifact_path(self, record_or_symbol: ModelRecord | str, model_id: str = "") -> Path:
        """Absolute artifact path of a record, or of ``(symbol, model_id)``."""
        if isinstance(record_or_symbol, ModelRecord):
            return self.models_dir / record_or_symbol.artifact
        return self.models_dir / self.relative_artifact(record_or_symbol, model_id)

    # -- reads --------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if not self.db_path.exists():
            return []
        conn = open_sync(self.db_path, readonly=True)
        try:
            return [tuple(r) for r in conn.execute(sql, tuple(params)).fetchall()]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a store from before migration 2: no models yet
                return []
            raise
        finally:
            conn.close()

    def list(self, symbol: str | None = None, status: str | None = None) -> list[ModelRecord]:
        """Registered models, newest first, optionally of one symbol and/or status."""
        where, params = [], []
        if symbol is not None:
            where.append("symbol = ?")
            params.append(symbol)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._query(
            f"SELECT {_COLUMNS} FROM models {clause}ORDER BY created_ns DESC, model_id DESC",
            params,
        )
        return [ModelRecord.from_row(r) for r in rows]

    def get(self, model_id: str) -> ModelRecord:
        """The record of ``model_id``.

        Raises:
            UnknownModelError: no such model.
        """
        rows = self._query(f"SELECT {_COLUMNS} FROM models WHERE model_id = ?", (model_id,))
        if not rows:
            raise UnknownModelError(
                f"no model {model_id!r} in {self.db_path}; `forexd models list` shows the ids"
            )
        return ModelRecord.from_row(rows[0])

    def champion_for(self, symbol: str) -> ModelRecord | None:
        """The model trading ``symbol``, or ``None``."""
        found = self.list(symbol, "champion")
        return found[0] if found else None

    # -- writes, offline ----------------------------------------------------------------

    def _write(self, sql: str, params: Sequence[Any]) -> int:
        conn = open_sync(self.db_path)
        try:
            with conn:
                return conn.execute(sql, tuple(params)).rowcount
        finally:
            conn.close()

    def register(self, record: ModelRecord) -> None:
        """Insert ``record`` on an own connection (offline; the daemon uses :meth:`aregister`).

        Raises:
            StorageError: the store cannot be opened.
            sqlite3.IntegrityError: the id is taken.
        """
        self._write(SQL_INSERT, record.row())

    def set_champion(self, model_id: str) -> ModelRecord:
        """Make ``model_id`` its symbol's champion and retire the previous one (offline).

        Raises:
            UnknownModelError: no such model.
        """
        record = self.get(model_id)
        self._write(SQL_PROMOTE, (model_id, record.symbol, now_ns()))
        return self.get(model_id)

    # -- writes, in the daemon ----------------------------------------------------------

    async def aregister(self, record: ModelRecord) -> None:
        """Insert ``record`` durably through the writer (or a worker thread offline).

        Raises:
            StorageError: the write failed.
        """
        if self.writer is not None:
            await self.writer.execute(SQL_INSERT, record.row())
        else:
            await anyio.to_thread.run_sync(self.register, record)

    async def aset_champion(self, symbol: str, model_id: str) -> None:
        """Promote ``model_id`` (of ``symbol``) in one statement, durably.

        Raises:
            StorageError: the write failed.
        """
        if self.writer is not None:
            await self.writer.execute(SQL_PROMOTE, (model_id, symbol, now_ns()))
        else:
            await anyio.to_thread.run_sync(self.set_champion, model_id)
