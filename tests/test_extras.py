"""Commands that need an optional extra name the pip install when it is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forexd.feeds.loaders import bundled_sample_path

# Runs `python -m forexd ARGS` with the named modules made unimportable, as if the extra
# that provides them had not been installed (sys.modules[name] = None blocks an import).
BLOCKING_MAIN = (
    "import runpy, sys; "
    "[sys.modules.__setitem__(m, None) for m in sys.argv[1].split(',')]; "
    "del sys.argv[1]; "
    "runpy.run_module('forexd', run_name='__main__', alter_sys=True)"
)


def _run_without(modules: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKING_MAIN, modules, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )


def test_a_report_without_matplotlib_names_the_report_extra(tmp_path: Path) -> None:
    """`backtest --report` without matplotlib: exit 2, one line naming forexd[report]."""
    out = tmp_path / "r.html"
    result = _run_without(
        "matplotlib", "backtest", "--end", "2017-03-01", "--report", str(out), "--json"
    )
    assert 2 == result.returncode, result.stderr
    # With --json the error is the JSON document on stdout (README "Output").
    error = json.loads(result.stdout)["error"]
    assert "pip install 'forexd[report]'" in error["message"]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_search_without_optuna_names_the_search_extra(tmp_path: Path) -> None:
    """`forexd search` without optuna: exit 2 before any work, naming forexd[search]."""
    result = _run_without(
        "optuna",
        "search",
        "--symbol",
        "EURUSD",
        "--data",
        str(bundled_sample_path()),
        "--trials",
        "1",
        "--data-dir",
        str(tmp_path),
    )
    assert 2 == result.returncode, result.stderr
    assert "pip install 'forexd[search]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_cmaes_sampler_without_cmaes_names_the_search_extra(tmp_path: Path) -> None:
    """`search --sampler cmaes` without cmaes: exit 2, naming forexd[search]."""
    pytest.importorskip("optuna")
    result = _run_without(
        "cmaes",
        "search",
        "--symbol",
        "EURUSD",
        "--data",
        str(bundled_sample_path()),
        "--trials",
        "1",
        "--sampler",
        "cmaes",
        "--lookback-candles",
        "3000",
        "--data-dir",
        str(tmp_path),
    )
    assert 2 == result.returncode, result.stderr
    assert "--sampler cmaes needs cmaes" in result.stderr
    assert "pip install 'forexd[search]'" in result.stderr
