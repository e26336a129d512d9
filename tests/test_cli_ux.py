"""The command line as a person types it: help, typos, --json errors, import checks, Ctrl-C."""

from __future__ import annotations

import gzip
import json
import os
import re
import sqlite3
from pathlib import Path

import pytest

from tests.daemon_proc import run_cli

pytestmark = pytest.mark.e2e

SHARED_M1 = Path(__file__).parent.parent / "../shared/data/fx/histdata_m1_2017"
EURUSD_M1 = SHARED_M1 / "DAT_ASCII_EURUSD_M1_2017.csv.gz"


def _m1_file(tmp_path: Path, name: str = "DAT_ASCII_EURUSD_M1_2017.csv", rows: int = 600) -> Path:
    """The first ``rows`` one-minute bars of the real HistData EURUSD 2017 file."""
    if not EURUSD_M1.exists():
        pytest.skip(f"{EURUSD_M1} is not here (see /work/shared/data/fx/SOURCES.md)")
    with gzip.open(EURUSD_M1, "rt") as src:
        lines = [next(src) for _ in range(rows)]
    path = tmp_path / name
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_help_lists_exit_codes_and_has_no_rst_markup() -> None:
    """`forexd --help` explains every exit code and shows no ``double backquotes``."""
    res = run_cli("--help")
    assert 0 == res.returncode
    for code in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130"):
        assert f"\n  {code}" in res.stdout
    assert "``" not in res.stdout
    sub = run_cli("ctl", "--help")
    assert "exit codes:" in sub.stdout and "``" not in sub.stdout


def test_a_missing_subcommand_lists_the_ones_there_are() -> None:
    """`forexd` and `forexd ctl` alone print the sub-commands, not just a usage line."""
    res = run_cli()
    assert 2 == res.returncode and "backtest" in res.stderr and "completion" in res.stderr
    res = run_cli("ctl")
    assert 2 == res.returncode
    for action in ("status", "pause", "flatten", "risk", "logs"):
        assert f"\n    {action} " in res.stderr


def test_a_mistyped_command_suggests_the_right_one() -> None:
    """`forexd bakctest` and `forexd stauts` name the command that was meant."""
    res = run_cli("bakctest")
    assert 2 == res.returncode and "did you mean 'backtest'?" in res.stderr
    res = run_cli("stauts")
    assert 2 == res.returncode and "did you mean 'ctl status'?" in res.stderr


def test_a_mistyped_flag_is_named_with_the_right_one_by_its_subcommand() -> None:
    """`train --dta` says "did you mean '--data'" under train's own usage."""
    res = run_cli("train", "--symbol", "EURUSD", "--dta", "x.csv")
    assert 2 == res.returncode
    assert "unknown option --dta; did you mean '--data'?" in res.stderr
    assert "usage: forexd train" in res.stderr
    res = run_cli("backtest", "--strategyy", "sma_cross")
    assert 2 == res.returncode and "did you mean '--strategy'?" in res.stderr


def test_unknown_strategy_parameter_lists_the_valid_ones_with_defaults() -> None:
    """`--param fsat=3` suggests fast and lists every sma_cross parameter and its default."""
    res = run_cli("backtest", "--param", "fsat=3")
    assert 2 == res.returncode
    assert "did you mean 'fast'?" in res.stderr
    assert "fast=10, slow=20, units=10000" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli("backtest", "--strategy", "sma_crss")
    assert 2 == res.returncode and "did you mean 'sma_cross'?" in res.stderr


def test_json_errors_are_json_with_the_documented_exit_code(tmp_path: Path) -> None:
    """With --json, a failure is {"error": {code, message, hint}} on stdout and its exit code."""
    res = run_cli("ctl", "status", "--json", "--data-dir", str(tmp_path / "none"))
    assert 3 == res.returncode
    err = json.loads(res.stdout)["error"]
    assert "daemon_not_running" == err["code"] and str(tmp_path / "none") in err["message"]
    assert {"code", "message", "hint", "exit_code"} == set(err)
    res = run_cli("ctl", "stauts", "--json")
    assert 2 == res.returncode
    err = json.loads(res.stdout)["error"]
    assert "usage" == err["code"] and "did you mean 'status'?" in err["message"]


def test_importing_minute_bars_as_h1_is_refused_with_the_fix(tmp_path: Path) -> None:
    """M1 rows given --timeframe H1 are refused (nothing stored) unless --force."""
    m1 = _m1_file(tmp_path)
    data = tmp_path / "d"
    common = ("--symbol", "EURUSD", "--data-dir", str(data))
    res = run_cli("data", "import", str(m1), "--timeframe", "H1", *common)
    assert 2 == res.returncode
    assert "bars are 60 s apart (M1), not H1" in res.stderr
    assert "--timeframe M1" in res.stderr and "--force" in res.stderr
    assert not (data / "forexd.db").exists() or 0 == _count(data)
    forced = run_cli("data", "import", str(m1), "--timeframe", "H1", "--force", *common)
    assert 0 == forced.returncode, forced.stderr
    assert 600 == _count(data)


def test_importing_a_file_named_for_another_symbol_is_refused(tmp_path: Path) -> None:
    """The EURUSD file imported as GBPUSD is refused, naming EURUSD; --force allows it."""
    m1 = _m1_file(tmp_path)
    common = ("--timeframe", "M1", "--data-dir", str(tmp_path / "d"))
    res = run_cli("data", "import", str(m1), "--symbol", "GBPUSD", *common)
    assert 2 == res.returncode
    assert "the file name says EURUSD, but --symbol is GBPUSD" in res.stderr
    assert "--symbol EURUSD" in res.stderr
    assert (
        0 == run_cli("data", "import", str(m1), "--symbol", "GBPUSD", "--force", *common).returncode
    )


