"""Row-level preprocessing steps in Spark: casts, derived columns, missing values,
clipping, normalization and categorical encoding.

Every statistic (fill values, quantiles, scaling, category lists) is fitted on the rows
of the training split only and returned in a JSON-ready dict. Passing that dict back
as ``fitted`` reuses the statistics unchanged, so prediction-time data is transformed
exactly like the training data.

Rows that a step cannot keep are split off into a quarantine DataFrame
(``row_key``, ``reason``, ``stage``) rather than dropped.
"""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipelines.preprocess.spec import PreprocessSpec

log = logging.getLogger(__name__)

SPLIT_COLUMN = "_split"
UNKNOWN_CATEGORY = "__unknown__"
QUARANTINE_COLUMNS = ("row_key", "reason", "stage")


def quarantine_rows(frame: DataFrame, condition: Column, reason: Column | str, stage: str):
    """Split ``frame`` into (kept rows, quarantined rows) by ``condition``."""
    reason_column = F.lit(reason) if isinstance(reason, str) else reason
    bad = frame.filter(condition).select(
        F.col("row_key").cast("string").alias("row_key"),
        reason_column.alias("reason"),
        F.lit(stage).alias("stage"),
    )
    return frame.filter(~condition | condition.isNull()), bad


def _series_window(spec: PreprocessSpec):
    if spec.key and spec.order_by:
        return Window.partitionBy(spec.key).orderBy(spec.order_by)
    if spec.order_by:
        return Window.orderBy(spec.order_by)
    return None


def add_split_column(frame: DataFrame, spec: PreprocessSpec) -> DataFrame:
    """Label each row train, validation or test: by date, or by a hash of the row key."""
    split = spec.split
    if split.by == "time":
        date = F.to_date(F.col(spec.order_by))
        label = (
            F.when(date <= F.lit(split.train_end.isoformat()).cast("date"), "train")
            .when(date <= F.lit(split.validation_end.isoformat()).cast("date"), "validation")
            .otherwise("test")
        )
    else:
        bucket = F.pmod(F.xxhash64(F.col("row_key")), F.lit(100))
        label = (
            F.when(bucket < split.train_percent, "train")
            .when(bucket < split.train_percent + split.validation_percent, "validation")
            .otherwise("test")
        )
    return frame.withColumn(SPLIT_COLUMN, label)


def apply_casts(frame: DataFrame, spec: PreprocessSpec) -> DataFrame:
    for column, kind in spec.casts.items():
        frame = frame.withColumn(column, F.col(column).cast(kind))
    return frame


def _safe_log(column: Column) -> Column:
    return F.when(column > 0, F.log(column))


def derive_columns(frame: DataFrame, spec: PreprocessSpec) -> DataFrame:
    """Add the derived columns; an expression undefined at a row gives null there."""
    window = _series_window(spec)
    for item in spec.derive:
        first = F.col(item.columns[0]).cast("double")
        second = F.col(item.columns[-1]).cast("double")
        previous = F.lag(first, 1).over(window) if window is not None else None
        if item.expr in {"log_return", "log1p_diff", "diff"} and previous is None:
            raise ValueError(
                f"preprocess.derive '{item.name}': expr '{item.expr}' needs "
                "preprocess.order_by (and key for several series)"
            )
        expressions = {
            "log_return": lambda: _safe_log(first / previous),
            "log1p_diff": lambda: _safe_log(1 + first) - _safe_log(1 + previous),
            "log_ratio": lambda: _safe_log(first / second),
            "log": lambda: _safe_log(first),
            "log1p": lambda: _safe_log(1 + first),
            "diff": lambda: first - previous,
            "ratio": lambda: F.when(second != 0, first / second),
        }
        frame = frame.withColumn(item.name, expressions[item.expr]())
    return frame


def _train_rows(frame: DataFrame) -> DataFrame:
    return frame.filter(F.col(SPLIT_COLUMN) == "train")


def _exact_quantiles(frame: DataFrame, column: str, probabilities: list[float]) -> list[float]:
    values = ", ".join(str(p) for p in probabilities)
    row = frame.select(F.expr(f"percentile(`{column}`, array({values}))").alias("q")).first()
    if row is None or row["q"] is None:
        return [float("nan")] * len(probabilities)
    return [float(v) for v in row["q"]]


def handle_missing(
    frame: DataFrame, spec: PreprocessSpec, fitted: dict[str, Any] | None
) -> tuple[DataFrame, DataFrame | None, dict[str, Any]]:
    """Apply each column's missing-value rule; return (rows, quarantine, fill values)."""
    fills: dict[str, Any] = dict((fitted or {}).get("fill", {}))
    quarantined: DataFrame | None = None
    window = _series_window(spec)

    float_columns = {name for name, kind in frame.dtypes if kind in {"double", "float"}}
    for column, rule in spec.missing.items():
        if column in float_columns:  # NaN (e.g. from pandas or Parquet) counts as missing
            frame = frame.withColumn(column, F.when(~F.isnan(column), F.col(column)))
        if rule.strategy in {"mean", "median"} and column not in fills:
            train = _train_rows(frame)
            if rule.strategy == "mean":
                value = train.select(F.avg(column)).first()[0]
            else:
                value = _exact_quantiles(train, column, [0.5])[0]
            fills[column] = None if value is None else float(value)
        elif rule.strategy == "constant":
            fills[column] = rule.value

        if rule.strategy == "forward_fill":
            if window is None:
                raise ValueError(
                    f"preprocess.missing.{column}: forward_fill needs preprocess.order_by"
                )
            filled = F.last(F.col(column), ignorenulls=True).over(
                window.rowsBetween(Window.unboundedPreceding, 0)
            )
            frame = frame.withColumn(column, filled)
            reason = f"missing {column} (no earlier value in its series to forward-fill)"
        elif rule.strategy in {"mean", "median", "constant"}:
            frame = frame.withColumn(column, F.coalesce(F.col(column), F.lit(fills[column])))
            reason = f"missing {column} (no fill value: the training split has none)"
        else:
            reason = f"missing {column}"

        frame, bad = quarantine_rows(frame, F.col(column).isNull(), reason, "preprocess")
        quarantined = bad if quarantined is None else quarantined.unionByName(bad)
    return frame, quarantined, {"fill": fills}


