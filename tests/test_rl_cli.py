"""``forexd train --model recurrent_ppo`` and its errors, through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from forexd.feeds.loaders import bundled_sample_path

pytest.importorskip("sb3_contrib", reason="the rl extra (sb3-contrib) is not installed")

SAMPLE = str(bundled_sample_path())
TINY_TOML = (
    '[[symbols]]\nsymbol = "EURUSD"\nstrategy = "ml"\n'
    "params = { lookback_candles = 700, walk_forward = { n_folds = 2, min_train_rows = 60 }, "
    'model = { kind = "recurrent_ppo", hyperparameters = { n_steps = 64, batch_size = 32, '
    "n_epochs = 2, episode_bars = 96, hidden_sizes = [8], lstm_hidden_size = 8, "
    "context_bars = 12 } } }\n"
)


def _forexd(*argv: str, prelude: str = "pass") -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys, runpy; {prelude}; sys.argv = ['forexd', *{list(argv)!r}]; "
        "runpy.run_module('forexd', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )


def test_train_recurrent_ppo_reports_folds_and_registers_a_challenger(tmp_path: Path) -> None:
    """train --model recurrent_ppo --timesteps N: per-fold trading metrics, a registered agent."""
    cfg = tmp_path / "forexd.toml"
    cfg.write_text(TINY_TOML, encoding="utf-8")
    proc = _forexd(
        "train", "--symbol", "EURUSD", "--data", SAMPLE, "--model", "recurrent_ppo",
        "--timesteps", "128", "--config", str(cfg), "--data-dir", str(tmp_path / "d"),
        "--register", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"]["kind"] == "recurrent_ppo"
    assert out["model"]["hyperparameters"]["timesteps"] == 128
    folds = out["walk_forward"]["folds"]
    assert len(folds) == 2
    assert all(f["trading"]["bars"] == f["test_rows"] for f in folds)
    artifact = Path(out["registered"]["artifact"])
    assert artifact.is_file()
    listed = _forexd("models", "list", "--data-dir", str(tmp_path / "d"), "--json")
    assert [r["kind"] for r in json.loads(listed.stdout)] == ["recurrent_ppo"]


def test_timesteps_on_a_supervised_kind_is_refused_in_one_line() -> None:
    """--timesteps with --model logistic names the flag and what to do, exit code 2."""
    proc = _forexd(
        "train", "--symbol", "EURUSD", "--data", SAMPLE, "--model", "logistic",
        "--timesteps", "100",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--timesteps applies to RL kinds only" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_recurrent_ppo_without_the_rl_extra_names_pip_install() -> None:
    """Without sb3-contrib, train --model recurrent_ppo says pip install 'forexd[rl]'."""
    proc = _forexd(
        "train", "--symbol", "EURUSD", "--data", SAMPLE, "--model", "recurrent_ppo",
        prelude="sys.modules['sb3_contrib'] = None",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'forexd[rl]'" in proc.stderr
    assert "Traceback" not in proc.stderr
