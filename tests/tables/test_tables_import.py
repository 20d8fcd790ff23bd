"""Import into real HBase: counts, stored cells, quarantine reasons, reruns and faults."""

from __future__ import annotations

import io
import socket
import struct
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.tables.hbase import HBaseError, connect
from pipelines.tables.importer import Progress, run_import, split_files
from pipelines.tables.sources import list_sources
from pipelines.tables.writer import RetryPolicy

SLICE_READ = 5032  # 4 files x 1258 rows; AMT_data.csv has only its header
GOOG_NO_VOLUME = 406


def _cells(config, table_name: str) -> list[tuple[bytes, dict]]:
    connection = connect(config)
    try:
        return list(connection.table(table_name).scan(include_timestamp=True))
    finally:
        connection.close()


def test_slice_import_counts_and_cells(stack, make_table, bars_slice, tmp_path):
    schema = make_table()
    quarantine = tmp_path / "quarantine"
    result = run_import(stack, schema, str(bars_slice), engine="local", quarantine=str(quarantine))

    assert result.stats.rows_read == SLICE_READ
    assert result.stats.rows_written == SLICE_READ - GOOG_NO_VOLUME
    assert result.stats.rows_quarantined == GOOG_NO_VOLUME
    assert result.stats.files == 5
    assert result.stats.files_without_rows == ["AMT_data.csv"]
    assert result.reasons == {"missing required column volume": GOOG_NO_VOLUME}
    assert "files with no data rows: AMT_data.csv" in result.summary()

    bad = pq.read_table(quarantine / "part-00000.parquet").to_pylist()
    assert len(bad) == GOOG_NO_VOLUME
    assert bad[0] == {
        "source": "GOOG_data.csv", "line": 2, "row_key": None,
        "reason": "missing required column volume",
        "raw": "2012-08-13,323.39,329.74,323.02,329.67,,GOOG",
    }

    rows = dict((key, cells) for key, cells in _cells(stack, schema.table_name))
    assert len(rows) == SLICE_READ - GOOG_NO_VOLUME
    aapl = rows[b"AAPL#2012-08-13"]
    assert aapl[b"b:close"][0] == b"\x40\x56\x80\x00\x00\x00\x00\x00"  # 90.0
    assert aapl[b"b:volume"][0] == struct.pack(">q", 69707463)
    assert aapl[b"b:ticker"][0] == b"AAPL"
    assert aapl[b"b:date"][0] == b"2012-08-13"
    assert struct.unpack(">d", aapl[b"b:open"][0])[0] == 89.06
    # Empty open and low cells are not written; the rest of the row is.
    lmt = rows[b"NYSE:LMT#2017-07-31"]
    assert sorted(lmt) == [b"b:close", b"b:date", b"b:high", b"b:ticker", b"b:volume"]
    assert struct.unpack(">d", lmt[b"b:high"][0])[0] == 293.84
    assert b"GOOG#2012-08-13" not in rows
    assert struct.unpack(">q", rows[b"GOOG#2014-03-27"][b"b:volume"][0])[0] > 0


def test_rerun_writes_same_cells(stack, make_table, bars_slice):
    schema = make_table()
    first = run_import(stack, schema, str(bars_slice), engine="local")
    before = _cells(stack, schema.table_name)
    second = run_import(stack, schema, str(bars_slice), engine="local")
    after = _cells(stack, schema.table_name)

    assert first.timestamp_ms == second.timestamp_ms
    assert after == before
    connection = connect(stack)
    try:
        versions = connection.table(schema.table_name).cells(
            b"AAPL#2012-08-13", b"b:close", versions=10, include_timestamp=True
        )
    finally:
        connection.close()
    assert versions == [(struct.pack(">d", 90.0), first.timestamp_ms)]


