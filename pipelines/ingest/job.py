"""The ingest job: raw rows from an HBase table or from files into Parquet.

Run under spark-submit::

    spark-submit pipelines/ingest/job.py --pipeline conf/pipelines/X.yaml \\
        [--output URI] [--row-start KEY] [--row-stop KEY] [--time-range START_MS END_MS]

The output folder contains ``data/`` (Parquet, one row per source row, with a
``row_key`` column), ``quarantine/`` (row_key, reason, stage) and ``ingest.json``
with the counts; rows read = rows written + rows quarantined.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import logging
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file by spark-submit
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from pipelines.config import HoyaConfig  # noqa: E402
from pipelines.io.storage import join_uri, spark_path, write_text  # noqa: E402
from pipelines.preprocess.spec import SourceSpec  # noqa: E402
from pipelines.spec import PipelineSpec  # noqa: E402

log = logging.getLogger(__name__)


class IngestError(RuntimeError):
    """The ingest job cannot read its source; the message gives the cause and the fix."""


def _empty_quarantine(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame([], "row_key string, reason string, stage string")


def _read_local_with_colons(spark: SparkSession, paths: list[str], source: SourceSpec) -> DataFrame:
    """Read files whose names Hadoop rejects (a ':' in the name) with pandas on the driver."""
    import pandas as pd

    readers = {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True),
               "parquet": pd.read_parquet}
    frames = [readers[source.format](path) for path in paths]
    frame = pd.concat(frames, ignore_index=True).astype("string")
    return spark.createDataFrame(frame.astype(object).where(frame.notna(), None))


def read_files(spark: SparkSession, source: SourceSpec) -> DataFrame:
    """Read CSV (all columns as strings), JSON lines or Parquet from a path or glob."""
    path = source.path
    readers = {
        "csv": lambda p: spark.read.csv(p, header=True, inferSchema=False),
        "jsonl": lambda p: spark.read.json(p),
        "parquet": lambda p: spark.read.parquet(p),
    }
    if "://" in path:
        return readers[source.format](path)

    matched = sorted(glob.glob(str(Path(path) / "*")) if Path(path).is_dir() else glob.glob(path))
    if not matched:
        raise IngestError(f"source.path {path!r} matches no file; check the path")
    plain = [p for p in matched if ":" not in Path(p).name]
    colon = [p for p in matched if ":" in Path(p).name]
    frame = readers[source.format]([spark_path(p) for p in plain]) if plain else None
    if colon:
        log.info("reading %d file(s) with ':' in the name through pandas", len(colon))
        extra = _read_local_with_colons(spark, colon, source)
        frame = extra if frame is None else frame.unionByName(extra, allowMissingColumns=True)
    return frame


def _prepare_file_rows(frame: DataFrame, source: SourceSpec) -> DataFrame:
    for old, new in source.rename.items():
        frame = frame.withColumnRenamed(old, new)
    if "row_key" not in frame.columns:
        if not source.row_key_columns:
            raise IngestError(
                "the files have no row_key column; set source.row_key_columns, e.g. "
                "[ticker, date]"
            )
        parts = [F.coalesce(F.col(c).cast("string"), F.lit("")) for c in source.row_key_columns]
        frame = frame.withColumn("row_key", F.concat_ws("#", *parts))
    if source.columns:
        keep = ["row_key", *[c for c in source.columns if c != "row_key"]]
        absent = [c for c in keep if c not in frame.columns]
        if absent:
            raise IngestError(
                f"source.columns {absent} are not in the files; available: {sorted(frame.columns)}"
            )
        frame = frame.select(*keep)
    return frame


def read_source(
    spark: SparkSession,
    source: SourceSpec,
    config: HoyaConfig,
    row_start: str | None = None,
    row_stop: str | None = None,
    time_range: tuple[int, int] | None = None,
) -> tuple[DataFrame, DataFrame]:
    """Return (rows, quarantine) from the pipeline's source."""
    if source.kind == "files":
        return _prepare_file_rows(read_files(spark, source), source), _empty_quarantine(spark)

    from pipelines.tables.schema import load_table_schema
    from pipelines.tables.spark_io import read_table

    schema = load_table_schema(source.table)
    rows, bad = read_table(
        spark, config, schema, columns=source.columns,
        row_start=row_start or source.row_start, row_stop=row_stop or source.row_stop,
        time_range=time_range or source.time_range,
    )
    bad = bad.select("row_key", "reason", F.lit("ingest").alias("stage"))
    return rows, bad


