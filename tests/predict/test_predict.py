"""Scoring, autoencoder features, evaluation gate and HBase write-back on real services."""

from __future__ import annotations

import datetime as dt
import json
import struct

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.dataset import read_manifest
from pipelines.io.storage import spark_path
from pipelines.predict import metrics
from pipelines.predict.encode import run_encode
from pipelines.predict.evaluate import GateFailed, run_evaluate
from pipelines.predict.job import main as job_main
from pipelines.predict.job import run_predict
from pipelines.predict.scoring import score_frame, score_locally
from pipelines.spec import load_spec
from pipelines.tables.hbase import connect
from pipelines.tables.schema import load_table_schema

from .conftest import BAD_ROWS, STEPS, VERSION_BAD, VERSION_GOOD, split_arrays, write_pipeline

LOGICAL_DATE = dt.datetime(2017, 8, 11, tzinfo=dt.timezone.utc)
LOGICAL_MS = 1502409600000


def test_spark_scores_equal_local_model(spark, dataset, models):
    root, _ = dataset
    frame = spark.read.parquet(spark_path(str(root / "test"))).repartition(3)
    scored = score_frame(frame, str(models["good"]), None, "predict", "regression")
    rows = scored.select("row_key", "prediction", "reason").toPandas().set_index("row_key")
    expected, features = split_arrays(root, "test")
    local = score_locally(str(models["good"]), features).ravel()
    spark_values = rows.loc[expected["row_key"], "prediction"].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(spark_values, local, rtol=1e-6, atol=1e-6)
    assert rows["reason"].notna().sum() == len(BAD_ROWS)


def test_bad_rows_get_reasons(spark, dataset, models):
    root, _ = dataset
    frame = spark.read.parquet(spark_path(str(root / "test")))
    scored = score_frame(frame, str(models["good"]), None, "predict", "regression")
    bad = scored.filter("reason is not null").select("row_key", "reason", "prediction")
    found = {r["row_key"]: (r["reason"], r["prediction"]) for r in bad.collect()}
    assert found == {key: (reason, None) for key, (_, reason) in BAD_ROWS.items()}


def test_encode_appends_code_and_error(spark, dataset, models, tmp_path):
    import tensorflow as tf

    root, manifest = dataset
    out = tmp_path / "encoded"
    written = run_encode(spark, str(root), str(models["autoencoder"]), str(out))
    width = STEPS * 2
    assert written["feature_names"] == [*manifest["feature_names"], "code_0", "code_1",
                                        "code_2", "recon_error"]
    assert written["feature_shape"] == [width + 4]
    assert written["encoded_from"]["feature_shape"] == [STEPS, 2]
    for split in ("train", "validation"):
        assert written["splits"][split] == manifest["splits"][split]
    assert written["splits"]["test"]["rows"] == manifest["splits"]["test"]["rows"] - 3
    assert written["splits"]["test"]["labelled_rows"] == 466
    assert written["quarantine"]["rows"] == 1 + len(BAD_ROWS)
    assert written["quarantine"]["reasons"]["missing close"] == 1
    counts = written["encode_counts"]
    assert counts["rows_read"] == counts["rows_written"] + counts["rows_quarantined"]
    assert counts["rows_quarantined"] == len(BAD_ROWS)
    assert read_manifest(str(out))["feature_shape"] == [width + 4]

    table = pq.read_table(out / "train").to_pandas().set_index("row_key")
    source, features = split_arrays(root, "train")
    encoded = np.stack(table.loc[source["row_key"], "features"].to_numpy())
    model = tf.keras.models.load_model(models["autoencoder"] / "saved_model", compile=False)
    encoder = tf.keras.models.load_model(models["autoencoder"] / "encoder", compile=False)
    np.testing.assert_array_equal(encoded[:, :width], features)
    np.testing.assert_allclose(encoded[:, width:width + 3], encoder(features).numpy(),
                               rtol=1e-5, atol=1e-5)
    error = np.mean((model(features).numpy() - features) ** 2, axis=1)
    np.testing.assert_allclose(encoded[:, -1], error, rtol=1e-5, atol=1e-6)
    assert table.loc[source["row_key"], "target"].tolist() == source["target"].tolist()


