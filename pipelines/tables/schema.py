"""Declarative HBase table schemas: families, row-key layout and cell encodings.

A schema file in ``hbase_schema/<name>.yaml`` declares one table. Cell values are
encoded the way Java's ``org.apache.hadoop.hbase.util.Bytes.toBytes`` writes them, so
tables written here read back in Java and the other way round:

=========  =========================================  ======================
type       bytes (``encoding: binary``, the default)  Python value
=========  =========================================  ======================
string     UTF-8                                      ``str``
long       8-byte big-endian signed (``>q``)          ``int``
int        4-byte big-endian signed (``>i``)          ``int``
double     8-byte big-endian IEEE 754 (``>d``)        ``float``
float      4-byte big-endian IEEE 754 (``>f``)        ``float``
boolean    1 byte, ``0xff`` true, ``0x00`` false      ``bool``
date       UTF-8 ``YYYY-MM-DD``                       ``datetime.date``
timestamp  8-byte big-endian milliseconds since epoch ``datetime`` (UTC)
=========  =========================================  ======================

``encoding: text`` stores a number, boolean or timestamp as its UTF-8 text instead
(what the HBase shell's ``put`` writes). See docs/tables.md for the file format.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import struct
import zlib
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.config import REPO_ROOT

SCHEMA_DIR = REPO_ROOT / "hbase_schema"
SALT_FIELD = "salt"

ColumnType = Literal["string", "long", "int", "double", "float", "boolean", "date", "timestamp"]
_STRUCT = {"long": ">q", "int": ">i", "double": ">d", "float": ">f"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class SchemaError(ValueError):
    """A schema file is missing or invalid; the message names the file, key and fix."""


class BadRecord(ValueError):
    """A record or cell cannot be encoded or decoded; ``reason`` gives the cause."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FamilySpec(_Model):
    """Settings of one column family, as in an HBase ColumnFamilyDescriptor."""

    max_versions: int = Field(1, ge=1, le=10_000)
    ttl_s: int | None = Field(None, ge=1, description="seconds a cell lives, or null = forever")
    compression: Literal["NONE", "GZ", "SNAPPY", "LZ4", "LZO", "ZSTD", "BZIP2"] = "NONE"
    bloom_filter: Literal["NONE", "ROW", "ROWCOL"] = "ROW"
    in_memory: bool = False


class ColumnSpec(_Model):
    """One column: a fixed qualifier, or a qualifier pattern for a set of dynamic ones."""

    name: str
    family: str
    qualifier: str | None = None
    qualifier_pattern: str | None = None
    type: ColumnType = "string"
    encoding: Literal["binary", "text"] = "binary"
    source: str | None = Field(None, description="field name in imported files")
    required: bool = False
    pattern: str | None = Field(None, description="regular expression a string must match")

    @property
    def dynamic(self) -> bool:
        return self.qualifier_pattern is not None

    @cached_property
    def pattern_fields(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.qualifier_pattern or "")

    @cached_property
    def qualifier_regex(self) -> re.Pattern[str]:
        return _template_regex(self.qualifier_pattern or "")

    def qualifier_for(self, **parts: Any) -> str:
        """Return the qualifier of a dynamic column for ``parts``, e.g. target and version."""
        if not self.dynamic:
            raise SchemaError(f"column {self.name!r} has a fixed qualifier {self.qualifier!r}")
        missing = [name for name in self.pattern_fields if parts.get(name) in (None, "")]
        if missing:
            raise BadRecord(f"column {self.name}: missing qualifier part(s) {missing}")
        return self.qualifier_pattern.format(**parts)  # type: ignore[union-attr]

    def cell_name(self, qualifier: str | None = None) -> bytes:
        """Return ``family:qualifier`` as bytes, the form happybase puts and returns."""
        return f"{self.family}:{qualifier or self.qualifier}".encode()

    # Values.

    def coerce(self, value: Any) -> Any:
        """Convert text or a Python value to this column's Python type; None stays None."""
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None
        try:
            return _COERCE[self.type](value)
        except (ValueError, TypeError, OverflowError) as err:
            raise BadRecord(f"unparsable {self.type} {value!r} in column {self.name}") from err

    def encode(self, value: Any) -> bytes:
        """Encode a non-null value to the cell bytes; raise BadRecord when it does not fit."""
        value = self.coerce(value)
        if value is None:
            raise BadRecord(f"column {self.name}: cannot encode a null value")
        if self.pattern and self.type == "string" and not re.fullmatch(self.pattern, value):
            raise BadRecord(
                f"column {self.name}: {value!r} does not match pattern {self.pattern!r}"
            )
        if self.encoding == "text" and self.type != "string":
            return _text_of(self.type, value).encode("utf-8")
        try:
            return _encode_binary(self.type, value)
        except struct.error as err:
            raise BadRecord(f"column {self.name}: {value!r} out of range for {self.type}") from err

    def decode(self, data: bytes) -> Any:
        """Decode cell bytes to the Python value; raise BadRecord for undecodable bytes."""
        if self.encoding == "text" or self.type in ("string", "date"):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise BadRecord(f"column {self.name}: cell is not valid UTF-8") from err
            return text if self.type == "string" else self.coerce(text)
        expected = _BINARY_SIZE[self.type]
        if len(data) != expected:
            raise BadRecord(
                f"column {self.name}: {self.type} cell has {len(data)} bytes, expected {expected}"
            )
        return _decode_binary(self.type, data)


