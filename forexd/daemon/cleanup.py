"""Cleanup hooks run after every training cycle, so memory does not creep up over days.

A training cycle leaves garbage behind: reference cycles (estimators, tensors, figures),
CUDA blocks cached by torch's allocator, matplotlib figures that were never closed, and
freed heap pages glibc keeps instead of returning them to the OS. :func:`run_cleanup`
releases all of these and reports RSS before and after; the trainer logs the report.

Order matters: hooks registered by other components run first (they drop references), then
matplotlib figures are closed, then ``gc.collect()`` runs twice (the first pass can free
objects whose finalisers release more garbage), then the CUDA cache is emptied (its blocks
are free only once the tensors are collected), and ``malloc_trim(0)`` goes last (it can
only return pages that everything above has freed).

Hooks touch torch and matplotlib only if something else already imported them: cleanup
must never be what loads a heavy library or initialises CUDA.
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
from typing import Any

import psutil
import structlog

MB = 1024 * 1024

Hook = Callable[[], object]
"""A cleanup function; returning ``False`` means "nothing to do here" (reported as skipped)."""

log = structlog.get_logger(component="cleanup")


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
    """

    rss_before_mb: float
    rss_after_mb: float
    hooks_run: tuple[str, ...]
    errors: tuple[tuple[str, str], ...]
    skipped: tuple[str, ...] = ()
    duration_s: float = 0.0

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


def collect_garbage() -> bool:
    """Two full collections: the first may free objects whose finalisers free more."""
    gc.collect()
    gc.collect()
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
            for name, fn in hooks:
                try:
                    result = fn()
                except Exception as exc:  # a broken hook must not stop cleanup or the trainer
                    errors.append((name, f"{type(exc).__name__}: {exc}"))
                    log.warning("cleanup hook failed", hook=name, error=errors[-1][1])
                    continue
                (skipped if result is False else ran).append(name)
            report = CleanupReport(
                rss_before_mb=before,
                rss_after_mb=_rss_mb(),
                hooks_run=tuple(ran),
                errors=tuple(errors),
                skipped=tuple(skipped),
                duration_s=time.perf_counter() - started,
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
