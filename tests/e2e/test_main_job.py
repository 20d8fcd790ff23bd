"""The README's main-job command on a small real slice: HBase to HBase through Airflow."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import happybase
import pandas as pd
import pytest

from pipelines.config import REPO_ROOT
from pipelines.spec import load_spec

pytestmark = pytest.mark.e2e

# Tickers A, AAL, AAP and AAPL; a logical date of its own keeps this run's model version
# and run folder apart from a full run's (2017-08-11).
ROW_START, ROW_STOP = "A#", "AB"
TICKERS = ("A", "AAL", "AAP", "AAPL")
LOGICAL_DATE = "2017-08-10"
VERSION = "v20170810T000000"
STEPS = 30


@pytest.fixture(scope="module")
def run(stack):
    command = [
        str(REPO_ROOT / "bin" / "main-job"), "--row-start", ROW_START, "--row-stop", ROW_STOP,
        "--epochs", "2", "--logical-date", LOGICAL_DATE,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                            env={**os.environ}, check=False)
    pipeline = load_spec(REPO_ROOT / "conf/pipelines/sp500_volatility.yaml")
    summary_path = pipeline.uri("runs", LOGICAL_DATE, "summary.json")
    return result, pipeline, summary_path


def slice_rows() -> pd.DataFrame:
    frames = [pd.read_csv(REPO_ROOT / f"data/sp500_5yr/{t}_data.csv") for t in TICKERS]
    bars = pd.concat(frames)
    return bars[bars["Date"] <= LOGICAL_DATE]


def test_command_succeeds_and_prints_summary(run):
    result, _, _ = run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "HOYA main job: pipeline sp500_volatility, logical date 2017-08-10" in result.stdout
    assert "gate passed: model rmse" in result.stdout
    assert "report: " in result.stdout


def test_counts_add_up_at_every_stage(run):
    _, _, summary_path = run
    summary = json.loads(open(summary_path).read())
    expected = len(slice_rows())
    assert summary["ingest"]["rows_read"] == expected
    assert summary["ingest"]["rows_written"] == expected
    assert summary["ingest"]["rows_quarantined"] == 0

    dataset = summary["dataset"]
    assert dataset["rows_read"] == expected
    assert dataset["quarantine_reasons"] == {
        "missing ret": len(TICKERS),
        f"insufficient history: fewer than {STEPS} rows up to this one in its series":
            (STEPS - 1) * len(TICKERS),
    }
    assert sum(dataset["splits"].values()) + dataset["quarantined"] == expected
    assert summary["encoded"]["splits"] == dataset["splits"]
    assert summary["encoded"]["feature_shape"] == [STEPS * 3 + 4 + 1]  # + code + error
    predicted = summary["predictions"]
    assert predicted["rows_read"] == sum(dataset["splits"].values())
    assert predicted["rows_written"] + predicted["rows_quarantined"] == predicted["rows_read"]


def test_model_beats_persistence_on_test_split(run):
    _, _, summary_path = run
    summary = json.loads(open(summary_path).read())
    model, baseline = summary["evaluation"]["model"], summary["evaluation"]["baseline"]
    assert summary["gate"]["passed"] is True
    assert model["rmse"] < baseline["rmse"]
    assert summary["gate"]["baseline_name"] == "persistence"
    assert summary["model_version"] == VERSION


def test_predictions_are_in_hbase_with_the_logical_date(run, stack):
    _, _, _ = run
    connection = happybase.Connection(stack.hbase.thrift_host, stack.hbase.thrift_port)
    try:
        cells = connection.table("sp500_predictions").row(
            b"AAPL#2017-08-10", include_timestamp=True
        )
        registry = connection.table("hoya_registry").cells(
            b"sp500_volatility", b"r:model_version", versions=10, include_timestamp=True
        )
    finally:
        connection.close()
    value, timestamp = cells[f"p:rv5@{VERSION}".encode()]
    logical_ms = int(dt.datetime(2017, 8, 10, tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert timestamp == logical_ms
    assert len(value) == 8  # a big-endian double
    # p:model_version keeps one version: the run of the latest logical date owns it.
    assert cells[b"p:model_version"][1] >= logical_ms
    # The registry keeps one cell per published run, stamped with its logical date. A
    # reader takes the newest, so a backfill of an older date does not replace a newer model.
    assert (VERSION.encode(), logical_ms) in registry


def test_report_has_its_plots(run):
    _, pipeline, _ = run
    report = open(pipeline.uri("runs", LOGICAL_DATE, "report.html")).read()
    assert report.count("<img src='data:image/png;base64,") == 4
    for title in ("Loss per epoch", "Predicted against actual", "Error distribution",
                  "Time per stage"):
        assert title in report
