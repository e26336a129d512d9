"""Which CPUs this process may really use: the affinity mask and the cgroup CPU quota.

Options weighed:

* **How many CPUs.** ``os.cpu_count()`` counts the host, not what this process may use; in a
  container or under ``taskset`` that is how a 2-CPU job ends up with 64 BLAS threads. The
  affinity mask is the hard limit and the cgroup CPU quota the soft one (a quota of 1.5 CPUs
  lets two threads run half the time each), so ``usable_cpus = min(affinity, ceil(quota))``.
* **Finding the quota.** Parsing ``/proc/self/mountinfo`` (as Go's automaxprocs does) finds
  cgroup hierarchies mounted anywhere; every container runtime and systemd mount them under
  ``/sys/fs/cgroup``, so this module looks there (the root is a parameter, which is also how
  the tests feed it fake files), walks from the process's own cgroup up to the root and keeps
  the tightest limit. A malformed file is skipped with a note, never a crash: a budget that
  is slightly too generous is better than a daemon that will not start.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CpuQuota:
    """The tightest cgroup CPU quota on the path from this process's cgroup to the root.

    Attributes:
        cpus: quota ÷ period, e.g. ``1.5``; ``None`` when no quota applies.
        path: the file that set that quota; ``None`` when none did.
        checked: every quota file read, tightest or not.
        notes: why there is no quota, or which files were skipped and why.
    """

    cpus: float | None
    path: str | None
    checked: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class _MalformedError(Exception):
    """A cgroup file whose content does not parse; its message says why."""


def _read_small(path: Path) -> str | None:
    """The file's text, or ``None`` when it does not exist."""
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _MalformedError(f"{path}: unreadable ({exc})") from None


def _positive_int(path: Path, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _MalformedError(f"{path}: {text!r} is not an integer") from None
    if value <= 0:
        raise _MalformedError(f"{path}: {value} is not positive")
    return value


def _v2_limit(directory: Path) -> tuple[Path, float | None] | None:
    """``cpu.max`` ("max 100000" = no quota, "150000 100000" = 1.5 CPUs)."""
    path = directory / "cpu.max"
    text = _read_small(path)
    if text is None:
        return None
    fields = text.split()
    if fields[:1] == ["max"] and len(fields) <= 2:
        return path, None
    if len(fields) != 2:
        raise _MalformedError(f"{path}: expected '<quota|max> <period>', got {text!r}")
    return path, _positive_int(path, fields[0]) / _positive_int(path, fields[1])


def _v1_limit(directory: Path) -> tuple[Path, float | None] | None:
    """``cpu.cfs_quota_us`` (-1 = no quota) over ``cpu.cfs_period_us``."""
    quota_path = directory / "cpu.cfs_quota_us"
    quota_text = _read_small(quota_path)
    if quota_text is None:
        return None
    if quota_text == "-1":
        return quota_path, None
    quota = _positive_int(quota_path, quota_text)
    period_path = directory / "cpu.cfs_period_us"
    period_text = _read_small(period_path)
    if period_text is None:
        raise _MalformedError(f"{period_path}: missing next to {quota_path.name}")
    return quota_path, quota / _positive_int(period_path, period_text)


def _v1_cpu_mount(root: Path) -> Path | None:
    """The v1 hierarchy holding the ``cpu`` controller ("cpu", "cpu,cpuacct", ...)."""
    if (root / "cpu").is_dir():
        return root / "cpu"
    try:
        candidates = sorted(root.iterdir())
    except OSError:
        return None
    return next((p for p in candidates if "cpu" in p.name.split(",") and p.is_dir()), None)


def _v2_mount(root: Path) -> Path | None:
    """Unified hierarchy: the root itself, or ``unified/`` on hybrid (v1 + v2) hosts."""
    for candidate in (root, root / "unified"):
        if (candidate / "cgroup.controllers").is_file():
            return candidate
    return None


def _cgroup_dirs(mount: Path, cgroup_path: str) -> list[Path]:
    """The process's cgroup directory and its ancestors up to ``mount``, leaf first."""
    parts = [p for p in PurePosixPath(cgroup_path).parts if p not in ("/", ".", "..")]
    if not mount.joinpath(*parts).is_dir():
        # A container without a cgroup namespace sees its host path here, but its own
        # cgroup is what is mounted at the root.
        return [mount]
    return [mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def read_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> CpuQuota:
    """Find the CPU quota of this process's cgroup (v2 ``cpu.max`` or v1 CFS files).

    Args:
        cgroup_root: where the cgroup hierarchies are mounted.
        proc_cgroup: the ``/proc/<pid>/cgroup`` file naming this process's cgroups.

    Returns:
        The tightest quota found; a missing or malformed file is noted, never raised.
    """
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        reason = f"{proc_cgroup} unreadable ({exc.strerror or exc}); no cgroup quota applied"
        return CpuQuota(None, None, notes=(reason,))
    checked: list[str] = []
    notes: list[str] = []
    best: tuple[float, str] | None = None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, sep, cgroup_path = rest.partition(":")
        if not sep:
            notes.append(f"{proc_cgroup}: ignored malformed line {line!r}")
            continue
        reader: Callable[[Path], tuple[Path, float | None] | None]
        if hierarchy == "0" and not controllers:
            mount, reader = _v2_mount(cgroup_root), _v2_limit
        elif "cpu" in controllers.split(","):
            mount, reader = _v1_cpu_mount(cgroup_root), _v1_limit
        else:
            continue
        if mount is None:
            continue
        for directory in _cgroup_dirs(mount, cgroup_path):
            try:
                found = reader(directory)
            except _MalformedError as exc:
                notes.append(f"ignored {exc}")
                continue
            if found is None:
                continue
            path, cpus = found
            checked.append(str(path))
            if cpus is not None and (best is None or cpus < best[0]):
                best = (cpus, str(path))
    if best is None:
        where = ", ".join(checked) if checked else f"no quota files under {cgroup_root}"
        notes.append(f"no CPU quota ({where})")
        return CpuQuota(None, None, tuple(checked), tuple(notes))
    return CpuQuota(best[0], best[1], tuple(checked), tuple(notes))


def affinity_cpus() -> tuple[int, str]:
    """CPUs this process may run on, and which API said so."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0))), "os.sched_getaffinity"
    try:
        return max(1, len(psutil.Process().cpu_affinity() or [])), "psutil.cpu_affinity"
    except (AttributeError, psutil.Error, OSError):
        # macOS has no affinity API at all; the whole machine is the best answer left.
        return os.cpu_count() or 1, "os.cpu_count"


def usable_cpu_count(affinity: int, quota_cpus: float | None) -> int:
    """``min(affinity, ceil(quota))``, at least 1: a 1.5-CPU quota keeps two threads busy."""
    if quota_cpus is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(quota_cpus)))
