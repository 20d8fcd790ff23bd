"""The ``hoya`` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from pipelines.cliconfig import load_context_config
from pipelines.config import dump_config

log = logging.getLogger("hoya")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--conf",
    "conf_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="HOYA configuration file [default: $HOYA_CONF or conf/hoya.yaml].",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Logging level of HOYA's own messages.",
)
@click.pass_context
def cli(ctx: click.Context, conf_path: str | None, log_level: str) -> None:
    """HOYA: deep learning on HBase and HDFS data with Spark, Horovod and Airflow."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.ensure_object(dict)
    ctx.obj["conf_path"] = conf_path


# Configuration.


@cli.group("config")
def config_group() -> None:
    """Check or print the effective configuration."""


@config_group.command("check")
@click.pass_context
def config_check(ctx: click.Context) -> None:
    """Validate the configuration files and environment overrides; exit 2 if invalid."""
    load_context_config(ctx)
    click.echo("configuration is valid")


@config_group.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective configuration as YAML, overrides applied."""
    click.echo(dump_config(load_context_config(ctx)), nl=False)


# Pipelines.


@cli.group("pipeline")
def pipeline_group() -> None:
    """Validate the pipelines defined in conf/pipelines/*.yaml (Airflow runs them)."""


@pipeline_group.command("validate")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.pass_context
def pipeline_validate(ctx: click.Context, files: tuple[str, ...]) -> None:
    """Validate pipeline FILES (default: every file in conf/pipelines); exit 2 if any is invalid."""
    from pipelines.checks import cross_check
    from pipelines.spec import SpecError, load_spec, pipeline_files

    load_context_config(ctx)
    paths = [Path(f) for f in files] or pipeline_files()
    failed = 0
    for path in paths:
        try:
            spec = load_spec(path)
        except SpecError as err:
            failed += 1
            click.echo(f"error: {err}", err=True)
            continue
        problems = cross_check(spec)
        if problems:
            failed += 1
            for problem in problems:
                click.echo(f"error: {path.name}: {problem}", err=True)
            continue
        click.echo(f"{path}: pipeline {spec.name!r} is valid")
    if failed:
        ctx.exit(2)


@cli.command("airflow-settings", hidden=True)
@click.pass_context
def airflow_settings(ctx: click.Context) -> None:
    """Print shell exports that bin/airflow evaluates: home, Spark connection, pool size.

    Also refreshes .hoya/build/pipelines.zip, the --py-files of the Spark tasks.
    """
    import json
    import shlex

    from pipelines.io.spark import package_zip

    config = load_context_config(ctx)
    package_zip()
    connection = json.dumps({"conn_type": "spark", "host": config.spark.master})
    slots = config.horovod.num_gpus or config.horovod.num_ranks
    click.echo(f"export AIRFLOW_HOME={shlex.quote(str(config.airflow_home))}")
    click.echo(f"export AIRFLOW_CONN_HOYA_SPARK={shlex.quote(connection)}")
    click.echo(f"export HOYA_GPU_SLOTS={slots}")


# The local stack.


@cli.group("stack")
def stack_group() -> None:
    """Start, stop and inspect the embedded local HDFS and HBase."""


def _local_stack(ctx: click.Context):
    from pipelines.localstack import LocalStack

    return LocalStack(load_context_config(ctx))


@stack_group.command("up")
@click.pass_context
def stack_up(ctx: click.Context) -> None:
    """Start HDFS, HBase and HBase Thrift in the background and wait until healthy."""
    from pipelines.localstack import StackError

    stack = _local_stack(ctx)
    try:
        stack.up()
    except StackError as err:
        click.echo(f"error: {err}", err=True)
        ctx.exit(1)
    _print_status(stack.status())


@stack_group.command("down")
@click.pass_context
def stack_down(ctx: click.Context) -> None:
    """Stop the local services; their data stays in the state folder."""
    _local_stack(ctx).down()
    click.echo("local stack stopped")


@stack_group.command("status")
@click.pass_context
def stack_status(ctx: click.Context) -> None:
    """Print each service's state, pid, ports and log; exit 1 unless all are healthy."""
    rows = _local_stack(ctx).status()
    _print_status(rows)
    if any(row["state"] != "healthy" for row in rows):
        ctx.exit(1)


def _print_status(rows: list[dict[str, object]]) -> None:
    click.echo(f"{'service':<10} {'state':<12} {'pid':<8} {'ports':<20} log")
    for row in rows:
        ports = ",".join(str(port) for port in row["ports"])
        pid = row["pid"] if row["pid"] is not None else "-"
        click.echo(f"{row['service']:<10} {row['state']:<12} {pid!s:<8} {ports:<20} {row['log']}")


def _register_commands() -> None:
    from pipelines.preprocess.commands import ingest_command, preprocess_command

    cli.add_command(ingest_command)
    cli.add_command(preprocess_command)
    from pipelines.predict.commands import autoencoder_group, predictions_group
    from pipelines.train.commands import train_command

    cli.add_command(train_command)
    cli.add_command(predictions_group)
    cli.add_command(autoencoder_group)

    from pipelines.tables.commands import register as register_tables

    register_tables(cli)


_register_commands()


def main() -> None:
    cli(obj={}, prog_name="hoya")


if __name__ == "__main__":
    main()
