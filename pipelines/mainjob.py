"""The main job: the S&P 500 pipeline on real data, HBase to HBase through Airflow.

Steps, each timed:

1. apply the table schemas in hbase_schema/;
2. import data/sp500_5yr into the raw table, unless it already contains every row;
3. run the pipeline's DAG with ``airflow dags test`` (ingest, preprocess, autoencoder,
   encoding, two-rank Horovod training, evaluation and gate, prediction, write-back,
   publish);
4. collect the run's numbers into a summary and an HTML report.

``bin/main-job`` sets up the environments and the local stack, then calls :func:`main`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.config import REPO_ROOT, HoyaConfig, load_config
from pipelines.spec import PipelineSpec, load_spec

log = logging.getLogger(__name__)

DEFAULT_PIPELINE = REPO_ROOT / "conf" / "pipelines" / "sp500_volatility.yaml"
DATA = REPO_ROOT / "data" / "sp500_5yr"
RAW_ROWS = 606_801  # data rows in data/sp500_5yr, see its SOURCE.md
# Rows the import writes: 406 GOOG rows have no volume, which the schema requires, so
# they go to the import's quarantine.
RAW_ROWS_WRITTEN = 606_395
# The last trading day in the data; the run's data interval ends there.
DEFAULT_LOGICAL_DATE = "2017-08-11"


class MainJobError(RuntimeError):
    """A step of the main job failed; the message names the step and where to look."""


class GateFailed(MainJobError):
    """The model did not pass the quality gate, so no predictions were published."""


def _timed(timings: dict[str, float], name: str):
    class _Timer:
        def __enter__(self):
            self.start = time.monotonic()

        def __exit__(self, *exc):
            timings[name] = time.monotonic() - self.start

    return _Timer()


def apply_tables(config: HoyaConfig) -> list[str]:
    """Create the tables that hbase_schema/ declares and HBase lacks; return the report."""
    from pipelines.tables.admin import apply_schema
    from pipelines.tables.schema import load_table_schema

    lines = []
    for path in sorted((REPO_ROOT / "hbase_schema").glob("*.yaml")):
        result = apply_schema(config, load_table_schema(path.stem))
        lines.append(f"{path.stem}: {result}")
    return lines


def import_raw_data(config: HoyaConfig, table: str) -> dict[str, Any]:
    """Import data/sp500_5yr into ``table`` unless it already contains all the rows."""
    from pipelines.tables.admin import count_rows
    from pipelines.tables.importer import run_import
    from pipelines.tables.schema import load_table_schema

    schema = load_table_schema(table)
    present = count_rows(config, schema.table_name)
    if present == RAW_ROWS_WRITTEN:
        log.info("%s already contains %d rows; skipping the import", schema.table_name, present)
        return {"skipped": True, "rows_in_table": present}
    result = run_import(config, schema, str(DATA))
    stats = result.stats
    return {
        "skipped": False,
        "rows_read": stats.rows_read,
        "rows_written": stats.rows_written,
        "rows_quarantined": stats.rows_quarantined,
        "reasons": result.reasons,
        "files_without_rows": sorted(stats.files_without_rows),
        "quarantine": result.quarantine_path,
        "seconds": result.seconds,
        "rows_in_table": count_rows(config, schema.table_name),
    }


def run_dag(
    pipeline: PipelineSpec, logical_date: str, run_conf: dict[str, Any], log_path: Path
) -> None:
    """Run the pipeline's DAG with ``airflow dags test``.

    Raises GateFailed when only the gate stopped the run, MainJobError otherwise.
    """
    command = [
        str(REPO_ROOT / "bin" / "airflow"), "dags", "test", f"hoya_{pipeline.name}",
        logical_date, "--conf", json.dumps(run_conf),
    ]
    log.info("running %s (log: %s)", " ".join(command), log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    states = {row["task_id"]: row.get("state") for row in task_states(pipeline, logical_date)}
    if not states:
        raise MainJobError(
            f"the Airflow run of {logical_date} ran no task: a logical date before the "
            f"pipeline's dag.start_date ({pipeline.dag.start_date}) has no task instances; "
            f"use a later --logical-date or an earlier start_date. Log: {log_path}"
        )
    failed = [task for task, state in states.items() if state != "success"]
    if states.get("evaluate_gate") == "failed":
        raise GateFailed(f"the quality gate stopped the run; log: {log_path}")
    if result.returncode != 0 or failed:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        listed = ", ".join(f"{task} ({state})" for task, state in states.items() if task in failed)
        raise MainJobError(
            f"the Airflow run failed; tasks not successful: {listed or 'none'}; "
            f"full log: {log_path}\n{tail}"
        )


def task_states(pipeline: PipelineSpec, logical_date: str) -> list[dict[str, Any]]:
    """Return the run's task instances (state, start and end) from Airflow."""
    command = [
        str(REPO_ROOT / "bin" / "airflow"), "tasks", "states-for-dag-run",
        f"hoya_{pipeline.name}", logical_date, "-o", "json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    if result.returncode != 0 or not lines:
        log.warning("could not read task states: %s", result.stderr[-500:])
        return []
    return json.loads(lines[-1])


def stage_seconds(states: list[dict[str, Any]]) -> dict[str, float]:
    """Return each task's wall time in seconds from its start and end dates."""
    seconds = {}
    for row in states:
        start, end = row.get("start_date"), row.get("end_date")
        if start and end:
            delta = dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)
            seconds[row["task_id"]] = delta.total_seconds()
    return seconds


def _iso_date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date") from None


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer of at least 1")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the S&P 500 pipeline end to end.")
    parser.add_argument("--pipeline", default=str(DEFAULT_PIPELINE), help="pipeline file")
    parser.add_argument("--logical-date", default=DEFAULT_LOGICAL_DATE, type=_iso_date,
                        help="the run's logical date, YYYY-MM-DD (data up to it are read)")
    parser.add_argument("--row-start", help="ingest only row keys from this one (a slice)")
    parser.add_argument("--row-stop", help="ingest only row keys before this one")
    parser.add_argument("--epochs", type=_positive_int, help="override train.epochs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from pipelines.report import build_summary, print_summary, write_report

    config = load_config()
    pipeline = load_spec(args.pipeline)
    run_dir = Path(pipeline.uri("runs", args.logical_date))
    timings: dict[str, float] = {}
    started = time.monotonic()
    gate_failed = False
    try:
        with _timed(timings, "apply tables"):
            apply_tables(config)
        with _timed(timings, "import"):
            imported = import_raw_data(config, pipeline.source.table)
        run_conf = {"row_start": args.row_start, "row_stop": args.row_stop, "epochs": args.epochs}
        with _timed(timings, "airflow run"):
            run_dag(pipeline, args.logical_date, run_conf, run_dir / "airflow.log")
    except GateFailed as err:
        log.error("%s", err)
        gate_failed = True
    except MainJobError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    stages = stage_seconds(task_states(pipeline, args.logical_date))
    timings_all = {**{k: timings[k] for k in ("apply tables", "import")}, **stages,
                   "total": time.monotonic() - started}
    summary = build_summary(config, pipeline, args.logical_date, imported, timings_all)
    report = write_report(summary, run_dir, config, pipeline)
    summary["report"] = str(report)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(summary)
    if gate_failed and summary["evaluation"] is None:
        print(f"error: the evaluate_gate task failed before it wrote an evaluation; see "
              f"{run_dir / 'airflow.log'}", file=sys.stderr)
        return 1
    if not summary["gate"]["passed"]:
        print(f"the quality gate FAILED, so no predictions were published: "
              f"{summary['gate'].get('message')}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
