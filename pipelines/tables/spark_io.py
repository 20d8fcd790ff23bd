"""Spark DataFrames from and to HBase tables, scanned and written by the executors.

``read_table`` makes one Spark partition per region (clipped to the requested row
range); each task scans its range over its own Thrift connection and resumes after the
last row key it received when the connection drops. ``write_table`` puts each
partition's rows in batches with the writer in ``pipelines.tables.writer``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator

from pipelines.config import HoyaConfig
from pipelines.tables.hbase import HBaseError, connect
from pipelines.tables.schema import BadRecord, TableSchema
from pipelines.tables.writer import BatchWriter, RetryPolicy, transient_errors

log = logging.getLogger(__name__)

QUARANTINE_COLUMNS = ("row_key", "reason", "source")
SCAN_BATCH_ROWS = 2000


@dataclass(frozen=True)
class ScanRange:
    """A half-open row-key range [start, stop); empty bytes mean open-ended."""

    start: bytes
    stop: bytes


@dataclass
class WriteResult:
    """Counts of a ``write_table`` run; rows_read = rows_written + rows_quarantined."""

    rows_read: int
    rows_written: int
    rows_quarantined: int
    quarantine_df: Any


def scan_ranges(
    config: HoyaConfig, table_name: str, row_start: bytes | None, row_stop: bytes | None
) -> list[ScanRange]:
    """Return the table's region ranges clipped to [row_start, row_stop), in key order."""
    from pipelines.tables.admin import table_regions

    start = row_start or b""
    stop = row_stop or b""
    ranges = []
    for region in table_regions(config, table_name):
        low = max(region["start_key"], start)
        ends = [key for key in (region["end_key"], stop) if key]
        high = min(ends) if ends else b""
        if high and low >= high:
            continue
        ranges.append(ScanRange(low, high))
    return ranges or [ScanRange(start, stop)]


def _scan_columns(schema: TableSchema, columns: list[str] | None) -> list[bytes] | None:
    if not columns:
        return None
    unknown = sorted(set(columns) - set(schema.columns))
    if unknown:
        raise ValueError(
            f"unknown column(s) {unknown} for {schema.table_name}; "
            f"allowed: {list(schema.columns)}"
        )
    names = []
    for name in columns:
        column = schema.columns[name]
        names.append(column.family.encode() if column.dynamic else column.cell_name())
    return names


def scan_range(
    config: HoyaConfig,
    schema: TableSchema,
    scan: ScanRange,
    columns: list[bytes] | None = None,
    time_range: tuple[int, int] | None = None,
    retry: RetryPolicy | None = None,
) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
    """Yield the rows of one range, reconnecting and resuming after a dropped connection.

    ``time_range`` (start_ms, stop_ms) keeps cells with start <= timestamp < stop: Thrift1
    bounds the scan's upper end on the server, the lower bound is applied here.
    """
    policy = retry or RetryPolicy()
    next_start = scan.start
    failures = 0
    while True:
        connection = connect(config)
        try:
            table = connection.table(schema.table_name)
            rows = table.scan(
                row_start=next_start or None,
                row_stop=scan.stop or None,
                columns=columns,
                batch_size=SCAN_BATCH_ROWS,
                timestamp=time_range[1] if time_range else None,
                include_timestamp=time_range is not None,
            )
            for row_key, cells in rows:
                next_start = row_key + b"\x00"  # the smallest key after row_key
                failures = 0
                if time_range is not None:
                    cells = {
                        name: value for name, (value, stamp) in cells.items()
                        if stamp >= time_range[0]
                    }
                    if not cells:
                        continue
                yield row_key, cells
            return
        except transient_errors() as err:
            failures += 1
            if failures >= policy.max_attempts:
                raise HBaseError(
                    f"scanning {schema.table_name} failed {failures} times after row key "
                    f"{next_start[:-1]!r}: {err}"
                ) from err
            log.warning("scan of %s dropped (%s); resuming at %r", schema.table_name, err,
                        next_start)
            time.sleep(policy.backoff(failures))
        finally:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass


def _decode_partition(
    config: HoyaConfig,
    schema: TableSchema,
    ranges: Iterator[ScanRange],
    scan_columns: list[bytes] | None,
    output: list[str],
    time_range: tuple[int, int] | None,
) -> Iterator[tuple[str, tuple]]:
    for scan in ranges:
        for row_key, cells in scan_range(config, schema, scan, scan_columns, time_range):
            try:
                row = schema.decode_row(row_key, cells)
            except BadRecord as err:
                key = row_key.decode("utf-8", errors="replace")
                yield "bad", (key, err.reason, f"hbase:{schema.table_name}")
                continue
            yield "ok", tuple(row[name] for name in output)


