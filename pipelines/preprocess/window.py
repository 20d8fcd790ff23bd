"""Per-key time-series windows built with Spark window functions.

For a row t of a series, the features are the last ``steps`` values of each channel,
flattened time-major into one ``features`` array: step 0 is row t-steps+1 and the last
step is row t. The target looks ``horizon`` rows ahead. Nothing is collected to
the driver.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipelines.preprocess.spec import PreprocessSpec, WindowSpec
from pipelines.preprocess.steps import SPLIT_COLUMN, quarantine_rows

RAW_SUFFIX = "__raw"


def raw_name(column: str) -> str:
    """Return the name of the unscaled copy of ``column`` kept for targets and baselines."""
    return f"{column}{RAW_SUFFIX}"


def feature_names(window: WindowSpec) -> list[str]:
    """Return one name per flat feature, e.g. ``ret[t-29]`` ... ``range[t]``."""
    names = []
    for step in range(window.steps):
        lag = window.steps - 1 - step
        suffix = "t" if lag == 0 else f"t-{lag}"
        names.extend(f"{channel}[{suffix}]" for channel in window.features)
    return names


def _realized_volatility(values: list[Column]) -> Column:
    total = values[0] * values[0]
    for value in values[1:]:
        total = total + value * value
    return F.sqrt(total) * F.lit(100.0)


def _target(window: WindowSpec, series: Window) -> Column:
    target = window.target
    source = F.col(raw_name(target.column))
    horizon = target.horizon
    if target.expr == "future_realized_volatility":
        ahead = [F.lead(source, k).over(series) for k in range(1, horizon + 1)]
        return _realized_volatility(ahead)
    future = F.lead(source, horizon).over(series)
    if target.expr == "future_value":
        return future
    return F.when(future.isNull() | source.isNull(), None).otherwise(
        (future > source).cast("double")
    )


def _baseline(window: WindowSpec, series: Window) -> Column:
    target = window.target
    source = F.col(raw_name(target.column))
    if window.baseline == "trailing_mean":
        trailing = series.rowsBetween(-(window.baseline_steps - 1), 0)
        return F.avg(source).over(trailing)
    if target.expr == "future_realized_volatility":
        behind = [F.lag(source, k).over(series) for k in range(target.horizon)]
        return _realized_volatility(behind)
    if target.expr == "future_value":
        return source
    # Persistence for a direction: the last observed direction.
    return (source > F.lag(source, target.horizon).over(series)).cast("double")


def _split_end_embargo(frame: DataFrame, spec: PreprocessSpec, series: Window) -> Column:
    """Return a condition true where the target's horizon reaches past the row's split.

    Such a target would be computed from rows of the next split and so leak its data.
    The row stays with a null target, because its features still teach an autoencoder.
    """
    if spec.split.by != "time":
        return F.lit(False)
    horizon_date = F.to_date(F.lead(F.col(spec.order_by), spec.window.target.horizon).over(series))
    split_end = (
        F.when(F.col(SPLIT_COLUMN) == "train", F.lit(spec.split.train_end.isoformat()))
        .when(F.col(SPLIT_COLUMN) == "validation", F.lit(spec.split.validation_end.isoformat()))
        .otherwise(F.lit("9999-12-31"))
        .cast("date")
    )
    return horizon_date > split_end


def build_windows(frame: DataFrame, spec: PreprocessSpec) -> tuple[DataFrame, DataFrame]:
    """Return (one row per complete window, quarantine of rows that end no window)."""
    window = spec.window
    series = Window.partitionBy(spec.key).orderBy(spec.order_by)
    steps = window.steps

    position = F.row_number().over(series)
    frame = frame.withColumn("_position", position)
    lags: list[Column] = []
    for step in range(steps):
        lag = steps - 1 - step
        for channel in window.features:
            value = F.col(channel) if lag == 0 else F.lag(F.col(channel), lag).over(series)
            lags.append(value.cast("float"))
    frame = frame.withColumn("features", F.array(*lags))

    gap = F.datediff(F.to_date(F.col(spec.order_by)), F.to_date(F.lag(spec.order_by, 1).over(series)))
    frame = frame.withColumn("_gap", gap)
    if window.max_gap_days is not None and steps > 1:
        frame = frame.withColumn(
            "_max_gap", F.max("_gap").over(series.rowsBetween(-(steps - 2), 0))
        )
    else:
        frame = frame.withColumn("_max_gap", F.lit(0))

    frame = frame.withColumn("target", _target(window, series))
    frame = frame.withColumn("target", F.when(~_split_end_embargo(frame, spec, series), F.col("target")))
    frame = frame.withColumn("baseline", _baseline(window, series))

    frame, short = quarantine_rows(
        frame,
        F.col("_position") < steps,
        f"insufficient history: fewer than {steps} rows up to this one in its series",
        "window",
    )
    bad = short
    if window.max_gap_days is not None:
        frame, gapped = quarantine_rows(
            frame,
            F.col("_max_gap") > window.max_gap_days,
            f"date gap of more than {window.max_gap_days} days inside the window",
            "window",
        )
        bad = bad.unionByName(gapped)
    return frame.drop("_position", "_gap", "_max_gap"), bad
