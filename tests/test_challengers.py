"""The daemon's cycle with K challengers, in process: trained in parallel in a real compute
pool, judged with the champion in spawned workers, the best promoted by the usual rule."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from pydantic import ValidationError

from forexd.daemon import challengers
from forexd.daemon.trainer import ModelTrainer
from forexd.daemon.training import TrainContext
from forexd.models.champion import LiveChampion
from forexd.storage.model_registry import ModelRecord, ModelRegistry
from forexd.strategies.ml_params import MlParams
from tests._fxdata import one_thread
from tests._mlsupport import SMALL_WF, bundled_frame, history_of, store_candles, train_context

pytestmark = pytest.mark.anyio

FOREST = {"kind": "random_forest", "hyperparameters": {"n_estimators": 12, "max_depth": 4}}
"""A seed-dependent model (a logistic regression gives K identical challengers)."""
FIRST_END, SECOND_END = 1500, 1800  # bars the actor holds at the first and second cycle
HANG_TIMEOUT_S = 15.0


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture
def ctx(tmp_path: Path) -> TrainContext:
    """Two workers and two symbol slots over a store holding 1,800 bundled bars."""
    context = train_context(tmp_path, workers=2, symbols=2)
    store_candles(context.paths, bundled_frame().iloc[:SECOND_END])
    return context


def _params(k: int, **more: Any) -> MlParams:
    return MlParams(
        lookback_candles=600, walk_forward=SMALL_WF, model=FOREST, challengers=k, **more
    )


def _trainer(ctx: TrainContext, params: MlParams) -> tuple[ModelTrainer, list[str]]:
    handed: list[str] = []

    async def hand_over(live: LiveChampion) -> None:
        handed.append(live.model_id)

    return ModelTrainer(ctx, "EURUSD", params, hand_over), handed


async def _cycle(trainer: ModelTrainer, end: int) -> dict[str, Any]:
    times = history_of(bundled_frame().iloc[:end], 200).times()
    await trainer.train_cycle(times, "test")
    stats = trainer.stats()
    assert stats["last_error"] is None, stats
    last: dict[str, Any] = stats["last_cycle"]
    return last


async def _rows(ctx: TrainContext) -> list[ModelRecord]:
    registry = ModelRegistry(ctx.paths.db, ctx.paths.models)
    return await anyio.to_thread.run_sync(lambda: registry.list("EURUSD"))


def _check_best_is_promoted_and_rows_agree(
    last: dict[str, Any], rows: list[ModelRecord], k: int, champion_before: str | None
) -> None:
    """The invariant of a K-challenger cycle, on its log entry and the registry rows."""
    entries = last["challengers"]
    assert list(range(k)) == [e["seed"] for e in entries]
    assert ["ok"] * k == [e["status"] for e in entries]
    scores = [e["score"] for e in entries]
    assert all(math.isfinite(s) for s in scores)
    best = min(entries, key=lambda e: (e["score"], e["seed"]))
    assert 1 == best["rank"]
    assert sorted(range(1, k + 1)) == sorted(e["rank"] for e in entries)
    cycle_rows = {r.model_id: r for r in rows if r.cycle_id == last["cycle_id"]}
    assert {e["model_id"] for e in entries} == set(cycle_rows)
    for e in entries:  # each row stores its own comparison, the same figures as the log
        comparison = cycle_rows[e["model_id"]].metrics["comparison"]
        assert (e["score"], e["rank"], "ok") == (
            comparison["score"], comparison["rank"], comparison["status"]
        )  # fmt: skip
        assert e["score"] == comparison["challenger_log_loss"]
        assert comparison["promote"] == e["promoted"]
    champion_score = last["champion_score"]
    if champion_before is None:
        should_promote = True
        assert champion_score is None
    else:
        margin = cycle_rows[best["model_id"]].metrics["comparison"]["margin"]
        should_promote = champion_score - best["score"] >= margin
    champions = [r.model_id for r in rows if r.status == "champion"]
    assert 1 == len(champions)
    if should_promote:
        assert "promoted" == last["decision"]
        assert best["model_id"] == last["promoted"] == champions[0]
        assert [best["model_id"]] == [e["model_id"] for e in entries if e["promoted"]]
        retired = {r.model_id for r in rows if r.status == "retired"}
        assert ({champion_before} if champion_before else set()) == retired
    else:
        assert "kept_champion" == last["decision"]
        assert last["promoted"] is None
        assert [champion_before] == champions
        assert not any(e["promoted"] for e in entries)
    others = set(cycle_rows) - {last["promoted"]}
    assert {"challenger"} == {cycle_rows[m].status for m in others}


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3, 8])
async def test_k_challengers_are_judged_together_and_the_best_is_promoted(
    ctx: TrainContext, k: int
) -> None:
    """K seeds train in parallel; champion and challengers are scored on one window in
    spawned workers; the best challenger is promoted iff it beats the champion's score."""
    trainer, handed = _trainer(ctx, _params(k))
    first = await _cycle(trainer, FIRST_END)
    rows = await _rows(ctx)
    assert k == len(rows)
    _check_best_is_promoted_and_rows_agree(first, rows, k, None)
    assert first["evaluation"]["workers"] == min(2, k)  # within train_workers
    assert [first["promoted"]] == handed
    assert first["promoted"] == trainer.stats()["champion"]["model_id"]

    second = await _cycle(trainer, SECOND_END)
    rows = await _rows(ctx)
    assert 2 * k == len(rows)
    assert second["champion_score"] is not None  # the champion was scored on the window
    assert second["evaluation"]["rows"] >= 10
    assert second["evaluation"]["window_from"] > first["evaluation"]["window_to"]
    _check_best_is_promoted_and_rows_agree(second, rows, k, first["promoted"])
    champion = second["promoted"] or first["promoted"]
    assert champion == trainer.stats()["champion"]["model_id"]


