"""Import CSV, JSON lines or Parquet files into an HBase table declared by a schema.

Each file is read with plain Python I/O and parsed row by row; valid rows are encoded by
the schema and put in batches, invalid ones go to a quarantine with the file, line
number and reason. Small inputs run in the driver; inputs of ``SPARK_THRESHOLD_BYTES``
or more are split into groups of files that Spark tasks import in parallel, each over
its own Thrift connection.
"""

from __future__ import annotations

import collections
import datetime as dt
import io
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml

from pipelines.config import HoyaConfig
from pipelines.tables.schema import BadRecord, SchemaError, TableSchema
from pipelines.tables.sources import Record, SourceFile, list_sources, parse_records, read_bytes
from pipelines.tables.writer import BatchWriter, RetryPolicy

log = logging.getLogger(__name__)

# Below this many input bytes the driver imports alone: starting Spark tasks costs
# more than it saves on a few MiB.
SPARK_THRESHOLD_BYTES = 8 * 1024 * 1024
QUARANTINE_FIELDS = ("source", "line", "row_key", "reason", "raw")


class ImportError_(RuntimeError):
    """An import failed: its counts do not add up or a batch could not be written."""


@dataclass
class ChunkStats:
    """Counts of one group of files, merged into the run's totals."""

    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    files: int = 0
    files_without_rows: list[str] = field(default_factory=list)
    retries: int = 0
    last_row_key: str | None = None

    def merge(self, other: "ChunkStats") -> None:
        self.rows_read += other.rows_read
        self.rows_written += other.rows_written
        self.rows_quarantined += other.rows_quarantined
        self.files += other.files
        self.files_without_rows.extend(other.files_without_rows)
        self.retries += other.retries