def test_spark_engine_matches_local(stack, make_table, bars_slice, spark):
    local = make_table()
    parallel = make_table()
    run_import(stack, local, str(bars_slice), engine="local")
    result = run_import(stack, parallel, str(bars_slice), engine="spark", spark=spark)

    assert result.engine == "spark"
    assert result.stats.rows_read == SLICE_READ
    assert result.stats.rows_written == SLICE_READ - GOOG_NO_VOLUME
    assert result.stats.files_without_rows == ["AMT_data.csv"]
    assert _cells(stack, parallel.table_name) == _cells(stack, local.table_name)


HEADER = "Date,Open,High,Low,Close,Volume,Name\n"
BAD_INPUTS = [
    # (file name, content, expected reasons in input order)
    ("columns.csv", HEADER + "2013-01-02,1,2,3,4,5\n", ["wrong column count: 6, expected 7"]),
    ("number.csv", HEADER + "2013-01-02,1,2,3,abc,5,AAA\n",
     ["unparsable double 'abc' in column close"]),
    ("volume.csv", HEADER + "2013-01-02,1,2,3,4,5.5,AAA\n",
     ["unparsable long '5.5' in column volume"]),
    ("ticker.csv", HEADER + "2013-01-02,1,2,3,4,5,\n", ["missing row-key part ticker"]),
    ("date.csv", HEADER + ",1,2,3,4,5,AAA\n", ["missing row-key part date"]),
    ("close.csv", HEADER + "2013-01-02,1,2,3,,5,AAA\n", ["missing required column close"]),
    ("duplicate.csv", HEADER + "2013-01-02,1,2,3,4,5,AAA\n2013-01-02,1,2,3,4,6,AAA\n",
     ["duplicate row key in batch"]),
    ("utf8.csv", HEADER.encode() + b"2013-01-02,1,2,3,4,5,A\xff\n", ["invalid UTF-8 text"]),
    ("lines.jsonl", b'{"Date": "2013-01-02", "Close": 1, "Volume": 2, "Name": "J"}\n{"Date": \n[1]\n',
     ["invalid JSON: Expecting value at column 10", "JSON line is a list, not an object"]),
]


