"""Cleanup hooks run after every training cycle, so memory does not creep up over days.

A training cycle leaves garbage behind: reference cycles (estimators, tensors, figures),
CUDA blocks cached by torch's allocator, matplotlib figures that were never closed, and
freed heap pages glibc keeps instead of returning them to the OS. :func:`run_cleanup`
releases all of these and reports RSS before and after; the trainer logs the report.

Order matters: hooks registered by other components run first (they drop references), then
matplotlib figures are closed, then the cyclic garbage collector runs (:class:`GcPolicy`),
then the CUDA cache is emptied (its blocks are free only once the tensors are collected),
and ``malloc_trim(0)`` goes last (it can only return pages that everything above has freed).

Hooks touch torch and matplotlib only if something else already imported them: cleanup
must never be what loads a heavy library or initialises CUDA.

The collector, and why it no longer costs the loop ~2 x 130 ms per cycle
------------------------------------------------------------------------
A collection holds the GIL from whichever thread runs it, for as long as it scans, so
every millisecond of a pass is a millisecond of event-loop lag. The cleanup used to run
``gc.collect()`` twice per cycle. Measured inside the three-ML-symbol benchmark
(``benchmarks/bench_training.py --part ml3``, gc callbacks timing each pass): a full pass
took ~130 ms although the supervisor ``gc.freeze()``-s everything alive at start-up. The
cost was not garbage (the second pass collected nothing and took as long) but the ~2,000
modules the *first training cycle* imports lazily (sklearn, scipy, joblib, and torch, which
the skops artifact format pulls in): ~220,000 tracked functions, types, dicts and cells
the start-up freeze never saw, each visited on every full pass
(``benchmarks/bench_gc.py`` times a pass on a heap like that directly: ~100 ms).

Options weighed (figures in docs/benchmarks.md):

- ``gc.collect(1)`` (young generations only) after a cycle, full passes left to Python's
  thresholds: cheap per cycle, but a cycle runs for seconds, so its garbage has been
  promoted to the oldest generation by the time it ends, and a young pass freed none of
  it (``bench_gc.py``); the threshold-triggered full passes then cost the same ~130 ms,
  only at unknown times, and the memory waits for them.
- ``gc.set_threshold`` tuning: changes how often a full pass runs, never what one costs.
- ``gc.freeze()`` after every cycle: full passes become cheap, but every object alive at
  that moment leaves the collector's sight for good, and the daemon drops long-lived
  object graphs later (a replaced champion, a restarted actor ↔ its training slot): any
  cycle among them would never be freed, a slow creep with every freeze.
- Chosen: one full pass after every cycle (so every cycle's cyclic garbage is freed at
  once, as before), and ``gc.freeze()`` right after that pass *only when the cycle loaded
  new modules* (``sys.modules`` grew since the last freeze): the freeze moves the newly
  imported library code, which lives as long as the process, out of later scans. In
  steady state no module is imported, nothing more is frozen, and the frozen set stays
  the bounded snapshot it was after the first cycle. The one full pass over the new
  modules happens once, at that first freeze. The second pass per cycle is gone: it
  found nothing in the measurements; anything a finaliser leaves is taken by the next
  pass (Python's thresholds or the next cycle).

What it costs: a steady-state pass scans only what was created since the freeze (runtime
state, caches): 0.2 ms in ``bench_gc.py``, a few ms in the ml3 daemon, reported per cycle
as ``gc_pause_ms``. What remains slow happens once per process: the first cycle's own
full pass before its freeze, and any full pass Python's thresholds start during that first
cycle (importing the training stack before the supervisor's start-up freeze would remove
those too). What is given up: objects alive at a freeze that later become unreachable
*cycles* are never collected (objects freed by reference counting are freed as usual) —
as with the supervisor's start-up freeze, a one-time snapshot, not a growing one; a later
cycle that imports more (a reload to another model kind) adds one more snapshot.
"""

from __future__ import annotations

import ctypes
import gc
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import psutil
import structlog

MB = 1024 * 1024

Hook = Callable[[], object]
"""A cleanup function; returning ``False`` means "nothing to do here" (reported as skipped)."""

log = structlog.get_logger(component="cleanup")


Freeze = Literal["new_modules", "always", "never"]
"""When :class:`GcPolicy` freezes the survivors of its collection."""
FREEZE_CHOICES: tuple[Freeze, ...] = get_args(Freeze)


