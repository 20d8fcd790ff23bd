"""The ``hoya predictions`` commands."""

from __future__ import annotations

import datetime as dt

import click


@click.group("predictions")
def predictions_group() -> None:
    """Inspect predictions written back to HBase."""


@predictions_group.command("show")
@click.argument("table")
@click.argument("key")
@click.option("--registry", "registry_table", default="hoya_registry", show_default=True,
              help="hbase_schema name of the registry table that marks the current version.")
@click.pass_context
def show_command(ctx: click.Context, table: str, key: str, registry_table: str) -> None:
    """Print the predictions of row KEY in TABLE (an hbase_schema name or file).

    Each line gives the target, the model version, the value and the cell time; the
    version the pipeline's registry row names as current is marked with '*'. Exits 1 when
    the row has no predictions and 2 when the schema is invalid.
    """
    from pipelines.cli import _load
    from pipelines.predict.writeback import (
        WriteBackError, check_prediction_schema, read_prediction_row, read_registry,
    )
    from pipelines.tables.hbase import HBaseError
    from pipelines.tables.schema import SchemaError, load_table_schema

    config = _load(ctx)
    try:
        schema = load_table_schema(table)
        check_prediction_schema(schema)
        registry = load_table_schema(registry_table)
    except (SchemaError, WriteBackError) as err:
        click.echo(f"error: {err}", err=True)
        ctx.exit(2)
    try:
        cells = read_prediction_row(config, schema, key)
        pipelines = _pipelines_of_row(config, schema, key)
        current = {p: (read_registry(config, registry, p) or {}).get("model_version")
                   for p in pipelines}
    except (HBaseError, OSError) as err:
        click.echo(f"error: reading {schema.table_name} failed: {err}", err=True)
        ctx.exit(1)
    if not cells:
        click.echo(f"error: no predictions for row {key!r} in {schema.table_name}", err=True)
        ctx.exit(1)
    click.echo(f"row {key} in {schema.table_name}")
    for cell in cells:
        mark = "*" if cell["model_version"] in current.values() else " "
        when = dt.datetime.fromtimestamp(cell["timestamp_ms"] / 1000, dt.timezone.utc)
        click.echo(f"{mark} {cell['target']:<16} {cell['model_version']:<18} "
                   f"{cell['value']:<22.10g} {when.isoformat()}")
    for pipeline, version in current.items():
        click.echo(f"registry: pipeline {pipeline} current model {version}")


def _pipelines_of_row(config, schema, key: str) -> list[str]:
    """Return the row's ``pipeline`` cell values (the writers of the row), if any."""
    from pipelines.tables.hbase import connect

    column = schema.columns.get("pipeline")
    if column is None:
        return []
    connection = connect(config)
    try:
        cells = connection.table(schema.table_name).row(key.encode("utf-8"),
                                                        columns=[column.cell_name()])
    finally:
        connection.close()
    return [column.decode(value) for value in cells.values()]