def read_table(
    spark: Any,
    config: HoyaConfig,
    schema: TableSchema,
    columns: list[str] | None = None,
    row_start: str | bytes | None = None,
    row_stop: str | bytes | None = None,
    time_range: tuple[int, int] | None = None,
) -> tuple[Any, Any]:
    """Scan the table into (decoded rows, quarantine) DataFrames, one partition per region.

    The scan runs once, because both DataFrames come from one persisted RDD.
    """
    from pyspark import StorageLevel
    from pyspark.sql import types as T

    start = row_start.encode() if isinstance(row_start, str) else row_start
    stop = row_stop.encode() if isinstance(row_stop, str) else row_stop
    ranges = scan_ranges(config, schema.table_name, start, stop)
    scan_columns = _scan_columns(schema, columns)
    full = schema.spark_schema()
    keep = {"row_key", *schema.row_key_fields, *(columns or schema.columns)}
    output = T.StructType([f for f in full.fields if f.name in keep])
    names = output.names
    log.info("reading %s over %d range(s), columns %s", schema.table_name, len(ranges),
             columns or "all")

    def decode(partition: Iterator[ScanRange]) -> Iterator[tuple[str, tuple]]:
        return _decode_partition(config, schema, partition, scan_columns, names, time_range)

    context = spark.sparkContext
    tagged = context.parallelize(ranges, len(ranges)).mapPartitions(decode)
    tagged = tagged.persist(StorageLevel.MEMORY_AND_DISK)
    rows = spark.createDataFrame(
        tagged.filter(lambda item: item[0] == "ok").map(lambda item: item[1]), output
    )
    quarantine_schema = T.StructType([T.StructField(n, T.StringType()) for n in QUARANTINE_COLUMNS])
    quarantine = spark.createDataFrame(
        tagged.filter(lambda item: item[0] == "bad").map(lambda item: item[1]), quarantine_schema
    )
    return rows, quarantine


def _write_partition(
    config: HoyaConfig,
    schema: TableSchema,
    rows: Iterator[Any],
    batch_size: int,
    timestamp_ms: int | None,
    retry: RetryPolicy,
) -> Iterator[tuple]:
    """Write one partition; yield ('bad', row_key, reason) per bad row, then ('n', read, written)."""
    writer = BatchWriter(config, schema.table_name, timestamp_ms, retry)
    batch: dict[bytes, dict[bytes, bytes]] = {}
    read = written = 0
    try:
        for row in rows:
            read += 1
            record = row.asDict(recursive=True) if hasattr(row, "asDict") else dict(row)
            try:
                row_key, cells = schema.encode_row(record)
            except BadRecord as err:
                yield ("bad", _key_text(schema, record), err.reason)
                continue
            if row_key in batch:
                yield ("bad", row_key.decode(errors="replace"), "duplicate row key in batch")
                continue
            batch[row_key] = cells
            if len(batch) >= batch_size:
                writer.write(list(batch.items()))
                written += len(batch)
                batch.clear()
        writer.write(list(batch.items()))
        written += len(batch)
    finally:
        writer.close()
    yield ("n", read, written)


def _key_text(schema: TableSchema, record: dict[str, Any]) -> str | None:
    if record.get("row_key"):
        return str(record["row_key"])
    try:
        return schema.make_row_key(record).decode()
    except BadRecord:
        return None


def write_table(
    df: Any,
    config: HoyaConfig,
    schema: TableSchema,
    batch_size: int = 1000,
    timestamp_ms: int | None = None,
    retry: RetryPolicy | None = None,
) -> WriteResult:
    """Put the DataFrame's rows into the schema's table from the executors, in batches.

    Columns are matched by name (a dynamic column is a map of qualifier -> value). With
    ``timestamp_ms`` set, rewriting the same rows writes the same cells; without it HBase
    stamps cells with the server time, so a rerun adds versions up to max_versions.
    """
    policy = retry or RetryPolicy()

    def write(partition: Iterator[Any]) -> Iterator[tuple]:
        return _write_partition(config, schema, partition, batch_size, timestamp_ms, policy)

    log.info("writing to %s in batches of %d", schema.table_name, batch_size)
    items = df.rdd.mapPartitions(write).collect()
    bad = [(item[1], item[2], "write_table") for item in items if item[0] == "bad"]
    read = sum(item[1] for item in items if item[0] == "n")
    written = sum(item[2] for item in items if item[0] == "n")
    if read != written + len(bad):
        raise HBaseError(
            f"row counts do not add up writing {schema.table_name}: {read} read != "
            f"{written} written + {len(bad)} quarantined"
        )
    from pyspark.sql import types as T

    quarantine_schema = T.StructType([T.StructField(n, T.StringType()) for n in QUARANTINE_COLUMNS])
    quarantine_df = df.sparkSession.createDataFrame(bad, quarantine_schema)
    log.info("wrote %d rows to %s, %d quarantined", written, schema.table_name, len(bad))
    return WriteResult(read, written, len(bad), quarantine_df)