def run_ingest(
    spark: SparkSession,
    pipeline: PipelineSpec,
    config: HoyaConfig,
    output_uri: str | None = None,
    row_start: str | None = None,
    row_stop: str | None = None,
    time_range: tuple[int, int] | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    """Read the source, quarantine rows missing required columns, write Parquet.

    ``until`` (YYYY-MM-DD, the end of a data interval) limits the read to rows whose
    ``source.interval_column`` is on or before that date.

    Returns the summary also written to ``<output>/ingest.json``.
    """
    if pipeline.source is None:
        raise IngestError(f"{pipeline.path}: the pipeline has no 'source' section")
    source = pipeline.source
    output_uri = output_uri or pipeline.uri("raw")
    log.info("ingest %s from %s %s -> %s", pipeline.name, source.kind,
             source.table or source.path, output_uri)

    rows, quarantined = read_source(spark, source, config, row_start, row_stop, time_range)
    if until is not None:
        try:
            dt.date.fromisoformat(until)
        except ValueError as err:
            raise IngestError(f"--until = {until!r} is not a YYYY-MM-DD date") from err
        if not source.interval_column:
            raise IngestError(
                "--until needs source.interval_column, the date column of the data interval"
            )
        rows = rows.filter(F.col(source.interval_column) <= F.lit(until))
    missing_required = [c for c in source.required if c not in rows.columns]
    if missing_required:
        raise IngestError(f"source.required columns {missing_required} are not in the source")
    rows = rows.persist()
    for column in source.required:
        bad = rows.filter(F.col(column).isNull()).select(
            "row_key", F.lit(f"missing required column {column}").alias("reason"),
            F.lit("ingest").alias("stage"),
        )
        quarantined = quarantined.unionByName(bad)
        rows = rows.filter(F.col(column).isNotNull())

    rows.write.mode("overwrite").parquet(spark_path(join_uri(output_uri, "data")))
    quarantined.coalesce(1).write.mode("overwrite").parquet(
        spark_path(join_uri(output_uri, "quarantine"))
    )
    written = spark.read.parquet(spark_path(join_uri(output_uri, "data"))).count()
    bad_rows = spark.read.parquet(spark_path(join_uri(output_uri, "quarantine")))
    reasons = {r["reason"]: r["n"] for r in bad_rows.groupBy("reason").agg(F.count("*").alias("n")).collect()}
    summary = {
        "pipeline": pipeline.name,
        "source": source.table or source.path,
        "row_start": row_start or source.row_start,
        "row_stop": row_stop or source.row_stop,
        "time_range": list(time_range or source.time_range or []) or None,
        "until": until,
        "rows_read": written + sum(reasons.values()),
        "rows_written": written,
        "rows_quarantined": sum(reasons.values()),
        "quarantine_reasons": reasons,
    }
    write_text(join_uri(output_uri, "ingest.json"), json.dumps(summary, indent=2), config)
    log.info("ingest %s done: read %d, written %d, quarantined %d", pipeline.name,
             summary["rows_read"], written, summary["rows_quarantined"])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", required=True, help="the pipeline YAML file")
    parser.add_argument("--output", help="output folder [default: <storage root>/raw]")
    parser.add_argument("--row-start", help="first row key to read (inclusive)")
    parser.add_argument("--row-stop", help="row key to stop before")
    parser.add_argument("--time-range", nargs=2, type=int, metavar=("START_MS", "END_MS"),
                        help="cell timestamps to read, [start, end) in epoch milliseconds")
    parser.add_argument("--until", help="read rows up to this date (YYYY-MM-DD), inclusive")
    args = parser.parse_args(argv)

    from pipelines.io.spark import run_job
    from pipelines.tables.hbase import HBaseError

    def work(spark, pipeline, config):
        # An empty bound (from an unset Airflow param) means no bound.
        time_range = tuple(args.time_range) if args.time_range else None
        run_ingest(spark, pipeline, config, args.output, args.row_start or None,
                   args.row_stop or None, time_range, args.until)

    return run_job("ingest", args.pipeline, work, (IngestError, HBaseError))


if __name__ == "__main__":
    sys.exit(main())
