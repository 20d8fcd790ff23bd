"""Reading dataset splits into Spark and splitting scored rows from quarantined ones."""

from __future__ import annotations

import json
import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.config import HoyaConfig
from pipelines.dataset import split_uri
from pipelines.io.storage import is_hdfs, join_uri, read_text, spark_path
from pipelines.io.webhdfs import WebHdfs
from pipelines.predict.scoring import REASON

log = logging.getLogger(__name__)

QUARANTINE_COLUMNS = ("row_key", "reason", "stage")


def read_split(spark: SparkSession, dataset_uri: str, split: str) -> DataFrame:
    return spark.read.parquet(spark_path(split_uri(dataset_uri, split)))


def read_quarantine(
    spark: SparkSession, dataset_uri: str, config: HoyaConfig | None
) -> DataFrame | None:
    """Return the dataset's quarantine rows, or None when the folder does not exist."""
    folder = split_uri(dataset_uri, "quarantine")
    if is_hdfs(folder):
        exists = WebHdfs.from_config(config).exists(folder) if config else True
    else:
        from pathlib import Path

        exists = Path(folder).is_dir()
    if not exists:
        return None
    return spark.read.parquet(spark_path(folder)).select(*QUARANTINE_COLUMNS)


def split_scored(scored: DataFrame, stage: str) -> tuple[DataFrame, DataFrame]:
    """Return (rows with a score, quarantine rows with reason and stage)."""
    good = scored.filter(F.col(REASON).isNull()).drop(REASON)
    bad = scored.filter(F.col(REASON).isNotNull()).select(
        F.col("row_key").cast("string").alias("row_key"),
        F.col(REASON).alias("reason"),
        F.lit(stage).alias("stage"),
    )
    return good, bad


def reason_counts(quarantine: DataFrame) -> dict[str, int]:
    return {
        row["reason"]: int(row["n"])
        for row in quarantine.groupBy("reason").agg(F.count("*").alias("n")).collect()
    }


def read_model_info(model_uri: str, config: HoyaConfig | None) -> dict[str, Any]:
    """Return model.json of a model directory without loading TensorFlow."""
    try:
        return json.loads(read_text(join_uri(model_uri, "model.json"), config))
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"no model.json in {model_uri}; give a model directory written by hoya train"
        ) from err
