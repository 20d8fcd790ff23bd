"""The preprocess job: raw rows (Parquet from the ingest job) to a training dataset.

Run under spark-submit::

    spark-submit pipelines/preprocess/job.py --pipeline conf/pipelines/X.yaml \\
        [--input URI] [--output URI] [--fitted-from DATASET_URI]

or in-process through :func:`run_preprocess`. The output is one Parquet folder per
split plus a quarantine folder and ``manifest.json`` (see pipelines/dataset.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file by spark-submit
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from pipelines.config import HoyaConfig  # noqa: E402
from pipelines.dataset import SPLITS, read_manifest, split_uri, write_manifest  # noqa: E402
from pipelines.io.storage import read_text, spark_path  # noqa: E402
from pipelines.preprocess import steps  # noqa: E402
from pipelines.preprocess.spec import PreprocessSpec  # noqa: E402
from pipelines.preprocess.window import build_windows, feature_names, raw_name  # noqa: E402
from pipelines.spec import PipelineSpec  # noqa: E402

log = logging.getLogger(__name__)

KEY_COLUMNS = ("row_key",)


class PreprocessError(RuntimeError):
    """The preprocess job cannot run on this input; the message gives the cause and the fix."""


def check_columns(frame: DataFrame, spec: PreprocessSpec) -> None:
    """Raise PreprocessError naming every configured column that the input lacks."""
    missing = spec.missing_columns(set(frame.columns))
    if missing:
        derived = [item.name for item in spec.derive]
        raise PreprocessError(
            "; ".join(missing) + f". Input columns: {sorted(frame.columns)}, derived columns: "
            f"{derived}; fix the pipeline file"
        )


def transform(
    frame: DataFrame, spec: PreprocessSpec, fitted: dict[str, Any] | None = None
) -> tuple[DataFrame, DataFrame, dict[str, Any], list[str]]:
    """Apply every step; return (rows, quarantine, fitted statistics, feature names).

    With ``fitted`` from an earlier run's manifest, no statistic is refitted.
    """
    check_columns(frame, spec)
    frame = steps.apply_casts(frame, spec)
    frame = steps.add_split_column(frame, spec)
    frame = steps.derive_columns(frame, spec)
    frame, quarantined, fills = steps.handle_missing(frame, spec, fitted)
    frame = frame.persist()

    # Targets and baselines are computed from unclipped, unscaled values.
    if spec.window is not None:
        frame = frame.withColumn(raw_name(spec.window.target.column), F.col(spec.window.target.column).cast("double"))
    frame, clip = steps.clip_outliers(frame, spec, fitted)
    frame, scaling = steps.normalize(frame, spec, fitted)
    frame, categories, category_columns = steps.encode_categories(frame, spec, fitted)
    statistics = {**fills, **clip, **scaling, **categories}

    if spec.window is not None:
        frame, short = build_windows(frame, spec)
        names = feature_names(spec.window)
        quarantined = short if quarantined is None else quarantined.unionByName(short)
    else:
        names = [*spec.features, *category_columns]
        frame = frame.withColumn(
            "features", F.array(*[F.col(c).cast("float") for c in names])
        ).withColumn("target", F.col(spec.target.column).cast("double"))
        frame = frame.withColumn("baseline", F.lit(None).cast("double"))

    if quarantined is None:
        quarantined = frame.limit(0).select(
            F.col("row_key").cast("string"), F.lit("").alias("reason"), F.lit("").alias("stage")
        )
    return frame, quarantined, statistics, names


def _output_columns(spec: PreprocessSpec) -> list[str]:
    columns = list(KEY_COLUMNS)
    for column in (spec.key, spec.order_by):
        if column and column not in columns:
            columns.append(column)
    return columns


def _files_for(rows: int, rows_per_file: int) -> int:
    return max(1, math.ceil(rows / rows_per_file))


def write_dataset(
    frame: DataFrame,
    quarantined: DataFrame,
    spec: PreprocessSpec,
    output_uri: str,
) -> dict[str, Any]:
    """Write each split and the quarantine; return the manifest's count sections."""
    keys = _output_columns(spec)
    frame = frame.select(*keys, "features", "target", "baseline", steps.SPLIT_COLUMN).persist()
    counts = {
        row[steps.SPLIT_COLUMN]: (row["rows"], row["labelled"])
        for row in frame.groupBy(steps.SPLIT_COLUMN)
        .agg(F.count("*").alias("rows"), F.count("target").alias("labelled"))
        .collect()
    }
    splits: dict[str, Any] = {}
    for split in SPLITS:
        rows, labelled = counts.get(split, (0, 0))
        part = frame.filter(F.col(steps.SPLIT_COLUMN) == split).drop(steps.SPLIT_COLUMN)
        part = part.repartition(_files_for(rows, spec.rows_per_file)).sortWithinPartitions(*keys)
        part.write.mode("overwrite").parquet(spark_path(split_uri(output_uri, split)))
        splits[split] = {"path": split, "rows": rows, "labelled_rows": labelled}
        log.info("wrote split %s: %d rows (%d labelled)", split, rows, labelled)

    quarantined = quarantined.persist()
    reasons = {
        row["reason"]: row["n"]
        for row in quarantined.groupBy("reason").agg(F.count("*").alias("n")).collect()
    }
    quarantined.coalesce(1).write.mode("overwrite").parquet(
        spark_path(split_uri(output_uri, "quarantine"))
    )
    frame.unpersist()
    quarantined.unpersist()
    return {
        "splits": splits,
        "quarantine": {"path": "quarantine", "rows": sum(reasons.values()), "reasons": reasons},
    }


