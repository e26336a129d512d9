"""Tests for the compute budget: detection, arithmetic, thread caps, report."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from forexd.config import ComputeConfig
from forexd.daemon.budget import ComputeBudget, budget_from_config, compute_budget
from forexd.daemon.cpus import read_cpu_quota, usable_cpu_count
from forexd.daemon.hardware import Hardware, detect_hardware, probe_gpus
from forexd.daemon.hwreport import hardware_report, render_hardware_table
from forexd.daemon.threads import THREAD_ENV_VARS, ThreadStats, ThreadWatermark, os_thread_count
from forexd.errors import ConfigError

# --------------------------------------------------------------------------- helpers


def make_hardware(usable: int = 4, **changes: Any) -> Hardware:
    """A Hardware record with plausible figures, for tests that do not detect anything."""
    fields: dict[str, Any] = {
        "affinity_cpus": usable,
        "affinity_source": "os.sched_getaffinity",
        "quota_cpus": None,
        "quota_path": None,
        "quota_checked": (),
        "quota_notes": ("no CPU quota",),
        "usable_cpus": usable,
        "physical_cores": usable,
        "logical_cores": usable,
        "total_ram_bytes": 8 * 2**30,
        "available_ram_bytes": 6 * 2**30,
        "gpus": None,
        "gpu_probe": "not probed: torch is not installed",
    }
    fields.update(changes)
    return Hardware(**fields)


def write(path: Path, text: str) -> Path:
    """Create ``path`` (and its parents) holding ``text``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")
    return path


def v2_tree(tmp_path: Path, cgroup: str = "/app.slice/forexd.service") -> tuple[Path, Path]:
    """A fake pure cgroup v2 host: ``(cgroup_root, proc_self_cgroup)``."""
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory pids\n")
    (root / cgroup.lstrip("/")).mkdir(parents=True, exist_ok=True)
    proc = write(tmp_path / "proc_cgroup", f"0::{cgroup}\n")
    return root, proc


def v1_tree(
    tmp_path: Path, mount: str = "cpu,cpuacct", cgroup: str = "/forexd"
) -> tuple[Path, Path]:
    """A fake cgroup v1 host with the cpu controller mounted at ``mount``."""
    root = tmp_path / "cgroup"
    (root / mount / cgroup.lstrip("/")).mkdir(parents=True)
    (root / "memory").mkdir()
    proc = write(tmp_path / "proc_cgroup", f"5:memory:{cgroup}\n4:{mount}:{cgroup}\n")
    return root, proc


def run_python(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter without thread variables; return its JSON stdout."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV_VARS}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"child exited {result.returncode}: {result.stderr}")
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


@pytest.fixture
def torch_unloaded() -> Iterator[None]:
    """Take torch (real or fake) out of ``sys.modules`` for the test, and put it back after."""
    saved = {k: v for k, v in sys.modules.items() if k == "torch" or k.startswith("torch.")}
    for key in saved:
        del sys.modules[key]
    yield
    for key in [k for k in sys.modules if k == "torch" or k.startswith("torch.")]:
        del sys.modules[key]
    sys.modules.update(saved)


# --------------------------------------------------------------------------- usable CPUs


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [
        (8, 0.5, 1),
        (8, 1.5, 2),
        (8, 2.5, 3),
        (8, 2.0, 2),
        (2, 6.0, 2),
        (8, None, 8),
        (0, None, 1),
    ],
)
def test_usable_cpus_are_affinity_limited_by_the_quota_rounded_up(
    affinity: int, quota: float | None, expected: int
) -> None:
    """A fractional quota rounds up, the affinity mask caps it, and there is always one CPU."""
    assert expected == usable_cpu_count(affinity, quota)


# --------------------------------------------------------------------------- cgroup v2


