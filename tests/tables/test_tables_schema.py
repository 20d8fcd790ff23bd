"""Schema loading and Java-compatible cell encoding (no services needed)."""

from __future__ import annotations

import datetime as dt
import struct
import zlib
from pathlib import Path

import pytest

from pipelines.tables.schema import (
    BadRecord,
    SchemaError,
    TableSchema,
    list_table_schemas,
    load_table_schema,
    salt_of,
)


@pytest.fixture(scope="module")
def bars() -> TableSchema:
    return load_table_schema("sp500_daily_bars")


def _column(schema: TableSchema, name: str):
    return schema.columns[name]


def test_shipped_schemas_load():
    assert {"sp500_daily_bars", "sp500_predictions", "hoya_registry"} <= set(list_table_schemas())
    for name in list_table_schemas():
        assert load_table_schema(name).table == name


def test_bars_layout(bars):
    assert bars.table_name == "sp500_daily_bars"
    assert bars.row_key_fields == ["ticker", "date"]
    assert list(bars.columns) == ["ticker", "date", "open", "high", "low", "close", "volume"]
    assert bars.columns["close"].family == "b"
    assert bars.columns["close"].type == "double"
    assert bars.columns["volume"].type == "long"
    assert bars.split_points() == [b"F", b"M", b"S"]


@pytest.mark.parametrize(
    ("column_type", "value", "expected"),
    [
        # The bytes org.apache.hadoop.hbase.util.Bytes.toBytes writes for each type.
        ("double", 1.5, b"\x3f\xf8\x00\x00\x00\x00\x00\x00"),
        ("long", 42, b"\x00" * 7 + b"\x2a"),
        ("long", -1, b"\xff" * 8),
        ("int", 42, b"\x00\x00\x00\x2a"),
        ("float", 1.5, b"\x3f\xc0\x00\x00"),
        ("boolean", True, b"\xff"),
        ("boolean", False, b"\x00"),
        ("string", "Zürich", "Zürich".encode("utf-8")),
        ("date", dt.date(2012, 8, 13), b"2012-08-13"),
        ("timestamp", dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.timezone.utc),
         b"\x00" * 6 + b"\x03\xe8"),
    ],
)
def test_encode_matches_java_bytes(column_type, value, expected):
    schema = _one_column_schema(column_type)
    column = schema.columns["v"]
    assert column.encode(value) == expected
    assert column.decode(expected) == value


def test_encode_parses_text_values():
    assert _one_column_schema("double").columns["v"].encode("90.0") == struct.pack(">d", 90.0)
    assert _one_column_schema("long").columns["v"].encode("69707463") == struct.pack(
        ">q", 69707463
    )
    assert _one_column_schema("boolean").columns["v"].encode("true") == b"\xff"


def test_text_encoding_stores_utf8_numbers():
    schema = _one_column_schema("double", encoding="text")
    assert schema.columns["v"].encode(90.5) == b"90.5"
    assert schema.columns["v"].decode(b"90.5") == 90.5


@pytest.mark.parametrize(
    ("column_type", "value", "reason"),
    [
        ("double", "abc", "unparsable double 'abc' in column v"),
        ("long", "12.5", "unparsable long '12.5' in column v"),
        ("int", 2**40, "column v: 1099511627776 out of range for int"),
        ("date", "2012-13-45", "unparsable date '2012-13-45' in column v"),
        ("boolean", "maybe", "unparsable boolean 'maybe' in column v"),
    ],
)
def test_encode_rejects_bad_values(column_type, value, reason):
    with pytest.raises(BadRecord) as caught:
        _one_column_schema(column_type).columns["v"].encode(value)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("column_type", "data", "reason"),
    [
        ("double", b"\x00\x01", "column v: double cell has 2 bytes, expected 8"),
        ("long", b"12345", "column v: long cell has 5 bytes, expected 8"),
        ("string", b"\xff\xfe", "column v: cell is not valid UTF-8"),
        ("boolean", b"", "column v: boolean cell has 0 bytes, expected 1"),
    ],
)
def test_decode_rejects_bad_cells(column_type, data, reason):
    with pytest.raises(BadRecord) as caught:
        _one_column_schema(column_type).columns["v"].decode(data)
    assert caught.value.reason == reason


