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
    src, out = tmp_path / "src", tmp_path / "dist"
    _copy_tree(src)
    out.mkdir()
    code = f"import sys; from setuptools import build_meta as b; print(b.build_{kind}(sys.argv[1]))"
    build = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 0 == build.returncode, build.stderr[-2000:]
    return out / build.stdout.strip().splitlines()[-1]


def _tracked_files() -> set[str] | None:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        return None  # e.g. running inside an unpacked sdist
    out = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return {line for line in out.splitlines() if (REPO / line).exists()}


@pytest.mark.slow
def test_sdist_contains_the_repository_and_passes_tests_unpacked(tmp_path: Path) -> None:
    """An sdist built from the tree holds every tracked file, and tests pass inside it."""
    sdist = _build("sdist", tmp_path)
    top = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as tar:
        members = {m.name.removeprefix(top + "/") for m in tar.getmembers() if m.isfile()}
        tar.extractall(tmp_path / "unpacked", filter="data")
    for needed in (
        "LICENSE",
        "NOTICE",
        "Makefile",
        "tests/conftest.py",
        "tests/daemon_proc.py",
        "tests/_fxdata.py",
        "tests/fake_oanda.py",
        "docs/service.md",
        "examples/demo.toml",
        "examples/prometheus/forexd-alerts.yml",
        "systemd/forexd.service.in",
        "forexd/data/NOTICE",
    ):
        assert needed in members, f"{needed} is missing from the sdist"
    tracked = _tracked_files()
    if tracked is not None:
        assert set() == tracked - NOT_SHIPPED - members

    root = tmp_path / "unpacked" / top
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FAST_SUBSET],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert 0 == run.returncode, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout


@pytest.mark.slow
def test_wheel_carries_the_licence_and_no_heavy_hard_dependency(tmp_path: Path) -> None:
    """The wheel has LICENSE and NOTICE; matplotlib/optuna/cmaes are only in extras."""
    with zipfile.ZipFile(_build("wheel", tmp_path)) as whl:
        names = whl.namelist()
        meta = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    licences = {n.rsplit("/", 1)[-1] for n in names if ".dist-info/licenses/" in n}
    assert {"LICENSE", "NOTICE"} <= licences
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    for heavy in ("matplotlib", "optuna", "cmaes"):
        hard = [r for r in requires if heavy in r and "extra ==" not in r]
        assert [] == hard, f"{heavy} is a hard dependency: {hard}"
    assert "Classifier: Programming Language :: Python :: 3.10" in meta
