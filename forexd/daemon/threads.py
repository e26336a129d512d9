"""Thread caps for BLAS, OpenMP and torch, and the OS thread count of the process.

BLAS/OpenMP thread counts are process-wide. Toggling them per job with
``threadpool_limits`` as a context manager races as soon as two jobs run in two threads, so
the caps are set once, to ``blas_threads``, and the worker count is chosen to fit
(:mod:`forexd.daemon.budget`).

The caps are applied by a :class:`ThreadLimiter` that its owner holds — the daemon one for
its life, a one-shot command (``forexd train``, a spawned training worker) one for the
process — rather than by module globals: what was applied, and whether torch's inter-op
pool was already set, is state of that object, visible to its owner and fresh in every
test. The effect itself is still process-wide, so a process has one limiter.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil
from threadpoolctl import ThreadpoolController

TORCH_INTEROP_THREADS = 1
"""torch's inter-op pool only serves ``torch.jit.fork``-style parallelism, which forexd does
not use; one thread keeps every job within ``blas_threads`` CPUs."""

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_FRAMEWORK_THREADS",
    "NUMEXPR_NUM_THREADS",
)

_LIBRARY_KEYS = ("user_api", "internal_api", "prefix", "version", "num_threads", "filepath")


class ThreadCapsError(RuntimeError):
    """A limiter was asked for a different cap than it applied (a programming error)."""


@dataclass(frozen=True)
class ThreadCaps:
    """What :meth:`ThreadLimiter.apply` set.

    Attributes:
        libraries: threadpoolctl's view after the cap: ``user_api``, ``internal_api``,
            ``prefix``, ``version``, ``num_threads`` and ``filepath`` per loaded library.
        torch_threads: ``torch.get_num_threads()`` after the cap; ``None``: torch not loaded.
        torch_interop_threads: ``torch.get_num_interop_threads()``; ``None`` likewise.
    """

    blas_threads: int
    env: Mapping[str, str]
    libraries: tuple[Mapping[str, Any], ...]
    torch_threads: int | None
    torch_interop_threads: int | None
    torch_note: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "blas_threads": self.blas_threads,
            "env": dict(self.env),
            "libraries": [dict(lib) for lib in self.libraries],
            "torch_threads": self.torch_threads,
            "torch_interop_threads": self.torch_interop_threads,
            "torch_note": self.torch_note,
        }


OMP_WAIT_POLICY = "PASSIVE"
"""OpenMP workers that finish a parallel region sleep instead of spinning (libgomp spins
for up to ~0.3 s by default), so an idle training pool does not take CPU from the event
loop. Read by the OpenMP runtime when it loads — scikit-learn's and torch's load lazily,
after :meth:`ThreadLimiter.apply` — and by child processes. A value the user set wins."""


def thread_env(blas_threads: int) -> dict[str, str]:
    """The environment variables :meth:`ThreadLimiter.apply` sets, for child processes."""
    env = dict.fromkeys(THREAD_ENV_VARS, str(blas_threads))
    env["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
    return env


def library_summary(info: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """The fields of threadpoolctl's per-library info that reports show."""
    return tuple({k: lib.get(k) for k in _LIBRARY_KEYS} for lib in info)


class ThreadLimiter:
    """Caps BLAS, OpenMP and torch threads of this process, once, for its whole life."""

    def __init__(self) -> None:
        """Start with no cap applied."""
        self._lock = threading.Lock()
        self._applied: int | None = None
        # threadpoolctl restores nothing unless asked, but holding the limiter makes the
        # intent (a cap for the process's lifetime) explicit and keeps
        # ``restore_original_limits`` at hand.
        self._limiter: Any = None
        self._interop_attempted = False

    @property
    def applied_blas_threads(self) -> int | None:
        """The cap in effect, or ``None`` before :meth:`apply`."""
        with self._lock:
            return self._applied

    def apply(self, blas_threads: int) -> ThreadCaps:
        """Cap BLAS, OpenMP and torch threads for the whole process.

        Sets the ``*_NUM_THREADS`` environment variables (read by child processes and by
        libraries loaded later), limits every loaded library through threadpoolctl, and, if
        torch is imported, ``torch.set_num_threads`` (and the inter-op pool, once). The caps
        are never toggled per job. Calling again with the same value re-applies them to
        libraries loaded since (call it after importing torch); a different value raises.

        Args:
            blas_threads: threads per job, :attr:`ComputeBudget.blas_threads`.

        Raises:
            ValueError: ``blas_threads`` is below 1.
            ThreadCapsError: this limiter already applied a different value.
        """
        if blas_threads < 1:
            raise ValueError(f"blas_threads must be at least 1, got {blas_threads}")
        with self._lock:
            if self._applied not in (None, blas_threads):
                raise ThreadCapsError(
                    f"thread caps are already {self._applied} per job; they are "
                    f"process-wide and set once, so {blas_threads} cannot be applied now"
                )
            env = thread_env(blas_threads)
            os.environ.update(env)
            controller = ThreadpoolController()
            self._limiter = controller.limit(limits=blas_threads)
            self._applied = blas_threads
            torch_threads, interop, torch_note = self._cap_torch(blas_threads)
            return ThreadCaps(
                blas_threads=blas_threads,
                env=env,
                libraries=library_summary(controller.info()),
                torch_threads=torch_threads,
                torch_interop_threads=interop,
                torch_note=torch_note,
            )

    def _cap_torch(self, blas_threads: int) -> tuple[int | None, int | None, str]:
        torch = sys.modules.get("torch")
        if torch is None:
            return None, None, "torch not imported; it reads OMP_NUM_THREADS when it is"
        torch.set_num_threads(blas_threads)
        note = f"set_num_threads({blas_threads})"
        if not self._interop_attempted:  # torch accepts the inter-op setting once
            self._interop_attempted = True
            try:
                torch.set_num_interop_threads(TORCH_INTEROP_THREADS)
                note += f", set_num_interop_threads({TORCH_INTEROP_THREADS})"
            except RuntimeError as exc:
                # torch refuses once inter-op work has started; the count is still reported.
                note += f"; interop threads left as they were ({exc})"
        return int(torch.get_num_threads()), int(torch.get_num_interop_threads()), note


# --------------------------------------------------------------------------- threads


def os_thread_count() -> int:
    """Threads of this process as the OS counts them (BLAS and OpenMP pools included)."""
    return psutil.Process().num_threads()


@dataclass(frozen=True)
class ThreadStats:
    """OS threads of the process: the last sample and the highest one seen."""

    now: int
    peak: int


class ThreadWatermark:
    """Tracks the OS thread count now and its peak; ``sample()`` is cheap and thread-safe."""

    def __init__(self, counter: Callable[[], int] = os_thread_count) -> None:
        """Take a first sample.

        Args:
            counter: returns the current thread count (tests pass a fake).
        """
        self._counter = counter
        self._lock = threading.Lock()
        self._now = 0
        self._peak = 0
        self.sample()

    def sample(self) -> ThreadStats:
        """Count threads now, raise the peak if needed, and return both."""
        count = self._counter()
        with self._lock:
            self._now = count
            self._peak = max(self._peak, count)
            return ThreadStats(self._now, self._peak)

    def stats(self) -> ThreadStats:
        """The last sample and the peak, without sampling."""
        with self._lock:
            return ThreadStats(self._now, self._peak)