class RowKeySpec(_Model):
    """Row-key layout: a template over field names and an optional salt prefix."""

    template: str = Field(description="e.g. '{ticker}#{date}' or '{salt}|{ticker}#{date}'")
    salt_buckets: int | None = Field(None, ge=2, le=100)
    fields: dict[str, ColumnSpec] = Field(
        default_factory=dict, description="row-key parts that are not also columns"
    )


class TableSchema(_Model):
    """One HBase table: name, families, split points, row key and columns."""

    namespace: str = "default"
    table: str
    description: str = ""
    families: dict[str, FamilySpec]
    splits: list[str] = Field(default_factory=list)
    row_key: RowKeySpec
    columns: dict[str, ColumnSpec]
    source_path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_columns(cls, data: Any) -> Any:
        """Copy each mapping key into the column's ``name`` so specs know their own name."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for section in ("columns",):
            if isinstance(data.get(section), dict):
                data[section] = {
                    key: {**(spec or {}), "name": key} if isinstance(spec, dict) else spec
                    for key, spec in data[section].items()
                }
        row_key = data.get("row_key")
        if isinstance(row_key, dict) and isinstance(row_key.get("fields"), dict):
            fields = {
                key: {"family": "", **(spec or {}), "name": key}
                for key, spec in row_key["fields"].items()
            }
            data["row_key"] = {**row_key, "fields": fields}
        return data

    @model_validator(mode="after")
    def _check(self) -> "TableSchema":
        for column in self.columns.values():
            if column.family not in self.families:
                raise ValueError(
                    f"column {column.name!r} uses family {column.family!r}, which is not in "
                    f"families {sorted(self.families)}; add it under 'families'"
                )
            if (column.qualifier is None) == (column.qualifier_pattern is None):
                raise ValueError(
                    f"column {column.name!r} needs exactly one of 'qualifier' or "
                    "'qualifier_pattern'"
                )
        for name in self.row_key_fields:
            if name not in self.columns and name not in self.row_key.fields:
                raise ValueError(
                    f"row-key field {name!r} of template {self.row_key.template!r} is neither "
                    "a column nor declared under row_key.fields"
                )
        self._check_names_and_patterns()
        if self.row_key.salt_buckets and not self.row_key.template.startswith("{salt}"):
            raise ValueError("a salted row key must start with '{salt}'")
        if self.splits and self.row_key.salt_buckets:
            raise ValueError("give either 'splits' or row_key.salt_buckets, not both")
        if self.splits != sorted(set(self.splits)):
            raise ValueError(f"splits {self.splits} must be sorted and unique")
        return self

    def _check_names_and_patterns(self) -> None:
        """Reject what HBase or the encoder would only reject later, or silently."""
        for name, value in (("namespace", self.namespace), ("table", self.table)):
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", value):
                raise ValueError(
                    f"{name} {value!r} is not a valid HBase name; use letters, digits, '_', "
                    "'-' and '.'"
                )
        for family in self.families:
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", family):
                raise ValueError(f"family {family!r} is not a valid HBase family name")
        seen: dict[tuple[str, str], str] = {}
        for column in self.columns.values():
            if column.qualifier is not None:
                cell = (column.family, column.qualifier)
                if cell in seen:
                    raise ValueError(
                        f"columns {seen[cell]!r} and {column.name!r} both map to "
                        f"{column.family}:{column.qualifier}; give each its own qualifier"
                    )
                seen[cell] = column.name
            if column.pattern is not None:
                if column.type != "string":
                    raise ValueError(
                        f"column {column.name!r}: 'pattern' applies to string columns only, "
                        f"not {column.type}"
                    )
                try:
                    re.compile(column.pattern)
                except re.error as err:
                    raise ValueError(
                        f"column {column.name!r}: pattern {column.pattern!r} is not a valid "
                        f"regular expression: {err}"
                    ) from None
        template = self.row_key.template
        if template.count("{") != template.count("}") or re.search(r"\{[^}]*\{", template):
            raise ValueError(f"row_key.template {template!r} has unbalanced braces")

    # Names and layout.

    @property
    def table_name(self) -> str:
        """Return ``table`` in the default namespace, else ``namespace:table``."""
        return self.table if self.namespace == "default" else f"{self.namespace}:{self.table}"

    @cached_property
    def row_key_fields(self) -> list[str]:
        """Return the names of the row-key parts in template order, the salt excluded."""
        names = re.findall(r"\{(\w+)\}", self.row_key.template)
        return [name for name in names if name != SALT_FIELD]

    @cached_property
    def _row_key_regex(self) -> re.Pattern[str]:
        return _template_regex(self.row_key.template, salt=SALT_FIELD)

    def key_field(self, name: str) -> ColumnSpec:
        return self.row_key.fields.get(name) or self.columns[name]

    def split_points(self) -> list[bytes]:
        """Return the region split keys: the explicit splits or one per salt bucket."""
        if self.row_key.salt_buckets:
            return [f"{bucket:02d}".encode() for bucket in range(1, self.row_key.salt_buckets)]
        return [split.encode("utf-8") for split in self.splits]

    def column_by_cell(self, cell: bytes) -> tuple[ColumnSpec, str] | None:
        """Return the column and qualifier text for ``family:qualifier``, or None if unknown."""
        return self._cell_index.get(cell) or self._match_dynamic(cell)

    @cached_property
    def _cell_index(self) -> dict[bytes, tuple[ColumnSpec, str]]:
        return {
            column.cell_name(): (column, column.qualifier)  # type: ignore[misc]
            for column in self.columns.values()
            if not column.dynamic
        }

    def _match_dynamic(self, cell: bytes) -> tuple[ColumnSpec, str] | None:
        family, _, qualifier = cell.decode("utf-8", errors="replace").partition(":")
        for column in self.columns.values():
            if column.dynamic and column.family == family:
                if column.qualifier_regex.fullmatch(qualifier):
                    return column, qualifier
        return None

    # Row keys.

    def make_row_key(self, record: dict[str, Any]) -> bytes:
        """Build the row key from the record's row-key parts; BadRecord if one is missing."""
        parts = {}
        for name in self.row_key_fields:
            spec = self.key_field(name)
            value = spec.coerce(record.get(name))
            if value is None:
                raise BadRecord(f"missing row-key part {name}")
            text = _text_of(spec.type, value)
            if spec.pattern and not re.fullmatch(spec.pattern, text):
                raise BadRecord(f"row-key part {name}: {text!r} does not match {spec.pattern!r}")
            parts[name] = text
        if not self.row_key.salt_buckets:
            return self.row_key.template.format(**parts).encode("utf-8")
        # '{salt}|{ticker}#{date}': the salt hashes the text after '{salt}|'.
        rest = self.row_key.template[len("{" + SALT_FIELD + "}"):]
        separator = rest.split("{", 1)[0]
        unsalted = rest[len(separator):].format(**parts)
        salt = salt_of(unsalted, self.row_key.salt_buckets)
        return f"{salt}{separator}{unsalted}".encode("utf-8")

    def parse_row_key(self, row_key: bytes) -> dict[str, Any]:
        """Split a row key into its typed parts; raise BadRecord when it does not match."""
        try:
            text = row_key.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BadRecord(f"row key {row_key!r} is not valid UTF-8") from err
        match = self._row_key_regex.fullmatch(text)
        if match is None:
            raise BadRecord(f"row key {text!r} does not match {self.row_key.template!r}")
        parts = {}
        for name in self.row_key_fields:
            parts[name] = self.key_field(name).coerce(match.group(name))
        return parts

    # Rows.

    def encode_row(self, record: dict[str, Any]) -> tuple[bytes, dict[bytes, bytes]]:
        """Encode a record (column name -> value) to a row key and ``family:qualifier`` cells.

        Null and empty values are not written; a null required column, a missing row-key
        part or a value that does not fit its type raises BadRecord. A dynamic column's
        value is a mapping of qualifier -> value. Keys that are not columns are ignored.
        """
        row_key = self.make_row_key(record)
        cells: dict[bytes, bytes] = {}
        for name, column in self.columns.items():
            value = record.get(name)
            if column.dynamic:
                cells.update(self._encode_dynamic(column, value))
                continue
            if _is_null(value):
                if column.required:
                    raise BadRecord(f"missing required column {name}")
                continue
            if isinstance(value, float) and math.isnan(value):
                # pandas stores a null number as NaN: treat it as null, like an empty cell.
                if column.required:
                    raise BadRecord(f"missing required column {name}")
                continue
            cells[column.cell_name()] = column.encode(value)
        return row_key, cells

    @staticmethod
    def _encode_dynamic(column: ColumnSpec, value: Any) -> dict[bytes, bytes]:
        if value is None:
            if column.required:
                raise BadRecord(f"missing required column {column.name}")
            return {}
        if not isinstance(value, dict):
            raise BadRecord(
                f"column {column.name}: expected a mapping of qualifier -> value, "
                f"got {type(value).__name__}"
            )
        cells = {}
        for qualifier, item in value.items():
            if not column.qualifier_regex.fullmatch(str(qualifier)):
                raise BadRecord(
                    f"column {column.name}: qualifier {qualifier!r} does not match "
                    f"{column.qualifier_pattern!r}"
                )
            if item is not None:
                cells[column.cell_name(str(qualifier))] = column.encode(item)
        return cells

    def decode_row(self, row_key: bytes, cells: dict[bytes, bytes]) -> dict[str, Any]:
        """Decode a row to column name -> value, with ``row_key`` (str) and its parts.

        Columns without a cell are None (an empty mapping for dynamic columns); cells
        of unknown qualifiers are ignored. An undecodable cell raises BadRecord.
        """
        row: dict[str, Any] = {"row_key": None}
        row.update(self.parse_row_key(row_key))
        row["row_key"] = row_key.decode("utf-8")
        for name, column in self.columns.items():
            row.setdefault(name, {} if column.dynamic else None)
            if column.dynamic:
                row[name] = {}
        for cell, data in cells.items():
            found = self.column_by_cell(cell)
            if found is None:
                continue
            column, qualifier = found
            value = column.decode(data)
            if column.dynamic:
                row[column.name][qualifier] = value
            else:
                row[column.name] = value
        return row

    def spark_schema(self):
        """Return the pyspark StructType of decoded rows: row_key, key parts, columns."""
        from pyspark.sql import types as T

        fields = [T.StructField("row_key", T.StringType(), False)]
        for name in self.row_key_fields:
            fields.append(T.StructField(name, _spark_type(self.key_field(name).type), False))
        for name, column in self.columns.items():
            if name in self.row_key_fields:
                continue
            data_type = _spark_type(column.type)
            if column.dynamic:
                data_type = T.MapType(T.StringType(), data_type, True)
            fields.append(T.StructField(name, data_type, True))
        return T.StructType(fields)


