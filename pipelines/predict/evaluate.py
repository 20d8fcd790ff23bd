"""Evaluate a model on the test split beside a baseline, and apply the publishing gate.

The report is written to ``<model dir>/evaluation.json``; the predict step publishes only
a model whose report records a passed gate.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.config import HoyaConfig
from pipelines.dataset import read_manifest
from pipelines.io.storage import join_uri, read_text, write_text
from pipelines.predict import frames, metrics
from pipelines.predict.scoring import PREDICTION, PROBABILITIES, check_model_fits, score_frame
from pipelines.predict.spec import HIGHER_IS_BETTER, EvaluateSpec, GateSpec, check_gate_task
from pipelines.spec import PipelineSpec

log = logging.getLogger(__name__)

EVALUATION_JSON = "evaluation.json"
STAGE = "evaluate"
COLUMN_BASELINES = ("persistence", "trailing_mean")


class EvaluateError(ValueError):
    """The evaluation cannot run on this model and dataset; the message names the fix."""


class GateFailed(RuntimeError):
    """The model did not pass the publishing gate; the message has both metric values."""


def resolve_baseline(
    settings: EvaluateSpec, manifest: dict[str, Any], columns: list[str]
) -> dict[str, Any]:
    """Return ``{"name", "source"}``: the dataset's baseline column, or a train statistic."""
    task = manifest["task"]
    recorded = manifest.get("baseline") or {}
    has_column = bool(recorded.get("column")) and recorded["column"] in columns
    requested = settings.baseline
    if requested == "auto":
        if has_column:
            return {"name": recorded.get("name", "column"), "source": recorded["column"]}
        requested = "mean" if task == "regression" else "majority"
    if requested in COLUMN_BASELINES:
        if not has_column or recorded.get("name") != requested:
            raise EvaluateError(
                f"evaluate.baseline = {requested!r} needs the dataset's {requested} column, "
                f"but the manifest's baseline is {recorded or None}; set evaluate.baseline "
                "to auto, mean or majority, or preprocess with window.baseline: "
                f"{requested}"
            )
        return {"name": requested, "source": recorded["column"]}
    if requested == "mean" and task != "regression":
        raise EvaluateError(
            f"evaluate.baseline = 'mean' fits regression, but the dataset's task is {task}; "
            "use majority"
        )
    if requested == "majority" and task == "regression":
        raise EvaluateError(
            "evaluate.baseline = 'majority' fits classification, but the dataset's task is "
            "regression; use mean, persistence or trailing_mean"
        )
    return {"name": requested, "source": "train targets"}


def _train_statistic(
    spark: SparkSession, dataset_uri: str, baseline: dict[str, Any], num_classes: int
) -> dict[str, Any]:
    """Return the mean of the train targets, or the class frequencies and majority class."""
    train = frames.read_split(spark, dataset_uri, "train").filter(F.col("target").isNotNull())
    if baseline["name"] == "mean":
        value = train.agg(F.avg("target")).first()[0]
        if value is None:
            raise EvaluateError(f"the train split of {dataset_uri} has no labelled rows")
        return {"mean": float(value)}
    counts = {int(r["target"]): int(r["n"])
              for r in train.groupBy("target").agg(F.count("*").alias("n")).collect()}
    total = sum(counts.values())
    if total == 0:
        raise EvaluateError(f"the train split of {dataset_uri} has no labelled rows")
    frequencies = [counts.get(c, 0) / total for c in range(num_classes)]
    return {"majority": int(np.argmax(frequencies)), "frequencies": frequencies}


def _metrics_of(task: str, target: np.ndarray, output: np.ndarray) -> dict[str, Any]:
    if task == "regression":
        return metrics.regression_metrics(target, output)
    if task == "binary":
        return metrics.binary_metrics(target, output)
    return metrics.multiclass_metrics(target, output)


def _model_output(task: str, rows: pd.DataFrame) -> np.ndarray:
    if task == "multiclass":
        return np.stack(rows[PROBABILITIES].to_numpy()).astype(np.float64)
    return rows[PREDICTION].to_numpy(dtype=np.float64)


def _baseline_output(
    task: str, rows: pd.DataFrame, baseline: dict[str, Any], num_classes: int
) -> np.ndarray:
    n = len(rows)
    if baseline["source"] != "train targets":
        values = rows["baseline"].to_numpy(dtype=np.float64)
        if task == "multiclass":  # a class index per row: probability 1 for that class
            return np.eye(num_classes)[values.astype(np.int64)]
        return values
    if task == "regression":
        return np.full(n, baseline["mean"])
    frequencies = np.asarray(baseline["frequencies"], dtype=np.float64)
    if task == "binary":
        return np.full(n, frequencies[1] if len(frequencies) > 1 else 0.0)
    return np.tile(frequencies, (n, 1))


