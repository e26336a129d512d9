"""Helpers shared by the benchmark scripts: machine description, data location."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import psutil

SHARED_FX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fx"
HISTDATA_SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF", "USDCAD")


def histdata_file(symbol: str) -> Path:
    """The 2017 M1 HistData file for ``symbol`` (exits with a reason if absent)."""
    path = SHARED_FX / "histdata_m1_2017" / f"DAT_ASCII_{symbol}_M1_2017.csv.gz"
    if not path.exists():
        sys.exit(f"benchmark needs {path} (../shared/data/fx); it is absent")
    return path


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "logical_cpus": psutil.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
    }
