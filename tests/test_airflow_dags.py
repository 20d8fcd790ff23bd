"""The Airflow environment parses dags/ and builds one DAG per pipeline file."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from pipelines.config import REPO_ROOT

PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "dags": {d: [t.task_id for t in bag.dags[d].tasks] for d in bag.dags},
    "tags": {d: sorted(bag.dags[d].tags) for d in bag.dags},
}))
"""


def parse_dags(airflow_python: Path, tmp_path: Path, dags: Path = REPO_ROOT / "dags", **env):
    environment = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), **env}
    environment.pop("PYTHONPATH", None)  # the job environment's packages must not leak in
    result = subprocess.run(
        [str(airflow_python), "-c", PARSE, str(dags)],
        capture_output=True, text=True, env=environment, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_dags_folder_imports_without_errors(airflow_python, tmp_path):
    parsed = parse_dags(airflow_python, tmp_path)
    assert parsed["errors"] == {}
    assert parsed["dags"] == {"hoya_sp500_volatility": ["validate_config"]}
    assert parsed["tags"] == {"hoya_sp500_volatility": ["hoya", "sp500", "volatility"]}


def test_airflow_env_cannot_import_tensorflow(airflow_python):
    # The DAG files must stay importable without the job environment's packages.
    result = subprocess.run(
        [str(airflow_python), "-c", "import tensorflow"], capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, check=False,
    )
    assert result.returncode != 0
    assert "No module named 'tensorflow'" in result.stderr
