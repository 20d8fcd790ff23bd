"""Pipeline-file checks that relate sections to each other and to hbase_schema/."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from pipelines.checks import cross_check
from pipelines.config import REPO_ROOT
from pipelines.spec import SpecError, load_spec

SP500 = REPO_ROOT / "conf/pipelines/sp500_volatility.yaml"


def variant(tmp_path, change) -> "Path":  # noqa: F821
    data = yaml.safe_load(SP500.read_text())
    change(data)
    path = tmp_path / "sp500_volatility.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_shipped_pipeline_has_no_problems():
    assert cross_check(load_spec(SP500)) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["preprocess"]["normalize"].update(columns=["ret", "closing"]),
         "preprocess.normalize.columns: column 'closing' is not in the input"),
        (lambda d: d["preprocess"]["window"]["target"].update(column="rets"),
         "preprocess.window.target.column: column 'rets' is not in the input"),
        (lambda d: d["source"].update(columns=["ticker", "date", "close", "volume"]),
         "preprocess.derive[2].columns: column 'high' is not in the input"),
        (lambda d: d["source"].update(table="sp500_bars"),
         "source.table = 'sp500_bars'"),
        (lambda d: d["source"].update(interval_column="day"),
         "source.interval_column: column 'day' is not read"),
        (lambda d: d["storage"].update(root="s3://bucket/x"),
         "storage.root = 's3://bucket/x': use a local folder or an hdfs:// URI"),
        (lambda d: d["evaluate"]["gate"].update(metric="accuracy"),
         "evaluate.gate.metric = 'accuracy' does not fit a regression target"),
        (lambda d: d["output"].update(table="predictions_table"),
         "output.table = 'predictions_table'"),
    ],
)
def test_cross_check_names_the_key(tmp_path, change, expected):
    problems = cross_check(load_spec(variant(tmp_path, change)))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("99 99 99 99 99", "cron minute '99' is outside 0-59"),
        ("0 25 * * *", "cron hour '25' is outside 0-23"),
        ("*/x * * * *", "cron minute step 'x' is not a number"),
        ("0 0 * *", "is neither an @preset nor a 5-field cron expression"),
    ],
)
def test_bad_cron_is_rejected(tmp_path, schedule, expected):
    path = variant(tmp_path, lambda d: d["dag"].update(schedule=schedule))
    with pytest.raises(SpecError, match=expected):
        load_spec(path)


@pytest.mark.parametrize("schedule", ["@daily", "0 6 * * 1-5", "*/15 0-6 1,15 jan-jun mon"])
def test_good_cron_is_accepted(tmp_path, schedule):
    assert load_spec(variant(tmp_path, lambda d: d["dag"].update(schedule=schedule)))


def test_validate_command_reports_cross_check(tmp_path):
    path = variant(tmp_path, lambda d: d["preprocess"]["normalize"].update(columns=["closing"]))
    result = subprocess.run([str(REPO_ROOT / "bin/hoya"), "pipeline", "validate", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert ("error: sp500_volatility.yaml: preprocess.normalize.columns: column 'closing' is not"
            " in the input") in result.stderr


def test_duplicate_derive_names_are_rejected(tmp_path):
    def twice(data):
        data["preprocess"]["derive"].append({"name": "ret", "expr": "log", "columns": ["close"]})

    with pytest.raises(SpecError, match=r"preprocess.derive names \['ret'\] more than once"):
        load_spec(variant(tmp_path, twice))
