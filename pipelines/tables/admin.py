"""Create, compare, describe and drop HBase tables declared in hbase_schema/.

``apply_schema`` creates what is missing (namespace, table with its split points,
families) and only reports what it cannot change without risk to data: a family whose
settings differ, a family that HBase has and the schema lacks, split points that differ
from the table's regions. With ``force=True`` it also modifies differing families and
deletes undeclared ones, which can drop cells.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pipelines.config import HoyaConfig
from pipelines.tables.hbase import HBaseError, connect, thrift2_client, thrift2_module
from pipelines.tables.schema import FamilySpec, TableSchema

log = logging.getLogger(__name__)

# HBase stores "no TTL" as Integer.MAX_VALUE seconds (HConstants.FOREVER).
FOREVER_S = 2_147_483_647


@dataclass
class ApplyResult:
    """Changes made by ``apply_schema`` and the differences left for a person to resolve."""

    table: str
    changes: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return not self.changes


def _table_name(schema: TableSchema) -> Any:
    module = thrift2_module()
    return module.TTableName(ns=schema.namespace.encode(), qualifier=schema.table.encode())


def _family_descriptor(name: str, spec: FamilySpec) -> Any:
    module = thrift2_module()
    return module.TColumnFamilyDescriptor(
        name=name.encode(),
        maxVersions=spec.max_versions,
        timeToLive=spec.ttl_s or FOREVER_S,
        compressionType=getattr(module.TCompressionAlgorithm, spec.compression),
        bloomnFilterType=getattr(module.TBloomFilterType, spec.bloom_filter),
        inMemory=spec.in_memory,
    )


def family_settings(descriptor: Any) -> dict[str, Any]:
    """Return a Thrift2 family descriptor's settings in schema terms (FamilySpec fields)."""
    module = thrift2_module()
    ttl = descriptor.timeToLive
    return {
        "max_versions": descriptor.maxVersions,
        "ttl_s": None if ttl in (None, FOREVER_S) else ttl,
        "compression": module.TCompressionAlgorithm._VALUES_TO_NAMES.get(
            descriptor.compressionType, str(descriptor.compressionType)
        ),
        "bloom_filter": module.TBloomFilterType._VALUES_TO_NAMES.get(
            descriptor.bloomnFilterType, str(descriptor.bloomnFilterType)
        ),
        "in_memory": bool(descriptor.inMemory),
    }


def apply_schema(config: HoyaConfig, schema: TableSchema, force: bool = False) -> ApplyResult:
    """Create the schema's namespace, table and families where missing; report differences."""
    result = ApplyResult(schema.table_name)
    with thrift2_client(config) as client:
        _ensure_namespace(client, schema, result)
        if not client.tableExists(_table_name(schema)):
            _create_table(client, schema, result)
        else:
            _compare_families(client, schema, result, force)
            _compare_splits(config, schema, result)
    log.info(
        "applied schema of %s: %d change(s), %d difference(s) left",
        schema.table_name, len(result.changes), len(result.differences),
    )
    return result


def _ensure_namespace(client: Any, schema: TableSchema, result: ApplyResult) -> None:
    if schema.namespace in client.listNamespaces():
        return
    module = thrift2_module()
    client.createNamespace(module.TNamespaceDescriptor(name=schema.namespace))
    result.changes.append(f"created namespace {schema.namespace}")


def _create_table(client: Any, schema: TableSchema, result: ApplyResult) -> None:
    module = thrift2_module()
    descriptor = module.TTableDescriptor(
        tableName=_table_name(schema),
        columns=[_family_descriptor(name, spec) for name, spec in schema.families.items()],
    )
    splits = schema.split_points()
    client.createTable(descriptor, splits or None)
    result.changes.append(
        f"created table {schema.table_name} with families {sorted(schema.families)} "
        f"and {len(splits) + 1} region(s)"
    )


