"""The real local services: HBase through Thrift, HDFS through WebHDFS and Spark."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import happybase
import pytest

from pipelines.config import REPO_ROOT
from pipelines.io.webhdfs import WebHdfs


@pytest.fixture
def hbase(stack):
    connection = happybase.Connection(stack.hbase.thrift_host, stack.hbase.thrift_port)
    yield connection
    connection.close()


def test_stack_status_reports_every_service_healthy(stack):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "stack", "status"],
        capture_output=True, text=True, env=env, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    states = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]}
    assert states == {
        "namenode": "healthy", "datanode": "healthy", "hbase": "healthy", "thrift": "healthy",
        "thrift2": "healthy",
    }


def test_hbase_table_create_write_scan(hbase):
    name = f"hoya_smoke_{uuid.uuid4().hex[:8]}"
    hbase.create_table(name, {"d": {"max_versions": 1}})
    try:
        table = hbase.table(name)
        with table.batch(batch_size=100) as batch:
            for i in range(250):
                batch.put(f"row{i:04d}".encode(), {b"d:n": str(i).encode(), b"d:sq": str(i * i).encode()})

        rows = list(table.scan(row_start=b"row0100", row_stop=b"row0103"))
        assert rows == [
            (b"row0100", {b"d:n": b"100", b"d:sq": b"10000"}),
            (b"row0101", {b"d:n": b"101", b"d:sq": b"10201"}),
            (b"row0102", {b"d:n": b"102", b"d:sq": b"10404"}),
        ]
        assert sum(1 for _ in table.scan()) == 250
        assert name.encode() in hbase.tables()
    finally:
        hbase.delete_table(name, disable=True)
    assert name.encode() not in hbase.tables()


def test_hdfs_file_read_by_spark(stack, spark):
    hdfs = WebHdfs.from_config(stack)
    folder = f"/hoya-tests/{uuid.uuid4().hex[:8]}"
    csv = "ticker,close\nAAPL,150.5\nMSFT,92.25\nAAPL,151.0\n"
    hdfs.write(f"{folder}/bars.csv", csv.encode())
    try:
        assert hdfs.list(folder) == ["bars.csv"]
        assert hdfs.read(f"{folder}/bars.csv").decode() == csv

        frame = spark.read.csv(f"{stack.hdfs.uri}{folder}/bars.csv", header=True, inferSchema=True)
        rows = sorted((r.ticker, r.close) for r in frame.collect())
        assert rows == [("AAPL", 150.5), ("AAPL", 151.0), ("MSFT", 92.25)]

        # Spark writes Parquet to HDFS, and WebHDFS lists the files it wrote.
        frame.groupBy("ticker").count().write.parquet(f"{stack.hdfs.uri}{folder}/counts")
        assert "_SUCCESS" in hdfs.list(f"{folder}/counts")
        counts = spark.read.parquet(f"{stack.hdfs.uri}{folder}/counts").collect()
        assert sorted((r.ticker, r["count"]) for r in counts) == [("AAPL", 2), ("MSFT", 1)]
    finally:
        assert hdfs.delete(folder, recursive=True)
    assert not hdfs.exists(folder)


def test_other_port_offset_is_detected(stack):
    from pipelines.config import load_config
    from pipelines.localstack import LocalStack, StackError

    moved = load_config(environ={**os.environ, "HOYA_PORT_OFFSET": "1000"})
    local = LocalStack(moved)
    assert local.state == LocalStack(stack).state  # the same state folder
    assert {row["state"] for row in local.status()} == {"other-ports"}
    with pytest.raises(StackError, match="runs with other ports"):
        local.up()