@dataclass
class ImportResult:
    """Summary of one import run."""

    table: str
    source: str
    engine: str
    timestamp_ms: int
    stats: ChunkStats
    reasons: dict[str, int]
    quarantine_path: str | None
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.stats.rows_read / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        stats = self.stats
        lines = [
            f"imported {self.source} into {self.table} ({self.engine}, {stats.files} files, "
            f"{self.seconds:.1f} s, {self.rows_per_second:,.0f} rows/s)",
            f"rows read: {stats.rows_read}",
            f"rows written: {stats.rows_written}",
            f"rows quarantined: {stats.rows_quarantined}",
        ]
        for reason, count in sorted(self.reasons.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  {count} x {reason}")
        if self.quarantine_path:
            lines.append(f"quarantine: {self.quarantine_path}")
        names = ", ".join(sorted(stats.files_without_rows)) or "none"
        lines.append(f"files with no data rows: {names}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ImportSettings:
    """Everything a driver or Spark task needs to import a group of files."""

    config: HoyaConfig
    schema: TableSchema
    mapping: dict[str, str]
    timestamp_ms: int
    batch_size: int = 1000
    delimiter: str = ","
    retry: RetryPolicy = field(default_factory=RetryPolicy)


# Field mapping.


def load_mapping(path: str | None) -> dict[str, str]:
    """Load a ``column: source field`` mapping file; an empty mapping when ``path`` is None."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SchemaError(f"mapping file {path} cannot be read: {err}") from err
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SchemaError(
            f"mapping file {path} must map column names to source field names, "
            "e.g. 'close: Close'"
        )
    return {str(key): value for key, value in data.items()}


def _field_candidates(schema: TableSchema, mapping: dict[str, str]) -> dict[str, list[str]]:
    """Return, per column and row-key part, the input field names to look up in order."""
    unknown = sorted(set(mapping) - set(schema.columns) - set(schema.row_key_fields))
    if unknown:
        raise SchemaError(
            f"mapping names unknown column(s) {unknown}; columns of {schema.table_name}: "
            f"{sorted(set(schema.columns) | set(schema.row_key_fields))}"
        )
    candidates = {}
    for name in [*schema.row_key_fields, *schema.columns]:
        spec = schema.key_field(name)
        names = [mapping.get(name), spec.source, name]
        candidates[name] = list(dict.fromkeys(n for n in names if n))
    return candidates


def _to_record(fields: dict[str, Any], candidates: dict[str, list[str]]) -> dict[str, Any]:
    record = {}
    for name, sources in candidates.items():
        for source in sources:
            if source in fields:
                record[name] = fields[source]
                break
    return record


# One group of files.


def import_chunk(
    files: Iterable[SourceFile],
    settings: ImportSettings,
    on_batch: Callable[[ChunkStats], None] | None = None,
) -> Iterator[dict[str, Any] | ChunkStats]:
    """Import ``files``; yield a dict per quarantined row, then the group's ChunkStats."""
    stats = ChunkStats()
    candidates = _field_candidates(settings.schema, settings.mapping)
    writer = BatchWriter(
        settings.config, settings.schema.table_name, settings.timestamp_ms, settings.retry
    )
    batch: dict[bytes, tuple[dict[bytes, bytes], str]] = {}

    def flush() -> None:
        writer.write([(key, cells) for key, (cells, _) in batch.items()])
        stats.rows_written += len(batch)
        batch.clear()
        stats.retries = writer.retries
        if writer.last_good_row_key is not None:
            stats.last_row_key = writer.last_good_row_key.decode()
        if on_batch is not None:
            on_batch(stats)

    try:
        for source in files:
            stats.files += 1
            rows_before = stats.rows_read
            for record in parse_records(read_bytes(settings.config, source.uri), source,
                                        settings.delimiter):
                stats.rows_read += 1
                bad = _encode_into(record, settings.schema, candidates, batch)
                if bad is not None:
                    stats.rows_quarantined += 1
                    yield bad
                if len(batch) >= settings.batch_size:
                    flush()
            if stats.rows_read == rows_before:
                stats.files_without_rows.append(source.name)
        flush()
    finally:
        writer.close()
    yield stats


def _encode_into(
    record: Record,
    schema: TableSchema,
    candidates: dict[str, list[str]],
    batch: dict[bytes, tuple[dict[bytes, bytes], str]],
) -> dict[str, Any] | None:
    """Add the record's encoded row to ``batch``; return a quarantine row when it is bad."""
    where = f"{record.source}:{record.line}"
    if record.error is not None:
        return _bad(record, None, record.error)
    try:
        row_key, cells = schema.encode_row(_to_record(record.fields or {}, candidates))
    except BadRecord as err:
        return _bad(record, None, err.reason)
    if row_key in batch:
        first = batch[row_key][1]
        return _bad(record, row_key, f"duplicate row key in batch (first at {first})")
    batch[row_key] = (cells, where)
    return None


def _bad(record: Record, row_key: bytes | None, reason: str) -> dict[str, Any]:
    return {
        "source": record.source,
        "line": record.line,
        "row_key": row_key.decode(errors="replace") if row_key else None,
        "reason": reason,
        "raw": record.raw,
    }


# A whole run.


def default_timestamp_ms(files: list[SourceFile]) -> int:
    """Return the newest modification time of the input files, in ms since the epoch.

    Re-importing unchanged files then writes cells with the same timestamp, so HBase
    replaces them instead of adding versions.
    """
    return max(source.mtime_ms for source in files)


def default_run_dir(config: HoyaConfig, table: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return config.resolve_path(f".hoya/runs/import-{table.replace(':', '_')}-{stamp}")


def run_import(
    config: HoyaConfig,
    schema: TableSchema,
    source: str,
    *,
    file_format: str | None = None,
    mapping: dict[str, str] | None = None,
    quarantine: str | None = None,
    timestamp_ms: int | None = None,
    batch_size: int = 1000,
    engine: str = "auto",
    retry: RetryPolicy | None = None,
    progress: "Progress | None" = None,
    spark: Any = None,
) -> ImportResult:
    """Import ``source`` (file or folder, local or hdfs://) into the schema's table."""
    started = time.monotonic()
    files = list_sources(config, source, file_format)
    total_bytes = sum(item.size for item in files)
    chosen = engine if engine != "auto" else (
        "spark" if total_bytes >= SPARK_THRESHOLD_BYTES else "local"
    )
    settings = ImportSettings(
        config, schema, mapping or {}, timestamp_ms or default_timestamp_ms(files),
        batch_size, retry=retry or RetryPolicy(),
    )
    log.info(
        "importing %d files (%d bytes) from %s into %s with the %s engine, cell timestamp %d",
        len(files), total_bytes, source, schema.table_name, chosen, settings.timestamp_ms,
    )
    progress = progress or Progress(total_files=len(files))
    if chosen == "spark":
        bad_rows, stats = _run_spark(files, settings, progress, spark)
    else:
        bad_rows, stats = _run_local(files, settings, progress)
    progress.finish(stats)
    _check_counts(stats, len(bad_rows))

    quarantine_path = None
    if bad_rows:
        target = quarantine or str(default_run_dir(config, schema.table_name) / "quarantine")
        quarantine_path = write_quarantine(config, bad_rows, target)
    result = ImportResult(
        table=schema.table_name,
        source=source,
        engine=chosen,
        timestamp_ms=settings.timestamp_ms,
        stats=stats,
        reasons=dict(collections.Counter(_reason_key(row["reason"]) for row in bad_rows)),
        quarantine_path=quarantine_path,
        seconds=time.monotonic() - started,
    )
    log.info(
        "import into %s done: %d read, %d written, %d quarantined in %.1f s",
        schema.table_name, stats.rows_read, stats.rows_written, stats.rows_quarantined,
        result.seconds,
    )
    return result


def _reason_key(reason: str) -> str:
    # Group "duplicate row key in batch (first at f.csv:12)" under one reason.
    return reason.split(" (first at ", 1)[0]


def _check_counts(stats: ChunkStats, quarantined_rows: int) -> None:
    if stats.rows_read != stats.rows_written + stats.rows_quarantined:
        raise ImportError_(
            f"row counts do not add up: {stats.rows_read} read != {stats.rows_written} written "
            f"+ {stats.rows_quarantined} quarantined; rows were lost, do not trust this import"
        )
    if quarantined_rows != stats.rows_quarantined:
        raise ImportError_(
            f"{stats.rows_quarantined} rows counted as quarantined but {quarantined_rows} "
            "quarantine records were collected"
        )


def _run_local(
    files: list[SourceFile], settings: ImportSettings, progress: "Progress"
) -> tuple[list[dict[str, Any]], ChunkStats]:
    bad_rows: list[dict[str, Any]] = []
    stats = ChunkStats()
    for item in import_chunk(files, settings, on_batch=progress.batch_done):
        if isinstance(item, ChunkStats):
            stats = item
        else:
            bad_rows.append(item)
    return bad_rows, stats


def split_files(files: list[SourceFile], groups: int) -> list[list[SourceFile]]:
    """Split files into at most ``groups`` groups of similar total size (largest first)."""
    groups = max(1, min(groups, len(files)))
    buckets: list[list[SourceFile]] = [[] for _ in range(groups)]
    sizes = [0] * groups
    for item in sorted(files, key=lambda f: f.size, reverse=True):
        index = sizes.index(min(sizes))
        buckets[index].append(item)
        sizes[index] += item.size
    return [bucket for bucket in buckets if bucket]


def _run_spark(
    files: list[SourceFile], settings: ImportSettings, progress: "Progress", spark: Any
) -> tuple[list[dict[str, Any]], ChunkStats]:
    from pipelines.io.spark import spark_session

    session = spark or spark_session(settings.config, f"hoya-import-{settings.schema.table}")
    context = session.sparkContext
    # Several groups per core, so a slow group does not leave a core idle at the end.
    groups = split_files(files, context.defaultParallelism * 8)
    rows_done = context.accumulator(0)
    files_done = context.accumulator(0)

    def run_group(group: Iterator[list[SourceFile]]) -> Iterator[Any]:
        for chunk in group:
            for item in import_chunk(chunk, settings):
                if isinstance(item, ChunkStats):
                    rows_done.add(item.rows_read)
                    files_done.add(item.files)
                yield item

    rdd = context.parallelize(groups, len(groups)).mapPartitions(run_group)
    watcher = threading.Thread(
        target=progress.watch, args=(lambda: (rows_done.value, files_done.value),), daemon=True
    )
    watcher.start()
    try:
        items = rdd.collect()
    finally:
        progress.stop_watching()
        watcher.join()
    stats = ChunkStats()
    bad_rows = []
    for item in items:
        if isinstance(item, ChunkStats):
            stats.merge(item)
        else:
            bad_rows.append(item)
    return bad_rows, stats


def write_quarantine(config: HoyaConfig, rows: list[dict[str, Any]], target: str) -> str:
    """Write quarantined rows as ``<target>/part-00000.parquet``; return the file's path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.io.webhdfs import WebHdfs

    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [("source", pa.string()), ("line", pa.int64()), ("row_key", pa.string()),
             ("reason", pa.string()), ("raw", pa.string())]
        ),
    )
    path = f"{target.rstrip('/')}/part-00000.parquet"
    if target.startswith("hdfs://"):
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        WebHdfs.from_config(config).write(path, buffer.getvalue())
    else:
        Path(target).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    log.info("wrote %d quarantined rows to %s", len(rows), path)
    return path


class Progress:
    """Import progress: a rewritten status line on a terminal, a log line otherwise."""

    def __init__(self, total_files: int, stream: Any = None, interactive: bool | None = None):
        self.total_files = total_files
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._last_rows = -1

    def _rate(self, rows: int) -> float:
        elapsed = time.monotonic() - self.started
        return rows / elapsed if elapsed > 0 else 0.0

    def show(self, rows: int, files: int) -> None:
        if rows == self._last_rows:
            return
        self._last_rows = rows
        rate = self._rate(rows)
        if self.interactive:
            done = files / self.total_files if self.total_files else 1.0
            bar = "#" * int(done * 30)
            self.stream.write(
                f"\r[{bar:<30}] {files}/{self.total_files} files, {rows:,} rows, "
                f"{rate:,.0f} rows/s"
            )
            self.stream.flush()
        else:
            log.info("progress: %d rows read, %d/%d files, %.0f rows/s",
                     rows, files, self.total_files, rate)

    def batch_done(self, stats: ChunkStats) -> None:
        self.show(stats.rows_read, stats.files)

    def watch(self, read_counts: Callable[[], tuple[int, int]]) -> None:
        """Show the counts from ``read_counts`` every second until ``stop_watching``."""
        while not self._stop.wait(1.0):
            self.show(*read_counts())
        self.show(*read_counts())

    def stop_watching(self) -> None:
        self._stop.set()

    def finish(self, stats: ChunkStats) -> None:
        self.show(stats.rows_read, stats.files)
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
