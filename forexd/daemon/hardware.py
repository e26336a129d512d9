"""What this machine gives forexd: CPUs (see :mod:`forexd.daemon.cpus`), cores, RAM, GPUs.

GPUs: importing torch costs seconds and hundreds of MB, so the daemon does not import it
just to count GPUs: ``gpus`` is ``None`` ("not probed") unless torch is already imported, or
the caller (``forexd hw``, a short-lived process) asks for the import. The count comes from
``torch.cuda.device_count()``, which asks NVML first and creates no CUDA context, so a later
``fork`` stays safe (only where NVML is missing does torch fall back to the CUDA runtime,
and the daemon spawns, never forks, its workers anyway); nvidia-smi is never run.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from forexd.daemon.cpus import (
    CGROUP_ROOT,
    PROC_SELF_CGROUP,
    affinity_cpus,
    read_cpu_quota,
    usable_cpu_count,
)


def probe_gpus(*, import_torch: bool = False) -> tuple[int | None, str]:
    """Count CUDA devices through torch without creating a CUDA context.

    Args:
        import_torch: import torch if installed but not yet imported (``forexd hw``); the
            daemon leaves this off so that counting GPUs never costs a torch import.

    Returns:
        ``(count, how)``; ``count`` is ``None`` when the GPUs were not probed.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        if importlib.util.find_spec("torch") is None:
            return None, "not probed: torch is not installed"
        if not import_torch:
            return None, "not probed: torch is installed but not imported"
        try:
            torch = importlib.import_module("torch")
        except ImportError as exc:
            return None, f"not probed: import torch failed ({exc})"
    try:
        count = int(torch.cuda.device_count())
    except (RuntimeError, OSError) as exc:
        return None, f"not probed: torch.cuda.device_count() failed ({exc})"
    return count, "torch.cuda.device_count()"


@dataclass(frozen=True)
class Hardware:
    """What this process may use, as detected at start-up (see :func:`detect_hardware`)."""

    affinity_cpus: int
    affinity_source: str
    quota_cpus: float | None
    quota_path: str | None
    quota_checked: tuple[str, ...]
    quota_notes: tuple[str, ...]
    usable_cpus: int
    physical_cores: int | None
    logical_cores: int | None
    total_ram_bytes: int
    available_ram_bytes: int
    gpus: int | None
    gpu_probe: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        out = asdict(self)
        out["quota_checked"] = list(self.quota_checked)
        out["quota_notes"] = list(self.quota_notes)
        return out


def detect_hardware(
    *,
    cgroup_root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC_SELF_CGROUP,
    import_torch: bool = False,
) -> Hardware:
    """Detect CPUs (affinity, cgroup quota), cores, RAM and, where torch is loaded, GPUs.

    Args:
        cgroup_root: where the cgroup hierarchies are mounted (tests pass a fake tree).
        proc_cgroup: the file naming this process's cgroups.
        import_torch: see :func:`probe_gpus`.
    """
    affinity, source = affinity_cpus()
    quota = read_cpu_quota(cgroup_root, proc_cgroup)
    memory = psutil.virtual_memory()
    gpus, gpu_probe = probe_gpus(import_torch=import_torch)
    return Hardware(
        affinity_cpus=affinity,
        affinity_source=source,
        quota_cpus=quota.cpus,
        quota_path=quota.path,
        quota_checked=quota.checked,
        quota_notes=quota.notes,
        usable_cpus=usable_cpu_count(affinity, quota.cpus),
        physical_cores=psutil.cpu_count(logical=False),
        logical_cores=psutil.cpu_count(logical=True),
        total_ram_bytes=int(memory.total),
        available_ram_bytes=int(memory.available),
        gpus=gpus,
        gpu_probe=gpu_probe,
    )
