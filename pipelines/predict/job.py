"""The predict stage's Spark jobs: ``encode``, ``evaluate`` and ``predict``.

Run under spark-submit::

    spark-submit pipelines/predict/job.py encode --pipeline P.yaml --dataset D --output D2 \\
        [--autoencoder MODEL_DIR | --models-root ROOT] [--epochs N]
    spark-submit pipelines/predict/job.py evaluate --pipeline P.yaml --dataset D --model M
    spark-submit pipelines/predict/job.py predict --pipeline P.yaml --dataset D --model M \\
        --logical-date 2017-08-11T00:00:00Z

Each exits 0 on success, 1 when the step fails (a failed gate included) and 2 for invalid
input, with a one-line reason in the log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file by spark-submit
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pyspark.sql import SparkSession  # noqa: E402

from pipelines.config import HoyaConfig, load_config  # noqa: E402
from pipelines.dataset import read_manifest  # noqa: E402
from pipelines.io.storage import join_uri, spark_path, write_text  # noqa: E402
from pipelines.predict import frames  # noqa: E402
from pipelines.predict.evaluate import GateFailed, read_evaluation  # noqa: E402
from pipelines.predict.scoring import check_model_fits, score_frame  # noqa: E402
from pipelines.predict.writeback import (  # noqa: E402
    WriteTarget, check_prediction_schema, parse_logical_date, publish_registry,
    write_predictions,
)
from pipelines.spec import PipelineSpec, load_spec  # noqa: E402
from pipelines.tables.schema import load_table_schema  # noqa: E402

log = logging.getLogger(__name__)

STAGE = "predict"


class PredictError(RuntimeError):
    """The predict step failed; the message gives the cause and the fix."""


def _check_published(evaluation: dict[str, Any], info: dict[str, Any], model_uri: str) -> None:
    if evaluation.get("model_version") != info.get("version"):
        raise PredictError(
            f"{model_uri}/evaluation.json is for version {evaluation.get('model_version')}, "
            f"not {info.get('version')}; run the evaluate step again"
        )
    gate = evaluation.get("gate") or {}
    if not gate.get("passed"):
        raise GateFailed(f"{gate.get('message', 'gate failed')}; model {model_uri} not published")


def _scored_rows(spark: SparkSession, pipeline: PipelineSpec, dataset_uri: str,
                 model_uri: str, task: str, config: HoyaConfig | None):
    frame = None
    for split in pipeline.output.splits:
        part = frames.read_split(spark, dataset_uri, split).select("row_key", "features")
        frame = part if frame is None else frame.unionByName(part)
    scored = score_frame(frame, model_uri, config, "predict", task).persist()
    return scored, *frames.split_scored(scored, STAGE)


def run_predict(
    spark: SparkSession, pipeline: PipelineSpec, dataset_uri: str, model_uri: str,
    logical_date: dt.datetime, config: HoyaConfig, output_uri: str | None = None,
    publish: bool = True,
) -> dict[str, Any]:
    """Score the dataset, write predictions and (with ``publish``) the registry row.

    Returns the summary, also written to ``<output>/predict.json``.

    Raises GateFailed when the model's evaluation did not pass the gate, and PredictError
    when rows read != rows written + rows quarantined.
    """
    manifest = read_manifest(dataset_uri, config)
    info = frames.read_model_info(model_uri, config)
    check_model_fits(info, manifest, model_uri)
    evaluation = read_evaluation(model_uri, config)
    _check_published(evaluation, info, model_uri)
    schema = load_table_schema(pipeline.output.table)
    check_prediction_schema(schema)
    registry = load_table_schema(pipeline.output.registry_table)
    target = WriteTarget(
        schema_path=str(schema.source_path), pipeline=pipeline.name,
        target_name=info.get("target_name") or manifest["target_name"],
        model_version=info["version"], logical_date=logical_date,
        batch_size=pipeline.output.batch_size,
    )
    output_uri = output_uri or pipeline.uri("predictions", info["version"])
    log.info("predict %s with %s -> %s (logical date %s)", dataset_uri, model_uri,
             schema.table_name, logical_date.isoformat())

    scored, good, bad = _scored_rows(spark, pipeline, dataset_uri, model_uri,
                                     manifest["task"], config)
    rows_read = scored.count()
    summary = write_predictions(good, config, target)
    quarantine = _write_quarantine(spark, bad, summary.quarantine, output_uri)
    rows_quarantined = sum(quarantine.values())
    scored.unpersist()
    if rows_read != summary.rows_written + rows_quarantined:
        raise PredictError(
            f"row counts do not add up: read {rows_read}, written {summary.rows_written}, "
            f"quarantined {rows_quarantined}"
        )
    if publish:
        publish_registry(config, registry, target, model_uri, evaluation)
    result = {
        "pipeline": pipeline.name, "model_uri": model_uri, "model_version": info["version"],
        "dataset_uri": dataset_uri, "table": schema.table_name,
        "logical_date": logical_date.isoformat(), "timestamp_ms": target.timestamp_ms,
        "rows_read": rows_read, "rows_written": summary.rows_written,
        "rows_quarantined": rows_quarantined, "quarantine_reasons": quarantine,
        "retries": summary.retries, "published": publish,
    }
    write_text(join_uri(output_uri, "predict.json"), json.dumps(result, indent=2), config)
    log.info("predict done: read %d, written %d, quarantined %d; summary %s",
             rows_read, summary.rows_written, rows_quarantined, output_uri)
    return result


def _write_quarantine(spark: SparkSession, bad, write_bad: list[tuple[str, str]],
                      output_uri: str) -> dict[str, int]:
    """Write scoring and write-back quarantine rows; return their reason counts."""
    if write_bad:
        extra = spark.createDataFrame(
            [(key, reason, "write") for key, reason in write_bad], "row_key string, "
            "reason string, stage string")
        bad = bad.unionByName(extra)
    path = spark_path(join_uri(output_uri, "quarantine"))
    bad.coalesce(1).write.mode("overwrite").parquet(path)
    return frames.reason_counts(spark.read.parquet(path))


# Command line.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    encode = steps.add_parser("encode", help="append autoencoder code and error features")
    encode.add_argument("--output", required=True, help="the new dataset folder")
    encode.add_argument("--autoencoder", help="a trained autoencoder's model directory")
    encode.add_argument("--models-root", help="where to train the autoencoder if not given")
    encode.add_argument("--epochs", type=int, help="autoencoder epochs [default: its train]")
    evaluate = steps.add_parser("evaluate", help="metrics beside the baseline, and the gate")
    predict = steps.add_parser("predict", help="score, write back to HBase, update registry")
    predict.add_argument("--logical-date", required=True,
                         help="the run's logical date (ISO); the cell timestamp of every put")
    predict.add_argument("--output", help="folder for predict.json and the quarantine "
                                          "[default: <storage root>/predictions/<version>]")
    predict.add_argument("--skip-publish", action="store_true",
                         help="leave the registry row alone (a later publish step sets it)")
    for step in (encode, evaluate, predict):
        step.add_argument("--pipeline", required=True, help="the pipeline YAML file")
        step.add_argument("--dataset", required=True, help="the preprocessed dataset folder")
    for step in (evaluate, predict):
        step.add_argument("--model", required=True, help="the model directory to apply")
    return parser


def run_step(args: argparse.Namespace, spark: SparkSession, pipeline: PipelineSpec,
             config: HoyaConfig) -> dict[str, Any]:
    """Run the step that ``args.step`` names; return its result."""
    if args.step == "encode":
        from pipelines.predict.encode import run_encode, train_autoencoder

        model = args.autoencoder
        if model is None:
            if not args.models_root:
                raise PredictError("encode needs --autoencoder MODEL_DIR or --models-root ROOT")
            model = train_autoencoder(config, pipeline, args.dataset, args.models_root,
                                      args.epochs)
        return run_encode(spark, args.dataset, model, args.output, config)
    if args.step == "evaluate":
        from pipelines.predict.evaluate import run_evaluate

        return run_evaluate(spark, pipeline, args.dataset, args.model, config)
    logical_date = parse_logical_date(args.logical_date)
    return run_predict(spark, pipeline, args.dataset, args.model, logical_date, config,
                       args.output, publish=not args.skip_publish)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from pipelines.io.spark import spark_session
    from pipelines.spec import SpecError

    try:
        config = load_config()
        pipeline = load_spec(args.pipeline)
        if args.step == "predict":
            parse_logical_date(args.logical_date)
    except (SpecError, ValueError) as err:
        log.error("%s", err)
        return 2
    # A session that was already active (an in-process caller) stays open for its owner.
    owns_session = SparkSession.getActiveSession() is None
    spark = spark_session(config, f"hoya-{args.step}-{pipeline.name}")
    try:
        run_step(args, spark, pipeline, config)
    except (ValueError, FileNotFoundError) as err:  # invalid model, dataset or config
        log.error("%s failed: %s", args.step, str(err).splitlines()[0])
        return 2
    except RuntimeError as err:  # GateFailed, PredictError, EncodeError, HBase failures
        log.error("%s failed: %s", args.step, str(err).splitlines()[0])
        return 1
    finally:
        if owns_session:
            spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