def test_encode_row_skips_empty_optional_cells(bars):
    record = {"Date": "x", "ticker": "AAPL", "date": "2012-08-13", "open": "", "high": None,
              "low": float("nan"), "close": "90.0", "volume": "69707463"}
    row_key, cells = bars.encode_row(record)
    assert row_key == b"AAPL#2012-08-13"
    assert cells == {
        b"b:ticker": b"AAPL",
        b"b:date": b"2012-08-13",
        b"b:close": struct.pack(">d", 90.0),
        b"b:volume": struct.pack(">q", 69707463),
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ticker": ""}, "missing row-key part ticker"),
        ({"date": None}, "missing row-key part date"),
        ({"close": ""}, "missing required column close"),
        ({"volume": None}, "missing required column volume"),
        ({"volume": "1e3x"}, "unparsable long '1e3x' in column volume"),
        ({"date": "13/08/2012"}, "row-key part date: '13/08/2012' does not match '\\\\d{4}-\\\\d{2}-\\\\d{2}'"),
    ],
)
def test_encode_row_rejects_bad_records(bars, change, reason):
    record = {"ticker": "AAPL", "date": "2012-08-13", "close": 1.0, "volume": 5, **change}
    with pytest.raises(BadRecord) as caught:
        bars.encode_row(record)
    assert caught.value.reason == reason


def test_decode_row_round_trip(bars):
    record = {"ticker": "NYSE:LMT", "date": "2012-08-13", "open": 90.71, "high": 91.18,
              "low": 90.54, "close": 91.12, "volume": 1079687}
    row_key, cells = bars.encode_row(record)
    assert bars.decode_row(row_key, cells) == {"row_key": "NYSE:LMT#2012-08-13", **record}


def test_decode_row_rejects_bad_row_key(bars):
    with pytest.raises(BadRecord) as caught:
        bars.decode_row(b"AAPL-2012-08-13", {})
    assert caught.value.reason == "row key 'AAPL-2012-08-13' does not match '{ticker}#{date}'"


def test_dynamic_qualifiers_round_trip():
    predictions = load_table_schema("sp500_predictions")
    column = predictions.columns["prediction"]
    qualifier = column.qualifier_for(target="rv5", model_version="v20261204T160000")
    assert qualifier == "rv5@v20261204T160000"
    record = {"ticker": "AAPL", "date": "2013-01-02", "prediction": {qualifier: 0.25},
              "model_version": "v20261204T160000"}
    row_key, cells = predictions.encode_row(record)
    assert row_key == b"AAPL#2013-01-02"
    assert cells == {
        b"p:rv5@v20261204T160000": b"\x3f\xd0" + b"\x00" * 6,
        b"p:model_version": b"v20261204T160000",
    }
    decoded = predictions.decode_row(row_key, {**cells, b"p:unknown": b"x"})
    assert decoded["prediction"] == {"rv5@v20261204T160000": 0.25}
    assert decoded["pipeline"] is None
    with pytest.raises(BadRecord):
        predictions.encode_row({**record, "prediction": {"no-at-sign": 1.0}})


def test_salted_row_key(tmp_path: Path):
    path = tmp_path / "salted.yaml"
    path.write_text(
        "table: salted\nfamilies: {d: {}}\n"
        "row_key: {template: '{salt}|{ticker}#{date}', salt_buckets: 16}\n"
        "columns:\n  ticker: {family: d, qualifier: t}\n  date: {family: d, qualifier: d}\n"
    )
    schema = load_table_schema(path)
    row_key, _ = schema.encode_row({"ticker": "AAPL", "date": "2012-08-13"})
    expected_salt = salt_of("AAPL#2012-08-13", 16)
    assert row_key == f"{expected_salt}|AAPL#2012-08-13".encode()
    assert schema.parse_row_key(row_key) == {"ticker": "AAPL", "date": "2012-08-13"}
    assert schema.split_points() == [f"{i:02d}".encode() for i in range(1, 16)]
    # CRC-32 is fixed by its definition, so the salt never changes between runs.
    assert expected_salt == f"{zlib.crc32(b'AAPL#2012-08-13') % 16:02d}"


