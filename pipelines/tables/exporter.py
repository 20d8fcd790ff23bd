"""Export an HBase table to Parquet or CSV files, local or on HDFS, through Spark."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from pipelines.config import HoyaConfig
from pipelines.tables.schema import TableSchema
from pipelines.tables.spark_io import read_table

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """Summary of one export run; rows_read = rows_written + rows_quarantined."""

    table: str
    target: str
    file_format: str
    rows_read: int
    rows_written: int
    rows_quarantined: int
    quarantine_path: str | None
    seconds: float

    def summary(self) -> str:
        rate = self.rows_read / self.seconds if self.seconds else 0.0
        lines = [
            f"exported {self.table} to {self.target} ({self.file_format}, {self.seconds:.1f} s, "
            f"{rate:,.0f} rows/s)",
            f"rows read: {self.rows_read}",
            f"rows written: {self.rows_written}",
            f"rows quarantined: {self.rows_quarantined}",
        ]
        if self.quarantine_path:
            lines.append(f"quarantine: {self.quarantine_path}")
        return "\n".join(lines)


def _csv_ready(frame: Any) -> Any:
    """Turn map columns (dynamic qualifiers) into JSON text, which CSV can hold."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    for item in frame.schema.fields:
        if isinstance(item.dataType, T.MapType):
            frame = frame.withColumn(item.name, F.to_json(F.col(item.name)))
    return frame


def _absolute(config: HoyaConfig, target: str) -> str:
    """Return a URI Spark resolves as given: a bare path would go to fs.defaultFS (HDFS)."""
    if "://" in target:
        return target
    return config.resolve_path(target).resolve().as_uri()


def run_export(
    spark: Any,
    config: HoyaConfig,
    schema: TableSchema,
    target: str,
    *,
    file_format: str = "parquet",
    columns: list[str] | None = None,
    row_start: str | None = None,
    row_stop: str | None = None,
    time_range: tuple[int, int] | None = None,
    quarantine: str | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Scan the table in parallel over its regions and write the rows to ``target``."""
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"export format {file_format!r} is invalid; allowed: parquet, csv")
    started = time.monotonic()
    target_uri = _absolute(config, target)
    rows, bad = read_table(spark, config, schema, columns, row_start, row_stop, time_range)
    mode = "overwrite" if overwrite else "errorifexists"
    log.info("exporting %s to %s as %s", schema.table_name, target, file_format)
    if file_format == "parquet":
        rows.write.mode(mode).parquet(target_uri)
        # Parquet footers hold the row counts, so this count does not decode the scan again.
        rows_written = spark.read.parquet(target_uri).count()
    else:
        _csv_ready(rows).write.mode(mode).option("header", True).csv(target_uri)
        rows_written = rows.count()
    rows_quarantined = bad.count()
    quarantine_path = None
    if rows_quarantined:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        quarantine_path = quarantine or str(
            config.resolve_path(f".hoya/runs/export-{schema.table}-{stamp}/quarantine")
        )
        bad.write.mode("overwrite").parquet(_absolute(config, quarantine_path))
    result = ExportResult(
        schema.table_name, target, file_format, rows_written + rows_quarantined, rows_written,
        rows_quarantined, quarantine_path, time.monotonic() - started,
    )
    log.info("export of %s done: %d rows written, %d quarantined, to %s",
             schema.table_name, rows_written, rows_quarantined, target)
    return result
