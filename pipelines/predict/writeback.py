"""Write predictions back to HBase from the executors, and keep the model registry row.

Each Spark partition opens one happybase connection and sends its rows in batches of
``batch_size`` puts. Every cell carries the run's logical date as its timestamp, so
resending a batch after a dropped connection, or rerunning the whole step, writes the
same cells (row, column, timestamp, value) instead of adding versions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from pipelines.config import HoyaConfig
from pipelines.tables.hbase import connect
from pipelines.tables.schema import BadRecord, TableSchema, load_table_schema
from pipelines.tables.writer import BatchWriter

log = logging.getLogger(__name__)

PREDICTION_COLUMN = "prediction"
_SCHEMAS: dict[str, TableSchema] = {}


class WriteBackError(RuntimeError):
    """Writing predictions failed or the written row count differs from the scored one."""


@dataclass
class WriteSummary:
    rows_scored: int
    rows_written: int
    quarantine: list[tuple[str, str]] = field(default_factory=list)
    retries: int = 0

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine)


@dataclass(frozen=True)
class WriteTarget:
    """The HBase form of a prediction row: table schema, qualifier and cell timestamp."""

    schema_path: str
    pipeline: str
    target_name: str
    model_version: str
    logical_date: dt.datetime
    batch_size: int = 1000

    @property
    def timestamp_ms(self) -> int:
        return int(self.logical_date.timestamp() * 1000)


def parse_logical_date(text: str) -> dt.datetime:
    """Parse an ISO date or date-time (``Z`` allowed); a value without a zone is UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as err:
        raise ValueError(
            f"--logical-date = {text!r} is invalid; give an ISO date or date-time such as "
            "2017-08-11 or 2017-08-11T00:00:00+00:00"
        ) from err
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def cached_schema(path: str) -> TableSchema:
    schema = _SCHEMAS.get(path)
    if schema is None:
        schema = _SCHEMAS[path] = load_table_schema(path)
    return schema


def check_prediction_schema(schema: TableSchema) -> None:
    """Raise WriteBackError unless the schema has a dynamic ``prediction`` column."""
    column = schema.columns.get(PREDICTION_COLUMN)
    wanted = {"target", "model_version"}
    if column is None or not column.dynamic or set(column.pattern_fields) != wanted:
        raise WriteBackError(
            f"table schema {schema.source_path} needs a column 'prediction' with "
            "qualifier_pattern '{target}@{model_version}' (any text around the two fields); "
            "see hbase_schema/sp500_predictions.yaml"
        )


def encode_prediction(
    schema: TableSchema, target: WriteTarget, row_key: str, value: float
) -> tuple[bytes, dict[bytes, bytes]]:
    """Return the HBase row key and cells of one prediction; BadRecord if it cannot fit."""
    record: dict[str, Any] = dict(schema.parse_row_key(row_key.encode("utf-8")))
    qualifier = schema.columns[PREDICTION_COLUMN].qualifier_for(
        target=target.target_name, model_version=target.model_version
    )
    record[PREDICTION_COLUMN] = {qualifier: value}
    optional = {"model_version": target.model_version, "pipeline": target.pipeline,
                "predicted_at": target.logical_date}
    record.update({name: v for name, v in optional.items() if name in schema.columns})
    key, cells = schema.encode_row(record)
    if key.decode("utf-8") != row_key:
        raise BadRecord(f"row key {row_key!r} would be written as {key.decode()!r}")
    return key, cells


def write_partition(
    rows: Iterable[Any], config: HoyaConfig, target: WriteTarget
) -> Iterator[dict[str, Any]]:
    """Write one partition's ``(row_key, prediction)`` rows; yield its counts once."""
    schema = cached_schema(target.schema_path)
    writer = BatchWriter(config, schema.table_name, target.timestamp_ms)
    pending: list[tuple[bytes, dict[bytes, bytes]]] = []
    written, bad = 0, []
    try:
        for row in rows:
            try:
                pending.append(encode_prediction(schema, target, row[0], float(row[1])))
            except BadRecord as err:
                bad.append((row[0], err.reason))
                continue
            if len(pending) >= target.batch_size:
                writer.write(pending)
                written += len(pending)
                pending = []
        writer.write(pending)
        written += len(pending)
    finally:
        writer.close()
    yield {"written": written, "bad": bad, "retries": writer.retries}