def test_spark_schema_types(bars):
    from pyspark.sql import types as T

    schema = bars.spark_schema()
    assert schema.names == ["row_key", "ticker", "date", "open", "high", "low", "close", "volume"]
    assert schema["close"].dataType == T.DoubleType()
    assert schema["volume"].dataType == T.LongType()
    predictions = load_table_schema("sp500_predictions").spark_schema()
    assert predictions["prediction"].dataType == T.MapType(T.StringType(), T.DoubleType(), True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("table: t\nfamilies: {d: {}}\nrow_key: {template: '{k}'}\n"
         "columns: {k: {family: x, qualifier: k}}\n", "uses family 'x'"),
        ("table: t\nfamilies: {d: {compression: ZIP}}\nrow_key: {template: '{k}'}\n"
         "columns: {k: {family: d, qualifier: k}}\n", "families.d.compression"),
        ("table: t\nfamilies: {d: {}}\nrow_key: {template: '{k}#{z}'}\n"
         "columns: {k: {family: d, qualifier: k}}\n", "row-key field 'z'"),
        ("table: t\nfamilies: {d: {}}\nrow_key: {template: '{k}'}\n"
         "columns: {k: {family: d}}\n", "exactly one of 'qualifier' or 'qualifier_pattern'"),
    ],
)
def test_invalid_schema_names_key(tmp_path: Path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SchemaError) as caught:
        load_table_schema(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_unknown_schema_lists_known_names():
    with pytest.raises(SchemaError) as caught:
        load_table_schema("no_such_table")
    assert "sp500_daily_bars" in str(caught.value)


def _one_column_schema(column_type: str, encoding: str = "binary") -> TableSchema:
    return TableSchema.model_validate(
        {
            "table": "t",
            "families": {"d": {}},
            "row_key": {"template": "{k}", "fields": {"k": {"type": "string"}}},
            "columns": {"v": {"family": "d", "qualifier": "v", "type": column_type,
                              "encoding": encoding}},
        }
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["columns"]["open"].update(qualifier="close"),
         "columns 'close' and 'open' both map to b:close; give each its own qualifier"),
        (lambda d: d["columns"]["ticker"].update(pattern="[A-Z"),
         "column 'ticker': pattern '[A-Z' is not a valid regular expression"),
        (lambda d: d["row_key"].update(template="{ticker}#{date"),
         "row_key.template '{ticker}#{date' has unbalanced braces"),
        (lambda d: d.update(table="bad name!"), "table 'bad name!' is not a valid HBase name"),
        (lambda d: d["columns"]["close"].update(pattern="\\d+"),
         "column 'close': 'pattern' applies to string columns only, not double"),
    ],
)
def test_schema_mistakes_are_rejected_early(tmp_path, change, expected):
    import yaml

    from pipelines.config import REPO_ROOT
    from pipelines.tables.schema import SchemaError, load_table_schema

    data = yaml.safe_load((REPO_ROOT / "hbase_schema/sp500_daily_bars.yaml").read_text())
    change(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SchemaError) as caught:
        load_table_schema(path)
    assert expected in str(caught.value)
    assert "(value {" not in str(caught.value)


@pytest.mark.parametrize("text", ["NaN", "inf", "-Infinity"])
def test_non_finite_text_is_a_bad_cell(text):
    from pipelines.tables.schema import BadRecord, load_table_schema

    schema = load_table_schema("sp500_daily_bars")
    with pytest.raises(BadRecord, match=f"unparsable double '{text}' in column close"):
        schema.encode_row({"ticker": "AAPL", "date": "2013-01-02", "close": text,
                           "volume": "1"})
