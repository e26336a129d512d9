"""What a cleanup's garbage collection costs the event loop, per collector policy.

A collection holds the GIL from start to end, whichever thread runs it, so its wall time is
loop lag. This benchmark builds a daemon-sized heap in a fresh interpreter per policy:

1. the daemon's runtime modules are imported and ``gc.freeze()``-d (what the supervisor
   does once start-up is done);
2. a "first training cycle" imports what a real one loads lazily (scikit-learn, the skops
   artifact format, which pulls in torch when it is installed), fits a small forest, and
   leaves cyclic garbage that lived long enough to reach the oldest generation;
3. the cleanup's collector policy runs, and is timed (``gc.callbacks``);
4. steps 2–3 again, without new imports (a steady-state cycle).

Every garbage object is watched with a weak reference: ``freed_pct`` says how much of the
cycle's cyclic garbage the policy released (100 = the memory promise kept at once).

Policies: ``legacy`` (the old two full passes), ``G:F`` with G the generation collected and
F the freeze rule of :class:`forexd.daemon.cleanup.GcPolicy` (``2:new_modules`` is the
daemon's). Usage: ``python benchmarks/bench_gc.py [--quick] [POLICY ...]`` prints one JSON
object (``--quick``: only the old policy and the daemon's).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve()
POLICIES = ("legacy", "2:never", "1:never", "2:always", "2:new_modules")
QUICK_POLICIES = ("legacy", "2:new_modules")
# Reference cycles left per training cycle: a full pass in the ml3 daemon collected 86-210
# objects per cycle; 1,000 two-object cycles is a generous margin above that.
GARBAGE_CYCLES = 1_000


class GcPauses:
    """Every cyclic-GC pass while installed: generation, wall time, objects collected.

    ``summary()`` gives, per generation, the passes, p50/max/total milliseconds and the
    objects collected; ``overlaps()`` tells whether a pass ran during a given interval
    (was a late loop wake-up a collection?).
    """

    def __init__(self) -> None:
        self.passes: list[tuple[int, float, int]] = []  # (generation, ms, collected)
        self.spans: list[tuple[float, float, int]] = []  # (start, end, generation), perf_counter
        self._started = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            end, gen = time.perf_counter(), info["generation"]
            self.passes.append((gen, (end - self._started) * 1000, info["collected"]))
            self.spans.append((self._started, end, gen))

    def overlaps(self, start: float, end: float, min_generation: int = 0) -> bool:
        """Whether a pass of ``min_generation`` or older ran during ``[start, end]``."""
        return any(s < end and e > start and g >= min_generation for s, e, g in self.spans)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per generation: passes, p50/max/total ms, objects collected."""
        out: dict[str, dict[str, float]] = {}
        for gen in (0, 1, 2):
            ms = sorted(m for g, m, _ in self.passes if g == gen)
            if ms:
                out[f"gen{gen}"] = {
                    "passes": len(ms),
                    "p50_ms": round(ms[len(ms) // 2], 3),
                    "max_ms": round(ms[-1], 3),
                    "total_ms": round(sum(ms), 1),
                    "collected": sum(c for g, _, c in self.passes if g == gen),
                }
        return out


def apply_policy(spec: str) -> None:
    """Make the process-wide cleanup use policy ``spec`` (see the module note)."""
    from forexd.daemon import cleanup

    if spec == "legacy":

        def two_full_passes() -> bool:
            gc.collect()
            gc.collect()
            return True

        hooks = tuple((n, two_full_passes if n == "gc" else f) for n, f in cleanup.BUILTIN_HOOKS)
        cleanup._default = cleanup.CleanupRegistry(hooks)
        return
    generation, freeze = spec.split(":")
    cleanup.collect_garbage.generation = int(generation)
    cleanup.collect_garbage.freeze = freeze  # type: ignore[assignment]


class _Node:
    """A garbage object: weak-referenceable, holding a buffer so a leak would show in RSS."""

    def __init__(self) -> None:
        self.peer: _Node | None = None
        self.payload = bytearray(256)


def _training_garbage(n: int) -> list[weakref.ref[_Node]]:
    """``n`` two-node reference cycles, aged into the oldest generation, then dropped."""
    live: list[_Node] = []
    for _ in range(n):
        a, b = _Node(), _Node()
        a.peer, b.peer = b, a
        live.append(a)
    refs = [weakref.ref(a) for a in live]
    gc.collect(1)  # still alive: promoted to generation 2, as seconds of training do
    del live, a, b
    return refs


def _first_cycle_imports() -> None:
    """What a real first cycle loads: sklearn, skops (and what it pulls in), one fit."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from forexd.models import artifacts  # noqa: F401 - imported as the trainer does

    try:
        import skops.io

        x = np.random.default_rng(0).normal(size=(500, 8))
        model = RandomForestClassifier(n_estimators=10, max_depth=4).fit(x, x[:, 0] > 0)
        skops.io.dumps(model)
    except ImportError:  # skops absent: the sklearn imports above are the heap
        pass


def part_policy(spec: str) -> dict[str, Any]:
    """One policy on a fresh daemon-sized heap: pauses and garbage freed, two cycles."""
    import forexd.daemon.supervisor  # noqa: F401 - the daemon's runtime modules
    from forexd.daemon.cleanup import run_cleanup

    apply_policy(spec)
    gc.collect()
    gc.freeze()  # the supervisor's freeze at the end of start-up
    frozen_at_start = gc.get_freeze_count()
    out: dict[str, Any] = {"policy": spec, "frozen_at_startup": frozen_at_start}
    for name, work in (("first_cycle", _first_cycle_imports), ("steady_cycle", None)):
        if work is not None:
            work()
        refs = _training_garbage(GARBAGE_CYCLES)
        tracked = len(gc.get_objects())
        with GcPauses() as pauses:
            report = run_cleanup()
        out[name] = {
            "tracked_before": tracked,
            "gc_pause_ms_total": round(sum(ms for _, ms, _ in pauses.passes), 1),
            "passes": [(g, round(ms, 1)) for g, ms, _ in pauses.passes],
            "freed_pct": round(100 * sum(r() is None for r in refs) / len(refs), 1),
            "frozen_after": gc.get_freeze_count(),
            "report_gc": report.log_fields().get("gc_generation"),
        }
    return out


def main() -> None:
    """Run each policy in its own interpreter (a freeze cannot be taken back cleanly)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policies", nargs="*", help=f"policies to compare (default: {POLICIES})")
    parser.add_argument("--quick", action="store_true", help="the old and the daemon's only")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(part_policy(args.one)))
        return
    chosen = args.policies or (QUICK_POLICIES if args.quick else POLICIES)
    results = []
    for spec in chosen:
        out = subprocess.run(
            [sys.executable, str(HERE), "--one", spec],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(json.dumps({"garbage_cycles": GARBAGE_CYCLES, "policies": results}, indent=1))


if __name__ == "__main__":
    main()
