"""``forexd hw``: the hardware, the compute budget and the thread caps, as data and as a table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from threadpoolctl import threadpool_info

from forexd.daemon.budget import ComputeBudget
from forexd.daemon.hardware import Hardware
from forexd.daemon.threads import TORCH_INTEROP_THREADS, library_summary, thread_env


def hardware_report(
    hw: Hardware, budget: ComputeBudget, applied_blas_threads: int | None = None
) -> dict[str, Any]:
    """Everything ``forexd hw --json`` prints: hardware, budget and the caps it implies.

    Args:
        hw: the detected hardware.
        budget: the budget derived from it.
        applied_blas_threads: the cap a :class:`~forexd.daemon.threads.ThreadLimiter` of
            this process applied, if any (``ThreadLimiter.applied_blas_threads``).
    """
    libraries = library_summary(threadpool_info())
    return {
        "hardware": hw.to_dict(),
        "budget": budget.to_dict(),
        "thread_caps": {
            "blas_threads": budget.blas_threads,
            "env": thread_env(budget.blas_threads),
            "threadpoolctl_limit": budget.blas_threads,
            "torch_num_threads": budget.blas_threads,
            "torch_num_interop_threads": TORCH_INTEROP_THREADS,
            "applied_in_this_process": applied_blas_threads,
            "loaded_libraries": [dict(lib) for lib in libraries],
        },
    }


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def _or_dash(value: object) -> str:
    return "—" if value is None else str(value)


def render_hardware_table(report: Mapping[str, Any]) -> Table:
    """The human form of :func:`hardware_report`, for ``forexd hw``."""
    hw, budget, caps = report["hardware"], report["budget"], report["thread_caps"]
    overridden = {k.removeprefix("compute.") for k in budget["overridden"]}

    def origin(key: str) -> str:
        return "config" if key in overridden else "derived"

    quota = "none" if hw["quota_cpus"] is None else f"{hw['quota_cpus']:g} CPUs"
    quota_where = hw["quota_path"] or "; ".join(hw["quota_notes"])
    loaded = ", ".join(
        f"{lib['internal_api']} ({lib['num_threads']} now)" for lib in caps["loaded_libraries"]
    )
    rows: list[tuple[str, str, str]] = [
        ("affinity CPUs", str(hw["affinity_cpus"]), hw["affinity_source"]),
        ("cgroup CPU quota", quota, quota_where),
        ("usable CPUs", str(budget["usable_cpus"]),
         f"config (detected {hw['usable_cpus']})" if "usable_cpus" in overridden
         else "min(affinity, ceil(quota))"),
        ("physical / logical cores", f"{_or_dash(hw['physical_cores'])} / "
         f"{_or_dash(hw['logical_cores'])}", "psutil"),
        ("RAM total / available", f"{_gib(hw['total_ram_bytes'])} / "
         f"{_gib(hw['available_ram_bytes'])}", "psutil"),
        ("GPUs", _or_dash(hw["gpus"]), hw["gpu_probe"]),
        ("reserve (event loop)", str(budget["reserve"]), origin("reserve_cpus")),
        ("CPU slots", str(budget["cpu_slots"]), f"{budget['idle_slots']} idle"),
        ("train workers", str(budget["train_workers"]), origin("train_workers")),
        ("BLAS threads per job", str(budget["blas_threads"]), origin("blas_threads")),
        ("max concurrent symbols", str(budget["max_concurrent_symbols"]),
         origin("max_concurrent_symbols")),
        ("thread env vars", f"= {caps['blas_threads']}", ", ".join(caps["env"])),
        ("torch threads / interop", f"{caps['torch_num_threads']} / "
         f"{caps['torch_num_interop_threads']}", "if torch is loaded"),
        # The list goes in the note column (it folds): as a value it would crowd the
        # figures out of an 80-column terminal once torch and sklearn are loaded.
        ("loaded BLAS/OpenMP", str(len(caps["loaded_libraries"])),
         f"{loaded or 'none yet'}; capped to {caps['threadpoolctl_limit']}"),
    ]  # fmt: skip
    table = Table(title="forexd compute budget")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("source / note", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table
