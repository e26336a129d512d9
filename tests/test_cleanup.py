"""Cleanup hooks: what runs, in which order, and that a failing hook never escapes."""

from __future__ import annotations

import gc
import platform
import sys

import numpy as np
import pytest

from forexd.daemon import cleanup
from forexd.daemon.cleanup import CleanupRegistry, run_cleanup


def test_run_reports_rss_and_the_hooks_that_ran() -> None:
    """The process-wide pass always collects garbage and reports RSS before and after."""
    report = run_cleanup()
    assert "gc" in report.hooks_run
    assert report.rss_before_mb > 0
    assert report.rss_after_mb > 0
    assert () == report.errors


def test_failing_hook_is_reported_and_the_rest_still_run() -> None:
    """An exception in one hook becomes an entry in errors; later hooks run anyway."""
    ran: list[str] = []
    registry = CleanupRegistry()

    def broken() -> None:
        raise RuntimeError("cache is gone")

    registry.register("broken", broken)
    registry.register("after", lambda: ran.append("after"))
    report = registry.run()
    assert (("broken", "RuntimeError: cache is gone"),) == report.errors
    assert ["after"] == ran
    assert "gc" in report.hooks_run
    fields = report.log_fields()
    assert {"broken": "RuntimeError: cache is gone"} == fields["cleanup_hooks_failed"]
    assert "after" in fields["cleanup_hooks_run"] and "gc" in fields["cleanup_hooks_run"]
    assert fields["rss_before_cleanup_mb"] > 0 and fields["rss_after_cleanup_mb"] > 0


def test_registered_hooks_run_before_the_builtins() -> None:
    """Components drop their references first, so gc and malloc_trim can reclaim them."""
    registry = CleanupRegistry()
    registry.register("model_cache", lambda: None)
    assert ["model_cache", "matplotlib", "gc", "cuda", "malloc_trim"] == registry.names


def test_duplicate_and_builtin_names_are_rejected() -> None:
    """A name can be registered once (unless replaced); built-in names are reserved."""
    registry = CleanupRegistry()
    registry.register("x", lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("x", lambda: None)
    registry.register("x", lambda: False, replace=True)
    assert "x" in registry.run().skipped
    with pytest.raises(ValueError, match="built-in"):
        registry.register("gc", lambda: None)
    registry.unregister("x")
    assert "x" not in registry.names


def test_garbage_cycles_are_freed_and_rss_drops() -> None:
    """A 64 MiB array held only by a reference cycle is released by the pass."""
    registry = CleanupRegistry()
    gc.disable()  # keep the automatic collector from freeing the cycle first
    try:
        cycle: list[object] = [np.ones(8 * 1024 * 1024)]  # 64 MiB, touched
        cycle.append(cycle)
        del cycle
        report = registry.run()
    finally:
        gc.enable()
    assert report.freed_mb > 48


def test_matplotlib_figures_are_closed_when_pyplot_is_loaded() -> None:
    """Open figures are closed; nothing is done if pyplot was never imported."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.figure()
    plt.figure()
    report = CleanupRegistry().run()
    assert "matplotlib" in report.hooks_run
    assert [] == plt.get_fignums()


def test_matplotlib_hook_skips_without_pyplot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cleanup never imports matplotlib itself."""
    monkeypatch.delitem(sys.modules, "matplotlib.pyplot", raising=False)
    assert "matplotlib" in CleanupRegistry().run().skipped
    assert "matplotlib.pyplot" not in sys.modules


def test_cuda_hook_skips_unless_cuda_is_initialised() -> None:
    """Without an initialised CUDA context the hook does nothing (and creates none)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        pytest.skip("CUDA already initialised in this process")
    assert "cuda" in CleanupRegistry().run().skipped
    if torch is not None:
        assert not torch.cuda.is_initialized()


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
    reason="malloc_trim exists on glibc only",
)
def test_malloc_trim_runs_on_glibc() -> None:
    """On glibc the heap is trimmed after collection."""
    assert cleanup.trim_malloc()
    assert "malloc_trim" in CleanupRegistry().run().hooks_run
