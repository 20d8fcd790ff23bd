"""The Airflow environment parses dags/ and builds one DAG per pipeline file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from pipelines.config import REPO_ROOT

PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "tasks": [t.task_id for t in dag.topological_sort()],
        "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
        "tags": sorted(dag.tags),
        "operators": {t.task_id: type(t).__name__ for t in dag.tasks},
        "pools": {t.task_id: [t.pool, t.pool_slots] for t in dag.tasks},
        "retries": dag.default_args.get("retries"),
        "task_retries": {t.task_id: t.retries for t in dag.tasks},
        "owner": dag.default_args.get("owner"),
        "schedule": type(dag.timetable).__name__,
        "params": sorted(dag.params.keys()),
    }
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}))
"""

SP500_TASKS = [
    "validate_config", "ingest", "preprocess", "train_autoencoder", "encode_features",
    "train", "evaluate_gate", "predict_write_back", "publish",
]


def parse_dags(airflow_python: Path, tmp_path: Path, **env: str) -> dict:
    environment = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), **env}
    environment.pop("PYTHONPATH", None)  # the job environment's packages must not leak in
    result = subprocess.run(
        [str(airflow_python), "-c", PARSE, str(REPO_ROOT / "dags")],
        capture_output=True, text=True, env=environment, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_dags_folder_imports_without_errors(airflow_python, tmp_path):
    parsed = parse_dags(airflow_python, tmp_path)
    assert parsed["errors"] == {}
    assert list(parsed["dags"]) == ["hoya_sp500_volatility"]


def test_sp500_dag_has_the_tasks_in_order(airflow_python, tmp_path):
    dag = parse_dags(airflow_python, tmp_path)["dags"]["hoya_sp500_volatility"]
    assert dag["tasks"] == SP500_TASKS
    for before, after in zip(SP500_TASKS, SP500_TASKS[1:]):
        assert dag["upstream"][after] == [before]
    assert dag["upstream"]["validate_config"] == []
    assert dag["tags"] == ["hoya", "sp500", "volatility"]
    assert dag["owner"] == "hoya"
    assert dag["retries"] == 2
    assert dag["params"] == ["epochs", "row_start", "row_stop"]
    assert dag["schedule"] == "NullTimetable"  # schedule: null, manual runs only


def test_operators_and_gpu_pool_slots(airflow_python, tmp_path):
    dag = parse_dags(airflow_python, tmp_path)["dags"]["hoya_sp500_volatility"]
    operators = dag["operators"]
    for task in ("ingest", "preprocess", "encode_features", "evaluate_gate", "predict_write_back"):
        assert operators[task] == "SparkSubmitOperator", task
    for task in ("validate_config", "train_autoencoder", "train", "publish"):
        assert operators[task] == "BashOperator", task
    assert dag["pools"]["train"] == ["hoya_gpu", 2]  # two ranks in conf/cluster.yaml
    assert dag["pools"]["train_autoencoder"] == ["hoya_gpu", 2]
    assert dag["pools"]["ingest"] == ["default_pool", 1]
    # A failed validation or gate is final; the other tasks retry.
    assert dag["task_retries"]["validate_config"] == 0
    assert dag["task_retries"]["evaluate_gate"] == 0
    assert dag["task_retries"]["ingest"] == 2


def test_bad_pipeline_file_does_not_hide_good_ones(airflow_python, tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    shutil.copy(REPO_ROOT / "conf/pipelines/sp500_volatility.yaml", folder)
    (folder / "broken.yaml").write_text("name: broken\ndag: {retries: 99}\n")
    parsed = parse_dags(airflow_python, tmp_path, HOYA_PIPELINES_DIR=str(folder))
    assert parsed["errors"] == {}
    assert sorted(parsed["dags"]) == ["hoya_broken", "hoya_sp500_volatility"]
    assert parsed["dags"]["hoya_broken"]["tags"] == ["hoya", "invalid"]
    assert parsed["dags"]["hoya_broken"]["tasks"] == ["validate_config"]
    assert parsed["dags"]["hoya_sp500_volatility"]["tasks"] == SP500_TASKS


def test_validate_names_file_key_and_fix(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\ndag: {retries: 99, shedule: '@daily'}\n")
    result = subprocess.run(
        [str(REPO_ROOT / "bin" / "hoya"), "pipeline", "validate", str(bad)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "broken.yaml: dag.retries = 99 is invalid: Input should be less than or equal to 10;" \
        " allowed: task retries, from 0 to 10" in result.stderr
    assert "broken.yaml: unknown key 'dag.shedule'; remove it or check its spelling" in result.stderr


def test_airflow_env_cannot_import_tensorflow(airflow_python):
    # The DAG files must stay importable without the job environment's packages.
    result = subprocess.run(
        [str(airflow_python), "-c", "import tensorflow"], capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, check=False,
    )
    assert result.returncode != 0
    assert "No module named 'tensorflow'" in result.stderr