def test_from_store_error_names_what_is_stored_instead_of_a_wrong_import(tmp_path: Path) -> None:
    """With only M1 stored, `backtest --from-store --timeframe H1` points at M1, not H1 import."""
    m1 = _m1_file(tmp_path)
    data = tmp_path / "d"
    ok = run_cli("data", "import", str(m1), "--symbol", "EURUSD", "--data-dir", str(data))
    assert 0 == ok.returncode, ok.stderr
    res = run_cli(
        "backtest", "--from-store", "--symbol", "EURUSD", "--timeframe", "H1",
        "--data-dir", str(data),
    )  # fmt: skip
    assert 2 == res.returncode
    assert "(it has M1)" in res.stderr and "--timeframe M1" in res.stderr
    assert "file of H1 bars" in res.stderr


def test_backtest_summary_names_each_row_once() -> None:
    """The summary has one "Bars" row (the count) and the date range as "Period"."""
    res = run_cli("backtest", "--end", "2017-02-01", env={"COLUMNS": "80"})
    assert 0 == res.returncode, res.stderr
    assert 1 == len(re.findall(r"│ Bars ", res.stdout))
    assert "Period" in res.stdout


def test_ctrl_c_during_startup_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """A KeyboardInterrupt while pandas (or the CLI itself) loads ends quietly with 130."""
    for module in ("pandas", "difflib"):
        fake = tmp_path / module
        fake.mkdir()
        (fake / "__init__.py").write_text("raise KeyboardInterrupt\n", encoding="utf-8")
        path = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
        res = run_cli("backtest", env={"PYTHONPATH": path})
        assert 130 == res.returncode, (module, res.stderr)
        assert "Traceback" not in res.stderr and "KeyboardInterrupt" not in res.stderr
        (fake / "__init__.py").unlink()
        fake.rmdir()


def test_shell_completion_script_and_answers() -> None:
    """`forexd completion bash` prints a script; a completion request completes ctl actions."""
    res = run_cli("completion", "bash")
    assert 0 == res.returncode and "complete" in res.stdout and "forexd" in res.stdout
    env = {"_ARGCOMPLETE": "1", "COMP_LINE": "forexd ctl st", "COMP_POINT": "13"}
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"fxd-comp-{os.getpid()}"
    env["_ARGCOMPLETE_STDOUT_FILENAME"] = str(out)
    try:
        assert 0 == run_cli(env=env).returncode
        words = set(re.split(r"[\s\x0b]+", out.read_text().strip()))
    finally:
        out.unlink(missing_ok=True)
    assert {"status", "stop"} == words


def test_empty_models_list_says_how_to_get_one(tmp_path: Path) -> None:
    """`models list` with nothing registered says how to train and register a model."""
    res = run_cli("models", "list", "--data-dir", str(tmp_path))
    assert 0 == res.returncode
    assert "no models registered" in res.stdout and "--register" in res.stdout
    assert [] == json.loads(run_cli("models", "list", "--json", "--data-dir", str(tmp_path)).stdout)


def _count(data: Path) -> int:
    with sqlite3.connect(data / "forexd.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM candles").fetchone()[0])


def test_import_shows_progress_on_a_terminal_and_none_in_a_pipe(tmp_path: Path) -> None:
    """At a terminal, `data import` says what it is doing while it works; piped, it does not."""
    import pty
    import subprocess
    import sys

    m1 = _m1_file(tmp_path, rows=3000)
    argv = [sys.executable, "-m", "forexd", "data", "import", str(m1), "--symbol", "EURUSD",
            "--data-dir", str(tmp_path / "d")]  # fmt: skip
    leader, follower = pty.openpty()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=follower, text=True) as proc:
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the child closed the terminal (EIO): it is done
                break
            if not chunk:
                break
            seen += chunk
        out, _ = proc.communicate()
    os.close(leader)
    assert 0 == proc.returncode
    assert b"reading" in seen or b"writing" in seen, seen[-500:]
    assert "imported 3,000 new M1 candles" in out
    piped = run_cli("data", "import", str(m1), "--symbol", "EURUSD", "--data-dir", str(tmp_path))
    assert "reading" not in piped.stderr and "" == piped.stderr


def test_config_typos_name_the_strategy_or_parameter_meant(tmp_path: Path) -> None:
    """A misspelled strategy or parameter in a config file gets a suggestion and the list."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[[symbols]]\nsymbol = "EURUSD"\nparams = { fsat = 3 }\n', encoding="utf-8")
    res = run_cli("config", "check", str(bad))
    assert 2 == res.returncode
    assert "(did you mean 'fast'?)" in res.stderr
    assert (
        "sma_cross's parameters and defaults: stop_atr=None, take_profit_atr=None, "
        "trailing=False, fast=10, slow=20, units=10000"
    ) in res.stderr
    bad.write_text('[[symbols]]\nsymbol = "EURUSD"\nstrategy = "sma_crss"\n', encoding="utf-8")
    res = run_cli("config", "check", str(bad))
    assert 2 == res.returncode and "(did you mean 'sma_cross'?)" in res.stderr
