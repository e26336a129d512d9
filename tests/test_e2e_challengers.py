"""End to end: an ``ml`` symbol with ``challengers = 2`` in ``forexd run`` registers two
challengers per cycle, judged in spawned workers, and keeps one champion."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonProc, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CONFIG = """
[feed]
source = "bundled"
speed = 0
end = "{end}"

[[symbols]]
symbol = "EURUSD"
strategy = "ml"

[symbols.params]
lookback_candles = 600
retrain_every_bars = {every}
challengers = 2
walk_forward = {{ n_folds = 3, min_train_rows = 60 }}
model = {{ kind = "random_forest", hyperparameters = {{ n_estimators = 12, max_depth = 4 }} }}
"""


def _rows(data: Path) -> list[tuple[str, str, str, dict[str, object]]]:
    with sqlite3.connect(data / "forexd.db") as conn:
        rows = conn.execute("SELECT model_id, cycle_id, status, metrics FROM models").fetchall()
    return [(str(m), str(c), str(s), json.loads(x)) for m, c, s, x in rows]


def _check_cycle(finished: dict[str, object], data: Path) -> None:
    """Two challengers registered for the cycle, as its log line says."""
    entries = finished["challengers"]
    assert isinstance(entries, list)
    assert [0, 1] == [e["seed"] for e in entries], json.dumps(finished)[:2000]
    assert ["ok", "ok"] == [e["status"] for e in entries]
    rows = [r for r in _rows(data) if r[1] == finished["cycle_id"]]
    assert {e["model_id"] for e in entries} == {r[0] for r in rows}
    for model_id, _, _, metrics in rows:
        comparison = metrics["comparison"]
        assert isinstance(comparison, dict)
        (shown,) = [e for e in entries if e["model_id"] == model_id]
        assert shown["score"] == comparison["score"]
        assert shown["promoted"] == comparison["promote"]


def _finished(d: DaemonProc) -> list[dict[str, object]]:
    return [line for line in d.lines if line.get("event") == "training_cycle_finished"]


def test_two_challengers_per_cycle_and_one_champion(
    short_tmp: Path, daemon_factory: type[DaemonProc]
) -> None:
    """Each cycle registers two challenger rows; the best one (or none) is promoted."""
    data = short_tmp / "data"
    first_cfg = write_config(short_tmp / "first.toml", CONFIG.format(end="2017-03-15", every=500))
    d = daemon_factory(data, first_cfg, "--exit-when-done")
    first = d.wait_for("training_cycle_finished", timeout=240, symbol="EURUSD")
    assert "promoted" == first["decision"], json.dumps(first)[:2000]
    assert first["evaluation"]["workers"] >= 1
    assert 0 == d.wait(timeout=240)
    cycles = _finished(d)

    # Restarted with the champion loaded: the next cycle judges it with both challengers.
    again = write_config(short_tmp / "again.toml", CONFIG.format(end="2017-04-01", every=100))
    d = daemon_factory(data, again, "--exit-when-done")
    d.wait_for("champion_loaded", symbol="EURUSD", model_id=cycles[-1]["promoted"] or "")
    second = d.wait_for("training_cycle_finished", timeout=240, symbol="EURUSD")
    assert second["champion_score"] is not None, json.dumps(second)[:2000]
    assert 0 == d.wait(timeout=240)
    cycles += _finished(d)

    for finished in cycles:
        assert "error" not in finished, json.dumps(finished)[:2000]
        _check_cycle(finished, data)
    rows = _rows(data)
    per_cycle = Counter(cycle for _, cycle, _, _ in rows)
    assert {f["cycle_id"] for f in cycles} == set(per_cycle)
    assert {2} == set(per_cycle.values()), per_cycle  # every cycle: two challenger rows
    statuses = Counter(status for _, _, status, _ in rows)
    assert 1 == statuses["champion"], statuses
    champion = next(m for m, _, s, _ in rows if s == "champion")
    assert champion == [f["promoted"] for f in cycles if f["promoted"]][-1]
