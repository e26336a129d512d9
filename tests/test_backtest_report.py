"""Backtest reports: one self-contained HTML file that a browser renders offline."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from forexd.backtest import BacktestRequest, render_summary, run_backtest, run_grid, write_report
from forexd.backtest.grid import GridResult
from forexd.backtest.result import BacktestResult

HOUR_NS = 3_600 * 1_000_000_000
MONDAY = 1_483_315_200 * 1_000_000_000  # 2017-01-02T00:00Z
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM_TIMEOUT_S = 90
# Appended to a copy of the report: once the page has loaded, record each image's decoded
# width in the DOM, which --dump-dom then prints. The report itself carries no script.
PROBE = (
    "<script>window.addEventListener('load',()=>{for(const i of document.images)"
    "i.setAttribute('data-natural-width',String(i.naturalWidth));"
    "document.body.setAttribute('data-probe','done')});</script>"
)


def _candles(n: int = 24 * 150, symbol_seed: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(symbol_seed)
    close = np.round(1.1 + np.cumsum(rng.normal(0, 0.0008, n)), 5)
    open_ = np.concatenate(([1.1], close[:-1]))
    return pd.DataFrame(
        {
            "ts": MONDAY + HOUR_NS * np.arange(n, dtype=np.int64),
            "open": open_,
            "high": np.maximum(open_, close) + 0.0003,
            "low": np.minimum(open_, close) - 0.0003,
            "close": close,
            "volume": 0.0,
        }
    )


@pytest.fixture(scope="module")
def run_result() -> BacktestResult:
    """Five months of hourly EURUSD and GBPUSD traded together."""
    frames = {"EURUSD": _candles(), "GBPUSD": _candles(symbol_seed=4)}
    request = BacktestRequest(params={"fast": 6, "slow": 30}, rollover={"*": -1.0})
    return run_backtest(request, frames=frames)


@pytest.fixture(scope="module")
def sweep_result() -> GridResult:
    """A 4 x 4 sweep of the fast and slow averages."""
    request = BacktestRequest(grid={"fast": (3, 5, 8, 13), "slow": (15, 20, 30, 40)})
    return run_grid(request, frames={"EURUSD": _candles()}, workers=2)


def _images(page: str) -> dict[str, bytes]:
    found = re.findall(r'<img id="([^"]+)" alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    return {name: base64.b64decode(data) for name, data in found}


def test_report_embeds_every_figure_and_fetches_nothing(
    run_result: BacktestResult, tmp_path: Path
) -> None:
    """Equity, drawdown, trades per symbol and monthly returns are inline PNGs."""
    (html,) = write_report(run_result, tmp_path / "r" / "report.html")
    page = html.read_text(encoding="utf-8")
    images = _images(page)
    assert ["equity", "drawdown", "trades_EURUSD", "trades_GBPUSD", "monthly"] == list(images)
    assert all(png.startswith(PNG_MAGIC) for png in images.values())
    assert [] == re.findall(r"(?:src|href)=\"(?!data:)", page)  # no external resource
    assert "<script" not in page
    assert "Monthly returns" in page


def test_png_dir_holds_the_same_figures(run_result: BacktestResult, tmp_path: Path) -> None:
    """--png-dir writes each embedded figure as a file too."""
    files = write_report(run_result, tmp_path / "report.html", tmp_path / "png")
    names = sorted(p.name for p in files[1:])
    assert [
        "drawdown.png",
        "equity.png",
        "monthly.png",
        "trades_EURUSD.png",
        "trades_GBPUSD.png",
    ] == names
    embedded = _images(files[0].read_text(encoding="utf-8"))
    assert embedded["equity"] == (tmp_path / "png" / "equity.png").read_bytes()


def test_sweep_report_has_the_parameter_heat_map_and_the_best_run(
    sweep_result: GridResult, tmp_path: Path
) -> None:
    """A sweep report leads with the heat-map and ranking, then the best run."""
    (html,) = write_report(sweep_result, tmp_path / "sweep.html")
    page = html.read_text(encoding="utf-8")
    assert ["sweep", "equity", "drawdown", "trades_EURUSD", "monthly"] == list(_images(page))
    assert "ranked by sharpe" in page


def test_summary_and_json_describe_the_run(run_result: BacktestResult) -> None:
    """The terminal table names the metrics; to_dict is JSON with the trades listed."""
    console = Console(record=True, width=120)
    console.print(render_summary(run_result))
    text = console.export_text()
    assert "Sharpe" in text
    assert "Max drawdown" in text
    out = json.loads(json.dumps(run_result.to_dict()))
    assert len(run_result.trades) == len(out["trades"])
    assert {"symbol", "side", "units", "entry_time", "exit_time", "entry_price", "pnl"} <= set(
        out["trades"][0]
    )
    assert out["metrics"]["trades"] == len(out["trades"])


def test_sweep_json_ranks_points(sweep_result: GridResult) -> None:
    """The sweep's JSON lists points best first and the skipped ones with reasons."""
    out = json.loads(json.dumps(sweep_result.to_dict()))
    sharpes = [p["sharpe"] for p in out["ranking"]]
    assert sorted(sharpes, reverse=True) == sharpes
    assert 16 == len(out["ranking"]) + len(out["skipped"])


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium is not installed (apt-get install chromium)")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(run_result: BacktestResult, tmp_path: Path) -> None:
    """Chromium loads the file offline and decodes every image to a non-zero width."""
    browser = _chromium()
    (html,) = write_report(run_result, tmp_path / "report.html")
    probe = tmp_path / "probe.html"
    probe.write_text(html.read_text(encoding="utf-8").replace("</body>", f"{PROBE}</body>"))
    done = subprocess.run(
        [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT_S,
        check=True,
    )
    dom = done.stdout
    assert 'data-probe="done"' in dom
    widths = [int(w) for w in re.findall(r'data-natural-width="(\d+)"', dom)]
    assert 5 == len(widths)
    assert all(w >= 800 for w in widths)  # figures are 8-11 inches at 100 dpi


def test_the_report_marks_stop_and_target_exits(tmp_path: Path) -> None:
    """Each trade row names its exit; stop and target exits are counted and coloured."""
    frames = {"EURUSD": _candles()}
    params = {"fast": 6, "slow": 30, "stop_atr": 1.0, "take_profit_atr": 1.5}
    result = run_backtest(BacktestRequest(params=params), frames=frames)
    exits = [r["exit"] for r in result.trades.records(result.data.symbols)]
    assert {"stop_loss", "take_profit"} <= set(exits)
    (html,) = write_report(result, tmp_path / "report.html")
    text = html.read_text()
    n_stop, n_tp = exits.count("stop_loss"), exits.count("take_profit")
    assert f"{n_stop} by stop loss, {n_tp} by take profit" in text
    assert 'class="exit-stop_loss"' in text and 'class="exit-take_profit"' in text