def _compare_families(client: Any, schema: TableSchema, result: ApplyResult, force: bool) -> None:
    descriptor = client.getTableDescriptor(_table_name(schema))
    existing = {column.name.decode(): column for column in descriptor.columns or []}
    for name, spec in schema.families.items():
        if name not in existing:
            client.addColumnFamily(_table_name(schema), _family_descriptor(name, spec))
            result.changes.append(f"added family {name}")
            continue
        actual = family_settings(existing[name])
        wanted = spec.model_dump()
        differing = {key: (actual[key], wanted[key]) for key in wanted if actual[key] != wanted[key]}
        if not differing:
            continue
        text = ", ".join(f"{key} is {old!r}, schema has {new!r}" for key, (old, new) in differing.items())
        if force:
            client.modifyColumnFamily(_table_name(schema), _family_descriptor(name, spec))
            result.changes.append(f"modified family {name}: {text}")
        else:
            result.differences.append(
                f"family {name}: {text}; not changed (lower max_versions or ttl_s can drop "
                "cells): rerun with --force to apply"
            )
    for name in sorted(set(existing) - set(schema.families)):
        if force:
            client.deleteColumnFamily(_table_name(schema), name.encode())
            result.changes.append(f"deleted family {name} and its cells")
        else:
            result.differences.append(
                f"family {name} exists in HBase but not in the schema; not deleted (that drops "
                "its cells): add it to the schema, or rerun with --force to delete it"
            )


def _compare_splits(config: HoyaConfig, schema: TableSchema, result: ApplyResult) -> None:
    wanted = schema.split_points()
    if not wanted:
        return
    actual = [region["start_key"] for region in table_regions(config, schema.table_name)][1:]
    if actual != wanted:
        result.differences.append(
            f"region start keys are {actual}, the schema splits at {wanted}; not changed "
            "(HBase splits regions as they grow; recreate the table to reset them)"
        )


# Listing, describing, dropping.


def list_tables(config: HoyaConfig) -> list[str]:
    """Return the user tables in HBase as ``table`` or ``namespace:table``, sorted."""
    with thrift2_client(config) as client:
        names = client.getTableNamesByPattern(None, False)
    result = []
    for name in names:
        namespace = (name.ns or b"default").decode()
        table = name.qualifier.decode()
        result.append(table if namespace == "default" else f"{namespace}:{table}")
    return sorted(result)


def table_regions(config: HoyaConfig, table_name: str) -> list[dict[str, Any]]:
    """Return the table's regions in key order: start and end keys (bytes), server, name."""
    connection = connect(config)
    try:
        regions = connection.table(table_name).regions()
    finally:
        connection.close()
    rows = [
        {
            "start_key": region["start_key"],
            "end_key": region["end_key"],
            "server": f"{region['server_name'].decode()}:{region['port']}",
            "name": region["name"].decode(errors="replace"),
        }
        for region in regions
    ]
    return sorted(rows, key=lambda row: row["start_key"])


def count_rows(config: HoyaConfig, table_name: str) -> int:
    """Count the table's rows with a key-only scan, which sends one short cell per row."""
    connection = connect(config)
    try:
        table = connection.table(table_name)
        scan = table.scan(
            filter="FirstKeyOnlyFilter() AND KeyOnlyFilter()", batch_size=5000, columns=None
        )
        return sum(1 for _ in scan)
    finally:
        connection.close()


def describe_table(config: HoyaConfig, schema: TableSchema, count: bool = True) -> dict[str, Any]:
    """Return the table's families with their settings, its regions and its row count."""
    with thrift2_client(config) as client:
        if not client.tableExists(_table_name(schema)):
            raise HBaseError(
                f"table {schema.table_name} does not exist; create it with "
                f"bin/hoya tables apply {schema.table}"
            )
        descriptor = client.getTableDescriptor(_table_name(schema))
    families = {
        column.name.decode(): family_settings(column) for column in descriptor.columns or []
    }
    return {
        "table": schema.table_name,
        "families": families,
        "regions": table_regions(config, schema.table_name),
        "rows": count_rows(config, schema.table_name) if count else None,
    }


def drop_table(config: HoyaConfig, table_name: str) -> bool:
    """Disable and delete the table; return False when it does not exist."""
    module = thrift2_module()
    namespace, _, table = table_name.rpartition(":")
    name = module.TTableName(ns=(namespace or "default").encode(), qualifier=table.encode())
    with thrift2_client(config) as client:
        if not client.tableExists(name):
            return False
        if client.isTableEnabled(name):
            client.disableTable(name)
        client.deleteTable(name)
    log.info("dropped table %s", table_name)
    return True