def clip_outliers(
    frame: DataFrame, spec: PreprocessSpec, fitted: dict[str, Any] | None
) -> tuple[DataFrame, dict[str, Any]]:
    """Clip columns to quantiles of the training split."""
    if spec.clip is None:
        return frame, {}
    bounds: dict[str, list[float]] = dict((fitted or {}).get("clip", {}))
    missing = [c for c in spec.clip.columns if c not in bounds]
    if missing:
        probabilities = [spec.clip.lower_quantile, spec.clip.upper_quantile]
        train = _train_rows(frame)
        if spec.clip.relative_error == 0:
            for column in missing:
                bounds[column] = _exact_quantiles(train, column, probabilities)
        else:
            found = train.approxQuantile(missing, probabilities, spec.clip.relative_error)
            bounds.update({c: [float(v) for v in q] for c, q in zip(missing, found)})
    for column in spec.clip.columns:
        low, high = bounds[column]
        frame = frame.withColumn(column, F.least(F.greatest(F.col(column), F.lit(low)), F.lit(high)))
    return frame, {"clip": bounds}


def _fit_scaling(frame: DataFrame, method: str, columns: list[str]) -> dict[str, dict[str, Any]]:
    train = _train_rows(frame)
    scaling: dict[str, dict[str, Any]] = {}
    if method == "zscore":
        aggregates = [F.avg(c).alias(f"{c}__mean") for c in columns]
        aggregates += [F.stddev_samp(c).alias(f"{c}__std") for c in columns]
        row = train.select(*aggregates).first()
        for c in columns:
            scaling[c] = {"center": row[f"{c}__mean"], "scale": row[f"{c}__std"]}
    elif method == "minmax":
        aggregates = [F.min(c).alias(f"{c}__min") for c in columns]
        aggregates += [F.max(c).alias(f"{c}__max") for c in columns]
        row = train.select(*aggregates).first()
        for c in columns:
            low, high = row[f"{c}__min"], row[f"{c}__max"]
            scale = None if low is None or high is None else high - low
            scaling[c] = {"center": low, "scale": scale}
    else:
        for c in columns:
            q25, median, q75 = _exact_quantiles(train, c, [0.25, 0.5, 0.75])
            scaling[c] = {"center": median, "scale": q75 - q25}
    return scaling


def normalize(
    frame: DataFrame, spec: PreprocessSpec, fitted: dict[str, Any] | None
) -> tuple[DataFrame, dict[str, Any]]:
    """Scale columns as (x - center) / scale with training-split statistics.

    A column whose scale is 0 or undefined is constant on the training split: it is
    reported, marked ``constant`` and left unscaled (only centered) instead of divided
    by zero.
    """
    if spec.normalize is None:
        return frame, {}
    method = spec.normalize.method
    columns = spec.normalize.columns
    previous = (fitted or {}).get("normalize")
    if previous:
        scaling = previous["columns"]
    else:
        scaling = _fit_scaling(frame, method, columns)
        for column, stats in scaling.items():
            scale = stats["scale"]
            stats["constant"] = scale is None or scale == 0 or scale != scale
            if stats["constant"]:
                log.warning(
                    "column %s is constant on the training split (scale %s); left unscaled",
                    column, scale,
                )
    for column in columns:
        stats = scaling[column]
        center = F.lit(stats["center"] if stats["center"] is not None else 0.0)
        if stats["constant"]:
            frame = frame.withColumn(column, F.col(column) - center)
        else:
            frame = frame.withColumn(column, (F.col(column) - center) / F.lit(stats["scale"]))
    return frame, {"normalize": {"method": method, "columns": scaling}}


def encode_categories(
    frame: DataFrame, spec: PreprocessSpec, fitted: dict[str, Any] | None
) -> tuple[DataFrame, dict[str, Any], list[str]]:
    """String-index or one-hot the categorical columns with an unknown bucket.

    Categories are the sorted distinct values of the training split; a value first
    seen later gets the index ``len(categories)``, the unknown bucket.
    Returns (frame, fitted categories, names of the new feature columns).
    """
    categories: dict[str, list[str]] = dict((fitted or {}).get("categories", {}))
    new_columns: list[str] = []
    for item in spec.categorical:
        column = item.column
        if column not in categories:
            rows = _train_rows(frame).select(F.col(column).cast("string")).distinct().collect()
            categories[column] = sorted(r[0] for r in rows if r[0] is not None)
        values = categories[column]
        index = F.lit(len(values))
        for position, value in reversed(list(enumerate(values))):
            index = F.when(F.col(column).cast("string") == value, position).otherwise(index)
        if item.encoding == "index":
            name = f"{column}__index"
            frame = frame.withColumn(name, index.cast("double"))
            new_columns.append(name)
            continue
        for position, value in enumerate([*values, UNKNOWN_CATEGORY]):
            name = f"{column}={value}"
            frame = frame.withColumn(name, (index == position).cast("double"))
            new_columns.append(name)
    return frame, ({"categories": categories} if categories else {}), new_columns
