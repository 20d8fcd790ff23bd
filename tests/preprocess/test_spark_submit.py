"""The ingest and preprocess jobs through spark-submit, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from pipelines.config import REPO_ROOT
from test_preprocess import TICKERS, pipeline_file

HOYA = REPO_ROOT / "bin" / "hoya"


def test_ingest_and_preprocess_commands(tmp_path, stack):
    files = tmp_path / "bars"
    files.mkdir()
    for ticker in TICKERS:
        data = (REPO_ROOT / "data/sp500_5yr" / f"{ticker}_data.csv").read_bytes()
        (files / f"{ticker}_data.csv").write_bytes(data)
    pipeline = pipeline_file(tmp_path, str(files))
    # A user's shell: no job environment on PATH, no PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYSPARK_PYTHON"}}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"

    for command in (["ingest", "--pipeline", str(pipeline), "--until", "2016-12-31"],
                    ["preprocess", "--pipeline", str(pipeline)]):
        result = subprocess.run([str(HOYA), *command], capture_output=True, text=True,
                                env=env, timeout=600, check=False)
        assert result.returncode == 0, result.stderr[-3000:]

    store = tmp_path / "store"
    ingest = json.loads((store / "raw" / "ingest.json").read_text())
    assert ingest["until"] == "2016-12-31"
    assert ingest["rows_read"] == ingest["rows_written"] == 3 * 1104  # bars up to 2016-12-30
    manifest = json.loads((store / "dataset" / "manifest.json").read_text())
    assert manifest["rows_read"] == 3 * 1104
    assert sum(s["rows"] for s in manifest["splits"].values()) + manifest["quarantine"]["rows"] \
        == 3 * 1104
    assert Path(store / "dataset" / "test").is_dir()
