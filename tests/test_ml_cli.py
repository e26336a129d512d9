"""``forexd train``, ``search`` and ``models`` in-process: the parser and the bound handler."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from forexd.cli import build_parser
from forexd.cli.output import Output
from forexd.daemon.pidlock import PidLock
from forexd.errors import AlreadyRunningError, ConfigError, DataError, ForexdError
from forexd.extras import MissingExtraError
from forexd.feeds.loaders import bundled_sample_path
from forexd.models.errors import (
    ConstantSeriesError,
    InsufficientDataError,
    LabelError,
    TorchUnavailableError,
)
from forexd.storage.model_registry import UnknownModelError
from tests._mlsupport import bundled_frame

SAMPLE = str(bundled_sample_path())
FAST = ("--lookback-candles", "700")


def _run(*argv: str) -> int:
    """Parse and run the bound handler; typed errors propagate (main maps them to exits)."""
    args = build_parser(argv[0]).parse_args(list(argv))
    return int(args.handler(args, Output(bool(args.json))))


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    capsys.readouterr()
    assert 0 == _run(*argv, "--json")
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose EURUSD trades ml with small walk-forward settings."""
    path = tmp_path / "forexd.toml"
    path.write_text(
        '[[symbols]]\nsymbol = "EURUSD"\nstrategy = "ml"\n'
        "params = { lookback_candles = 700, walk_forward = { n_folds = 3, min_train_rows = 60 } }"
        "\n",
        encoding="utf-8",
    )
    return path