def _task_of(spec: PreprocessSpec) -> str:
    if spec.window is not None:
        return "binary" if spec.window.target.expr == "future_direction" else "regression"
    return spec.target.task


def run_preprocess(
    spark: SparkSession,
    pipeline: PipelineSpec,
    input_uri: str | None = None,
    output_uri: str | None = None,
    fitted_from: str | None = None,
    config: HoyaConfig | None = None,
) -> dict[str, Any]:
    """Turn the ingest job's Parquet into the dataset; return the manifest it wrote.

    Raises PreprocessError when rows read != rows written + rows quarantined.
    """
    spec = pipeline.preprocess
    if spec is None:
        raise PreprocessError(f"{pipeline.path}: the pipeline has no 'preprocess' section")
    input_uri = input_uri or pipeline.uri("raw")
    output_uri = output_uri or pipeline.uri("dataset")
    fitted = read_manifest(fitted_from, config)["statistics"] if fitted_from else None
    log.info("preprocess %s: %s -> %s", pipeline.name, input_uri, output_uri)

    raw = spark.read.parquet(spark_path(f"{input_uri}/data"))
    rows_read = raw.count()
    _check_training_rows(raw, spec, rows_read, fitted)
    frame, quarantined, statistics, names = transform(raw, spec, fitted)
    counts = write_dataset(frame, quarantined, spec, output_uri)

    written = sum(split["rows"] for split in counts["splits"].values())
    if rows_read != written + counts["quarantine"]["rows"]:
        raise PreprocessError(
            f"row counts do not add up: read {rows_read}, written {written}, "
            f"quarantined {counts['quarantine']['rows']}; this is a bug in a preprocess step"
        )

    manifest = {
        "pipeline": pipeline.name,
        "config_hash": pipeline.config_hash,
        "created_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "task": _task_of(spec),
        "num_classes": None,
        "key_columns": _output_columns(spec),
        "feature_names": names,
        "feature_shape": (
            [spec.window.steps, len(spec.window.features)] if spec.window else [len(names)]
        ),
        "target_name": spec.window.target.name if spec.window else spec.target.column,
        "rows_read": rows_read,
        **counts,
        "statistics": {**statistics, "reused_from": fitted_from},
        "baseline": (
            {"name": spec.window.baseline, "column": "baseline"} if spec.window else None
        ),
        "source": _source_section(pipeline, input_uri, config),
    }
    if manifest["task"] == "multiclass":
        manifest["num_classes"] = _count_classes(output_uri)
    write_manifest(output_uri, manifest, config)
    log.info(
        "preprocess %s done: read %d, written %d, quarantined %d",
        pipeline.name, rows_read, written, counts["quarantine"]["rows"],
    )
    return manifest


def _check_training_rows(
    raw: DataFrame, spec: PreprocessSpec, rows_read: int, fitted: dict[str, Any] | None
) -> None:
    """Raise PreprocessError when there is nothing to fit statistics on."""
    if rows_read == 0:
        raise PreprocessError(
            "the input has no rows; check the ingest's row-key range, --until date and source"
        )
    if fitted is not None:
        return
    labelled = steps.add_split_column(raw, spec)
    if labelled.filter(F.col(steps.SPLIT_COLUMN) == "train").limit(1).count() == 0:
        split = spec.split
        where = (f"dated up to split.train_end {split.train_end}" if split.by == "time"
                 else f"in the first split.train_percent {split.train_percent}% of hashes")
        raise PreprocessError(
            f"no input row falls in the training split ({where}), so no statistic can be "
            "fitted; widen the input or move the split, or pass --fitted-from a dataset"
        )


def _count_classes(output_uri: str) -> int:
    spark = SparkSession.getActiveSession()
    train = spark.read.parquet(spark_path(split_uri(output_uri, "train")))
    return int(train.select(F.max("target")).first()[0]) + 1


def _source_section(
    pipeline: PipelineSpec, input_uri: str, config: HoyaConfig | None
) -> dict[str, Any]:
    """Describe where the rows came from, with the ingest job's summary when present."""
    source = pipeline.source.model_dump(mode="json") if pipeline.source else {}
    try:
        source["ingest"] = json.loads(read_text(f"{input_uri}/ingest.json", config))
    except FileNotFoundError:
        source["ingest"] = None
    source["input_uri"] = input_uri
    return source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", required=True, help="the pipeline YAML file")
    parser.add_argument("--input", help="the ingest output [default: <storage root>/raw]")
    parser.add_argument("--output", help="the dataset folder [default: <storage root>/dataset]")
    parser.add_argument(
        "--fitted-from", help="a dataset whose fitted statistics are reused instead of refitted"
    )
    args = parser.parse_args(argv)

    from pipelines.dataset import ManifestError
    from pipelines.io.spark import run_job

    def work(spark, pipeline, config):
        run_preprocess(spark, pipeline, args.input, args.output, args.fitted_from, config)

    return run_job("preprocess", args.pipeline, work, (PreprocessError, ManifestError))


if __name__ == "__main__":
    sys.exit(main())
