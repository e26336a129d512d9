"""The model registry: rows in SQLite, one champion per symbol, writes through the writer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from forexd.storage.db import StorageWriter, open_sync
from forexd.storage.model_registry import (
    ModelRecord,
    ModelRegistry,
    UnknownModelError,
    new_model_id,
)


def _record(model_id: str, symbol: str = "EURUSD", created: int = 1, **kw: object) -> ModelRecord:
    values: dict[str, object] = {
        "model_id": model_id,
        "symbol": symbol,
        "kind": "logistic",
        "spec": {"kind": "logistic", "hyperparameters": {"c": 1.0}},
        "feature_spec": {"return_horizons": [1]},
        "label": {"kind": "direction", "horizon": 6},
        "data_from_ts": 10,
        "data_to_ts": 20,
        "metrics": {"oos_log_loss": 0.9, "folds": [1, 2]},
        "created_ns": created,
        "status": "challenger",
        "artifact": f"{symbol}/{model_id}.fxm",
    }
    values.update(kw)
    return ModelRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    """A registry over a fresh store."""
    open_sync(tmp_path / "forexd.db").close()
    return ModelRegistry(tmp_path / "forexd.db", tmp_path / "models")


def test_registered_record_reads_back_equal(registry: ModelRegistry) -> None:
    """register then get returns the same record, JSON columns included."""
    rec = _record("a", cycle_id="EURUSD-c1", updated_ns=1)
    registry.register(rec)
    assert rec == registry.get("a")
    assert [rec] == registry.list()


def test_promotion_retires_the_previous_champion(registry: ModelRegistry) -> None:
    """set_champion makes one champion per symbol; the old one becomes retired."""
    for i, mid in enumerate(("a", "b", "c")):
        registry.register(_record(mid, created=i))
    registry.register(_record("g", symbol="GBPUSD", status="champion"))
    registry.set_champion("a")
    registry.set_champion("b")
    assert "b" == (registry.champion_for("EURUSD") or _record("none")).model_id
    statuses = {r.model_id: r.status for r in registry.list("EURUSD")}
    assert {"a": "retired", "b": "champion", "c": "challenger"} == statuses
    assert "champion" == registry.get("g").status  # other symbols are untouched


def test_promoting_an_unknown_id_is_an_error_and_keeps_the_champion(
    registry: ModelRegistry,
) -> None:
    """An unknown id raises a typed error naming it; the champion stays."""
    registry.register(_record("a", status="champion"))
    with pytest.raises(UnknownModelError, match="'nope'"):
        registry.set_champion("nope")
    assert "a" == (registry.champion_for("EURUSD") or _record("none")).model_id


def test_promote_statement_for_another_symbols_model_changes_nothing(
    registry: ModelRegistry,
) -> None:
    """The one-statement promotion is guarded: a model of another symbol is not promoted."""
    from forexd.storage.model_registry import SQL_PROMOTE

    registry.register(_record("a", status="champion"))
    registry.register(_record("g", symbol="GBPUSD"))
    conn = open_sync(registry.db_path)
    with conn:
        assert 0 == conn.execute(SQL_PROMOTE, ("g", "EURUSD", 5)).rowcount
    conn.close()
    assert "champion" == registry.get("a").status


def test_list_filters_and_orders_newest_first(registry: ModelRegistry) -> None:
    """list() is newest first and filters by symbol and status."""
    registry.register(_record("old", created=1))
    registry.register(_record("new", created=2))
    registry.register(_record("gbp", symbol="GBPUSD", created=3))
    assert ["gbp", "new", "old"] == [r.model_id for r in registry.list()]
    assert ["new", "old"] == [r.model_id for r in registry.list("EURUSD")]
    assert [] == registry.list("EURUSD", "champion")


def test_store_without_the_models_table_lists_nothing(tmp_path: Path) -> None:
    """A store from before migration 2 (or none at all) reads as an empty registry."""
    sqlite3.connect(tmp_path / "old.db").close()
    assert [] == ModelRegistry(tmp_path / "old.db", tmp_path).list()
    assert ModelRegistry(tmp_path / "absent.db", tmp_path).champion_for("EURUSD") is None


def test_model_ids_are_unique_and_sort_by_time() -> None:
    """Ids carry the symbol and UTC time; two in the same second still differ."""
    a, b = new_model_id("EURUSD", 10**18), new_model_id("EURUSD", 10**18)
    assert a != b
    assert a.startswith("EURUSD-20010909T014640Z-")
    assert new_model_id("EURUSD", 2 * 10**18) > a


@pytest.mark.anyio
async def test_daemon_writes_go_through_the_storage_writer(tmp_path: Path) -> None:
    """aregister/aset_champion use the writer's durable execute; readers see the result."""
    db = tmp_path / "forexd.db"
    writer = StorageWriter(db)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        registry = ModelRegistry(db, tmp_path / "models", writer)
        await registry.aregister(_record("a", status="champion"))
        await registry.aregister(_record("b", created=2))
        await registry.aset_champion("EURUSD", "b")
        statements = writer.stats().statements
        await writer.close()
        tg.cancel_scope.cancel()
    assert statements >= 3
    # The sync reader from a worker thread: blocking SQLite on the loop is what this avoids.
    records = await anyio.to_thread.run_sync(ModelRegistry(db, tmp_path).list)
    assert {"a": "retired", "b": "champion"} == {r.model_id: r.status for r in records}


@pytest.mark.anyio
async def test_offline_async_writes_use_their_own_transaction(registry: ModelRegistry) -> None:
    """Without a writer the async methods fall back to the offline path."""
    await registry.aregister(_record("a"))
    await registry.aset_champion("EURUSD", "a")
    assert "champion" == (await anyio.to_thread.run_sync(registry.get, "a")).status
