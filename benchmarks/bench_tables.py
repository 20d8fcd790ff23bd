"""Benchmark HOYA's table import and export against a plain happybase loop.

Both sides move the same rows (the first files of data/sp500_5yr, about 100k rows) in
the same run. The baseline parses the CSV files, encodes each row with ``struct`` and
puts batches of 1000 rows over one Thrift connection; its export scans over one
connection, decodes the rows and writes one Parquet file. HOYA imports with its Spark
engine (parallel tasks, one connection each) and exports with ``run_export`` (one Spark
task per region).

Run: bin/hoya stack up && PYTHONPATH=. .hoya/job-env/bin/python benchmarks/bench_tables.py
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import logging
import os
import platform
import shutil
import struct
import tempfile
import time
import uuid
from pathlib import Path

from pipelines.config import REPO_ROOT, load_config
from pipelines.io.spark import spark_session
from pipelines.tables.admin import apply_schema, drop_table
from pipelines.tables.exporter import run_export
from pipelines.tables.hbase import connect
from pipelines.tables.importer import run_import
from pipelines.tables.schema import load_table_schema

log = logging.getLogger("bench_tables")
DATA = REPO_ROOT / "data" / "sp500_5yr"
NUMERIC = (("open", 1), ("high", 2), ("low", 3), ("close", 4))


def _pick_files(target_rows: int, folder: Path) -> int:
    """Copy the first files of the data set until they hold ``target_rows``; return rows."""
    rows = 0
    for path in sorted(DATA.glob("*.csv")):
        shutil.copy2(path, folder / path.name)
        rows += sum(1 for _ in path.open()) - 1
        if rows >= target_rows:
            break
    return rows


def plain_import(config, table_name: str, folder: Path, timestamp_ms: int) -> int:
    """Baseline: parse, encode and put with one happybase connection; return rows written."""
    connection = connect(config)
    written = 0
    try:
        table = connection.table(table_name)
        with table.batch(batch_size=1000, timestamp=timestamp_ms) as batch:
            for path in sorted(folder.glob("*.csv")):
                with path.open(newline="") as handle:
                    for row in csv.DictReader(handle):
                        if not row["Close"] or not row["Volume"]:
                            continue
                        cells = {b"b:ticker": row["Name"].encode(), b"b:date": row["Date"].encode(),
                                 b"b:volume": struct.pack(">q", int(row["Volume"]))}
                        for name, _ in NUMERIC:
                            text = row[name.capitalize()]
                            if text:
                                cells[f"b:{name}".encode()] = struct.pack(">d", float(text))
                        batch.put(f"{row['Name']}#{row['Date']}".encode(), cells)
                        written += 1
    finally:
        connection.close()
    return written


def plain_export(config, table_name: str, target: Path) -> int:
    """Baseline: scan over one connection, decode, write one Parquet file; return rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list] = {name: [] for name in
                                ("row_key", "ticker", "date", "open", "high", "low", "close",
                                 "volume")}
    connection = connect(config)
    try:
        for key, cells in connection.table(table_name).scan(batch_size=2000):
            columns["row_key"].append(key.decode())
            columns["ticker"].append(cells[b"b:ticker"].decode())
            columns["date"].append(cells[b"b:date"].decode())
            for name, _ in NUMERIC:
                value = cells.get(f"b:{name}".encode())
                columns[name].append(struct.unpack(">d", value)[0] if value else None)
            columns["volume"].append(struct.unpack(">q", cells[b"b:volume"])[0])
    finally:
        connection.close()
    pq.write_table(pa.table(columns), target)
    return len(columns["row_key"])


def _timed(action):
    started = time.monotonic()
    value = action()
    return value, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="approximate rows to move")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = load_config()
    bars = load_table_schema("sp500_daily_bars")
    suffix = uuid.uuid4().hex[:8]
    hoya_schema = bars.model_copy(update={"table": f"bench_hoya_{suffix}"})
    plain_schema = bars.model_copy(update={"table": f"bench_plain_{suffix}"})
    spark = spark_session(config, "bench-tables")
    work = Path(tempfile.mkdtemp(prefix="bench-tables-"))
    try:
        source = work / "input"
        source.mkdir()
        rows = _pick_files(args.rows, source)
        for schema in (hoya_schema, plain_schema):
            apply_schema(config, schema)
        stamp = 1_000_000
        plain_rows, plain_in = _timed(lambda: plain_import(config, plain_schema.table_name,
                                                           source, stamp))
        result, hoya_in = _timed(lambda: run_import(config, hoya_schema, str(source),
                                                    engine="spark", spark=spark,
                                                    timestamp_ms=stamp))
        assert result.stats.rows_written == plain_rows, (result.stats.rows_written, plain_rows)
        plain_out_rows, plain_out = _timed(lambda: plain_export(
            config, plain_schema.table_name, work / "plain.parquet"))
        exported, hoya_out = _timed(lambda: run_export(spark, config, hoya_schema,
                                                       str(work / "hoya-export")))
        assert exported.rows_written == plain_out_rows
        _report(rows, plain_rows, plain_in, hoya_in, plain_out_rows, plain_out, hoya_out)
    finally:
        for schema in (hoya_schema, plain_schema):
            drop_table(config, schema.table_name)
        shutil.rmtree(work, ignore_errors=True)
        spark.stop()


def _report(rows, written, plain_in, hoya_in, exported, plain_out, hoya_out) -> None:
    today = dt.date.today().isoformat()
    print(f"date: {today}; machine: {os.cpu_count()} cores, {platform.platform()}")
    print(f"input: {rows} rows read, {written} written; {exported} rows exported")
    print("| step | plain happybase loop | HOYA | ratio |")
    print("|---|---|---|---|")
    print(f"| import | {written / plain_in:,.0f} rows/s ({plain_in:.1f} s) | "
          f"{written / hoya_in:,.0f} rows/s ({hoya_in:.1f} s) | {plain_in / hoya_in:.2f}x |")
    print(f"| export | {exported / plain_out:,.0f} rows/s ({plain_out:.1f} s) | "
          f"{exported / hoya_out:,.0f} rows/s ({hoya_out:.1f} s) | {plain_out / hoya_out:.2f}x |")


if __name__ == "__main__":
    main()
