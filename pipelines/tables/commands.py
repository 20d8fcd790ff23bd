"""The ``hoya tables``, ``hoya import`` and ``hoya export`` commands."""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

import click

from pipelines.cliconfig import load_context_config

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _errors(ctx: click.Context) -> Iterator[None]:
    """Turn expected failures into one error line and exit status 1 (2 for bad input)."""
    from pipelines.io.webhdfs import WebHdfsError
    from pipelines.tables.hbase import HBaseError
    from pipelines.tables.importer import ImportError_
    from pipelines.tables.schema import SchemaError
    from pipelines.tables.sources import SourceError

    try:
        yield
    except (SchemaError, SourceError, ValueError) as err:
        click.echo(f"error: {err}", err=True)
        ctx.exit(2)
    except (HBaseError, ImportError_, WebHdfsError) as err:
        click.echo(f"error: {err}", err=True)
        ctx.exit(1)


def _schema(name: str, table_name: str | None = None):
    from pipelines.tables.schema import load_table_schema

    schema = load_table_schema(name)
    if table_name:
        namespace, _, table = table_name.rpartition(":")
        schema = schema.model_copy(update={"table": table, "namespace": namespace or "default"})
    return schema


# hoya tables ...


@click.group("tables")
def tables_group() -> None:
    """Create, inspect and drop the HBase tables declared in hbase_schema/."""


@tables_group.command("apply")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True,
              help="Also modify differing families and delete undeclared ones (can drop cells).")
