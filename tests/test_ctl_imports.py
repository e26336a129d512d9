"""`forexd ctl` starts light: no numpy, pandas, pydantic or daemon runtime in its process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forexd.config import load_settings
from forexd.daemon.ctlclient import locate
from forexd.daemon.paths import resolve_paths
from forexd.errors import ConfigError

HEAVY = ("numpy", "pandas", "pyarrow", "pydantic", "pydantic_settings", "anyio", "structlog")

PROBE = """
import json, sys
from forexd.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"code": code, "heavy": heavy}}))
"""


@pytest.mark.parametrize(
    "action",
    [
        ["status"], ["stop"], ["pause", "EURUSD"], ["risk"], ["logs"], ["version"], ["jobs"],
        ["train", "EURUSD", "--lookback-candles", "1500"], ["cancel", "job-1"],
    ],
)  # fmt: skip
def test_ctl_actions_import_neither_numpy_nor_pandas(tmp_path: Path, action: list[str]) -> None:
    """A fresh interpreter running a ctl action loads none of the heavy libraries."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), "ctl", *action],
        capture_output=True,
        text=True,
        check=False,
        env={"FOREXD_DATA_DIR": str(tmp_path), "PATH": "", **_pythonpath()},
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert 3 == report["code"]  # no daemon here: the path up to the socket was exercised
    assert [] == report["heavy"]


def _pythonpath() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HOME")}


def test_ctl_finds_the_daemon_where_the_full_config_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flag > FOREXD_* environment > config file > default, as load_settings resolves it."""
    config = tmp_path / "forexd.toml"
    config.write_text(f'data_dir = "{tmp_path / "file"}"\nruntime_dir = "{tmp_path / "rt"}"\n')
    monkeypatch.delenv("FOREXD_DATA_DIR", raising=False)
    monkeypatch.delenv("FOREXD_RUNTIME_DIR", raising=False)
    for flag in (None, tmp_path / "flag"):
        expected = resolve_paths(load_settings(config, data_dir=flag))
        assert expected == locate(config, flag)
    monkeypatch.setenv("FOREXD_DATA_DIR", str(tmp_path / "env"))
    assert resolve_paths(load_settings(config)) == locate(config)
    assert tmp_path / "env" == locate(config).data_dir
    monkeypatch.delenv("FOREXD_DATA_DIR")
    assert resolve_paths(load_settings(None)) == locate(None)


def test_ctl_names_a_bad_location_key_in_the_config(tmp_path: Path) -> None:
    """A data_dir that is not a path string is a ConfigError naming the file and key."""
    config = tmp_path / "bad.toml"
    config.write_text("data_dir = 7\n")
    with pytest.raises(ConfigError, match="data_dir") as info:
        locate(config)
    assert str(config) in str(info.value)
