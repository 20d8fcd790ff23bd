"""read_table, write_table and export against real HBase and Spark."""

from __future__ import annotations

import struct

import pytest

from pipelines.tables.exporter import run_export
from pipelines.tables.hbase import connect
from pipelines.tables.importer import run_import
from pipelines.tables.spark_io import read_table, scan_ranges, write_table

SLICE_WRITTEN = 4626


@pytest.fixture
def loaded(stack, make_table, bars_slice):
    schema = make_table()
    run_import(stack, schema, str(bars_slice), engine="local", timestamp_ms=1_000_000)
    return schema


def _scan(config, table_name: str) -> list:
    connection = connect(config)
    try:
        return list(connection.table(table_name).scan())
    finally:
        connection.close()


def test_read_table_one_partition_per_region(stack, spark, loaded):
    rows, bad = read_table(spark, stack, loaded)
    assert rows.rdd.getNumPartitions() == 4
    assert rows.count() == SLICE_WRITTEN
    assert bad.count() == 0
    aapl = rows.filter("row_key = 'AAPL#2012-08-13'").collect()[0].asDict()
    assert aapl == {"row_key": "AAPL#2012-08-13", "ticker": "AAPL", "date": "2012-08-13",
                    "open": 89.06, "high": 90.0, "low": 89.04, "close": 90.0,
                    "volume": 69707463}
    lmt = rows.filter("row_key = 'NYSE:LMT#2017-07-31'").collect()[0]
    assert lmt.open is None
    assert lmt.low is None


def test_read_table_range_and_columns(stack, spark, loaded):
    rows, _ = read_table(spark, stack, loaded, columns=["close"], row_start="GOOG",
                         row_stop="MSFT#2012-08-15")
    assert rows.columns == ["row_key", "ticker", "date", "close"]
    keys = [row.row_key for row in rows.collect()]
    assert len(keys) == 1258 - 406 + 2
    assert keys[0] == "GOOG#2014-03-27"
    assert keys[-1] == "MSFT#2012-08-14"
    assert scan_ranges(stack, loaded.table_name, b"GOOG", b"MSFT#2012-08-15") != []


def test_read_table_time_range(stack, spark, loaded):
    inside, _ = read_table(spark, stack, loaded, time_range=(1_000_000, 1_000_001))
    outside, _ = read_table(spark, stack, loaded, time_range=(0, 1_000_000))
    assert inside.count() == SLICE_WRITTEN
    assert outside.count() == 0


def test_read_table_quarantines_bad_cells(stack, spark, make_table):
    schema = make_table()
    connection = connect(stack)
    try:
        table = connection.table(schema.table_name)
        table.put(b"AAA#2013-01-02", {b"b:close": b"\x00\x01", b"b:volume": struct.pack(">q", 1)})
        table.put(b"AAA#2013-01-03", {b"b:close": struct.pack(">d", 2.0)})
    finally:
        connection.close()
    rows, bad = read_table(spark, stack, schema)
    assert [row.row_key for row in rows.collect()] == ["AAA#2013-01-03"]
    assert [tuple(row) for row in bad.collect()] == [
        ("AAA#2013-01-02", "column close: double cell has 2 bytes, expected 8",
         f"hbase:{schema.table_name}")
    ]


def test_write_table_predictions(stack, spark, make_table):
    schema = make_table("sp500_predictions")
    frame = spark.createDataFrame(
        [("AAPL", "2013-01-02", {"rv5@v1": 0.25}, "v1"),
         ("AAPL", "2013-01-03", {"rv5@v1": 0.5}, "v1"),
         ("", "2013-01-04", {"rv5@v1": 0.75}, "v1")],
        "ticker string, date string, prediction map<string,double>, model_version string",
    )
    first = write_table(frame, stack, schema, batch_size=2, timestamp_ms=5000)
    second = write_table(frame, stack, schema, batch_size=2, timestamp_ms=5000)
    assert (first.rows_read, first.rows_written, first.rows_quarantined) == (3, 2, 1)
    assert [tuple(row) for row in first.quarantine_df.collect()] == [
        (None, "missing row-key part ticker", "write_table")
    ]
    assert second.rows_written == 2
    cells = _scan(stack, schema.table_name)
    assert cells == [
        (b"AAPL#2013-01-02", {b"p:model_version": b"v1", b"p:rv5@v1": struct.pack(">d", 0.25)}),
        (b"AAPL#2013-01-03", {b"p:model_version": b"v1", b"p:rv5@v1": struct.pack(">d", 0.5)}),
    ]
    rows, _ = read_table(spark, stack, schema, columns=["prediction"])
    assert rows.collect()[0].prediction == {"rv5@v1": 0.25}


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_export_import_round_trip(stack, spark, loaded, make_table, tmp_path, file_format):
    target = tmp_path / f"export-{file_format}"
    exported = run_export(spark, stack, loaded, str(target), file_format=file_format)
    assert (exported.rows_read, exported.rows_written, exported.rows_quarantined) == (
        SLICE_WRITTEN, SLICE_WRITTEN, 0)
    copy = make_table()
    result = run_import(stack, copy, str(target), engine="local", timestamp_ms=1_000_000)
    assert result.stats.rows_read == SLICE_WRITTEN
    assert result.stats.rows_written == SLICE_WRITTEN
    assert _scan(stack, copy.table_name) == _scan(stack, loaded.table_name)


def test_export_to_hdfs(stack, spark, loaded):
    from pipelines.io.webhdfs import WebHdfs

    target = f"{stack.hdfs.uri}/hoya-tests/tables-export-{loaded.table}"
    hdfs = WebHdfs.from_config(stack)
    try:
        result = run_export(spark, stack, loaded, target, row_start="AAPL", row_stop="AAPM",
                            columns=["close", "volume"])
        assert result.rows_written == 1258
        back = spark.read.parquet(target)
        assert back.columns == ["row_key", "ticker", "date", "close", "volume"]
        assert back.filter("row_key = 'AAPL#2017-08-11'").collect()[0].volume == 26257096
    finally:
        hdfs.delete(WebHdfs.path_of(target), recursive=True)