# Loading.


def schema_path(name_or_path: str | Path) -> Path:
    """Return the file of a schema name (a stem in hbase_schema/) or path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return candidate
    return SCHEMA_DIR / f"{name_or_path}.yaml"


def load_table_schema(name_or_path: str | Path) -> TableSchema:
    """Load and validate a table schema; raise SchemaError naming the file, key and fix."""
    path = schema_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        known = sorted(p.stem for p in SCHEMA_DIR.glob("*.yaml"))
        raise SchemaError(
            f"table schema {str(name_or_path)!r} not found at {path}; known schemas: {known}"
        ) from err
    except yaml.YAMLError as err:
        raise SchemaError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: the top level must be a mapping with 'table' and 'columns'")
    data.setdefault("source_path", str(path))
    try:
        return TableSchema.model_validate(data)
    except ValidationError as err:
        lines = []
        for error in err.errors():
            if not error["loc"]:  # a whole-schema check: its message names the values
                lines.append(error["msg"].removeprefix("Value error, "))
                continue
            key = ".".join(str(part) for part in error["loc"])
            lines.append(f"{key}: {error['msg']} (value {error.get('input')!r})")
        raise SchemaError(f"{path}: invalid table schema:\n  " + "\n  ".join(lines)) from None


def list_table_schemas() -> list[str]:
    """Return the names of the schema files in hbase_schema/."""
    return sorted(path.stem for path in SCHEMA_DIR.glob("*.yaml"))


# Encoding helpers.


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def salt_of(unsalted_key: str, buckets: int | None) -> str:
    """Return the 2-digit salt: CRC-32 of the unsalted key's UTF-8 bytes mod ``buckets``."""
    # CRC-32 is stable across processes and languages (Python's hash() is not).
    return f"{zlib.crc32(unsalted_key.encode('utf-8')) % (buckets or 1):02d}"


