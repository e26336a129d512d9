"""What runs inside a comparison worker process (spawned; see :mod:`forexd.rl.compare`).

A worker is a fresh interpreter: it caps its BLAS/OpenMP/torch threads, then serves jobs
from its own pipe until told to stop. Per job it takes the device's semaphore (with a
timeout), loads the model, computes its features over the data, predicts every bar in one
batched call, trades the signs in the backtest simulation, frees the model (and the CUDA
cache) and answers on its own pipe. With a window plan (``WorkerSetup.window``: a training
cycle judging its challengers) a job instead scores one model on that window
(:func:`forexd.rl.window_eval.score_on_window`). Pipes are per worker, never shared: a worker killed
mid-write can then not leave a lock held that other workers need.
"""

from __future__ import annotations

import gc
import importlib
import sys
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from forexd.brokers.ledger import CostModel
from forexd.models.trainconfig import Candles

if TYPE_CHECKING:
    from forexd.rl.window_eval import WindowPlan

DEFAULT_LOADER = "forexd.rl.compare_worker:load_artifact"
DEFAULT_REFIT = "forexd.rl.window_eval:refit"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """One model to compare.

    Attributes:
        name: what the report calls it (the registry id).
        path: its artifact file.
        loader: ``module:function`` the worker calls as ``loader(path, device)`` to get a
            ``TrainedModel``; the default loads a forexd artifact (tests pass their own).
        config: window jobs only: a challenger's training configuration; the worker
            refits it on the bars before the window instead of loading ``path``.
        refit: ``module:function`` called as ``refit(config, x, setup)`` for that refit
            (tests pass one that hangs).
    """

    name: str
    path: str | None
    loader: str = DEFAULT_LOADER
    config: Any = None
    refit: str = DEFAULT_REFIT


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What every job of one comparison shares (sent once per worker)."""

    candles: Candles
    symbol: str
    costs: CostModel
    units: int
    initial_balance: float
    periods_per_year: float
    device: str
    threads: int
    acquire_timeout_s: float
    window: WindowPlan | None = None


def load_artifact(path: str, device: str) -> Any:
    """The default loader: a forexd model artifact."""
    from forexd.models.artifacts import load_model

    return load_model(Path(path), device=device, n_jobs=1)


def load_function(spec: str) -> Any:
    """The function named ``module:function`` (the worker's hooks are named, not pickled)."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def evaluate(ref: ModelRef, setup: WorkerSetup) -> dict[str, Any]:
    """Trade ``ref`` over the data; the figures of one model (runs in the worker)."""
    from forexd.features import FeatureSpec, compute_features, first_valid_index
    from forexd.rl.sim import BarSim, model_signs, simulate_signs

    started = time.perf_counter()
    model = load_function(ref.loader)(ref.path, setup.device)
    meta = model.metadata
    features = FeatureSpec(**meta["features"])
    c = setup.candles
    x = compute_features(c.open, c.high, c.low, c.close, c.ts, features).matrix
    start = first_valid_index(x) + model.context_rows
    end = len(c) - 1
    if end - start < 2:
        raise ValueError(f"{len(c)} bars leave nothing to trade after {start} warm-up bars")
    threshold = float(meta.get("entry_threshold", 0.55))
    predict_s = time.perf_counter()
    signs = model_signs(model, x, start, end, threshold)  # one batched prediction
    predict_s = time.perf_counter() - predict_s
    sim = BarSim(
        setup.symbol,
        c,
        costs=setup.costs,
        units=setup.units,
        initial_balance=setup.initial_balance,
    )
    run = simulate_signs(sim, start, signs)
    # Bars inside the model's training range: its score there is not out of sample.
    lo, hi = meta.get("data_from_ts"), meta.get("data_to_ts")
    traded = c.ts[start:end]
    in_sample = 0
    if lo is not None and hi is not None:
        in_sample = int(np.count_nonzero((traded >= int(lo)) & (traded <= int(hi))))
    out = {
        "kind": model.spec.kind,
        "pnl": run.total_pnl,
        "metrics": run.metrics(setup.periods_per_year).to_dict(),
        "fills": run.fills,
        "bars": end - start,
        "in_sample_bars": in_sample,
        "predict_s": predict_s,
        "seconds": time.perf_counter() - started,
    }
    del model
    memory = free_device_memory(setup.device)
    if memory is not None:
        out["cuda_memory"] = memory
    return out


def free_device_memory(device: str) -> dict[str, Any] | None:
    """Drop the model's memory; on a GPU, say what the CUDA cache held and what it freed."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None or not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    before = int(torch.cuda.memory_reserved(device))
    torch.cuda.empty_cache()
    after = int(torch.cuda.memory_reserved(device))
    return {
        "peak_allocated_bytes": int(torch.cuda.max_memory_allocated(device)),
        "allocated_after_bytes": int(torch.cuda.memory_allocated(device)),
        "reserved_before_cleanup_bytes": before,
        "reserved_after_cleanup_bytes": after,
        "cleanup_freed": after < before or after == 0,
    }


def _cap_threads(threads: int) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def _warm_imports(window: WindowPlan | None) -> None:
    """Import what every evaluation needs before the first job: a worker's start-up then
    does not count against a model's evaluation timeout."""
    names = ["forexd.features", "forexd.models.artifacts", "forexd.rl.sim", "skops.io"]
    if window is not None:  # a cycle's window: challengers are refitted here
        names += ["forexd.rl.window_eval", "forexd.models.fit", "forexd.strategies.ml_params"]
    for name in names:
        importlib.import_module(name)


def worker_main(
    slot: int, jobs: Connection, results: Connection, sem: Any, held: Any, setup: WorkerSetup
) -> None:
    """Serve jobs ``(index, ModelRef)`` from ``jobs`` until ``None`` arrives.

    Messages sent: ``("acquired", index)`` once the device slot is held (the parent's
    evaluation timeout starts then), and ``("done", index, status, payload)``.
    """
    _cap_threads(setup.threads)
    _warm_imports(setup.window)
    score = evaluate
    if setup.window is not None:
        from forexd.rl.window_eval import score_on_window

        score = score_on_window
    while True:
        job = jobs.recv()
        if job is None:
            return
        index, ref = job
        if not sem.acquire(timeout=setup.acquire_timeout_s):
            results.send(("done", index, "device_timeout", f"no slot on {setup.device} within "
                          f"{setup.acquire_timeout_s} s"))  # fmt: skip
            continue
        held[slot] = 1  # the parent releases for us if it has to kill us from here on
        results.send(("acquired", index))
        try:
            payload: Any = score(ref, setup)
            status = "ok"
        except Exception as exc:  # reported per model; the other models carry on
            status = "error"
            payload = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        finally:
            sem.release()
            held[slot] = 0
        results.send(("done", index, status, payload))