def test_cgroup_v2_max_means_no_quota(tmp_path: Path) -> None:
    """``cpu.max`` = "max 100000" is no quota, and the file is still listed as checked."""
    root, proc = v2_tree(tmp_path)
    cpu_max = write(root / "app.slice/forexd.service/cpu.max", "max 100000\n")
    quota = read_cpu_quota(root, proc)
    expected = (None, None, (str(cpu_max),))
    assert expected == (quota.cpus, quota.path, quota.checked)
    assert any("no CPU quota" in note for note in quota.notes)


@pytest.mark.parametrize(("content", "expected"), [("150000 100000", 1.5), ("50000 100000", 0.5)])
def test_cgroup_v2_quota_is_quota_over_period(
    tmp_path: Path, content: str, expected: float
) -> None:
    """``cpu.max`` = "<quota> <period>" gives quota ÷ period CPUs, and names the file."""
    root, proc = v2_tree(tmp_path)
    cpu_max = write(root / "app.slice/forexd.service/cpu.max", content)
    quota = read_cpu_quota(root, proc)
    assert (expected, str(cpu_max)) == (quota.cpus, quota.path)


def test_cgroup_v2_tightest_ancestor_quota_wins(tmp_path: Path) -> None:
    """A parent slice's quota binds even when the service's own quota is looser."""
    root, proc = v2_tree(tmp_path)
    write(root / "app.slice/forexd.service/cpu.max", "400000 100000")
    parent = write(root / "app.slice/cpu.max", "100000 100000")
    quota = read_cpu_quota(root, proc)
    expected = (1.0, str(parent), 2)
    assert expected == (quota.cpus, quota.path, len(quota.checked))


@pytest.mark.parametrize("content", ["abc", "150000", "0 100000", "150000 0", "", "1 2 3"])
def test_cgroup_v2_malformed_file_is_ignored_with_a_reason(tmp_path: Path, content: str) -> None:
    """A ``cpu.max`` that does not parse is skipped and the reason names the file."""
    root, proc = v2_tree(tmp_path)
    write(root / "app.slice/forexd.service/cpu.max", content)
    quota = read_cpu_quota(root, proc)
    assert quota.cpus is None
    assert any("ignored" in n and "forexd.service/cpu.max" in n for n in quota.notes)


def test_cgroup_v2_malformed_file_does_not_hide_a_valid_ancestor(tmp_path: Path) -> None:
    """Skipping a broken file still leaves the parent's valid quota in force."""
    root, proc = v2_tree(tmp_path)
    write(root / "app.slice/forexd.service/cpu.max", "garbage")
    write(root / "app.slice/cpu.max", "250000 100000")
    expected = 2.5
    assert expected == read_cpu_quota(root, proc).cpus


def test_container_without_cgroup_namespace_reads_the_mount_root(tmp_path: Path) -> None:
    """A host path in /proc/self/cgroup that is not under the mount falls back to its root."""
    root, proc = v2_tree(tmp_path)
    write(proc, "0::/docker/0123abcd\n")
    cpu_max = write(root / "cpu.max", "200000 100000")
    quota = read_cpu_quota(root, proc)
    assert (2.0, str(cpu_max)) == (quota.cpus, quota.path)


# --------------------------------------------------------------------------- cgroup v1


@pytest.mark.parametrize("mount", ["cpu,cpuacct", "cpu", "cpuacct,cpu"])
def test_cgroup_v1_cfs_quota_over_period(tmp_path: Path, mount: str) -> None:
    """v1 ``cpu.cfs_quota_us`` ÷ ``cpu.cfs_period_us``, whatever the hierarchy is named."""
    root, proc = v1_tree(tmp_path, mount=mount)
    quota_file = write(root / mount / "forexd/cpu.cfs_quota_us", "250000\n")
    write(root / mount / "forexd/cpu.cfs_period_us", "100000\n")
    quota = read_cpu_quota(root, proc)
    assert (2.5, str(quota_file)) == (quota.cpus, quota.path)


