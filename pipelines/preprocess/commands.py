"""``hoya ingest`` and ``hoya preprocess``: the Spark jobs through spark-submit."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.config import ConfigError, load_config

JOBS = Path(__file__).resolve().parents[1]


def _submit(script: Path, args: list[str]) -> None:
    from pipelines.io.spark import run_spark_submit

    try:
        config = load_config()
    except ConfigError as err:
        raise click.ClickException(str(err)) from err
    code = run_spark_submit(config, script, args)
    if code != 0:
        raise click.ClickException(f"{script.name} failed with exit code {code}; see the log above")


@click.command("ingest")
@click.option("--pipeline", "pipeline", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The pipeline YAML file.")
@click.option("--output", help="Output folder [default: <storage root>/raw].")
@click.option("--row-start", help="First row key to read (inclusive).")
@click.option("--row-stop", help="Row key to stop before.")
@click.option("--time-range", nargs=2, type=int, metavar="START_MS END_MS",
              help="Cell timestamps to read, [start, end) in epoch milliseconds.")
@click.option("--until", help="Read rows up to this date (YYYY-MM-DD) of source.interval_column.")
def ingest_command(pipeline, output, row_start, row_stop, time_range, until) -> None:
    """Read the pipeline's source (HBase table or files) into Parquet with spark-submit."""
    args = ["--pipeline", pipeline]
    options = (("--output", output), ("--row-start", row_start), ("--row-stop", row_stop),
               ("--until", until))
    for flag, value in options:
        if value:
            args += [flag, value]
    if time_range:
        args += ["--time-range", str(time_range[0]), str(time_range[1])]
    _submit(JOBS / "ingest" / "job.py", args)


@click.command("preprocess")
@click.option("--pipeline", "pipeline", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The pipeline YAML file.")
@click.option("--input", "input_uri", help="Ingest output [default: <storage root>/raw].")
@click.option("--output", help="Dataset folder [default: <storage root>/dataset].")
@click.option("--fitted-from", help="Reuse this dataset's fitted statistics instead of refitting.")
def preprocess_command(pipeline, input_uri, output, fitted_from) -> None:
    """Clean, normalize, window and split the ingested rows into a dataset with spark-submit."""
    args = ["--pipeline", pipeline]
    for flag, value in (("--input", input_uri), ("--output", output), ("--fitted-from", fitted_from)):
        if value:
            args += [flag, value]
    _submit(JOBS / "preprocess" / "job.py", args)
