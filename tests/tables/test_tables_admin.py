"""Table DDL against real HBase over Thrift2: apply, describe, list, drop."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from pipelines.config import REPO_ROOT
from pipelines.tables.admin import apply_schema, describe_table, drop_table, list_tables
from pipelines.tables.hbase import thrift2_client, thrift2_module
from pipelines.tables.schema import load_table_schema


def _bars(table: str, namespace: str = "default"):
    return load_table_schema("sp500_daily_bars").model_copy(
        update={"table": table, "namespace": namespace}
    )


def test_apply_creates_then_no_changes(stack):
    schema = _bars(f"hoya_t_{uuid.uuid4().hex[:8]}", namespace="hoyatest")
    try:
        first = apply_schema(stack, schema)
        second = apply_schema(stack, schema)
        assert first.changes[-1] == (
            f"created table {schema.table_name} with families ['b'] and 4 region(s)"
        )
        assert second.changes == []
        assert second.differences == []
        assert schema.table_name in list_tables(stack)

        info = describe_table(stack, schema)
        assert info["families"] == {"b": {"max_versions": 1, "ttl_s": None, "compression": "NONE",
                                          "bloom_filter": "ROW", "in_memory": False}}
        assert [(r["start_key"], r["end_key"]) for r in info["regions"]] == [
            (b"", b"F"), (b"F", b"M"), (b"M", b"S"), (b"S", b""),
        ]
        assert info["rows"] == 0
    finally:
        assert drop_table(stack, schema.table_name)
    assert schema.table_name not in list_tables(stack)
    assert not drop_table(stack, schema.table_name)


def test_apply_reports_unsafe_differences(stack):
    schema = _bars(f"hoya_t_{uuid.uuid4().hex[:8]}")
    module = thrift2_module()
    name = module.TTableName(ns=b"default", qualifier=schema.table.encode())
    try:
        apply_schema(stack, schema)
        with thrift2_client(stack) as client:
            changed = module.TColumnFamilyDescriptor(name=b"b", maxVersions=3)
            client.modifyColumnFamily(name, changed)
            client.addColumnFamily(name, module.TColumnFamilyDescriptor(name=b"x"))
        result = apply_schema(stack, schema)
        assert result.changes == []
        assert result.differences == [
            "family b: max_versions is 3, schema has 1; not changed (lower max_versions or "
            "ttl_s can drop cells): rerun with --force to apply",
            "family x exists in HBase but not in the schema; not deleted (that drops its "
            "cells): add it to the schema, or rerun with --force to delete it",
        ]
        forced = apply_schema(stack, schema, force=True)
        assert forced.changes == [
            "modified family b: max_versions is 3, schema has 1",
            "deleted family x and its cells",
        ]
        assert apply_schema(stack, schema).differences == []
    finally:
        drop_table(stack, schema.table_name)


def _hoya(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True,
                          text=True, env=env, check=False, cwd=REPO_ROOT)


def test_cli_apply_import_describe_drop(stack, bars_slice, tmp_path):
    table = f"hoya_t_{uuid.uuid4().hex[:8]}"
    try:
        imported = _hoya("import", "sp500_daily_bars", str(bars_slice / "AAPL_data.csv"),
                         "--table-name", table)
        assert imported.returncode == 0, imported.stderr
        assert "rows read: 1258\nrows written: 1258\nrows quarantined: 0\n" in imported.stdout
        applied = _hoya("tables", "apply", "sp500_daily_bars")
        assert applied.returncode == 0, applied.stderr
        described = _hoya("tables", "describe", "sp500_daily_bars", "--table-name", table)
        assert described.returncode == 0, described.stderr
        assert "  b: max_versions=1, ttl_s=None, compression=NONE, bloom_filter=ROW" in described.stdout
        assert "rows: 1258" in described.stdout
        refused = _hoya("tables", "drop", "sp500_daily_bars", "--table-name", table)
        assert refused.returncode == 2
        assert "add --force" in refused.stderr
        dropped = _hoya("tables", "drop", "sp500_daily_bars", "--table-name", table, "--force")
        assert dropped.stdout.strip() == f"dropped {table}"
    finally:
        drop_table(stack, table)


def test_cli_import_missing_source(stack, tmp_path):
    table = f"hoya_t_{uuid.uuid4().hex[:8]}"
    result = _hoya("import", "sp500_daily_bars", str(tmp_path / "nothing"), "--table-name", table)
    assert table not in list_tables(stack)
    assert result.returncode == 2
    assert "not found; give a file or folder path" in result.stderr
    assert "Traceback" not in result.stderr