def test_cgroup_v1_minus_one_means_no_quota(tmp_path: Path) -> None:
    """``cpu.cfs_quota_us`` = -1 is the v1 spelling of no quota."""
    root, proc = v1_tree(tmp_path)
    quota_file = write(root / "cpu,cpuacct/forexd/cpu.cfs_quota_us", "-1")
    write(root / "cpu,cpuacct/forexd/cpu.cfs_period_us", "100000")
    quota = read_cpu_quota(root, proc)
    expected = (None, (f"no CPU quota ({quota_file})",))
    assert expected == (quota.cpus, quota.notes)


@pytest.mark.parametrize(("quota", "period"), [("lots", "100000"), ("50000", "x"), ("50000", None)])
def test_cgroup_v1_malformed_files_are_ignored_with_a_reason(
    tmp_path: Path, quota: str, period: str | None
) -> None:
    """A bad quota, a bad period or a missing period file is noted, not raised."""
    root, proc = v1_tree(tmp_path)
    write(root / "cpu,cpuacct/forexd/cpu.cfs_quota_us", quota)
    if period is not None:
        write(root / "cpu,cpuacct/forexd/cpu.cfs_period_us", period)
    result = read_cpu_quota(root, proc)
    assert result.cpus is None
    assert any(n.startswith("ignored ") and "cpu.cfs_" in n for n in result.notes)


def test_hybrid_host_takes_the_v1_quota_when_unified_has_no_cpu_controller(
    tmp_path: Path,
) -> None:
    """On a v1 + v2 host the v1 cpu hierarchy's quota is found next to the unified one."""
    root, proc = v1_tree(tmp_path, mount="cpu", cgroup="/")
    write(root / "unified/cgroup.controllers", "")
    write(proc, "1:cpu:/\n0::/\n")
    write(root / "cpu/cpu.cfs_quota_us", "150000")
    write(root / "cpu/cpu.cfs_period_us", "100000")
    expected = 1.5
    assert expected == read_cpu_quota(root, proc).cpus


def test_missing_proc_cgroup_means_no_quota_with_a_reason(tmp_path: Path) -> None:
    """Without /proc/self/cgroup (not Linux) there is no quota, and the note says why."""
    quota = read_cpu_quota(tmp_path, tmp_path / "absent")
    assert quota.cpus is None
    assert "absent" in quota.notes[0]


def test_malformed_proc_cgroup_line_is_ignored_with_a_reason(tmp_path: Path) -> None:
    """A line without the ``id:controllers:path`` shape is noted and the rest still read."""
    root, proc = v2_tree(tmp_path)
    write(proc, "nonsense\n0::/app.slice/forexd.service\n")
    write(root / "app.slice/forexd.service/cpu.max", "100000 100000")
    quota = read_cpu_quota(root, proc)
    expected = 1.0
    assert expected == quota.cpus
    assert any("nonsense" in n for n in quota.notes)


def test_detect_hardware_applies_the_quota_to_usable_cpus(tmp_path: Path) -> None:
    """A 0.5-CPU cgroup quota makes the detected usable CPUs 1 whatever the affinity."""
    root, proc = v2_tree(tmp_path)
    write(root / "app.slice/forexd.service/cpu.max", "50000 100000")
    hw = detect_hardware(cgroup_root=root, proc_cgroup=proc)
    expected = (0.5, 1, len(os.sched_getaffinity(0)))
    assert expected == (hw.quota_cpus, hw.usable_cpus, hw.affinity_cpus)
    assert 0 < hw.available_ram_bytes <= hw.total_ram_bytes


# --------------------------------------------------------------------------- GPUs


def test_gpus_are_not_probed_when_torch_cannot_be_imported(torch_unloaded: None) -> None:
    """With torch absent the GPU count is ``None`` ("not probed"), not 0."""
    sys.modules["torch"] = None  # type: ignore[assignment]  # how Python blocks an import
    expected = (None, "not probed: torch is not installed")
    assert expected == probe_gpus(import_torch=True)