async def test_one_challenger_keeps_the_comparison_inside_its_training_job(
    ctx: TrainContext,
) -> None:
    """K = 1 is the cycle as before: judged in its job, no evaluation workers started."""
    trainer, _ = _trainer(ctx, _params(1))
    first = await _cycle(trainer, FIRST_END)
    second = await _cycle(trainer, SECOND_END)
    assert "evaluation" not in first and "evaluation" not in second
    (entry,) = second["challengers"]
    rows = {r.model_id: r for r in await _rows(ctx)}
    comparison = rows[entry["model_id"]].metrics["comparison"]
    assert "status" not in comparison  # the training job's own comparison, unchanged
    assert entry["score"] == comparison["challenger_log_loss"]
    assert (second["decision"] == "promoted") == comparison["promote"] == entry["promoted"]


@pytest.mark.slow
async def test_a_hung_evaluation_is_killed_at_its_timeout_and_the_best_other_is_promoted(
    ctx: TrainContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The challenger whose evaluation hangs is killed at the timeout and reported; the
    others are still judged and the best of them is promoted."""
    monkeypatch.setattr(challengers, "REFIT", "tests._hang_model:refit_hangs_for_seed_1")
    trainer, handed = _trainer(ctx, _params(3, train_timeout_s=HANG_TIMEOUT_S))
    last = await _cycle(trainer, FIRST_END)
    by_seed = {e["seed"]: e for e in last["challengers"]}
    hung = by_seed[1]
    assert "timeout" == hung["status"]
    assert "exceeded its timeout" in hung["error"]
    assert hung["score"] is None and hung["rank"] is None and not hung["promoted"]
    others = [by_seed[0], by_seed[2]]
    assert ["ok", "ok"] == [e["status"] for e in others]
    best = min(others, key=lambda e: e["score"])
    assert best["model_id"] == last["promoted"] == trainer.stats()["champion"]["model_id"]
    assert [best["model_id"]] == handed
    assert HANG_TIMEOUT_S <= last["evaluation"]["seconds"] < HANG_TIMEOUT_S + 120
    rows = {r.model_id: r for r in await _rows(ctx)}
    assert "challenger" == rows[hung["model_id"]].status  # registered, never promoted
    assert "timeout" == rows[hung["model_id"]].metrics["comparison"]["status"]
    assert "champion" == rows[best["model_id"]].status


def test_challengers_out_of_range_is_refused_with_the_bounds() -> None:
    """challengers must be 1..16, and the seeds it implies must stay 32-bit."""
    with pytest.raises(ValidationError, match="challengers"):
        MlParams(challengers=0)
    with pytest.raises(ValidationError, match="less than or equal to 16"):
        MlParams(challengers=17)
    with pytest.raises(ValidationError, match="would use seeds up to 4294967296"):
        MlParams(challengers=2, seed=2**32 - 1)
    assert [0, 1, 2] == [p.seed for p in challengers.challenger_params(MlParams(challengers=3))]


def _evaluation_workers() -> list[psutil.Process]:
    """This process's spawned multiprocessing workers (not its resource tracker)."""
    return [
        c
        for c in psutil.Process().children()
        if "spawn_main" in " ".join(c.cmdline()) and c.is_running()
    ]


@pytest.mark.slow
async def test_a_cancelled_cycle_kills_its_evaluation_workers_and_leaves_no_files(
    ctx: TrainContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ctl cancel or a shutdown during the judging: workers killed, tokens back, no rows and
    no artifact files left behind, the champion (none here) unchanged."""
    monkeypatch.setattr(challengers, "REFIT", "tests._hang_model:refit_hangs_for_seed_1")
    trainer, handed = _trainer(ctx, _params(2, train_timeout_s=300))
    times = history_of(bundled_frame().iloc[:FIRST_END], 200).times()
    async with anyio.create_task_group() as tg:
        tg.start_soon(trainer.train_cycle, times, "test")
        with anyio.fail_after(120):  # until the judging has started its workers
            # Another process's existence has no event to await: poll for it.
            while trainer.stats()["state"] != "evaluating" or not _evaluation_workers():  # noqa: ASYNC110
                await anyio.sleep(0.05)
        workers = _evaluation_workers()
        tg.cancel_scope.cancel()
    assert tg.cancel_scope.cancelled_caught
    _, alive = await anyio.to_thread.run_sync(lambda: psutil.wait_procs(workers, timeout=10))
    assert [] == alive
    assert [] == await _rows(ctx)
    files = await anyio.to_thread.run_sync(lambda: list(ctx.paths.models.rglob("*.fxm")))
    assert [] == files
    assert [] == handed
    assert trainer.stats()["champion"] is None
    with anyio.fail_after(10):  # the judging's worker tokens are handed back
        async with ctx.pool.limiter:
            assert 1 == ctx.pool.stats().running