def write_predictions(
    scored: Any, config: HoyaConfig, target: WriteTarget
) -> WriteSummary:
    """Write ``scored`` (``row_key``, ``prediction``) from its partitions; check the count.

    Raises WriteBackError when rows written + rows quarantined != rows scored.
    """
    check_prediction_schema(cached_schema(target.schema_path))
    pairs = scored.select("row_key", "prediction").rdd.map(lambda r: (r[0], r[1]))
    results = pairs.mapPartitions(lambda rows: write_partition(rows, config, target)).collect()
    rows_scored = scored.count()
    summary = WriteSummary(
        rows_scored=rows_scored,
        rows_written=sum(r["written"] for r in results),
        quarantine=[tuple(b) for r in results for b in r["bad"]],
        retries=sum(r["retries"] for r in results),
    )
    if summary.rows_written + summary.rows_quarantined != rows_scored:
        raise WriteBackError(
            f"rows written {summary.rows_written} + quarantined {summary.rows_quarantined} "
            f"!= rows scored {rows_scored} for table {cached_schema(target.schema_path).table_name}"
        )
    log.info("wrote %d predictions to %s at timestamp %d (%d quarantined, %d retries)",
             summary.rows_written, cached_schema(target.schema_path).table_name,
             target.timestamp_ms, summary.rows_quarantined, summary.retries)
    return summary


def publish_registry(
    config: HoyaConfig, registry_schema: TableSchema, target: WriteTarget, model_uri: str,
    evaluation: dict[str, Any], published_at: dt.datetime | None = None,
) -> bytes:
    """Write the pipeline's registry row: current model version, metrics, publish time."""
    record = {
        "pipeline": target.pipeline,
        "model_version": target.model_version,
        "model_uri": model_uri,
        "metrics_json": json.dumps(evaluation.get("metrics", {}), sort_keys=True),
        "published_at": published_at or dt.datetime.now(dt.timezone.utc),
    }
    record = {k: v for k, v in record.items() if k in registry_schema.columns}
    key, cells = registry_schema.encode_row(record)
    writer = BatchWriter(config, registry_schema.table_name, target.timestamp_ms)
    try:
        writer.write([(key, cells)])
    finally:
        writer.close()
    log.info("registry %s: pipeline %s now at model %s", registry_schema.table_name,
             target.pipeline, target.model_version)
    return key


def read_registry(
    config: HoyaConfig, registry_schema: TableSchema, pipeline: str
) -> dict[str, Any] | None:
    """Return the pipeline's registry row decoded, or None when it has none."""
    connection = connect(config)
    try:
        row_key = registry_schema.make_row_key({"pipeline": pipeline})
        cells = connection.table(registry_schema.table_name).row(row_key)
    finally:
        connection.close()
    return registry_schema.decode_row(row_key, cells) if cells else None


def read_prediction_row(
    config: HoyaConfig, schema: TableSchema, row_key: str
) -> list[dict[str, Any]]:
    """Return one row's prediction cells: target, model version, value and timestamp."""
    connection = connect(config)
    try:
        cells = connection.table(schema.table_name).row(
            row_key.encode("utf-8"), include_timestamp=True
        )
    finally:
        connection.close()
    column = schema.columns[PREDICTION_COLUMN]
    found = []
    for cell, (data, timestamp) in sorted(cells.items()):
        match = schema.column_by_cell(cell)
        if match is None or match[0].name != PREDICTION_COLUMN:
            continue
        parts = column.qualifier_regex.fullmatch(match[1])
        found.append({
            "qualifier": match[1], "target": parts.group("target"),
            "model_version": parts.group("model_version"), "value": column.decode(data),
            "timestamp_ms": timestamp,
        })
    return found