def test_gpus_are_counted_when_torch_is_already_imported(torch_unloaded: None) -> None:
    """An imported torch is asked for ``torch.cuda.device_count()``."""
    fake = types.ModuleType("torch")
    fake.cuda = types.SimpleNamespace(device_count=lambda: 2)  # type: ignore[attr-defined]
    sys.modules["torch"] = fake
    expected = (2, "torch.cuda.device_count()")
    assert expected == probe_gpus()


def test_installed_torch_is_imported_only_when_asked(
    torch_unloaded: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed but unimported torch is left alone unless ``import_torch`` is set."""
    write(
        tmp_path / "torch/__init__.py",
        "import types\ncuda = types.SimpleNamespace(device_count=lambda: 3)\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    expected_unprobed = (None, "not probed: torch is installed but not imported")
    assert expected_unprobed == probe_gpus()
    assert "torch" not in sys.modules
    expected_probed = (3, "torch.cuda.device_count()")
    assert expected_probed == probe_gpus(import_torch=True)


# --------------------------------------------------------------------------- budget


@pytest.mark.parametrize(
    ("usable", "expected"),
    [
        # usable: (reserve, cpu_slots, train_workers, blas_threads, idle_slots)
        (1, (0, 1, 1, 1, 0)),
        (2, (0, 2, 1, 2, 0)),
        (3, (0, 3, 1, 3, 0)),
        (4, (1, 3, 1, 3, 0)),
        (8, (1, 7, 1, 7, 0)),
        (9, (1, 8, 2, 4, 0)),
        (16, (1, 15, 3, 5, 0)),
        (252, (1, 251, 62, 4, 3)),
    ],
)
def test_default_budget_splits_slots_into_workers_of_four_to_seven_threads(
    usable: int, expected: tuple[int, int, int, int, int]
) -> None:
    """The default heuristic's table: one job up to 7 slots, then jobs of 4-7 BLAS threads."""
    b = compute_budget(usable)
    assert expected == (b.reserve, b.cpu_slots, b.train_workers, b.blas_threads, b.idle_slots)


@pytest.mark.parametrize(
    ("usable", "n_symbols", "expected"), [(252, 5, 5), (16, 10, 3), (16, 0, 1), (1, 28, 1)]
)
def test_max_concurrent_symbols_defaults_to_the_smaller_of_workers_and_symbols(
    usable: int, n_symbols: int, expected: int
) -> None:
    """Symbols in the heavy phase default to min(train_workers, n_symbols), at least 1."""
    assert expected == compute_budget(usable, n_symbols=n_symbols).max_concurrent_symbols


def test_one_override_derives_the_other_figure() -> None:
    """Setting only blas_threads or only train_workers fills the other to fit the slots."""
    expected = (7, 3)
    actual = (
        compute_budget(16, blas_threads=2).train_workers,
        compute_budget(16, train_workers=5).blas_threads,
    )
    assert expected == actual


def test_overrides_that_exceed_the_slots_name_both_keys_and_the_numbers() -> None:
    """8 workers × 4 threads on 15 slots is refused with the keys, numbers and a way out."""
    with pytest.raises(ConfigError) as err:
        compute_budget(16, train_workers=8, blas_threads=4)
    message = str(err.value)
    for part in ("compute.train_workers = 8", "compute.blas_threads = 4", "32", "15 CPU slots"):
        assert part in message
    assert "lower compute.train_workers or compute.blas_threads" in message


def test_blas_threads_above_the_slots_is_refused_and_marks_workers_as_derived() -> None:
    """A lone blas_threads larger than the slots fails; the message says workers were derived."""
    with pytest.raises(ConfigError, match=r"compute\.train_workers = 1 \(derived\)"):
        compute_budget(4, blas_threads=4)


def test_override_below_its_minimum_names_the_key() -> None:
    """train_workers = 0 is refused naming compute.train_workers."""
    with pytest.raises(ConfigError, match=r"compute\.train_workers = 0"):
        compute_budget(4, train_workers=0)


def test_reserving_every_cpu_still_leaves_one_slot() -> None:
    """reserve ≥ usable leaves one slot shared by the loop and one job."""
    expected = (1, 1, 1)
    assert expected == tuple(
        getattr(compute_budget(2, reserve=5), k)
        for k in ("cpu_slots", "train_workers", "blas_threads")
    )


def test_budget_from_config_applies_every_override_and_records_them() -> None:
    """``[compute]`` overrides beat the detected figures and are listed as overridden."""
    cfg = ComputeConfig(usable_cpus=32, reserve_cpus=2, blas_threads=3, max_concurrent_symbols=4)
    budget = budget_from_config(cfg, make_hardware(usable=2), n_symbols=10)
    expected = ComputeBudget(
        usable_cpus=32,
        reserve=2,
        cpu_slots=30,
        train_workers=10,
        blas_threads=3,
        max_concurrent_symbols=4,
        overridden=(
            "compute.usable_cpus",
            "compute.reserve_cpus",
            "compute.blas_threads",
            "compute.max_concurrent_symbols",
        ),
    )
    assert expected == budget


def test_budget_to_dict_holds_every_figure() -> None:
    """``to_dict`` is JSON-ready and includes idle slots and the overridden keys."""
    expected = {
        "usable_cpus": 252,
        "reserve": 1,
        "cpu_slots": 251,
        "train_workers": 62,
        "blas_threads": 4,
        "max_concurrent_symbols": 3,
        "overridden": [],
        "idle_slots": 3,
    }
    assert expected == json.loads(json.dumps(compute_budget(252, n_symbols=3).to_dict()))


@given(usable=st.integers(1, 512), n_symbols=st.integers(0, 64))
def test_default_budget_invariants_hold_for_any_cpu_count(usable: int, n_symbols: int) -> None:
    """Defaults: every figure ≥ 1, workers × threads ≤ slots, at most 3 slots idle."""
    b = compute_budget(usable, n_symbols=n_symbols)
    assert b.train_workers * b.blas_threads <= b.cpu_slots
    assert min(b.cpu_slots, b.train_workers, b.blas_threads, b.max_concurrent_symbols) >= 1
    assert b.cpu_slots == max(1, usable - b.reserve)
    assert 0 <= b.idle_slots <= 3
    assert b.max_concurrent_symbols <= b.train_workers


@given(
    usable=st.integers(1, 512),
    reserve=st.none() | st.integers(0, 8),
    workers=st.none() | st.integers(1, 600),
    blas=st.none() | st.integers(1, 600),
)
def test_overridden_budget_fits_the_slots_or_is_refused(
    usable: int, reserve: int | None, workers: int | None, blas: int | None
) -> None:
    """Any overrides either give a budget within the slots or raise ConfigError."""
    try:
        b = compute_budget(usable, reserve=reserve, train_workers=workers, blas_threads=blas)
    except ConfigError as exc:
        assert "compute.train_workers" in str(exc)
        assert "compute.blas_threads" in str(exc)
        return
    assert b.train_workers * b.blas_threads <= b.cpu_slots
    assert min(b.train_workers, b.blas_threads) >= 1
    assert workers in (None, b.train_workers)
    assert blas in (None, b.blas_threads)


# --------------------------------------------------------------------------- caps

_BLAS_REPORT = """
    import json
    from threadpoolctl import threadpool_info

    def blas_threads():
        return sorted({lib["num_threads"] for lib in threadpool_info()
                       if lib["user_api"] == "blas"})
"""


def test_thread_caps_make_numpy_blas_report_one_thread() -> None:
    """After ``ThreadLimiter().apply(1)`` numpy's BLAS runs one thread and children inherit 1."""
    out = run_python(
        _BLAS_REPORT
        + """
    import os
    import numpy
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=3)  # so the cap has something to lower, even on 1 CPU
    before = blas_threads()
    from forexd.daemon.threads import THREAD_ENV_VARS, ThreadLimiter
    caps = ThreadLimiter().apply(1)
    print(json.dumps({
        "before": before,
        "after": blas_threads(),
        "reported": sorted({lib["num_threads"] for lib in caps.libraries}),
        "env": sorted({os.environ[name] for name in THREAD_ENV_VARS}),
    }))
    """
    )
    expected = {"before": [3], "after": [1], "reported": [1], "env": ["1"]}
    assert expected == out


def test_thread_caps_make_openmp_workers_sleep_unless_the_user_chose() -> None:
    """apply() sets OMP_WAIT_POLICY=PASSIVE for libraries loaded later, keeping a user's value."""
    out = run_python(
        """
    import json, os
    from forexd.daemon.threads import ThreadLimiter
    os.environ.pop("OMP_WAIT_POLICY", None)
    caps = ThreadLimiter().apply(1)
    first = (os.environ["OMP_WAIT_POLICY"], caps.env["OMP_WAIT_POLICY"])
    os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
    again = ThreadLimiter().apply(1)
    print(json.dumps([*first, os.environ["OMP_WAIT_POLICY"], again.env["OMP_WAIT_POLICY"]]))
    """
    )
    assert ["PASSIVE", "PASSIVE", "ACTIVE", "ACTIVE"] == out


def test_blas_loaded_after_the_caps_starts_capped() -> None:
    """A BLAS library first loaded after the caps reads them from the environment."""
    out = run_python(
        _BLAS_REPORT
        + """
    from forexd.daemon.threads import ThreadLimiter
    ThreadLimiter().apply(1)
    import numpy
    print(json.dumps({"after": blas_threads()}))
    """
    )
    expected = {"after": [1]}
    assert expected == out


def test_a_limiter_reapplies_its_cap_and_refuses_a_different_one() -> None:
    """Re-applying the same cap is allowed; a different one raises ThreadCapsError."""
    out = run_python(
        """
    import json
    from forexd.daemon.threads import ThreadCapsError, ThreadLimiter
    limiter = ThreadLimiter()
    limiter.apply(2)
    limiter.apply(2)
    try:
        limiter.apply(3)
        outcome = "applied"
    except ThreadCapsError as exc:
        outcome = str(exc)
    print(json.dumps({"outcome": outcome}))
    """
    )
    assert "thread caps are already 2 per job" in out["outcome"]


def test_torch_threads_are_capped_and_interop_is_set_only_once() -> None:
    """An imported torch gets set_num_threads every time, set_num_interop_threads once."""
    out = run_python(
        """
    import json, sys, types
    calls = []
    torch = types.ModuleType("torch")
    state = {"threads": 8, "interop": 8}
    def set_num_threads(n):
        calls.append(("threads", n)); state["threads"] = n
    def set_num_interop_threads(n):
        calls.append(("interop", n))
        if state["interop"] != 8:
            raise RuntimeError("cannot set number of interop threads twice")
        state["interop"] = n
    torch.set_num_threads = set_num_threads
    torch.set_num_interop_threads = set_num_interop_threads
    torch.get_num_threads = lambda: state["threads"]
    torch.get_num_interop_threads = lambda: state["interop"]
    sys.modules["torch"] = torch
    from forexd.daemon.threads import ThreadLimiter
    limiter = ThreadLimiter()
    first = limiter.apply(2)
    second = limiter.apply(2)
    print(json.dumps({
        "calls": calls,
        "first": [first.torch_threads, first.torch_interop_threads],
        "second": [second.torch_threads, second.torch_interop_threads],
    }))
    """
    )
    expected = {
        "calls": [["threads", 2], ["interop", 1], ["threads", 2]],
        "first": [2, 1],
        "second": [2, 1],
    }
    assert expected == out


def test_real_torch_honours_the_caps() -> None:
    """With torch installed, its intra-op pool follows blas_threads and inter-op is 1."""
    pytest.importorskip("torch")
    out = run_python(
        """
    import json
    import torch
    from forexd.daemon.threads import ThreadLimiter
    caps = ThreadLimiter().apply(1)
    print(json.dumps({
        "torch": [torch.get_num_threads(), torch.get_num_interop_threads()],
        "reported": [caps.torch_threads, caps.torch_interop_threads],
    }))
    """
    )
    expected = {"torch": [1, 1], "reported": [1, 1]}
    assert expected == out


# --------------------------------------------------------------------------- threads


def test_thread_watermark_keeps_the_peak_across_samples() -> None:
    """``sample()`` updates now every time and the peak only upwards."""
    counts = iter([3, 7, 5])
    watermark = ThreadWatermark(counter=lambda: next(counts))
    watermark.sample()
    watermark.sample()
    expected = ThreadStats(now=5, peak=7)
    assert expected == watermark.stats()


def test_os_thread_count_sees_a_new_thread() -> None:
    """A started (and still running) thread shows up in the OS thread count."""
    before = os_thread_count()
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        during = os_thread_count()
    finally:
        release.set()
        worker.join()
    assert during >= before + 1


def test_a_limiter_holds_what_it_applied_and_the_report_shows_it() -> None:
    """The cap lives in the limiter its owner holds (no module global) and reaches the report."""
    out = run_python(
        """
    import json
    from forexd.daemon.budget import compute_budget
    from forexd.daemon.hardware import detect_hardware
    from forexd.daemon.hwreport import hardware_report
    from forexd.daemon.threads import ThreadLimiter
    owned, fresh = ThreadLimiter(), ThreadLimiter()
    before = owned.applied_blas_threads
    owned.apply(2)
    hw = detect_hardware()
    report = hardware_report(hw, compute_budget(hw.usable_cpus), owned.applied_blas_threads)
    print(json.dumps({
        "before": before,
        "owned": owned.applied_blas_threads,
        "fresh": fresh.applied_blas_threads,
        "report": report["thread_caps"]["applied_in_this_process"],
    }))
    """
    )
    expected = {"before": None, "owned": 2, "fresh": None, "report": 2}
    assert expected == out


# --------------------------------------------------------------------------- report


def test_hardware_report_holds_every_figure_and_the_planned_caps() -> None:
    """The JSON report has every hardware and budget figure, the quota path and the caps."""
    hw = make_hardware(usable=16, quota_cpus=15.5, quota_path="/sys/fs/cgroup/cpu.max")
    budget = compute_budget(hw.usable_cpus, n_symbols=4)
    report = json.loads(json.dumps(hardware_report(hw, budget)))
    assert hw.to_dict() == report["hardware"]
    assert budget.to_dict() == report["budget"]
    expected_path = "/sys/fs/cgroup/cpu.max"
    assert expected_path == report["hardware"]["quota_path"]
    caps_env = report["thread_caps"]["env"]
    assert dict.fromkeys(THREAD_ENV_VARS, "5") == {k: caps_env[k] for k in THREAD_ENV_VARS}
    expected_torch = (5, 1)
    assert expected_torch == (
        report["thread_caps"]["torch_num_threads"],
        report["thread_caps"]["torch_num_interop_threads"],
    )


def test_hardware_table_shows_figures_and_where_they_came_from() -> None:
    """The rich table shows the budget and marks configured figures as such."""
    hw = make_hardware(usable=252)
    budget = compute_budget(252, train_workers=50, n_symbols=28)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(render_hardware_table(hardware_report(hw, budget)))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "50" in rows["train workers"] and "config" in rows["train workers"]
    assert "5" in rows["BLAS threads per job"] and "derived" in rows["BLAS threads per job"]
    assert "8.0 GiB / 6.0 GiB" in rows["RAM total / available"]
