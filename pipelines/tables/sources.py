"""Input files of an import: listing, reading bytes and parsing records with line numbers.

Files are read with plain Python I/O (local files) or WebHDFS (``hdfs://``), never
through Hadoop paths, because Hadoop rejects names with ':' such as
``NYSE:LMT_data.csv``. The same functions run on the driver and in Spark executors.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import requests

from pipelines.config import HoyaConfig
from pipelines.io.webhdfs import WebHdfs, WebHdfsError

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json",
           ".parquet": "parquet"}


class SourceError(ValueError):
    """An import source is missing, empty or of an unknown format."""


@dataclass(frozen=True)
class SourceFile:
    """One input file: its path or URI, format, size in bytes and modification time (ms)."""

    uri: str
    format: str
    size: int
    mtime_ms: int

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class Record:
    """One parsed input row: its fields, or the reason it could not be parsed."""

    source: str
    line: int
    fields: dict[str, Any] | None
    error: str | None = None
    raw: str = ""


def _format_of(name: str, forced: str | None) -> str | None:
    if forced:
        return forced
    return FORMATS.get(Path(name).suffix.lower())


def _skipped(name: str) -> bool:
    # Spark and Hadoop write _SUCCESS, .crc and other hidden bookkeeping files.
    return name.startswith(("_", ".")) or name.endswith(".crc")


def list_sources(config: HoyaConfig, source: str, file_format: str | None = None) -> list[SourceFile]:
    """List the data files of a file or folder (recursively), sorted by path."""
    if source.startswith("hdfs://"):
        files = _list_hdfs(config, source, file_format)
    else:
        files = _list_local(Path(source), file_format)
    if not files:
        raise SourceError(
            f"no input files in {source}; expected .csv, .json, .jsonl or .parquet files "
            "(or pass --format)"
        )
    return sorted(files, key=lambda item: item.uri)


def _list_local(path: Path, file_format: str | None) -> list[SourceFile]:
    if not path.exists():
        raise SourceError(f"import source {path} not found; give a file or folder path")
    paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    files = []
    for item in paths:
        kind = _format_of(item.name, file_format)
        if _skipped(item.name) or kind is None:
            if path.is_file():
                raise SourceError(
                    f"unknown format of {item}; name it .csv, .jsonl or .parquet, or pass --format"
                )
            continue
        stat = item.stat()
        files.append(SourceFile(str(item.resolve()), kind, stat.st_size, int(stat.st_mtime * 1000)))
    return files


def _list_hdfs(config: HoyaConfig, uri: str, file_format: str | None) -> list[SourceFile]:
    client = WebHdfs.from_config(config)
    prefix = uri[: len(uri) - len(WebHdfs.path_of(uri))]
    pending = [WebHdfs.path_of(uri)]
    files: list[SourceFile] = []
    while pending:
        path = pending.pop()
        for status in _hdfs_statuses(client, path):
            child = path if status["pathSuffix"] == "" else f"{path.rstrip('/')}/{status['pathSuffix']}"
            name = child.rsplit("/", 1)[-1]
            if status["type"] == "DIRECTORY":
                pending.append(child)
                continue
            kind = _format_of(name, file_format)
            if _skipped(name) or kind is None:
                continue
            files.append(SourceFile(prefix + child, kind, status["length"], status["modificationTime"]))
    return files


def _hdfs_statuses(client: WebHdfs, path: str) -> list[dict[str, Any]]:
    params = {"op": "LISTSTATUS", "user.name": client.user}
    response = requests.get(client.base + path, params=params, timeout=client.timeout_s)
    if response.status_code == 404:
        raise SourceError(f"import source hdfs path {path} not found")
    if response.status_code >= 400:
        raise WebHdfsError(f"WebHDFS LISTSTATUS {path} failed: HTTP {response.status_code}")
    return response.json()["FileStatuses"]["FileStatus"]


def read_bytes(config: HoyaConfig, uri: str) -> bytes:
    """Return a file's bytes from the local file system or HDFS (WebHDFS)."""
    if uri.startswith("hdfs://"):
        return WebHdfs.from_config(config).read(uri)
    with open(uri, "rb") as handle:
        return handle.read()


# Parsing. Each parser yields every input row exactly once, as fields or as an error.


def parse_records(data: bytes, source: SourceFile, delimiter: str = ",") -> Iterator[Record]:
    """Parse a file's bytes into records; rows that cannot be parsed carry an error."""
    if source.format == "csv":
        yield from _parse_csv(data, source.name, delimiter)
    elif source.format == "json":
        yield from _parse_json_lines(data, source.name)
    elif source.format == "parquet":
        yield from _parse_parquet(data, source.name)
    else:
        raise SourceError(f"unknown format {source.format!r}; allowed: csv, json, parquet")


def _parse_csv(data: bytes, name: str, delimiter: str) -> Iterator[Record]:
    # surrogateescape keeps invalid UTF-8 bytes visible per row instead of failing the file.
    text = data.decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    header = [column.strip() for column in header]
    line = reader.line_num
    for values in reader:
        first_line, line = line + 1, reader.line_num
        if not values or values == [""]:
            continue  # a blank line is not a row
        raw = delimiter.join(values)
        if _has_surrogates(raw):
            yield Record(name, first_line, None, "invalid UTF-8 text", _printable(raw))
        elif len(values) != len(header):
            yield Record(
                name, first_line, None,
                f"wrong column count: {len(values)}, expected {len(header)}", raw,
            )
        else:
            yield Record(name, first_line, dict(zip(header, values)), raw=raw)


def _parse_json_lines(data: bytes, name: str) -> Iterator[Record]:
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        try:
            text = raw_line.decode("utf-8")
        except UnicodeDecodeError:
            yield Record(name, number, None, "invalid UTF-8 text", raw_line.decode("latin-1"))
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            yield Record(name, number, None, f"invalid JSON: {err.msg} at column {err.colno}", text)
            continue
        if not isinstance(value, dict):
            yield Record(name, number, None, f"JSON line is a {type(value).__name__}, not an object", text)
        else:
            yield Record(name, number, value, raw=text)


def _parse_parquet(data: bytes, name: str) -> Iterator[Record]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(io.BytesIO(data))
    number = 0
    for batch in parquet.iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            number += 1
            yield Record(name, number, row, raw="")


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in text)


def _printable(text: str) -> str:
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