def test_train_prints_every_fold_and_the_overall_metrics_as_json(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    """train --json reports the folds, pooled metrics and the final model's data range."""
    out = _json(
        capsys, "train", "--symbol", "eurusd", "--data", SAMPLE, "--config", str(config),
        "--data-dir", str(tmp_path / "d"),
    )  # fmt: skip
    assert isinstance(out, dict)
    assert "EURUSD" == out["symbol"]
    assert 3 == len(out["walk_forward"]["folds"])
    assert {"accuracy", "log_loss", "trading"} <= set(out["walk_forward"]["overall"])
    assert out["final_model"]["data_to"] <= "2018-12-31T23:00:00Z"
    assert "registered" not in out


def test_train_table_on_stdout(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    """Without --json the folds are a table with a pooled row."""
    assert 0 == _run("train", "--symbol", "EURUSD", "--data", SAMPLE, "--config", str(config))
    text = capsys.readouterr().out
    assert "walk-forward" in text
    assert "all" in text


def test_registered_model_can_be_listed_shown_and_promoted(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    """train --register adds a challenger; models promote makes it champion."""
    data_dir = ("--data-dir", str(tmp_path / "d"))
    out = _json(
        capsys, "train", "--symbol", "EURUSD", "--data", SAMPLE, "--config", str(config),
        "--register", *data_dir,
    )  # fmt: skip
    assert isinstance(out, dict)
    model_id = out["registered"]["model_id"]
    listed = _json(capsys, "models", "list", *data_dir)
    assert [(model_id, "challenger")] == [(r["model_id"], r["status"]) for r in listed]  # type: ignore[union-attr, index]
    shown = _json(capsys, "models", "show", model_id, *data_dir)
    assert isinstance(shown, dict) and 3 == len(shown["metrics"]["walk_forward"]["folds"])
    promoted = _json(capsys, "models", "promote", model_id, *data_dir)
    assert isinstance(promoted, dict) and "champion" == promoted["status"]
    assert not (tmp_path / "d" / "run" / "forexd.pid").exists()


def test_promote_is_refused_while_a_daemon_runs(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    """A running daemon (holding the pid lock) keeps its champion: promote says what to do."""
    data = tmp_path / "d"
    out = _json(
        capsys, "train", "--symbol", "EURUSD", "--data", SAMPLE, "--config", str(config),
        "--register", "--data-dir", str(data),
    )  # fmt: skip
    assert isinstance(out, dict)
    lock = PidLock(data / "run" / "forexd.pid")
    lock.acquire()
    try:
        with pytest.raises(AlreadyRunningError, match=r"stop it \(forexd ctl stop --data-dir"):
            _run("models", "promote", out["registered"]["model_id"], "--data-dir", str(data))
    finally:
        lock.release()


def test_unknown_model_id_is_a_typed_error(tmp_path: Path) -> None:
    """show/promote of an id that is not registered names it."""
    with pytest.raises(UnknownModelError, match="nope"):
        _run("models", "show", "nope", "--data-dir", str(tmp_path))
    with pytest.raises(ConfigError, match="usage"):
        _run("models", "promote", "--data-dir", str(tmp_path))


def test_too_little_data_names_needed_and_given(tmp_path: Path) -> None:
    """A lookback longer than the file says both numbers."""
    with pytest.raises(InsufficientDataError, match=r"50000 candles, got 12323"):
        _run("train", "--symbol", "EURUSD", "--data", SAMPLE, "--lookback-candles", "50000")


def _write_csv(path: Path, close: np.ndarray) -> Path:
    ts = bundled_frame()["ts"].to_numpy()[: len(close)] // 1_000_000_000
    rows = [f"{t},{c},{c + 0.0002},{c - 0.0002},{c}" for t, c in zip(ts, close, strict=True)]
    path.write_text("time,open,high,low,close\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_constant_series_is_refused(tmp_path: Path) -> None:
    """A file whose close never moves is a ConstantSeriesError."""
    path = _write_csv(tmp_path / "flat.csv", np.full(1000, 1.1))
    with pytest.raises(ConstantSeriesError):
        _run("train", "--symbol", "EURUSD", "--data", str(path), *FAST)


def test_one_class_labels_are_refused(tmp_path: Path) -> None:
    """A dead band no move exceeds leaves one class: a LabelError."""
    cfg = tmp_path / "wide.toml"
    cfg.write_text(
        '[[symbols]]\nsymbol = "EURUSD"\nstrategy = "ml"\n'
        "params = { lookback_candles = 700, label = { dead_band_pips = 5000.0 } }\n",
        encoding="utf-8",
    )
    with pytest.raises(LabelError):
        _run("train", "--symbol", "EURUSD", "--data", SAMPLE, "--config", str(cfg))


def test_torch_model_without_torch_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """--model mlp where torch cannot be imported names pip install 'forexd[torch]'."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises((TorchUnavailableError, ConfigError), match=r"forexd\[torch\]"):
        _run("train", "--symbol", "EURUSD", "--data", SAMPLE, "--model", "mlp", *FAST)


def test_coarser_file_than_the_timeframe_is_refused() -> None:
    """H1 bars cannot become M5 bars."""
    with pytest.raises(DataError, match="coarser"):
        _run("train", "--symbol", "EURUSD", "--data", SAMPLE, "--timeframe", "M5")


def test_search_persists_the_study_and_resumes_it(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    """--more adds trials to the stored study's plan; the best is the best of all of them."""
    args = (
        "search", "--symbol", "EURUSD", "--data", SAMPLE, "--config", str(config),
        "--study-dir", str(tmp_path / "studies"), "--model", "logistic",
    )  # fmt: skip
    first = _json(capsys, *args, "--trials", "3")
    assert isinstance(first, dict)
    assert 3 == first["trials_total"]
    assert {"label.horizon", "entry_threshold", "logistic.c"} <= set(first["best_params"])
    assert first["budget"]["blas_threads"] >= 1
    second = _json(capsys, *args, "--more", "2")
    assert isinstance(second, dict)
    assert (5, 5, 2) == (second["target_trials"], second["trials_total"], second["trials_this_run"])
    assert second["best_value"] >= first["best_value"]


def test_search_refuses_to_resume_a_study_on_other_data(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    """Resuming a study with different candles is a DataError, not a mixed study."""
    args = (
        "search", "--symbol", "EURUSD", "--data", SAMPLE, "--config", str(config),
        "--study-dir", str(tmp_path / "s"), "--model", "logistic", "--trials", "1",
    )  # fmt: skip
    _json(capsys, *args)
    with pytest.raises(DataError, match="other data"):
        _run(*args, "--lookback-candles", "800")


def test_cmaes_sampler_runs_or_names_its_package(
    capsys: pytest.CaptureFixture[str], config: Path, tmp_path: Path
) -> None:
    """--sampler cmaes searches where cmaes is installed, else says to install it."""
    args = (
        "search", "--symbol", "EURUSD", "--data", SAMPLE, "--config", str(config),
        "--study-dir", str(tmp_path / "s"), "--model", "logistic", "--trials", "2",
        "--sampler", "cmaes",
    )  # fmt: skip
    if importlib.util.find_spec("cmaes") is None:
        with pytest.raises(MissingExtraError, match=r"pip install 'forexd\[search\]'"):
            _run(*args)
        return
    out = _json(capsys, *args)
    assert isinstance(out, dict) and 2 == out["trials_total"]


def test_errors_are_forexd_errors_for_cli_exit_codes() -> None:
    """Every error above maps to an exit code in cli.py (ForexdError, exit 2 by default)."""
    assert issubclass(InsufficientDataError, ForexdError)
    assert 2 == InsufficientDataError.exit_code