def apply_gate(
    gate: GateSpec | None, model: dict[str, Any], baseline: dict[str, Any], baseline_name: str
) -> dict[str, Any]:
    """Return the gate's decision: metric, both values, their ratio, passed and a message."""
    if gate is None:
        return {"passed": True, "message": "no gate configured"}
    name = gate.metric
    value, base = model.get(name), baseline.get(name)
    higher = name in HIGHER_IS_BETTER
    decision: dict[str, Any] = {"metric": name, "model": value, "baseline": base,
                                "baseline_name": baseline_name, "rule": gate.model_dump()}
    if value is None or base is None:
        decision.update(passed=False, ratio=None,
                        message=f"gate failed: {name} is undefined (model {value}, baseline "
                                f"{baseline_name} {base}), e.g. AUC with one class only")
        return decision
    ratio = value / base if base else None
    failures = []
    if gate.must_beat_baseline and not (value > base if higher else value < base):
        word = "above" if higher else "below"
        failures.append(f"not {word} the baseline")
    if gate.max_ratio is not None and (ratio is None or ratio > gate.max_ratio):
        failures.append(f"ratio {ratio} > max_ratio {gate.max_ratio}")
    if gate.min_ratio is not None and (ratio is None or ratio < gate.min_ratio):
        failures.append(f"ratio {ratio} < min_ratio {gate.min_ratio}")
    verdict = "failed" if failures else "passed"
    detail = f" ({'; '.join(failures)})" if failures else ""
    decision.update(
        passed=not failures, ratio=ratio,
        message=f"gate {verdict}: model {name} {value:.6g} vs baseline {baseline_name} "
                f"{name} {base:.6g}{detail}",
    )
    return decision


def _labelled_rows(scored: DataFrame, task: str, with_baseline: bool) -> pd.DataFrame:
    columns = ["row_key", "target", PREDICTION]
    if task == "multiclass":
        columns.append(PROBABILITIES)
    if with_baseline:
        columns.append("baseline")
    # NOTE: collects three numbers per labelled test row to the driver, which bounds the
    # test split to what fits in the driver's memory (tens of millions of rows at 2 GiB).
    return scored.filter(F.col("target").isNotNull()).select(*columns).toPandas()


def run_evaluate(
    spark: SparkSession, pipeline: PipelineSpec, dataset_uri: str, model_uri: str,
    config: HoyaConfig | None = None,
) -> dict[str, Any]:
    """Score the evaluation split, compare with the baseline, write evaluation.json.

    Returns the report; raises GateFailed (after writing the report) when the gate fails.
    """
    settings = pipeline.evaluate
    manifest = read_manifest(dataset_uri, config)
    info = frames.read_model_info(model_uri, config)
    check_model_fits(info, manifest, model_uri)
    task = manifest["task"]
    problems = check_gate_task(settings.gate, task)
    if problems:
        raise EvaluateError("; ".join(problems))
    num_classes = int(manifest.get("num_classes") or 2)

    frame = frames.read_split(spark, dataset_uri, settings.split)
    baseline = resolve_baseline(settings, manifest, frame.columns)
    if baseline["source"] == "train targets":
        baseline.update(_train_statistic(spark, dataset_uri, baseline, num_classes))
    log.info("evaluate %s on %s split %s, baseline %s", model_uri, dataset_uri,
             settings.split, baseline["name"])

    scored = score_frame(frame, model_uri, config, "predict", task).persist()
    good, bad = frames.split_scored(scored, STAGE)
    rows_read, rows_quarantined = scored.count(), bad.count()
    rows = _labelled_rows(good, task, baseline["source"] != "train targets")
    labelled = len(rows)
    if "baseline" in rows:  # both sides are measured on the rows that have a baseline
        rows = rows[rows["baseline"].notna()]
    report = _report(pipeline, info, model_uri, dataset_uri, settings, baseline, rows, task,
                     num_classes)
    report["rows"] = {"read": rows_read, "scored": rows_read - rows_quarantined,
                      "quarantined": rows_quarantined,
                      "quarantine_reasons": frames.reason_counts(bad),
                      "labelled": labelled,
                      "evaluated": int(len(rows))}
    scored.unpersist()
    write_text(join_uri(model_uri, EVALUATION_JSON), json.dumps(report, indent=2), config)
    log.info("evaluate done: %s; read %d, scored %d, quarantined %d; report %s",
             report["gate"]["message"], rows_read, rows_read - rows_quarantined,
             rows_quarantined, join_uri(model_uri, EVALUATION_JSON))
    if not report["gate"]["passed"]:
        raise GateFailed(f"{report['gate']['message']}; model {model_uri} is not published")
    return report


def _report(
    pipeline: PipelineSpec, info: dict[str, Any], model_uri: str, dataset_uri: str,
    settings: EvaluateSpec, baseline: dict[str, Any], rows: pd.DataFrame, task: str,
    num_classes: int,
) -> dict[str, Any]:
    if rows.empty:
        raise EvaluateError(
            f"split {settings.split} of {dataset_uri} has no labelled rows that could be "
            "scored; nothing to evaluate"
        )
    target = rows["target"].to_numpy(dtype=np.float64)
    model_metrics = _metrics_of(task, target, _model_output(task, rows))
    baseline_metrics = _metrics_of(
        task, target, _baseline_output(task, rows, baseline, num_classes)
    )
    gate = apply_gate(settings.gate, model_metrics, baseline_metrics, baseline["name"])
    return {
        "pipeline": pipeline.name,
        "model_uri": model_uri,
        "model_version": info.get("version"),
        "dataset_uri": dataset_uri,
        "split": settings.split,
        "task": task,
        "target_name": info.get("target_name"),
        "baseline": baseline,
        "metrics": {"model": model_metrics, "baseline": baseline_metrics},
        "gate": gate,
        "created_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def read_evaluation(model_uri: str, config: HoyaConfig | None = None) -> dict[str, Any]:
    """Return ``evaluation.json`` of a model directory; raise EvaluateError if missing."""
    try:
        return json.loads(read_text(join_uri(model_uri, EVALUATION_JSON), config))
    except FileNotFoundError as err:
        raise EvaluateError(
            f"no {EVALUATION_JSON} in {model_uri}; run the evaluate step for this model first"
        ) from err
