"""The source distribution carries what it needs to run its own tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Fast tests that exercise the sdist's extra files: conftest and helpers, the systemd
# templates, docs/service.md and the examples, the bundled data.
FAST_SUBSET = ("tests/test_config.py", "tests/test_unitfile.py", "tests/test_examples.py")
NOT_SHIPPED = {".gitignore"}  # repository housekeeping, nothing a build or test reads
SKIP_DIRS = {".git", ".venv", "build", "dist", "demo-data", "__pycache__"}


def _copy_tree(dst: Path) -> None:
    def ignore(_dir: str, names: list[str]) -> set[str]:
        return {n for n in names if n in SKIP_DIRS or n.endswith(("_cache", ".egg-info"))}

    shutil.copytree(REPO, dst, ignore=ignore)


def _build(kind: str, tmp_path: Path) -> Path:
    """Build an sdist or a wheel from a copy of the tree with setuptools' PEP 517 backend."""
    with zipfile.ZipFile(_build("wheel", tmp_path)) as whl:
        names = whl.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = whl.read(meta_name).decode()
    licences = {n.rsplit("/", 1)[-1] for n in names if ".dist-info/licenses/" in n}
    assert {"LICENSE", "NOTICE"} <= licences
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    for heavy in ("matplotlib", "optuna", "cmaes"):
        hard = [r for r in requires if heavy in r and "extra ==" not in r]
        assert [] == hard, f"{heavy} is a hard dependency: {hard}"
    assert "Classifier: Programming Language :: Python :: 3.10" in meta