def _template_regex(template: str, salt: str | None = None) -> re.Pattern[str]:
    pieces = re.split(r"(\{\w+\})", template)
    regex = []
    fields = [p for p in pieces if p.startswith("{")]
    for piece in pieces:
        if not piece.startswith("{"):
            regex.append(re.escape(piece))
            continue
        name = piece[1:-1]
        if name == salt:
            regex.append(rf"(?P<{name}>\d{{2}})")
        elif piece == fields[-1]:
            regex.append(rf"(?P<{name}>.+)")
        else:
            regex.append(rf"(?P<{name}>.+?)")
    return re.compile("".join(regex))


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "t", "yes", "y", "1"):
        return True
    if text in ("false", "f", "no", "n", "0"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        # Accept "1.0e6" style whole numbers that some writers emit, reject fractions.
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        number = float(text)
        if not number.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(number)
    return int(value)


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    number = float(value.strip() if isinstance(value, str) else value)
    if isinstance(value, str) and not math.isfinite(number):
        # Text such as "NaN" or "inf" in an input file is a defect, not a measurement.
        raise ValueError(f"{value.strip()!r} is not a finite number")
    return number


def _parse_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value).strip())


def _parse_timestamp(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _EPOCH + dt.timedelta(milliseconds=value)
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return _EPOCH + dt.timedelta(milliseconds=int(text))
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _parse_string(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


_COERCE = {
    "string": _parse_string,
    "long": _parse_int,
    "int": _parse_int,
    "double": _parse_float,
    "float": _parse_float,
    "boolean": _parse_bool,
    "date": _parse_date,
    "timestamp": _parse_timestamp,
}
_BINARY_SIZE = {"long": 8, "int": 4, "double": 8, "float": 4, "boolean": 1, "timestamp": 8}


def _millis(value: dt.datetime) -> int:
    return (value - _EPOCH) // dt.timedelta(milliseconds=1)


def _text_of(column_type: str, value: Any) -> str:
    if column_type == "boolean":
        return "true" if value else "false"
    if column_type == "timestamp":
        return str(_millis(value))
    if column_type == "date":
        return value.isoformat()
    return str(value)


def _encode_binary(column_type: str, value: Any) -> bytes:
    if column_type == "string":
        return value.encode("utf-8")
    if column_type == "date":
        return value.isoformat().encode("utf-8")
    if column_type == "boolean":
        return b"\xff" if value else b"\x00"
    if column_type == "timestamp":
        return struct.pack(">q", _millis(value))
    return struct.pack(_STRUCT[column_type], value)


def _decode_binary(column_type: str, data: bytes) -> Any:
    if column_type == "boolean":
        return data != b"\x00"
    if column_type == "timestamp":
        return _EPOCH + dt.timedelta(milliseconds=struct.unpack(">q", data)[0])
    return struct.unpack(_STRUCT[column_type], data)[0]


def _spark_type(column_type: str):
    from pyspark.sql import types as T

    return {
        "string": T.StringType(),
        "long": T.LongType(),
        "int": T.IntegerType(),
        "double": T.DoubleType(),
        "float": T.FloatType(),
        "boolean": T.BooleanType(),
        "date": T.DateType(),
        "timestamp": T.TimestampType(),
    }[column_type]


__all__ = [
    "BadRecord",
    "ColumnSpec",
    "FamilySpec",
    "SchemaError",
    "TableSchema",
    "list_table_schemas",
    "load_table_schema",
    "salt_of",
]
