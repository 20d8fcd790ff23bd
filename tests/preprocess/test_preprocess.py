"""The ingest and preprocess jobs on a real slice, checked against pandas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.config import REPO_ROOT
from pipelines.dataset import read_manifest
from pipelines.ingest.job import run_ingest
from pipelines.io.storage import spark_path
from pipelines.preprocess.job import PreprocessError, run_preprocess
from pipelines.spec import load_spec

DATA = REPO_ROOT / "data" / "sp500_5yr"
TICKERS = ("AAPL", "MSFT", "F")
TRAIN_END, VALIDATION_END = "2015-12-31", "2016-08-31"
STEPS, HORIZON = 30, 5


def pipeline_file(tmp_path: Path, files: str, **preprocess_changes) -> Path:
    preprocess = {
        "key": "ticker",
        "order_by": "date",
        "casts": {"open": "double", "high": "double", "low": "double", "close": "double",
                  "volume": "double"},
        "derive": [
            {"name": "ret", "expr": "log_return", "columns": ["close"]},
            {"name": "volume_change", "expr": "log1p_diff", "columns": ["volume"]},
            {"name": "range", "expr": "log_ratio", "columns": ["high", "low"]},
        ],
        "missing": {
            "range": {"strategy": "forward_fill"},
            "ret": {"strategy": "drop"},
            "volume_change": {"strategy": "drop"},
        },
        "normalize": {"method": "zscore", "columns": ["ret", "volume_change", "range"]},
        "window": {
            "steps": STEPS,
            "features": ["ret", "volume_change", "range"],
            "target": {"name": "rv5", "expr": "future_realized_volatility", "column": "ret",
                       "horizon": HORIZON},
            "baseline": "persistence",
            "max_gap_days": 10,
        },
        "split": {"by": "time", "train_end": TRAIN_END, "validation_end": VALIDATION_END},
        "rows_per_file": 1000,
        **preprocess_changes,
    }
    spec = {
        "name": "slice",
        "storage": {"root": str(tmp_path / "store")},
        "source": {
            "kind": "files", "path": files, "format": "csv",
            "rename": {"Date": "date", "Open": "open", "High": "high", "Low": "low",
                       "Close": "close", "Volume": "volume", "Name": "ticker"},
            "row_key_columns": ["ticker", "date"],
            "required": ["close", "volume"],
            "interval_column": "date",
        },
        "preprocess": preprocess,
    }
    path = tmp_path / "slice.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bars")
    for ticker in TICKERS:
        (folder / f"{ticker}_data.csv").write_bytes((DATA / f"{ticker}_data.csv").read_bytes())
    return folder


def expected_frame() -> pd.DataFrame:
    """Compute the slice's windows directly with pandas, the reference for Spark."""
    bars = pd.concat(pd.read_csv(DATA / f"{t}_data.csv") for t in TICKERS)
    bars = bars.rename(columns=str.lower).rename(columns={"name": "ticker"})
    bars = bars.sort_values(["ticker", "date"]).reset_index(drop=True)
    grouped = bars.groupby("ticker")
    bars["ret"] = np.log(bars["close"] / grouped["close"].shift(1))
    bars["volume_change"] = np.log1p(bars["volume"]) - np.log1p(grouped["volume"].shift(1))
    bars["range"] = np.log(bars["high"] / bars["low"])
    bars["range"] = bars.groupby("ticker")["range"].ffill()
    bars = bars.dropna(subset=["range", "ret", "volume_change"]).reset_index(drop=True)
    bars["split"] = np.where(bars["date"] <= TRAIN_END, "train",
                             np.where(bars["date"] <= VALIDATION_END, "validation", "test"))
    return bars


