"""Autoencoder features: append the encoder's code and the reconstruction error.

The autoencoder is trained by the train stage (model type autoencoder) on every row of
the training split, labelled or not, because rows without a target still show the
encoder what inputs look like. ``run_encode`` then rewrites every split with
``features = [input features, code_0..code_{k-1}, recon_error]``. A windowed dataset
with feature_shape ``[steps, channels]`` becomes a flat one, ``[steps*channels + k + 1]``.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.config import HoyaConfig
from pipelines.dataset import SPLITS, read_manifest, split_uri, write_manifest
from pipelines.io.storage import spark_path
from pipelines.predict import frames
from pipelines.predict.scoring import cached_model, check_model_fits, code_size, score_frame
from pipelines.spec import PipelineSpec

log = logging.getLogger(__name__)

STAGE = "encode"
RECON_ERROR = "recon_error"


class EncodeError(RuntimeError):
    """The encode step cannot run or its row counts do not add up."""


def autoencoder_pipeline_file(pipeline: PipelineSpec, folder: Path) -> Path:
    """Write a pipeline file whose model is the ``autoencoder`` section, for the launcher.

    The launcher trains ``model`` of a pipeline file, and names the model directory after
    the pipeline, so this file is named ``<pipeline>_autoencoder``.
    """
    if pipeline.autoencoder is None:
        raise EncodeError(
            f"{pipeline.path}: missing key 'autoencoder'; add for example autoencoder: "
            "{model: {type: autoencoder, encoder: [32], code_size: 4}}"
        )
    name = f"{pipeline.name}_autoencoder"
    data = {
        "name": name,
        "model": pipeline.autoencoder.model.model_dump(mode="json", exclude_none=True),
        "train": pipeline.autoencoder.train.model_dump(mode="json"),
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def train_autoencoder(
    config: HoyaConfig, pipeline: PipelineSpec, dataset_uri: str, models_root: str,
    epochs: int | None = None, version: str | None = None,
) -> str:
    """Train the pipeline's autoencoder with horovodrun; return its model directory.

    Its directory is ``<models_root>/<pipeline>_autoencoder/<version>``; giving the
    version of an interrupted run resumes it.
    """
    from pipelines.train.launcher import run_training

    with tempfile.TemporaryDirectory(prefix="hoya-autoencoder-") as folder:
        path = autoencoder_pipeline_file(pipeline, Path(folder))
        result = run_training(config, path, dataset_uri, models_root, epochs=epochs,
                              version=version)
    return result.model_uri


def _encoded_manifest(
    manifest: dict[str, Any], info: dict[str, Any], model_uri: str, dataset_uri: str, k: int,
) -> dict[str, Any]:
    names = [*manifest["feature_names"], *(f"code_{i}" for i in range(k)), RECON_ERROR]
    out = {key: value for key, value in manifest.items() if key != "format_version"}
    out.update({
        "created_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "feature_names": names,
        # Flat on purpose: code and error columns have no time axis, so the supervised
        # model reads [input features..., code_0..code_{k-1}, recon_error] as one vector.
        "feature_shape": [len(names)],
        "encoded_from": {
            "dataset_uri": dataset_uri,
            "feature_shape": manifest["feature_shape"],
            "autoencoder_uri": model_uri,
            "autoencoder_version": info.get("version"),
            "code_size": k,
        },
    })
    return out


def _encode_split(
    frame: DataFrame, model_uri: str, config: HoyaConfig | None, task: str
) -> tuple[DataFrame, DataFrame]:
    scored = score_frame(frame, model_uri, config, "encode", task).persist()
    return frames.split_scored(scored, STAGE)


def run_encode(
    spark: SparkSession, dataset_uri: str, model_uri: str, output_uri: str,
    config: HoyaConfig | None = None,
) -> dict[str, Any]:
    """Write ``output_uri``: every split with code and error features; return its manifest.

    Raises EncodeError when rows read != rows written + rows quarantined.
    """
    manifest = read_manifest(dataset_uri, config)
    loaded = cached_model(model_uri, config)
    check_model_fits(loaded.info, manifest, model_uri)
    k = code_size(loaded)
    log.info("encode %s with %s (code size %d) -> %s", dataset_uri, model_uri, k, output_uri)

    splits: dict[str, Any] = {}
    new_bad: DataFrame | None = None
    rows_read = rows_written = 0
    for split in SPLITS:
        frame = frames.read_split(spark, dataset_uri, split)
        read = frame.count()
        good, bad = _encode_split(frame, model_uri, config, manifest["task"])
        good.write.mode("overwrite").parquet(spark_path(split_uri(output_uri, split)))
        written = spark.read.parquet(spark_path(split_uri(output_uri, split)))
        counts = written.agg(F.count("*").alias("rows"), F.count("target").alias("lab")).first()
        splits[split] = {"path": split, "rows": int(counts["rows"]),
                         "labelled_rows": int(counts["lab"])}
        rows_read += read
        rows_written += splits[split]["rows"]
        new_bad = bad if new_bad is None else new_bad.unionByName(bad)
        log.info("encoded split %s: read %d, written %d", split, read, splits[split]["rows"])

    quarantine_section = _write_quarantine(spark, dataset_uri, output_uri, new_bad, config)
    rows_quarantined = quarantine_section.pop("new_rows")
    if rows_read != rows_written + rows_quarantined:
        raise EncodeError(
            f"row counts do not add up: read {rows_read}, written {rows_written}, "
            f"quarantined {rows_quarantined}"
        )
    out = _encoded_manifest(manifest, loaded.info, model_uri, dataset_uri, k)
    out.update({"splits": splits, "quarantine": quarantine_section,
                "encode_counts": {"rows_read": rows_read, "rows_written": rows_written,
                                  "rows_quarantined": rows_quarantined}})
    write_manifest(output_uri, out, config)
    log.info("encode done: read %d, written %d, quarantined %d -> %s",
             rows_read, rows_written, rows_quarantined, output_uri)
    return out


def _write_quarantine(
    spark: SparkSession, dataset_uri: str, output_uri: str, new_bad: DataFrame,
    config: HoyaConfig | None,
) -> dict[str, Any]:
    """Write the input's quarantine plus this step's; return the manifest section."""
    new_bad = new_bad.persist()
    new_rows = new_bad.count()
    previous = frames.read_quarantine(spark, dataset_uri, config)
    combined = new_bad if previous is None else previous.unionByName(new_bad)
    combined.coalesce(1).write.mode("overwrite").parquet(
        spark_path(split_uri(output_uri, "quarantine"))
    )
    written = spark.read.parquet(spark_path(split_uri(output_uri, "quarantine")))
    reasons = frames.reason_counts(written)
    return {"path": "quarantine", "rows": sum(reasons.values()), "reasons": reasons,
            "new_rows": new_rows}