@dataclass(frozen=True, slots=True)
class GcPass:
    """What the collector did in one cleanup pass.

    Attributes:
        generation: the oldest generation collected (2: a full pass).
        collected: unreachable objects found (``gc.collect``'s return value).
        pause_ms: wall time of the collection; the GIL is held throughout, so this is
            how long the event loop could not run.
        froze: objects moved to the permanent generation after the pass (0: no freeze).
        frozen_total: objects in the permanent generation afterwards.
    """

    generation: int
    collected: int
    pause_ms: float
    froze: int
    frozen_total: int


class GcPolicy:
    """The collector's part of the cleanup; see "The collector" in the module note.

    Raises:
        ValueError: ``generation`` is not 0, 1 or 2, or ``freeze`` is not a known rule.

    Args:
        generation: oldest generation collected after a cycle (2 = full pass; 0 or 1
            collect only the young generations and leave full passes to Python's
            thresholds; ``benchmarks/bench_gc.py`` compares the policies).
        freeze: when to ``gc.freeze()`` after the collection: ``"new_modules"`` (the
            default: only when ``sys.modules`` grew since the last freeze), ``"always"``
            or ``"never"``.
    """

    def __init__(self, generation: int = 2, freeze: Freeze = "new_modules") -> None:
        if generation not in (0, 1, 2):
            raise ValueError(f"gc generation must be 0, 1 or 2, not {generation!r}")
        if freeze not in FREEZE_CHOICES:
            raise ValueError(f"gc freeze must be one of {FREEZE_CHOICES}, not {freeze!r}")
        self.generation = generation
        self.freeze = freeze
        self._modules_at_freeze: int | None = None  # len(sys.modules) at our last freeze

    def __call__(self) -> GcPass:
        """Collect, then freeze the survivors if the policy says so."""
        modules = len(sys.modules)
        started = time.perf_counter()
        collected = gc.collect(self.generation)
        pause_ms = (time.perf_counter() - started) * 1000
        froze = 0
        if self.freeze == "always" or (
            self.freeze == "new_modules" and modules != self._modules_at_freeze
        ):
            before = gc.get_freeze_count()
            gc.freeze()
            froze = gc.get_freeze_count() - before
            self._modules_at_freeze = modules
        return GcPass(self.generation, collected, round(pause_ms, 3), froze, gc.get_freeze_count())


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What one cleanup pass did.

    Attributes:
        rss_before_mb: resident memory before the hooks ran, MiB.
        rss_after_mb: resident memory after, MiB.
        hooks_run: hooks that did their work, in order.
        errors: ``(hook, "ExceptionType: message")`` for every hook that raised.
        skipped: hooks with nothing to do (library not loaded, not glibc...).
        duration_s: wall time of the pass.
        gc: what the collector did (``None`` if the ``gc`` hook failed).
    """

    rss_before_mb: float
    rss_after_mb: float
    hooks_run: tuple[str, ...]
    errors: tuple[tuple[str, str], ...]
    skipped: tuple[str, ...] = ()
    duration_s: float = 0.0
    gc: GcPass | None = None

    @property
    def freed_mb(self) -> float:
        """RSS given back by the pass (negative if it grew meanwhile)."""
        return self.rss_before_mb - self.rss_after_mb

    def log_fields(self) -> dict[str, object]:
        """The report as flat log/status fields (``training_cycle_finished`` carries them).

        ``cleanup_hooks_failed`` maps each failed hook to its error.
        """
        return {
            "rss_before_cleanup_mb": round(self.rss_before_mb, 1),
            "rss_after_cleanup_mb": round(self.rss_after_mb, 1),
            "cleanup_hooks_run": list(self.hooks_run),
            "cleanup_hooks_skipped": list(self.skipped),
            "cleanup_hooks_failed": dict(self.errors),
            "cleanup_s": round(self.duration_s, 3),
            **(self._gc_fields() if self.gc is not None else {}),
        }

    def _gc_fields(self) -> dict[str, object]:
        assert self.gc is not None
        return {
            "gc_generation": self.gc.generation,
            "gc_collected": self.gc.collected,
            "gc_pause_ms": round(self.gc.pause_ms, 1),
            "gc_froze": self.gc.froze,
            "gc_frozen_total": self.gc.frozen_total,
        }


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / MB


def close_matplotlib_figures() -> bool:
    """``pyplot.close("all")`` if pyplot is loaded (the only module keeping figures alive)."""
    pyplot: Any = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return False
    pyplot.close("all")
    return True


def empty_cuda_cache() -> bool:
    """Wait for queued kernels, then return torch's cached CUDA blocks to the driver.

    Only if torch is imported and CUDA already initialised: calling into CUDA otherwise
    would create a context here, which costs memory and makes later ``fork`` unsafe.
    """
    torch: Any = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return False
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return True


_malloc_trim: Any = None
_malloc_trim_lock = threading.Lock()


def _find_malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or ``False`` where there is none (musl, macOS, Windows)."""
    global _malloc_trim  # noqa: PLW0603 - one lookup per process, cached
    with _malloc_trim_lock:
        if _malloc_trim is None:
            _malloc_trim = False
            if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
                try:
                    fn = ctypes.CDLL("libc.so.6").malloc_trim
                    fn.argtypes = [ctypes.c_size_t]
                    fn.restype = ctypes.c_int
                    _malloc_trim = fn
                except (OSError, AttributeError):
                    _malloc_trim = False
        return _malloc_trim


