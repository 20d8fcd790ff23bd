"""Airflow DAG factory: one DAG per pipeline file in conf/pipelines/.

Each task is a thin operator that launches a job and contains no pipeline logic. Spark
jobs go through SparkSubmitOperator (connection ``hoya_spark``), the others run
``bin/hoya`` from the job environment. The task order and arguments come from
pipelines/orchestrate.py. Only pydantic and PyYAML are imported from HOYA, so the
Airflow environment (which cannot load TensorFlow 2.15's numpy and protobuf pins)
parses this file without the job environment's packages.

A pipeline file that fails validation does not stop the other DAGs. It becomes a DAG
``hoya_<file name>`` tagged ``invalid`` whose only task fails with the validation
message (file, key and fix). The message is also logged when the file is parsed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import sys
from pathlib import Path

REPO_ROOT = Path(os.environ.get("HOYA_HOME", Path(__file__).resolve().parent.parent))
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from airflow.providers.apache.spark.operators.spark_submit import (  # noqa: E402
    SparkSubmitOperator,
)
from airflow.providers.standard.operators.bash import BashOperator  # noqa: E402
from airflow.sdk import DAG, Param  # noqa: E402

from pipelines.config import ConfigError, load_config  # noqa: E402
from pipelines.orchestrate import PlannedTask, plan_tasks  # noqa: E402
from pipelines.spec import PipelineSpec, SpecError, load_spec, pipeline_files  # noqa: E402

log = logging.getLogger(__name__)
HOYA = shlex.quote(str(REPO_ROOT / "bin" / "hoya"))
SPARK_CONNECTION = "hoya_spark"
PY_FILES = str(REPO_ROOT / ".hoya" / "build" / "pipelines.zip")


def _dag_args(spec: PipelineSpec) -> dict:
    settings = spec.dag
    return {
        "description": spec.description or None,
        "schedule": settings.schedule,
        "start_date": dt.datetime.combine(settings.start_date, dt.time(), tzinfo=dt.timezone.utc),
        "catchup": settings.catchup,
        "max_active_runs": settings.max_active_runs,
        "default_args": {
            "owner": settings.owner,
            "retries": settings.retries,
            "retry_delay": dt.timedelta(seconds=settings.retry_delay_s),
            "retry_exponential_backoff": True,
        },
    }


def _operator(task: PlannedTask, spec: PipelineSpec):
    """Return the operator that launches one planned task."""
    extra = {} if task.retries is None else {"retries": task.retries}
    if task.kind == "spark":
        return SparkSubmitOperator(
            task_id=task.task_id,
            conn_id=SPARK_CONNECTION,
            application=task.script,
            application_args=list(task.args),
            py_files=PY_FILES,
            name=f"hoya-{spec.name}-{task.task_id}",
            env_vars={"PYTHONPATH": str(REPO_ROOT)},
            pool=task.pool or "default_pool",
            **extra,
        )
    command = " ".join([HOYA, *(shlex.quote(arg) for arg in task.args)])
    if task.task_id in {"train", "train_autoencoder"}:
        # Manual runs may lower the epoch count through the DAG's params.
        command += " {% if params.epochs %}--epochs {{ params.epochs }}{% endif %}"
    return BashOperator(
        task_id=task.task_id,
        bash_command=command,
        pool=task.pool or "default_pool",
        pool_slots=task.pool_slots,
        **extra,
    )


def build_dag(spec: PipelineSpec, path: Path, ranks: int) -> DAG:
    """Return the DAG of one validated pipeline file."""
    dag = DAG(
        dag_id=f"hoya_{spec.name}",
        tags=["hoya", *spec.dag.tags],
        params={
            "epochs": Param(
                None, type=["null", "integer"], minimum=1,
                description="override train.epochs for this run",
            ),
            "row_start": Param(
                None, type=["null", "string"], description="first row key to ingest"
            ),
            "row_stop": Param(
                None, type=["null", "string"], description="row key to stop the ingest before"
            ),
        },
        **_dag_args(spec),
    )
    with dag:
        operators = {}
        for task in plan_tasks(spec, path, ranks):
            operators[task.task_id] = _operator(task, spec)
            for upstream in task.upstream:
                operators[upstream] >> operators[task.task_id]
    return dag


def invalid_dag(path: Path, message: str) -> DAG:
    """Return a one-task DAG that fails with the validation message of a bad file."""
    dag = DAG(
        dag_id=f"hoya_{path.stem}",
        description=f"invalid pipeline file: {message.splitlines()[0]}"[:200],
        schedule=None,
        start_date=dt.datetime(2017, 1, 1, tzinfo=dt.timezone.utc),
        tags=["hoya", "invalid"],
    )
    with dag:
        BashOperator(
            task_id="validate_config",
            bash_command=f"{HOYA} pipeline validate {shlex.quote(str(path))}",
            retries=0,
        )
    return dag


def _ranks() -> int:
    try:
        return load_config().horovod.num_ranks
    except ConfigError as err:
        log.error("invalid HOYA configuration, training tasks take 1 pool slot: %s", err)
        return 1


def _build_all() -> dict[str, DAG]:
    ranks = _ranks()
    dags = {}
    for path in pipeline_files():
        try:
            dag = build_dag(load_spec(path), path, ranks)
        except SpecError as err:
            log.error("invalid pipeline file %s:\n%s", path, err)
            dag = invalid_dag(path, str(err))
        except Exception as err:  # noqa: BLE001 - one bad file must not hide the other DAGs
            log.exception("cannot build a DAG from pipeline file %s", path)
            dag = invalid_dag(path, f"{path.name}: {err}")
        dags[dag.dag_id] = dag
    return dags


globals().update(_build_all())
