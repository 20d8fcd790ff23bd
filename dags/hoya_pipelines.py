"""Airflow DAG factory: one DAG per pipeline file in conf/pipelines/.

Tasks are thin: each runs a ``hoya`` command from the job environment and holds no
pipeline logic. Only pydantic and PyYAML are imported here, so the Airflow
environment (which cannot load TensorFlow 2.15's numpy and protobuf pins) parses
this file without the job environment's packages.
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

from airflow.providers.standard.operators.bash import BashOperator  # noqa: E402
from airflow.sdk import DAG  # noqa: E402

from pipelines.spec import PipelineSpec, SpecError, load_spec, pipeline_files  # noqa: E402

log = logging.getLogger(__name__)
HOYA = shlex.quote(str(REPO_ROOT / "bin" / "hoya"))


def build_dag(spec: PipelineSpec, path: Path) -> DAG:
    """Return the DAG for one validated pipeline file."""
    settings = spec.dag
    dag = DAG(
        dag_id=f"hoya_{spec.name}",
        description=spec.description or None,
        schedule=settings.schedule,
        start_date=dt.datetime.combine(settings.start_date, dt.time(), tzinfo=dt.timezone.utc),
        catchup=settings.catchup,
        max_active_runs=settings.max_active_runs,
        tags=["hoya", *settings.tags],
        default_args={
            "owner": settings.owner,
            "retries": settings.retries,
            "retry_delay": dt.timedelta(seconds=settings.retry_delay_s),
            "retry_exponential_backoff": True,
        },
    )
    with dag:
        BashOperator(
            task_id="validate_config",
            bash_command=f"{HOYA} pipeline validate {shlex.quote(str(path))}",
        )
    return dag


for _path in pipeline_files():
    try:
        _spec = load_spec(_path)
    except SpecError as err:
        # TODO: surface this as an Airflow import error for the file alone; for now the
        # DAG is skipped and the reason is logged in the DAG processor's log.
        log.error("skipping pipeline file %s: %s", _path, err)
        continue
    globals()[f"hoya_{_spec.name}"] = build_dag(_spec, _path)
