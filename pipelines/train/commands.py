"""The ``hoya train`` command."""

from __future__ import annotations

import sys

import click


@click.command("train")
@click.option("--pipeline", "pipeline_file", required=True, type=click.Path(dir_okay=False),
              help="Pipeline file with model and train sections, e.g. conf/pipelines/x.yaml.")
@click.option("--dataset", "dataset_uri", required=True,
              help="Preprocessed dataset folder: a local path or hdfs:// URI.")
@click.option("--models-root", required=True,
              help="Folder (local or hdfs://) that receives <pipeline>/<version>/.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Maximum epochs [default: train.epochs of the pipeline file].")
@click.option("--np", "num_ranks", type=click.IntRange(min=1), default=None,
              help="Number of Horovod ranks [default: all slots in conf/cluster.yaml].")
@click.option("--version", default=None,
              help="Model version to write; give an interrupted run's version to resume it "
                   "[default: v<UTC yyyymmddTHHMMSS> of now].")
@click.pass_context
def train_command(
    ctx: click.Context, pipeline_file: str, dataset_uri: str, models_root: str,
    epochs: int | None, num_ranks: int | None, version: str | None,
) -> None:
    """Train the pipeline's model on a preprocessed dataset with horovodrun.

    Exits 2 when the pipeline file or the dataset is invalid (before any rank starts) and
    1 when training fails.
    """
    from pipelines.cliconfig import load_context_config
    from pipelines.dataset import ManifestError
    from pipelines.spec import SpecError
    from pipelines.train.launcher import TrainingError, run_training
    from pipelines.train.spec import ModelSpecError

    config = load_context_config(ctx)
    try:
        result = run_training(
            config, pipeline_file, dataset_uri, models_root, epochs=epochs,
            num_ranks=num_ranks, version=version, command=["hoya", *sys.argv[1:]],
        )
    except (SpecError, ManifestError, ModelSpecError) as err:
        click.echo(f"error: {err}", err=True)
        ctx.exit(2)
    except TrainingError as err:
        click.echo(f"error: {err}", err=True)
        ctx.exit(1)
    click.echo(f"model directory: {result.model_uri}")
