"""The task plan of a pipeline: which jobs run, in which order, with which arguments.

The Airflow DAG factory (dags/hoya_pipelines.py) turns each planned task into a thin
operator: Spark jobs into a SparkSubmitOperator, the others into a BashOperator that
runs ``bin/hoya``. Only the standard library and pipelines.spec are imported here,
because the Airflow environment imports this module.

Arguments may hold Airflow templates. The data interval reaches the jobs as:

- ``--until {{ data_interval_end | ds }}``: the ingest job reads rows up to that date;
- ``--version v{{ ts_nodash }}``: the model version, so a retry or a backfill of the
  same run writes to the same model folder and resumes its checkpoints;
- ``--logical-date {{ data_interval_end | ds }}``: the cell timestamp of predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipelines.config import REPO_ROOT
from pipelines.spec import PipelineSpec

UNTIL = "{{ data_interval_end | ds }}"
# Manual runs may narrow the ingest to a row-key range through the DAG's params; an
# empty value means no bound.
ROW_START = "{{ params.row_start or '' }}"
ROW_STOP = "{{ params.row_stop or '' }}"
VERSION = "v{{ ts_nodash }}"
GPU_POOL = "hoya_gpu"


@dataclass(frozen=True)
class PlannedTask:
    """One task: a Spark job (``script`` run by spark-submit) or a ``bin/hoya`` command."""

    task_id: str
    kind: str  # "spark" or "hoya"
    args: tuple[str, ...]
    script: str | None = None
    pool: str | None = None
    pool_slots: int = 1
    # None keeps the DAG's retries; 0 for tasks whose failure a retry cannot change.
    retries: int | None = None
    upstream: tuple[str, ...] = field(default_factory=tuple)


def _job(name: str) -> str:
    return str(REPO_ROOT / "pipelines" / name)


def plan_tasks(spec: PipelineSpec, pipeline_file: Path | str, ranks: int) -> list[PlannedTask]:
    """Return the pipeline's tasks in run order, each depending on the one before.

    ``ranks`` is the number of Horovod ranks a training task takes from the GPU pool.
    """
    path = str(pipeline_file)
    dataset = spec.uri("dataset")
    models = spec.uri("models")
    model = spec.uri("models", spec.name, VERSION)
    tasks: list[PlannedTask] = [
        PlannedTask("validate_config", "hoya", ("pipeline", "validate", path), retries=0),
        PlannedTask("ingest", "spark",
                    ("--pipeline", path, "--until", UNTIL, "--row-start", ROW_START,
                     "--row-stop", ROW_STOP),
                    script=_job("ingest/job.py")),
        PlannedTask("preprocess", "spark", ("--pipeline", path),
                    script=_job("preprocess/job.py")),
    ]
    if spec.autoencoder is not None:
        encoded = spec.uri("dataset_encoded")
        autoencoder = spec.uri("models", f"{spec.name}_autoencoder", VERSION)
        tasks += [
            PlannedTask(
                "train_autoencoder", "hoya",
                ("autoencoder", "train", "--pipeline", path, "--dataset", dataset,
                 "--models-root", models, "--version", VERSION),
                pool=GPU_POOL, pool_slots=ranks,
            ),
            PlannedTask(
                "encode_features", "spark",
                ("encode", "--pipeline", path, "--dataset", dataset, "--output", encoded,
                 "--autoencoder", autoencoder),
                script=_job("predict/job.py"),
            ),
        ]
        dataset = encoded
    tasks += [
        PlannedTask(
            "train", "hoya",
            ("train", "--pipeline", path, "--dataset", dataset, "--models-root", models,
             "--version", VERSION),
            pool=GPU_POOL, pool_slots=ranks,
        ),
        # A failed gate is a verdict on the model, not a fault: no retry.
        PlannedTask("evaluate_gate", "spark",
                    ("evaluate", "--pipeline", path, "--dataset", dataset, "--model", model),
                    script=_job("predict/job.py"), retries=0),
        PlannedTask("predict_write_back", "spark",
                    ("predict", "--pipeline", path, "--dataset", dataset, "--model", model,
                     "--logical-date", UNTIL, "--skip-publish"),
                    script=_job("predict/job.py")),
        PlannedTask("publish", "hoya",
                    ("predictions", "publish", "--pipeline", path, "--model", model,
                     "--logical-date", UNTIL)),
    ]
    chained = []
    for index, task in enumerate(tasks):
        upstream = (tasks[index - 1].task_id,) if index else ()
        chained.append(PlannedTask(**{**task.__dict__, "upstream": upstream}))
    return chained
