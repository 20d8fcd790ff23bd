"""Benchmark the predict stage: HBase write-back and model scoring, each beside a baseline.

Run from the repository root (the local stack must be up)::

    .hoya/job-env/bin/python benchmarks/bench_predict.py [--rows 20000] [--partitions 4]

1. Write-back: ``write_predictions`` (batched puts from parallel Spark partitions) against
   a plain happybase loop sending the same batched puts over one connection.
2. Scoring: ``score_frame`` (mapInPandas, model cached per worker) against calling the
   same model on the same rows in one process.

Both sides write the same cells into a temporary table, which is dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.config import load_config  # noqa: E402
from pipelines.io.spark import spark_session  # noqa: E402
from pipelines.predict.scoring import predict_matrix, cached_model, score_frame  # noqa: E402
from pipelines.predict.writeback import (  # noqa: E402
    WriteTarget, cached_schema, encode_prediction, write_predictions,
)
from pipelines.tables.admin import apply_schema, drop_table  # noqa: E402
from pipelines.tables.hbase import connect  # noqa: E402
from pipelines.tables.schema import SCHEMA_DIR, load_table_schema  # noqa: E402

log = logging.getLogger("bench_predict")
WIDTH = 90  # 30 steps x 3 channels, the shape of the sp500_volatility windows


def row_keys(rows: int) -> list[str]:
    """Return ``rows`` real ``TICKER#DATE`` keys from data/sp500_5yr, spread over tickers."""
    keys: list[str] = []
    for path in sorted((SCHEMA_DIR.parent / "data" / "sp500_5yr").glob("*_data.csv")):
        if ":" in path.name:
            continue
        lines = path.read_text().splitlines()[1:]
        keys += [f"{line.split(',')[-1]}#{line.split(',')[0]}" for line in lines if line]
        if len(keys) >= rows:
            break
    return keys[:rows]


def temp_schema(folder: Path) -> Path:
    data = yaml.safe_load((SCHEMA_DIR / "sp500_predictions.yaml").read_text())
    data["table"] = f"bench_predictions_{uuid.uuid4().hex[:8]}"
    path = folder / "bench_predictions.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def plain_loop(config, target: WriteTarget, pairs: list[tuple[str, float]]) -> float:
    """Send the same batched puts over one happybase connection; return seconds."""
    schema = cached_schema(target.schema_path)
    start = time.perf_counter()
    connection = connect(config)
    table = connection.table(schema.table_name)
    for offset in range(0, len(pairs), target.batch_size):
        batch = table.batch(timestamp=target.timestamp_ms)
        for key, value in pairs[offset:offset + target.batch_size]:
            row_key, cells = encode_prediction(schema, target, key, value)
            batch.put(row_key, cells)
        batch.send()
    connection.close()
    return time.perf_counter() - start


def bench_writeback(spark, config, folder: Path, rows: int, partitions: int) -> dict:
    schema_path = temp_schema(folder)
    schema = load_table_schema(schema_path)
    apply_schema(config, schema)
    keys = row_keys(rows)
    values = np.random.default_rng(0).random(len(keys)).tolist()
    pairs = list(zip(keys, values))
    date = dt.datetime(2017, 8, 11, tzinfo=dt.timezone.utc)
    common = dict(schema_path=str(schema_path), pipeline="bench", target_name="rv5",
                  logical_date=date, batch_size=1000)
    try:
        frame = spark.createDataFrame(pairs, "row_key string, prediction double")
        frame = frame.repartition(partitions).persist()
        frame.count()
        # The first run starts the Python workers; the second is the steady state measured.
        write_predictions(frame, config, WriteTarget(model_version="vwarm", **common))
        start = time.perf_counter()
        summary = write_predictions(frame, config, WriteTarget(model_version="vspark", **common))
        spark_s = time.perf_counter() - start
        loop_s = plain_loop(config, WriteTarget(model_version="vloop", **common), pairs)
    finally:
        drop_table(config, schema.table_name)
    assert summary.rows_written == len(pairs)
    return {"rows": len(pairs), "partitions": partitions, "spark_s": spark_s,
            "loop_s": loop_s, "spark_rows_per_s": len(pairs) / spark_s,
            "loop_rows_per_s": len(pairs) / loop_s, "ratio": loop_s / spark_s}


def save_mlp(folder: Path) -> str:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    inputs = tf.keras.Input(shape=(WIDTH,), name="features")
    hidden = tf.keras.layers.Dense(64, activation="relu")(inputs)
    hidden = tf.keras.layers.Dense(32, activation="relu")(hidden)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1)(hidden))
    model.save(folder / "model" / "saved_model")
    info = {"format_version": 1, "pipeline": "bench", "version": "vbench",
            "model_type": "mlp", "task": "regression", "feature_shape": [30, 3],
            "feature_names": [f"f{i}" for i in range(WIDTH)], "target_name": "rv5"}
    (folder / "model" / "model.json").write_text(json.dumps(info))
    return str(folder / "model")


def bench_scoring(spark, folder: Path, rows: int, partitions: int) -> dict:
    model_uri = save_mlp(folder)
    features = np.random.default_rng(2).standard_normal((rows, WIDTH)).astype(np.float32)
    frame = spark.createDataFrame(
        [(f"K#{i}", features[i].tolist()) for i in range(rows)],
        "row_key string, features array<float>",
    ).repartition(partitions).persist()
    frame.count()
    # Warm up the Python workers' model cache, as a long job would after its first batch.
    score_frame(frame, model_uri, None, "predict", "regression").write.format("noop").mode(
        "overwrite").save()
    start = time.perf_counter()
    score_frame(frame, model_uri, None, "predict", "regression").write.format("noop").mode(
        "overwrite").save()
    spark_s = time.perf_counter() - start
    loaded = cached_model(model_uri)
    predict_matrix(loaded, features[:100])
    start = time.perf_counter()
    predict_matrix(loaded, features)
    local_s = time.perf_counter() - start
    return {"rows": rows, "partitions": partitions, "spark_s": spark_s, "local_s": local_s,
            "spark_rows_per_s": rows / spark_s, "local_rows_per_s": rows / local_s,
            "ratio": local_s / spark_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="rows per measurement")
    parser.add_argument("--partitions", type=int, default=4, help="Spark partitions")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = load_config()
    spark = spark_session(config, "hoya-bench-predict")
    with tempfile.TemporaryDirectory(prefix="hoya-bench-") as folder:
        write = bench_writeback(spark, config, Path(folder), args.rows, args.partitions)
        score = bench_scoring(spark, Path(folder), args.rows, args.partitions)
    spark.stop()
    print(json.dumps({"date": dt.date.today().isoformat(), "master": config.spark.master,
                      "writeback": write, "scoring": score}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
