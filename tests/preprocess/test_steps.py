"""Single preprocess steps on small real rows: clipping, scaling, categories, splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.config import REPO_ROOT
from pipelines.preprocess import steps
from pipelines.preprocess.job import transform
from pipelines.preprocess.spec import PreprocessSpec

DATA = REPO_ROOT / "data" / "sp500_5yr"


@pytest.fixture(scope="module")
def bars(spark):
    """AAPL, MSFT and F daily bars with a row key, as Spark rows (real values)."""
    frame = pd.concat(pd.read_csv(DATA / f"{t}_data.csv") for t in ("AAPL", "MSFT", "F"))
    frame = frame.rename(columns=str.lower).rename(columns={"name": "ticker"})
    frame["row_key"] = frame["ticker"] + "#" + frame["date"]
    return frame.reset_index(drop=True), spark.createDataFrame(frame)


def tabular_spec(**changes) -> PreprocessSpec:
    spec = {
        "features": ["close", "volume"],
        "target": {"column": "open", "task": "regression"},
        "split": {"by": "hash", "train_percent": 60, "validation_percent": 20},
        **changes,
    }
    return PreprocessSpec.model_validate(spec)


def train_rows(frame, spark_frame, spec):
    labelled = steps.add_split_column(spark_frame, spec).select("row_key", steps.SPLIT_COLUMN)
    split = labelled.toPandas().set_index("row_key")[steps.SPLIT_COLUMN]
    return frame[frame["row_key"].map(split) == "train"]


def test_hash_split_is_deterministic_and_proportional(bars):
    _, frame = bars
    spec = tabular_spec()
    first = steps.add_split_column(frame, spec).groupBy(steps.SPLIT_COLUMN).count().collect()
    second = steps.add_split_column(frame, spec).groupBy(steps.SPLIT_COLUMN).count().collect()
    assert sorted(first) == sorted(second)
    counts = {row[0]: row[1] for row in first}
    assert sum(counts.values()) == 3774
    assert abs(counts["train"] / 3774 - 0.60) < 0.03
    assert abs(counts["validation"] / 3774 - 0.20) < 0.03


def test_exact_quantile_clipping_matches_numpy(bars):
    pandas_frame, frame = bars
    spec = tabular_spec(clip={"columns": ["volume"], "lower_quantile": 0.05,
                              "upper_quantile": 0.95, "relative_error": 0})
    labelled = steps.add_split_column(frame, spec)
    clipped, fitted = steps.clip_outliers(labelled, spec, None)
    train = train_rows(pandas_frame, frame, spec)
    low, high = np.quantile(train["volume"], [0.05, 0.95])
    assert fitted["clip"]["volume"] == pytest.approx([low, high], rel=1e-12)
    values = clipped.select("volume").toPandas()["volume"]
    assert values.min() == pytest.approx(low)
    assert values.max() == pytest.approx(high)


@pytest.mark.parametrize("method", ["minmax", "robust"])
def test_minmax_and_robust_scaling_use_train_rows(bars, method):
    pandas_frame, frame = bars
    spec = tabular_spec(normalize={"method": method, "columns": ["close"]})
    scaled, fitted = steps.normalize(steps.add_split_column(frame, spec), spec, None)
    train = train_rows(pandas_frame, frame, spec)["close"]
    stats = fitted["normalize"]["columns"]["close"]
    if method == "minmax":
        assert stats["center"] == train.min()
        assert stats["scale"] == pytest.approx(train.max() - train.min())
    else:
        q25, median, q75 = np.quantile(train, [0.25, 0.5, 0.75])
        assert stats["center"] == pytest.approx(median)
        assert stats["scale"] == pytest.approx(q75 - q25)
    row = scaled.filter("row_key = 'AAPL#2012-08-13'").first()
    assert row["close"] == pytest.approx((90.0 - stats["center"]) / stats["scale"])


def test_constant_column_is_reported_and_left_unscaled(bars, caplog):
    _, frame = bars
    constant = frame.withColumn("one", frame["close"] * 0 + 7.0)
    spec = tabular_spec(normalize={"method": "zscore", "columns": ["one"]})
    with caplog.at_level("WARNING"):
        scaled, fitted = steps.normalize(steps.add_split_column(constant, spec), spec, None)
    stats = fitted["normalize"]["columns"]["one"]
    assert stats == {"center": 7.0, "scale": 0.0, "constant": True}
    assert "column one is constant on the training split" in caplog.text
    values = {row["one"] for row in scaled.select("one").collect()}
    assert values == {0.0}


def test_one_hot_has_an_unknown_bucket(bars, spark):
    _, frame = bars
    spec = tabular_spec(categorical=[{"column": "ticker", "encoding": "onehot"}],
                        split={"by": "time", "train_end": "2015-12-31",
                               "validation_end": "2016-06-30"},
                        order_by="date")
    train_only_aapl = frame.filter("ticker = 'AAPL' or date > '2015-12-31'")
    rows, _, fitted, names = transform(train_only_aapl, spec)
    assert fitted["categories"] == {"ticker": ["AAPL"]}
    assert names == ["close", "volume", "ticker=AAPL", f"ticker={steps.UNKNOWN_CATEGORY}"]
    encoded = {
        (r["ticker"], tuple(r["features"][2:])) for r in rows.select("ticker", "features").collect()
    }
    assert encoded == {("AAPL", (1.0, 0.0)), ("MSFT", (0.0, 1.0)), ("F", (0.0, 1.0))}


def test_mean_fill_uses_the_training_mean(bars, spark):
    pandas_frame, frame = bars
    spec = tabular_spec(missing={"open": {"strategy": "mean"}})
    labelled = steps.add_split_column(frame, spec)
    filled, quarantined, fitted = steps.handle_missing(labelled, spec, None)
    train = train_rows(pandas_frame, frame, spec)
    assert fitted["fill"]["open"] == pytest.approx(train["open"].mean(), rel=1e-12)
    assert filled.filter("open is null").count() == 0
    assert quarantined.count() == 0


def test_drop_sends_rows_to_quarantine_with_reason(bars):
    pandas_frame, frame = bars
    spec = tabular_spec(missing={"open": {"strategy": "drop"}})
    kept, quarantined, _ = steps.handle_missing(steps.add_split_column(frame, spec), spec, None)
    nulls = int(pandas_frame["open"].isna().sum())
    assert quarantined.count() == nulls
    assert kept.count() == 3774 - nulls
    assert {r["reason"] for r in quarantined.collect()} <= {"missing open"}