@pytest.fixture(scope="module")
def built(spark, config, slice_files, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("pipeline")
    pipeline = load_spec(pipeline_file(tmp_path, str(slice_files)))
    ingest = run_ingest(spark, pipeline, config)
    manifest = run_preprocess(spark, pipeline, config=config)
    return pipeline, ingest, manifest


def test_ingest_counts_every_row(built):
    _, ingest, _ = built
    rows = sum(len(pd.read_csv(DATA / f"{t}_data.csv")) for t in TICKERS)
    assert ingest["rows_read"] == rows == 3774
    assert ingest["rows_written"] == rows
    assert ingest["rows_quarantined"] == 0


def test_counts_match_pandas(built):
    _, _, manifest = built
    bars = expected_frame()
    windows = bars.groupby("ticker").cumcount() >= STEPS - 1
    expected = bars[windows]
    for split in ("train", "validation", "test"):
        assert manifest["splits"][split]["rows"] == int((expected["split"] == split).sum())
    first_rows = len(TICKERS)  # each series' first row has no previous close
    assert manifest["quarantine"]["reasons"] == {
        "missing ret": first_rows,
        f"insufficient history: fewer than {STEPS} rows up to this one in its series":
            (STEPS - 1) * len(TICKERS),
    }
    written = sum(s["rows"] for s in manifest["splits"].values())
    assert manifest["rows_read"] == written + manifest["quarantine"]["rows"] == 3774


def test_zscore_statistics_fitted_on_train_only(built):
    _, _, manifest = built
    bars = expected_frame()
    train = bars[bars["split"] == "train"]
    columns = manifest["statistics"]["normalize"]["columns"]
    for name in ("ret", "volume_change", "range"):
        assert columns[name]["center"] == pytest.approx(train[name].mean(), rel=1e-9)
        assert columns[name]["scale"] == pytest.approx(train[name].std(ddof=1), rel=1e-9)
        assert columns[name]["constant"] is False


def test_window_features_target_and_baseline(built, spark):
    pipeline, _, manifest = built
    bars = expected_frame()
    stats = manifest["statistics"]["normalize"]["columns"]
    msft = bars[bars["ticker"] == "MSFT"].reset_index(drop=True)
    row = 100  # a window well inside the training period
    date = msft.loc[row, "date"]
    got = (
        spark.read.parquet(spark_path(pipeline.uri("dataset", "train")))
        .filter(f"row_key = 'MSFT#{date}'").collect()
    )
    assert len(got) == 1
    features = np.array(got[0]["features"]).reshape(STEPS, 3)
    for channel, name in enumerate(("ret", "volume_change", "range")):
        values = msft.loc[row - STEPS + 1: row, name].to_numpy()
        scaled = (values - stats[name]["center"]) / stats[name]["scale"]
        np.testing.assert_allclose(features[:, channel], scaled, rtol=1e-5, atol=1e-5)
    future = msft.loc[row + 1: row + HORIZON, "ret"].to_numpy()
    past = msft.loc[row - HORIZON + 1: row, "ret"].to_numpy()
    assert got[0]["target"] == pytest.approx(100 * np.sqrt(np.sum(future**2)), rel=1e-9)
    assert got[0]["baseline"] == pytest.approx(100 * np.sqrt(np.sum(past**2)), rel=1e-9)
    assert manifest["feature_shape"] == [STEPS, 3]
    assert manifest["feature_names"][:3] == ["ret[t-29]", "volume_change[t-29]", "range[t-29]"]
    assert manifest["feature_names"][-1] == "range[t]"


def test_targets_do_not_cross_the_split_end(built, spark):
    pipeline, _, manifest = built
    train = spark.read.parquet(spark_path(pipeline.uri("dataset", "train"))).toPandas()
    unlabelled = train[train["target"].isna()]
    # The last HORIZON trading days of 2015 per ticker would need 2016 returns.
    assert len(unlabelled) == HORIZON * len(TICKERS)
    assert unlabelled["date"].min() >= "2015-12-23"
    assert manifest["splits"]["train"]["labelled_rows"] == len(train) - len(unlabelled)
    test = spark.read.parquet(spark_path(pipeline.uri("dataset", "test"))).toPandas()
    assert int(test["target"].isna().sum()) == HORIZON * len(TICKERS)  # end of the data


def test_fitted_statistics_are_reused(built, spark, config, tmp_path, slice_files):
    pipeline, _, manifest = built
    only_msft = tmp_path / "msft"
    only_msft.mkdir()
    (only_msft / "MSFT_data.csv").write_bytes((slice_files / "MSFT_data.csv").read_bytes())
    other = load_spec(pipeline_file(tmp_path, str(only_msft)))
    run_ingest(spark, other, config)
    reused = run_preprocess(spark, other, fitted_from=pipeline.uri("dataset"), config=config)

    assert reused["statistics"]["normalize"] == manifest["statistics"]["normalize"]
    assert reused["statistics"]["reused_from"] == pipeline.uri("dataset")
    first = spark.read.parquet(spark_path(pipeline.uri("dataset", "test"))).filter("ticker = 'MSFT'")
    second = spark.read.parquet(spark_path(other.uri("dataset", "test")))
    left = {r["row_key"]: r["features"] for r in first.collect()}
    right = {r["row_key"]: r["features"] for r in second.collect()}
    assert left.keys() == right.keys()
    assert all(left[key] == right[key] for key in left)


def test_unknown_column_is_rejected_with_the_key(spark, config, slice_files, tmp_path):
    path = pipeline_file(tmp_path, str(slice_files),
                         normalize={"method": "zscore", "columns": ["ret", "closing"]})
    pipeline = load_spec(path)
    run_ingest(spark, pipeline, config)
    with pytest.raises(PreprocessError, match="preprocess.normalize.columns: column 'closing' is not in the input"):
        run_preprocess(spark, pipeline, config=config)


def test_manifest_is_readable_json(built):
    pipeline, _, manifest = built
    on_disk = json.loads(Path(pipeline.uri("dataset", "manifest.json")).read_text())
    assert on_disk == read_manifest(pipeline.uri("dataset"))
    assert on_disk["format_version"] == 1
    assert on_disk["config_hash"] == pipeline.config_hash
    assert on_disk["source"]["ingest"]["rows_read"] == 3774