def evaluated(spark, dataset, models, tmp_path, model: str, gate: dict, baseline="auto"):
    root, _ = dataset
    pipeline = load_spec(write_pipeline(tmp_path, {"baseline": baseline, "gate": gate}, {}))
    return run_evaluate(spark, pipeline, str(root), str(models[model]))


def test_gate_passes_good_model(spark, dataset, models, tmp_path):
    report = evaluated(spark, dataset, models, tmp_path, "good",
                       {"metric": "rmse", "must_beat_baseline": True, "max_ratio": 0.95})
    root, _ = dataset
    test = pq.read_table(root / "test").to_pandas()
    test = test[~test["row_key"].isin(BAD_ROWS) & test["target"].notna()]
    target, base = test["target"].to_numpy(), test["baseline"].to_numpy()
    assert report["rows"]["evaluated"] == len(test) == 466
    assert report["rows"]["quarantined"] == len(BAD_ROWS)
    assert report["baseline"]["name"] == "persistence"
    assert report["metrics"]["baseline"]["rmse"] == pytest.approx(
        float(np.sqrt(np.mean((base - target) ** 2))), rel=1e-12)
    assert report["metrics"]["baseline"]["mae"] == pytest.approx(
        float(np.mean(np.abs(base - target))), rel=1e-12)
    assert report["gate"]["passed"] is True
    assert report["gate"]["ratio"] < 0.95
    saved = json.loads((models["good"] / "evaluation.json").read_text())
    assert saved["gate"] == report["gate"]


def test_gate_rejects_bad_model(spark, dataset, models, tmp_path):
    with pytest.raises(GateFailed) as caught:
        evaluated(spark, dataset, models, tmp_path, "bad",
                  {"metric": "mae", "must_beat_baseline": True}, baseline="mean")
    saved = json.loads((models["bad"] / "evaluation.json").read_text())
    model_mae = saved["metrics"]["model"]["mae"]
    baseline_mae = saved["metrics"]["baseline"]["mae"]
    assert model_mae > baseline_mae
    assert f"{model_mae:.6g}" in str(caught.value)
    assert f"{baseline_mae:.6g}" in str(caught.value)
    assert saved["gate"]["passed"] is False
    # The train mean is the baseline: check it against pandas.
    root, _ = dataset
    train = pq.read_table(root / "train").to_pandas()
    assert saved["baseline"]["mean"] == pytest.approx(train["target"].mean(), rel=1e-12)


def test_predict_job_exits_nonzero_on_gate(dataset, models, tmp_path, caplog):
    root, _ = dataset
    path = write_pipeline(tmp_path, {"gate": {"metric": "rmse", "max_ratio": 1.0}}, {})
    code = job_main(["evaluate", "--pipeline", str(path), "--dataset", str(root),
                     "--model", str(models["bad"])])
    assert code == 1
    assert any("gate failed: model rmse" in r.getMessage() for r in caplog.records)
    code = job_main(["predict", "--pipeline", str(path), "--dataset", str(root),
                     "--model", str(models["bad"]), "--logical-date", "2017-08-11"])
    assert code == 1


def read_cells(config, table: str, key: str) -> dict[bytes, list[tuple[bytes, int]]]:
    connection = connect(config)
    try:
        handle = connection.table(table)
        row = handle.row(key.encode())
        return {column: handle.cells(key.encode(), column, versions=5, include_timestamp=True)
                for column in row}
    finally:
        connection.close()


