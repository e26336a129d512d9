"""GPU check (issue 14): train four models on one GPU in parallel, then compare them there.

Where a CUDA GPU exists it:

1. trains four models (mlp, gru, recurrent_ppo, mlp with another seed) on the bundled
   EURUSD H1 sample, each in its own spawned process on the GPU, all four at once, and
   prints each one's wall time and the device memory before and after;
2. compares the four with :func:`forexd.rl.compare.compare_models` on that GPU (spawned
   workers, one semaphore for the device, ``--slots`` models on it at once, a timeout on
   every wait), printing per-model timings, peak device memory and whether the CUDA cache
   cleanup after each evaluation freed the reserved memory;
3. prints the device memory after everything (the parent holds no CUDA context at all).

Without a GPU (or without torch) it says so and exits 0. CI runs everything on the CPU.

Usage: python benchmarks/bench_gpu.py [--device cuda:0] [--slots 2] [--timesteps 4096]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS: list[tuple[str, dict[str, Any], int]] = [
    ("mlp", {"kind": "mlp", "hyperparameters": {"max_epochs": 20}}, 0),
    ("gru", {"kind": "gru", "hyperparameters": {"max_epochs": 10, "window": 24}}, 0),
    ("recurrent_ppo", {"kind": "recurrent_ppo", "hyperparameters": {}}, 0),
    ("mlp_seed1", {"kind": "mlp", "hyperparameters": {"max_epochs": 20}}, 1),
]
LOOKBACK = 3000


def _gpu_memory(device: str) -> dict[str, int]:
    """Free and total device memory as the driver sees it (all processes)."""
    import torch

    free, total = torch.cuda.mem_get_info(torch.device(device))
    return {"free_bytes": int(free), "used_bytes": int(total - free), "total_bytes": int(total)}


def _train_one(name: str, model: dict[str, Any], seed: int, device: str, timesteps: int,
               out_dir: str) -> dict[str, Any]:  # fmt: skip
    """Train one model on ``device`` in this (spawned) process and save its artifact."""
    import torch

    from forexd.models.artifacts import save_model
    from forexd.rl.trainer import train_cycle
    from forexd.strategies.ml_params import MlParams
    from tests._mlsupport import SMALL_WF, bundled_candles

    torch.set_num_threads(1)
    if model["kind"] == "recurrent_ppo":
        model = {**model, "hyperparameters": {"timesteps": timesteps}}
    params = MlParams(model=model, lookback_candles=LOOKBACK, walk_forward=SMALL_WF, seed=seed,
                      device=device)  # fmt: skip
    started = time.perf_counter()
    result = train_cycle(bundled_candles(LOOKBACK + 500), params, symbol="EURUSD",
                         pip_size=0.0001, n_jobs=1, device=device)  # fmt: skip
    seconds = time.perf_counter() - started
    path = Path(out_dir) / f"{name}.fxm"
    save_model(result.model, path)
    peak = int(torch.cuda.max_memory_allocated(device))
    reserved = int(torch.cuda.memory_reserved(device))
    torch.cuda.empty_cache()
    return {
        "model": name,
        "train_s": round(seconds, 2),
        "oos_sharpe": result.walk_forward.trading.sharpe,
        "peak_allocated_bytes": peak,
        "reserved_before_cleanup_bytes": reserved,
        "reserved_after_cleanup_bytes": int(torch.cuda.memory_reserved(device)),
        "artifact": str(path),
    }


def main() -> int:
    """Run the check; exit 0 without a GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--slots", type=int, default=2, help="models on the GPU at once")
    parser.add_argument("--timesteps", type=int, default=4096)
    parser.add_argument("--timeout-s", type=float, default=600.0)
    parser.add_argument("--quick", action="store_true", help="1,024 timesteps (make bench)")
    args = parser.parse_args()
    if args.quick:
        args.timesteps = 1024
    try:
        import torch
    except ImportError:
        print("bench_gpu: torch is not installed; no GPU check (pip install 'forexd[rl]')")
        return 0
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU on this machine; nothing to check (CI runs on the CPU)")
        return 0
    from forexd.models.device import device_key
    from forexd.rl.compare import compare_models
    from forexd.rl.compare_worker import ModelRef
    from tests._mlsupport import bundled_candles

    device = device_key(args.device)
    report: dict[str, Any] = {"device": device, "gpu": torch.cuda.get_device_name(device)}
    # mem_get_info creates a CUDA context in this process; it is only for the report, and
    # every child is spawned (never forked), so the context is never inherited.
    report["memory_before"] = _gpu_memory(device)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp, ctx.Pool(len(MODELS)) as pool:
        started = time.perf_counter()
        jobs = [pool.apply_async(_train_one, (n, m, s, device, args.timesteps, tmp))
                for n, m, s in MODELS]  # fmt: skip
        trained = [j.get(timeout=args.timeout_s) for j in jobs]
        report["train_parallel_s"] = round(time.perf_counter() - started, 2)
        report["trained"] = trained
        report["memory_after_training"] = _gpu_memory(device)
        refs = [ModelRef(t["model"], t["artifact"]) for t in trained]
        result = compare_models(refs, bundled_candles(2000), symbol="EURUSD", device=device,
                                workers=len(refs), slots=args.slots,
                                timeout_s=args.timeout_s)  # fmt: skip
        report["compare"] = result.to_dict()
    report["memory_after"] = _gpu_memory(device)
    report["cleanup_freed_every_model"] = all(
        m.get("cuda_memory", {}).get("cleanup_freed", False) for m in report["compare"]["models"]
    )
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
