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
    from pipelines.cliconfig import load_context_config
    from pipelines.predict.writeback import (
        WriteBackError, check_prediction_schema, read_prediction_row, read_registry,
    )
    from pipelines.tables.hbase import HBaseError
    from pipelines.tables.schema import SchemaError, load_table_schema

    config = load_context_config(ctx)
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


@predictions_group.command("publish")
@click.option("--pipeline", "pipeline_file", required=True,
              type=click.Path(exists=True, dir_okay=False), help="The pipeline YAML file.")
@click.option("--model", "model_uri", required=True, help="The model directory to publish.")
@click.option("--logical-date", required=True,
              help="The run's logical date (ISO); the registry cell's timestamp.")
@click.pass_context
def publish_command(ctx: click.Context, pipeline_file: str, model_uri: str,
                    logical_date: str) -> None:
    """Make the model the pipeline's current one in the registry table.

    Exits 1 unless the model passed its gate and its predictions were written. Its
    evaluation.json must record a passed gate, and
    <storage root>/predictions/<version>/predict.json must count every scored row as
    written or quarantined.
    """
    import json

    from pipelines.cliconfig import load_context_config
    from pipelines.io.storage import read_text
    from pipelines.predict.evaluate import read_evaluation
    from pipelines.predict.frames import read_model_info
    from pipelines.predict.writeback import WriteTarget, parse_logical_date, publish_registry
    from pipelines.spec import load_spec
    from pipelines.tables.schema import load_table_schema

    config = load_context_config(ctx)
    pipeline = load_spec(pipeline_file)
    info = read_model_info(model_uri, config)
    evaluation = read_evaluation(model_uri, config)
    gate = evaluation.get("gate") or {}
    if evaluation.get("model_version") != info["version"] or not gate.get("passed"):
        click.echo(f"error: {model_uri} did not pass its gate: {gate.get('message')}", err=True)
        ctx.exit(1)
    try:
        written = json.loads(read_text(pipeline.uri("predictions", info["version"], "predict.json"),
                                       config))
    except FileNotFoundError:
        click.echo(f"error: no predictions were written for {info['version']}; run the "
                   "predict step first", err=True)
        ctx.exit(1)
    if written["rows_read"] != written["rows_written"] + written["rows_quarantined"]:
        click.echo(f"error: predict.json counts do not add up: {written}", err=True)
        ctx.exit(1)
    target = WriteTarget(
        schema_path=str(load_table_schema(pipeline.output.table).source_path),
        pipeline=pipeline.name, target_name=info.get("target_name", ""),
        model_version=info["version"], logical_date=parse_logical_date(logical_date),
    )
    registry = load_table_schema(pipeline.output.registry_table)
    publish_registry(config, registry, target, model_uri, evaluation)
    click.echo(f"published {pipeline.name} model {info['version']} "
               f"({written['rows_written']} predictions in {written['table']})")


@click.group("autoencoder")
def autoencoder_group() -> None:
    """Train the autoencoder of a pipeline's ``autoencoder`` section."""


@autoencoder_group.command("train")
@click.option("--pipeline", "pipeline_file", required=True,
              type=click.Path(exists=True, dir_okay=False), help="The pipeline YAML file.")
@click.option("--dataset", required=True, help="The preprocessed dataset folder.")
@click.option("--models-root", required=True,
              help="Folder that receives <pipeline>_autoencoder/<version>/.")
@click.option("--version", help="Model version; an interrupted run's version resumes it.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the autoencoder's epochs.")
@click.pass_context
def autoencoder_train_command(ctx: click.Context, pipeline_file: str, dataset: str,
                              models_root: str, version: str | None, epochs: int | None) -> None:
    """Train the autoencoder with horovodrun on every row of the training split."""
    from pipelines.cliconfig import load_context_config
    from pipelines.predict.encode import EncodeError, train_autoencoder
    from pipelines.spec import load_spec
    from pipelines.train.launcher import TrainingError

    config = load_context_config(ctx)
    try:
        uri = train_autoencoder(config, load_spec(pipeline_file), dataset, models_root,
                                epochs=epochs, version=version)
    except (EncodeError, TrainingError, ValueError) as err:
        click.echo(f"error: {err}", err=True)
        ctx.exit(1)
    click.echo(f"autoencoder model: {uri}")
