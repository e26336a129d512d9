"""The cleanup's collector policy: garbage cycles are freed, library code is frozen once.

The policy runs a full collection after every training cycle and ``gc.freeze()``-s the
survivors only when the cycle imported new modules (forexd/daemon/cleanup.py explains why).
Each test restores the collector (unfreezes) so it leaves the process as it found it.
"""

from __future__ import annotations

import gc
import importlib
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from forexd.daemon.cleanup import CleanupRegistry, GcPass, GcPolicy

CYCLES = 40  # cleanup passes per test (training cycles of a long-running daemon)
GARBAGE_PER_CYCLE = 200  # reference cycles left by each


class Node:
    """A weak-referenceable object that ends up in a reference cycle."""

    def __init__(self) -> None:
        self.peer: Node | None = None


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    """Start and end with nothing frozen (a freeze is process-wide)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def aged_cycles(n: int) -> list[weakref.ref[Node]]:
    """``n`` two-node cycles that reached the oldest generation before being dropped.

    A training cycle runs for seconds, so its garbage has survived young collections by
    the time the cycle ends; ``gc.collect(1)`` while they are alive does the same here.
    """
    live = []
    for _ in range(n):
        a, b = Node(), Node()
        a.peer, b.peer = b, a
        live.append(a)
    refs = [weakref.ref(a) for a in live]
    gc.collect(1)
    del live, a, b
    return refs


def registry(policy: GcPolicy) -> CleanupRegistry:
    """A cleanup registry whose only built-in is ``policy``."""
    return CleanupRegistry(builtins=(("gc", policy),))


def import_fresh_module(tmp_path: Path, name: str) -> object:
    """Import a module that did not exist before (a library loaded by a training cycle)."""
    (tmp_path / f"{name}.py").write_text("def helper():\n    return 1\n", encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))


def test_every_cycles_garbage_is_freed_by_its_cleanup_and_nothing_more_is_frozen(
    tmp_path: Path,
) -> None:
    """40 cleanups over aged cycles: each frees its own garbage, the frozen set never grows."""
    policy = GcPolicy()
    cleanup = registry(policy)
    cleanup.run()  # the first cleanup freezes what the process has loaded so far
    frozen = gc.get_freeze_count()
    survivors: list[Node] = []
    for _ in range(CYCLES):
        refs = aged_cycles(GARBAGE_PER_CYCLE)
        # A long-lived object (a champion, a restarted actor) that outlives one cleanup
        # and becomes cyclic garbage in the next: a freeze after every cycle would keep it.
        dropped = [weakref.ref(node) for node in survivors]
        survivors = [Node() for _ in range(5)]
        for node in survivors:
            node.peer = node
        report = cleanup.run()
        assert report.gc is not None
        assert 0 == report.gc.froze, "no module was imported: nothing may be frozen"
        assert [] == [r for r in refs if r() is not None], "this cycle's garbage survived"
        assert [] == [r for r in dropped if r() is not None], "earlier survivors leaked"
        assert gc.get_freeze_count() <= frozen
    assert 2 == policy.generation


def test_a_cycle_that_imports_modules_freezes_them_once(tmp_path: Path) -> None:
    """New modules -> one freeze after the full pass; the next cycles freeze nothing."""
    policy = GcPolicy()
    policy()  # settle: what the test process had loaded is frozen
    module = import_fresh_module(tmp_path, "forexd_test_lazy_library")
    helper = module.helper  # type: ignore[attr-defined]
    assert any(o is helper for o in gc.get_objects()), "a fresh function is tracked"
    first = policy()
    assert first.froze > 0
    assert not any(o is helper for o in gc.get_objects()), "frozen: out of later scans"
    again = policy()
    assert 0 == again.froze
    assert first.frozen_total >= again.frozen_total


def test_a_young_only_policy_leaves_aged_cycles_to_the_next_full_pass() -> None:
    """gc.collect(1) after a cycle frees little: the garbage reached generation 2."""
    gc.disable()  # no automatic pass in between: this compares the two policies alone
    try:
        refs = aged_cycles(GARBAGE_PER_CYCLE)
        young = GcPolicy(generation=1, freeze="never")()
        assert 1 == young.generation
        assert len(refs) == sum(r() is not None for r in refs)
        full = GcPolicy(freeze="never")()
    finally:
        gc.enable()
    assert full.collected >= 2 * GARBAGE_PER_CYCLE
    assert [] == [r for r in refs if r() is not None]


def test_the_report_says_what_the_collector_did() -> None:
    """The cleanup report carries generation, objects found, pause and freeze, for the log."""
    aged_cycles(10)
    report = registry(GcPolicy(freeze="always")).run()
    assert ("gc",) == report.hooks_run
    assert isinstance(report.gc, GcPass)
    fields = report.log_fields()
    assert 2 == fields["gc_generation"]
    assert fields["gc_collected"] >= 20  # type: ignore[operator]
    assert fields["gc_pause_ms"] >= 0  # type: ignore[operator]
    assert fields["gc_froze"] > 0  # type: ignore[operator]
    assert 0 < fields["gc_frozen_total"]  # type: ignore[operator]


def test_a_policy_with_a_bad_setting_is_refused() -> None:
    """Generation outside 0-2 or an unknown freeze rule raise ValueError naming the value."""
    with pytest.raises(ValueError, match="generation must be 0, 1 or 2"):
        GcPolicy(generation=3)
    with pytest.raises(ValueError, match="'sometimes'"):
        GcPolicy(freeze="sometimes")  # type: ignore[arg-type]
