"""The ``source`` and ``preprocess`` sections of a pipeline file.

Only pydantic is imported here: the Airflow environment validates pipeline files too.

Derived-column expressions (``derive``), each computed per series key in date order:

=================  ================  ===========================================
expr               inputs            value at row t
=================  ================  ===========================================
``log_return``     one column x      ln(x_t / x_{t-1})
``log1p_diff``     one column x      ln(1 + x_t) - ln(1 + x_{t-1})
``log_ratio``      two columns a, b  ln(a_t / b_t)
``log``            one column x      ln(x_t)
``log1p``          one column x      ln(1 + x_t)
``diff``           one column x      x_t - x_{t-1}
``ratio``          two columns a, b  a_t / b_t
=================  ================  ===========================================

A value that the expression cannot take (ln of 0 or of a negative number, division
by 0) is null, and the missing-value rule of the derived column decides what happens.

Targets (``window.target``), per series key in date order, with horizon H:

==============================  ====================================================
expr                            value at row t
==============================  ====================================================
``future_realized_volatility``  100 * sqrt(sum of x_{t+k}^2 for k = 1..H)
``future_value``                x_{t+H}
``future_direction``            1.0 if x_{t+H} > x_t else 0.0 (binary task)
==============================  ====================================================

Baselines (``window.baseline``) are computed from the same rows as the features.
``persistence`` is the target's expression over the last H rows instead of the next
H: trailing realized volatility, or x_t for future_value. ``trailing_mean`` is the
mean of the target column's last ``baseline_steps`` values.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DERIVE_ARITY = {
    "log_return": 1,
    "log1p_diff": 1,
    "log_ratio": 2,
    "log": 1,
    "log1p": 1,
    "diff": 1,
    "ratio": 2,
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(_Section):
    """Where the raw rows come from: an HBase table by its schema, or files."""

    kind: Literal["hbase", "files"] = Field(description="'hbase' or 'files'")
    table: str | None = Field(None, description="the hbase_schema name, for kind hbase")
    path: str | None = Field(
        None, description="a file, folder or glob, local or hdfs://, for kind files"
    )
    format: Literal["csv", "jsonl", "parquet"] = Field(
        "csv", description="'csv', 'jsonl' or 'parquet', for kind files"
    )
    columns: list[str] | None = Field(None, description="columns to read; null reads all")
    rename: dict[str, str] = Field(
        default_factory=dict, description="file column name to pipeline column name"
    )
    row_key_columns: list[str] = Field(
        default_factory=list,
        description="for files without a row_key column: columns joined with '#' into one",
    )
    required: list[str] = Field(
        default_factory=list, description="columns whose null sends the row to quarantine"
    )
    interval_column: str | None = Field(
        None,
        description="a YYYY-MM-DD column; a run given --until reads only rows up to that "
        "date, so a backfill of a past data interval reproduces that interval's input",
    )
    row_start: str | None = Field(None, description="first row key (inclusive), or null")
    row_stop: str | None = Field(None, description="row key to stop before, or null")
    time_range: tuple[int, int] | None = Field(
        None, description="[start_ms, end_ms) of cell timestamps, or null"
    )

    @model_validator(mode="after")
    def _check_kind(self) -> "SourceSpec":
        if self.kind == "hbase" and not self.table:
            raise ValueError("source.kind 'hbase' needs source.table, an hbase_schema name")
        if self.kind == "files" and not self.path:
            raise ValueError("source.kind 'files' needs source.path, a file, folder or glob")
        return self


class DeriveSpec(_Section):
    name: str = Field(description="the new column's name")
    expr: Literal["log_return", "log1p_diff", "log_ratio", "log", "log1p", "diff", "ratio"] = (
        Field(description="one of " + ", ".join(DERIVE_ARITY))
    )
    columns: list[str] = Field(min_length=1, max_length=2, description="1 or 2 input columns")

    @model_validator(mode="after")
    def _check_arity(self) -> "DeriveSpec":
        wanted = DERIVE_ARITY[self.expr]
        if len(self.columns) != wanted:
            raise ValueError(
                f"derive '{self.name}': expr '{self.expr}' takes {wanted} column(s), "
                f"got {len(self.columns)}"
            )
        return self


class MissingSpec(_Section):
    strategy: Literal["drop", "mean", "median", "constant", "forward_fill"] = Field(
        description="drop, mean, median, constant or forward_fill"
    )
    value: float | None = Field(None, description="the fill value, for strategy constant")

    @model_validator(mode="after")
    def _check_value(self) -> "MissingSpec":
        if self.strategy == "constant" and self.value is None:
            raise ValueError("strategy 'constant' needs a value")
        return self


class ClipSpec(_Section):
    columns: list[str] = Field(min_length=1)
    lower_quantile: float = Field(0.001, ge=0.0, lt=0.5, description="from 0 to below 0.5")
    upper_quantile: float = Field(0.999, gt=0.5, le=1.0, description="above 0.5 up to 1")
    relative_error: float = Field(
        0.0001, ge=0.0, le=0.1, description="approxQuantile's relative error, 0 for exact"
    )


class NormalizeSpec(_Section):
    method: Literal["zscore", "minmax", "robust"] = Field(
        "zscore", description="zscore, minmax or robust"
    )
    columns: list[str] = Field(min_length=1)


class CategoricalSpec(_Section):
    column: str
    encoding: Literal["index", "onehot"] = Field("onehot", description="'index' or 'onehot'")


class TargetSpec(_Section):
    name: str = Field("target", description="the target's name in the manifest")
    expr: Literal["future_realized_volatility", "future_value", "future_direction"]
    column: str
    horizon: int = Field(ge=1, le=365, description="steps ahead, from 1 to 365")


class WindowSpec(_Section):
    """Per-key windows of the last ``steps`` rows as features and a target ahead."""

    steps: int = Field(ge=1, le=512, description="rows per window, from 1 to 512")
    features: list[str] = Field(min_length=1, description="the channels of each step")
    target: TargetSpec
    baseline: Literal["persistence", "trailing_mean"] = "persistence"
    baseline_steps: int = Field(5, ge=1, le=512)
    max_gap_days: int | None = Field(
        7,
        ge=1,
        description="drop windows whose consecutive dates are more than this many days "
        "apart (null keeps every window)",
    )


class TabularTargetSpec(_Section):
    column: str
    task: Literal["regression", "binary", "multiclass"] = "regression"


class SplitSpec(_Section):
    by: Literal["time", "hash"] = Field(description="'time' (date column) or 'hash' (row key)")
    train_end: dt.date | None = Field(None, description="last date of the training split")
    validation_end: dt.date | None = Field(None, description="last date of validation")
    train_percent: int = Field(70, ge=1, le=98, description="for 'hash': percent in train")
    validation_percent: int = Field(15, ge=1, le=98, description="for 'hash'")

    @model_validator(mode="after")
    def _check(self) -> "SplitSpec":
        if self.by == "time":
            if self.train_end is None or self.validation_end is None:
                raise ValueError("split.by 'time' needs train_end and validation_end dates")
            if self.validation_end <= self.train_end:
                raise ValueError(
                    f"split.validation_end {self.validation_end} must be after "
                    f"split.train_end {self.train_end}"
                )
        elif self.train_percent + self.validation_percent >= 100:
            raise ValueError("train_percent + validation_percent must be below 100")
        return self


class PreprocessSpec(_Section):
    key: str | None = Field(None, description="the series key column, e.g. ticker")
    order_by: str | None = Field(None, description="the date column, YYYY-MM-DD strings")
    casts: dict[str, Literal["double", "long", "int", "string"]] = Field(default_factory=dict)
    derive: list[DeriveSpec] = Field(default_factory=list)
    missing: dict[str, MissingSpec] = Field(default_factory=dict)
    clip: ClipSpec | None = None
    normalize: NormalizeSpec | None = None
    categorical: list[CategoricalSpec] = Field(default_factory=list)
    window: WindowSpec | None = None
    features: list[str] = Field(
        default_factory=list, description="feature columns, when there is no window"
    )
    target: TabularTargetSpec | None = None
    split: SplitSpec
    rows_per_file: int = Field(
        100_000, ge=1_000, description="rows per Parquet file of the output, at least 1000"
    )

    def referenced_columns(self) -> list[tuple[str, str]]:
        """Return (column, key) for every input column the steps read, derived ones excluded."""
        wanted: list[tuple[str, str]] = [("row_key", "the input")]
        if self.key:
            wanted.append((self.key, "preprocess.key"))
        if self.order_by:
            wanted.append((self.order_by, "preprocess.order_by"))
        wanted += [(c, "preprocess.casts") for c in self.casts]
        for index, item in enumerate(self.derive):
            wanted += [(c, f"preprocess.derive[{index}].columns") for c in item.columns]
        wanted += [(c, "preprocess.missing") for c in self.missing]
        if self.clip:
            wanted += [(c, "preprocess.clip.columns") for c in self.clip.columns]
        if self.normalize:
            wanted += [(c, "preprocess.normalize.columns") for c in self.normalize.columns]
        if self.window:
            wanted += [(c, "preprocess.window.features") for c in self.window.features]
            wanted.append((self.window.target.column, "preprocess.window.target.column"))
        wanted += [(c, "preprocess.features") for c in self.features]
        wanted += [(item.column, "preprocess.categorical") for item in self.categorical]
        if self.target:
            wanted.append((self.target.column, "preprocess.target.column"))
        derived = {item.name for item in self.derive}
        return [(column, key) for column, key in wanted if column not in derived]

    def missing_columns(self, available: set[str]) -> list[str]:
        """Return one message per referenced column that ``available`` lacks."""
        return [
            f"{key}: column {column!r} is not in the input"
            for column, key in self.referenced_columns()
            if column not in available
        ]

    @model_validator(mode="after")
    def _check_mode(self) -> "PreprocessSpec":
        names = [item.name for item in self.derive]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"preprocess.derive names {duplicates} more than once; rename them")
        if self.window is not None:
            if not (self.key and self.order_by):
                raise ValueError("preprocess.window needs preprocess.key and preprocess.order_by")
            if self.categorical:
                raise ValueError(
                    "preprocess.categorical is not supported with preprocess.window; "
                    "remove one of them"
                )
        elif not self.features or self.target is None:
            raise ValueError(
                "without preprocess.window, preprocess.features and preprocess.target are needed"
            )
        if self.split.by == "time" and not self.order_by:
            raise ValueError("split.by 'time' needs preprocess.order_by, the date column")
        return self