@click.pass_context
def tables_apply(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Create missing tables and families for NAMES (default: every schema file)."""
    from pipelines.tables.admin import apply_schema
    from pipelines.tables.schema import list_table_schemas

    config = load_context_config(ctx)
    differences = 0
    with _errors(ctx):
        for name in names or list_table_schemas():
            result = apply_schema(config, _schema(name), force=force)
            if result.unchanged and not result.differences:
                click.echo(f"{result.table}: no changes")
            for change in result.changes:
                click.echo(f"{result.table}: {change}")
            for difference in result.differences:
                click.echo(f"{result.table}: difference: {difference}")
            differences += len(result.differences)
    if differences:
        ctx.exit(3)


@tables_group.command("list")
@click.pass_context
def tables_list(ctx: click.Context) -> None:
    """List the tables in HBase and mark those declared in hbase_schema/."""
    from pipelines.tables.admin import list_tables
    from pipelines.tables.schema import list_table_schemas

    config = load_context_config(ctx)
    with _errors(ctx):
        declared = {_schema(name).table_name: name for name in list_table_schemas()}
        existing = list_tables(config)
    for table in sorted(set(existing) | set(declared)):
        state = "exists" if table in existing else "missing"
        schema = declared.get(table, "-")
        click.echo(f"{table:<40} {state:<8} schema: {schema}")


@tables_group.command("describe")
@click.argument("name")
@click.option("--table-name", default=None, help="Physical table name, if not the schema's.")
@click.option("--count/--no-count", default=True, show_default=True,
              help="Count rows with a key-only scan (exact; takes seconds per 100k rows).")
@click.pass_context
def tables_describe(ctx: click.Context, name: str, table_name: str | None, count: bool) -> None:
    """Print NAME's families with their settings, its regions and its row count."""
    from pipelines.tables.admin import describe_table

    config = load_context_config(ctx)
    with _errors(ctx):
        info = describe_table(config, _schema(name, table_name), count=count)
    click.echo(f"table {info['table']}")
    click.echo("families:")
    for family, settings in info["families"].items():
        text = ", ".join(f"{key}={value}" for key, value in settings.items())
        click.echo(f"  {family}: {text}")
    click.echo("regions:")
    for region in info["regions"]:
        click.echo(f"  [{region['start_key']!r}, {region['end_key']!r}) on {region['server']}")
    if info["rows"] is not None:
        click.echo(f"rows: {info['rows']}")


@tables_group.command("drop")
@click.argument("name")
@click.option("--table-name", default=None, help="Physical table name, if not the schema's.")
@click.option("--force", is_flag=True, help="Required: confirms that the table's data is deleted.")
@click.pass_context
def tables_drop(ctx: click.Context, name: str, table_name: str | None, force: bool) -> None:
    """Disable and delete NAME's table and all its data."""
    from pipelines.tables.admin import drop_table

    config = load_context_config(ctx)
    with _errors(ctx):
        schema = _schema(name, table_name)
    if not force:
        click.echo(f"error: dropping {schema.table_name} deletes its data; add --force", err=True)
        ctx.exit(2)
    with _errors(ctx):
        dropped = drop_table(config, schema.table_name)
    click.echo(f"dropped {schema.table_name}" if dropped else f"{schema.table_name} does not exist")


# hoya import / hoya export


@click.command("import")
@click.argument("table")
@click.argument("source")
@click.option("--table-name", default=None, help="Physical table name, if not the schema's.")
@click.option("--format", "file_format", type=click.Choice(["csv", "json", "parquet"]),
              default=None, help="Input format [default: from each file's extension].")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML file mapping column names to input field names.")
@click.option("--quarantine", default=None,
              help="Folder for bad rows [default: .hoya/runs/import-<table>-<time>/quarantine].")
@click.option("--timestamp", "timestamp_ms", type=int, default=None,
              help="Cell timestamp in ms [default: newest modification time of the inputs].")
@click.option("--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Rows per put request.")
@click.option("--engine", type=click.Choice(["auto", "local", "spark"]), default="auto",
              show_default=True, help="local: in this process; spark: parallel tasks; auto: "
              "spark from 8 MiB of input.")
@click.pass_context
def import_command(ctx: click.Context, table: str, source: str, table_name: str | None,
                   file_format: str | None, mapping: str | None, quarantine: str | None,
                   timestamp_ms: int | None, batch_size: int, engine: str) -> None:
    """Import SOURCE (CSV, JSON lines or Parquet; file or folder; local or hdfs://) into TABLE.

    TABLE is a schema name in hbase_schema/ or a schema file; a missing table is created.
    """
    from pipelines.tables.admin import apply_schema
    from pipelines.tables.importer import load_mapping, run_import
    from pipelines.tables.sources import list_sources

    config = load_context_config(ctx)
    with _errors(ctx):
        schema = _schema(table, table_name)
        list_sources(config, source, file_format)  # a bad source fails before any table exists
        apply_schema(config, schema)
        result = run_import(
            config, schema, source, file_format=file_format, mapping=load_mapping(mapping),
            quarantine=quarantine, timestamp_ms=timestamp_ms, batch_size=batch_size,
            engine=engine,
        )
    click.echo(result.summary())


def _time_range(values: tuple[int, int] | None) -> tuple[int, int] | None:
    if not values:
        return None
    start, stop = values
    if start >= stop:
        raise click.BadParameter(f"START_MS {start} must be less than END_MS {stop}")
    return start, stop


@click.command("export")
@click.argument("table")
@click.argument("target")
@click.option("--table-name", default=None, help="Physical table name, if not the schema's.")
@click.option("--format", "file_format", type=click.Choice(["parquet", "csv"]),
              default="parquet", show_default=True, help="Output format.")
@click.option("--row-start", default=None, help="First row key (inclusive).")
@click.option("--row-stop", default=None, help="Row key to stop before (exclusive).")
@click.option("--columns", default=None, help="Comma-separated column names [default: all].")
@click.option("--time-range", type=(int, int), default=None, metavar="START_MS END_MS",
              help="Only cells with START_MS <= timestamp < END_MS.")
@click.option("--quarantine", default=None, help="Folder for undecodable rows.")
@click.option("--overwrite", is_flag=True, help="Replace TARGET if it exists.")
@click.pass_context
def export_command(ctx: click.Context, table: str, target: str, table_name: str | None,
                   file_format: str, row_start: str | None, row_stop: str | None,
                   columns: str | None, time_range: tuple[int, int] | None,
                   quarantine: str | None, overwrite: bool) -> None:
    """Export TABLE to TARGET (a folder, local or hdfs://) as Parquet or CSV, via Spark."""
    from pipelines.io.spark import spark_session
    from pipelines.tables.exporter import run_export

    config = load_context_config(ctx)
    selected = [name.strip() for name in columns.split(",")] if columns else None
    if row_start and row_stop and row_start >= row_stop:
        click.echo(f"error: --row-start {row_start!r} must sort before --row-stop "
                   f"{row_stop!r}", err=True)
        ctx.exit(2)
    if not overwrite and _target_exists(config, target):
        click.echo(f"error: {target} already exists; pass --overwrite to replace it", err=True)
        ctx.exit(2)
    with _errors(ctx):
        schema = _schema(table, table_name)
        spark = spark_session(config, f"hoya-export-{schema.table}")
        result = run_export(
            spark, config, schema, target, file_format=file_format, columns=selected,
            row_start=row_start, row_stop=row_stop, time_range=_time_range(time_range),
            quarantine=quarantine, overwrite=overwrite,
        )
    click.echo(result.summary())


def _target_exists(config, target: str) -> bool:
    from pathlib import Path

    from pipelines.io.webhdfs import WebHdfs

    if target.startswith("hdfs://"):
        return WebHdfs.from_config(config).exists(target)
    return Path(target.removeprefix("file://")).exists()


def register(cli: click.Group) -> None:
    """Add the tables, import and export commands to the ``hoya`` command group."""
    cli.add_command(tables_group)
    cli.add_command(import_command)
    cli.add_command(export_command)