def test_predict_writes_exact_cells_idempotently(spark, stack, dataset, models, tables,
                                                 tmp_path):
    root, _ = dataset
    output = {"table": str(tables["sp500_predictions"]),
              "registry_table": str(tables["hoya_registry"]), "batch_size": 100,
              "splits": ["validation", "test"]}
    pipeline = load_spec(write_pipeline(
        tmp_path, {"gate": {"metric": "rmse", "must_beat_baseline": True}}, output))
    run_evaluate(spark, pipeline, str(root), str(models["good"]))
    first = run_predict(spark, pipeline, str(root), str(models["good"]), LOGICAL_DATE, stack)

    scored_rows = 336 + 476
    assert first["rows_read"] == scored_rows + len(BAD_ROWS)
    assert first["rows_written"] == scored_rows
    assert first["rows_quarantined"] == len(BAD_ROWS)
    assert first["timestamp_ms"] == LOGICAL_MS

    schema = load_table_schema(tables["sp500_predictions"])
    expected, features = split_arrays(root, "test")
    local = score_locally(str(models["good"]), features).ravel()
    qualifier = f"p:rv5@{VERSION_GOOD}".encode()
    before = {}
    for index in (0, 200, len(expected) - 1):
        key = expected["row_key"][index]
        cells = read_cells(stack, schema.table_name, key)
        before[key] = cells
        (value, timestamp), = cells[qualifier]
        assert struct.unpack(">d", value)[0] == pytest.approx(float(local[index]), rel=1e-6)
        assert timestamp == LOGICAL_MS
        assert cells[b"p:model_version"] == [(VERSION_GOOD.encode(), LOGICAL_MS)]
        assert cells[b"m:pipeline"] == [(b"predict_test", LOGICAL_MS)]
        assert cells[b"m:predicted_at"] == [(struct.pack(">q", LOGICAL_MS), LOGICAL_MS)]
        assert set(cells) == {qualifier, b"p:model_version", b"m:pipeline", b"m:predicted_at"}
    assert read_cells(stack, schema.table_name, "ZZZ#2017-08-01") == {}

    registry = load_table_schema(tables["hoya_registry"])
    connection = connect(stack)
    try:
        row = connection.table(registry.table_name).row(b"predict_test")
        count = sum(1 for _ in connection.table(schema.table_name).scan(filter=b"KeyOnlyFilter()"))
    finally:
        connection.close()
    decoded = registry.decode_row(b"predict_test", row)
    assert decoded["model_version"] == VERSION_GOOD
    assert decoded["model_uri"] == str(models["good"])
    evaluation = json.loads((models["good"] / "evaluation.json").read_text())
    assert json.loads(decoded["metrics_json"]) == evaluation["metrics"]
    assert count == scored_rows

    second = run_predict(spark, pipeline, str(root), str(models["good"]), LOGICAL_DATE, stack)
    assert second["rows_written"] == first["rows_written"]
    for key, cells in before.items():
        assert read_cells(stack, schema.table_name, key) == cells

    result = CliRunner().invoke(cli, ["predictions", "show", str(tables["sp500_predictions"]),
                                      expected["row_key"][0], "--registry",
                                      str(tables["hoya_registry"])])
    assert result.exit_code == 0, result.output
    assert f"* rv5" in result.output
    assert VERSION_GOOD in result.output
    assert "2017-08-11T00:00:00+00:00" in result.output
    assert f"registry: pipeline predict_test current model {VERSION_GOOD}" in result.output


def test_auc_matches_pair_count():
    rng = np.random.default_rng(3)
    target = rng.integers(0, 2, 200)
    score = np.round(rng.random(200), 1)  # rounding creates ties
    pairs = [(s_pos > s_neg) + 0.5 * (s_pos == s_neg)
             for s_pos in score[target == 1] for s_neg in score[target == 0]]
    assert metrics.binary_auc(target, score) == pytest.approx(np.mean(pairs), rel=1e-12)
    assert metrics.binary_auc(np.ones(5), np.arange(5.0)) is None


def test_log_loss_and_accuracy():
    target = np.array([1, 0, 1, 1])
    probability = np.array([0.9, 0.2, 0.4, 0.6])
    expected = -np.mean(np.log([0.9, 0.8, 0.4, 0.6]))
    assert metrics.binary_log_loss(target, probability) == pytest.approx(expected, rel=1e-12)
    assert metrics.binary_metrics(target, probability)["accuracy"] == 0.75
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert metrics.multiclass_log_loss(np.array([0, 2]), probabilities) == pytest.approx(
        -np.mean(np.log([0.7, 0.8])), rel=1e-12)
