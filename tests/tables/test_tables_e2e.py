"""The full S&P 500 data set: import into sp500_daily_bars, export, re-import, compare."""

from __future__ import annotations

import pytest

from pipelines.config import REPO_ROOT
from pipelines.tables.admin import apply_schema
from pipelines.tables.exporter import run_export
from pipelines.tables.hbase import connect
from pipelines.tables.importer import run_import
from pipelines.tables.schema import load_table_schema
DATA = REPO_ROOT / "data" / "sp500_5yr"
ROWS_READ = 606_801
GOOG_NO_VOLUME = 406
ROWS_WRITTEN = ROWS_READ - GOOG_NO_VOLUME


def _full_scan(config, table_name: str) -> list:
    connection = connect(config)
    try:
        return list(connection.table(table_name).scan(batch_size=5000))
    finally:
        connection.close()


@pytest.mark.e2e
def test_full_import_export_round_trip(stack, spark, make_table, tmp_path):
    # The raw table stays: later pipeline stages read it. Reruns rewrite the same cells.
    bars = load_table_schema("sp500_daily_bars")
    apply_schema(stack, bars)
    result = run_import(stack, bars, str(DATA), spark=spark, quarantine=str(tmp_path / "q"))

    assert result.engine == "spark"
    assert result.stats.files == 504
    assert result.stats.rows_read == ROWS_READ
    assert result.stats.rows_written == ROWS_WRITTEN
    assert result.stats.rows_quarantined == GOOG_NO_VOLUME
    assert result.reasons == {"missing required column volume": GOOG_NO_VOLUME}
    assert result.stats.files_without_rows == ["AMT_data.csv"]

    exported = run_export(spark, stack, bars, str(tmp_path / "export"))
    assert exported.rows_written == ROWS_WRITTEN
    frame = spark.read.parquet((tmp_path / "export").as_uri())
    assert frame.filter("open IS NULL").count() == 384
    assert frame.filter("high IS NULL").count() == 208
    assert frame.filter("low IS NULL").count() == 227
    assert frame.filter("ticker = 'NYSE:NWL'").count() == 1258
    aapl = frame.filter("row_key = 'AAPL#2012-08-13'").collect()[0]
    assert (aapl.close, aapl.volume) == (90.0, 69707463)

    copy = make_table()
    reimported = run_import(stack, copy, str(tmp_path / "export"), spark=spark,
                            timestamp_ms=result.timestamp_ms)
    assert reimported.stats.rows_written == ROWS_WRITTEN
    original = _full_scan(stack, bars.table_name)
    assert len(original) == ROWS_WRITTEN
    assert original[0][0] == b"A#2012-08-13"
    assert _full_scan(stack, copy.table_name) == original