def trim_malloc() -> bool:
    """``malloc_trim(0)``: hand freed heap pages back to the OS (glibc only)."""
    fn = _find_malloc_trim()
    if not fn:
        return False
    fn(0)
    return True


collect_garbage = GcPolicy()
"""The process-wide collector policy (full pass, freeze when new modules were loaded)."""

BUILTIN_HOOKS: tuple[tuple[str, Hook], ...] = (
    ("matplotlib", close_matplotlib_figures),
    ("gc", collect_garbage),
    ("cuda", empty_cuda_cache),
    ("malloc_trim", trim_malloc),
)


class CleanupRegistry:
    """Named hooks run by :meth:`run`: registered ones first, then :data:`BUILTIN_HOOKS`.

    Thread-safe: hooks may be registered from any thread, and two passes never overlap.
    """

    def __init__(self, builtins: tuple[tuple[str, Hook], ...] = BUILTIN_HOOKS) -> None:
        self._builtins = builtins
        self._hooks: dict[str, Hook] = {}
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()

    def register(self, name: str, fn: Hook, *, replace: bool = False) -> None:
        """Add a hook run before the built-in ones.

        Raises:
            ValueError: ``name`` is taken (by a built-in, or already registered without
                ``replace=True``).
        """
        with self._lock:
            if any(name == b for b, _ in self._builtins):
                raise ValueError(f"cleanup hook name {name!r} is a built-in; choose another")
            if name in self._hooks and not replace:
                raise ValueError(f"cleanup hook {name!r} is already registered")
            self._hooks[name] = fn

    def unregister(self, name: str) -> None:
        """Remove a registered hook (no error if it is not there)."""
        with self._lock:
            self._hooks.pop(name, None)

    @property
    def names(self) -> list[str]:
        """Hook names in the order they run."""
        with self._lock:
            return [*self._hooks, *(b for b, _ in self._builtins)]

    def run(self) -> CleanupReport:
        """Run every hook once. A hook that raises is reported, and the others still run."""
        with self._run_lock:
            with self._lock:
                hooks = [*self._hooks.items(), *self._builtins]
            started = time.perf_counter()
            before = _rss_mb()
            ran: list[str] = []
            skipped: list[str] = []
            errors: list[tuple[str, str]] = []
            gc_pass: GcPass | None = None
            for name, fn in hooks:
                try:
                    result = fn()
                except Exception as exc:  # a broken hook must not stop cleanup or the trainer
                    errors.append((name, f"{type(exc).__name__}: {exc}"))
                    log.warning("cleanup hook failed", hook=name, error=errors[-1][1])
                    continue
                if isinstance(result, GcPass):
                    gc_pass = result
                (skipped if result is False else ran).append(name)
            report = CleanupReport(
                rss_before_mb=before,
                rss_after_mb=_rss_mb(),
                hooks_run=tuple(ran),
                errors=tuple(errors),
                skipped=tuple(skipped),
                duration_s=time.perf_counter() - started,
                gc=gc_pass,
            )
        return report


_default = CleanupRegistry()


def register(name: str, fn: Hook, *, replace: bool = False) -> None:
    """Add a hook to the process-wide registry (see :meth:`CleanupRegistry.register`)."""
    _default.register(name, fn, replace=replace)


def unregister(name: str) -> None:
    """Remove a hook from the process-wide registry."""
    _default.unregister(name)


def run_cleanup() -> CleanupReport:
    """Run the process-wide registry's hooks; call after every training cycle."""
    return _default.run()