@pytest.mark.parametrize(("name", "content", "reasons"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_quarantine_reason(stack, make_table, tmp_path, name, content, reasons):
    schema = make_table()
    source = tmp_path / name
    source.write_bytes(content.encode() if isinstance(content, str) else content)
    quarantine = tmp_path / "quarantine"
    result = run_import(stack, schema, str(source), engine="local", quarantine=str(quarantine))

    bad = pq.read_table(quarantine / "part-00000.parquet").to_pylist()
    assert [row["reason"].split(" (first at ")[0] for row in bad] == reasons
    assert all(row["source"] == name for row in bad)
    assert result.stats.rows_quarantined == len(reasons)
    assert result.stats.rows_read == result.stats.rows_written + len(reasons)
    assert len(_cells(stack, schema.table_name)) == result.stats.rows_written


def test_quarantine_line_numbers(stack, make_table, tmp_path):
    schema = make_table()
    source = tmp_path / "mixed.csv"
    source.write_text(HEADER + "2013-01-02,1,2,3,4,5,AAA\n\n2013-01-03,1,2,3,x,5,AAA\n")
    run_import(stack, schema, str(source), engine="local", quarantine=str(tmp_path / "q"))
    bad = pq.read_table(tmp_path / "q" / "part-00000.parquet").to_pylist()
    assert [(row["line"], row["raw"]) for row in bad] == [(4, "2013-01-03,1,2,3,x,5,AAA")]
    assert bad[0]["reason"] == "unparsable double 'x' in column close"


def test_mapping_and_parquet_input(stack, make_table, tmp_path):
    import pyarrow as pa

    schema = make_table()
    table = pa.table({"sym": ["X", "Y"], "day": ["2013-01-02", "2013-01-02"],
                      "px": [1.5, None], "qty": [10, 20]})
    pq.write_table(table, tmp_path / "bars.parquet")
    mapping = {"ticker": "sym", "date": "day", "close": "px", "volume": "qty"}
    result = run_import(stack, schema, str(tmp_path / "bars.parquet"), engine="local",
                        mapping=mapping, quarantine=str(tmp_path / "q"))
    assert (result.stats.rows_written, result.stats.rows_quarantined) == (1, 1)
    assert result.reasons == {"missing required column close": 1}
    rows = dict(_cells(stack, schema.table_name))
    assert rows[b"X#2013-01-02"][b"b:close"][0] == struct.pack(">d", 1.5)
    assert rows[b"X#2013-01-02"][b"b:volume"][0] == struct.pack(">q", 10)


def test_split_files_balances_sizes(stack, bars_slice):
    files = list_sources(stack, str(bars_slice))
    groups = split_files(files, 2)
    assert sorted(f.name for group in groups for f in group) == sorted(f.name for f in files)
    assert len(groups) == 2


def test_progress_line_on_terminal():
    stream = io.StringIO()
    progress = Progress(total_files=4, stream=stream, interactive=True)
    progress.show(rows=1000, files=2)
    assert stream.getvalue().startswith("\r[###############               ] 2/4 files, 1,000 rows, ")
    assert stream.getvalue().endswith(" rows/s")


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 that can cut every open connection, or refuse new ones."""

    def __init__(self, upstream_port: int, cut_after_bytes: int | None = None,
                 refuse_after_cut: bool = False):
        self.upstream_port = upstream_port
        self.cut_after_bytes = cut_after_bytes
        self.refuse_after_cut = refuse_after_cut
        self.forwarded = 0
        self.cuts = 0
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, outbound: bool) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
                if outbound:
                    self._count(len(data))
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _count(self, size: int) -> None:
        with self.lock:
            self.forwarded += size
            cut = self.cut_after_bytes is not None and self.forwarded >= self.cut_after_bytes
            if cut:
                self.cut_after_bytes = None
        if cut and self.refuse_after_cut:
            self.refuse()
        elif cut:
            self.cut()

    def cut(self) -> None:
        with self.lock:
            sockets, self.sockets = self.sockets, []
            self.cuts += 1
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def refuse(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone does not on Linux.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        self.cut()


def test_dropped_connection_is_retried(stack, make_table, bars_slice):
    schema = make_table()
    reference = make_table()
    proxy = CuttingProxy(stack.hbase.thrift_port, cut_after_bytes=200_000)
    config = stack.model_copy(deep=True)
    config.hbase.thrift_port = proxy.port
    try:
        result = run_import(config, schema, str(bars_slice), engine="local", batch_size=200,
                            retry=RetryPolicy(max_attempts=4, initial_backoff_s=0.1))
    finally:
        proxy.refuse()
    run_import(stack, reference, str(bars_slice), engine="local")

    assert proxy.cuts >= 1
    assert result.stats.retries >= 1
    assert result.stats.rows_written == SLICE_READ - GOOG_NO_VOLUME
    assert _cells(stack, schema.table_name) == _cells(stack, reference.table_name)


def test_persistent_failure_names_last_row(stack, make_table, bars_slice):
    schema = make_table()
    # After the cut the proxy accepts no new connection, so every retry fails.
    proxy = CuttingProxy(stack.hbase.thrift_port, cut_after_bytes=150_000, refuse_after_cut=True)
    config = stack.model_copy(deep=True)
    config.hbase.thrift_port = proxy.port
    with pytest.raises(HBaseError) as caught:
        run_import(config, schema, str(bars_slice), engine="local", batch_size=200,
                   retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.1))
    proxy.refuse()
    message = str(caught.value)
    assert "failed 3 times" in message
    assert "last row key written: 'AAPL#" in message
    last_key = message.split("last row key written: '")[1].split("'")[0]
    rows = [key.decode() for key, _ in _cells(stack, schema.table_name)]
    assert last_key in rows
