"""Small datasets from data/sp500_5yr and tiny Keras models in the model-directory format."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.config import REPO_ROOT

DATA = REPO_ROOT / "data" / "sp500_5yr"
TICKERS = ("AAPL", "MSFT")
STEPS = 5
CHANNELS = ("ret", "range")
HORIZON = 5
VERSION_GOOD = "v20170101T000000"
VERSION_BAD = "v20170101T000001"
VERSION_AE = "v20170101T000002"
# Rows added to the test split that no model can score, with the reason each must get.
BAD_ROWS = {
    "ZZZ#2017-08-01": (None, "missing features"),
    "ZZZ#2017-08-02": ([0.5] * 3, f"features have 3 values, the model needs {STEPS * 2}"),
    "ZZZ#2017-08-03": ([float("nan")] + [0.0] * (STEPS * 2 - 1),
                       "null, NaN or infinite feature ret_t-4 (1 such values)"),
}


def ticker_rows(ticker: str) -> pd.DataFrame:
    """Return windows of log returns and ranges with 5-day volatility target and baseline."""
    bars = pd.read_csv(DATA / f"{ticker}_data.csv").dropna(subset=["High", "Low"])
    ret = np.log(bars["Close"]).diff().to_numpy()
    rng = np.log(bars["High"] / bars["Low"]).to_numpy()
    rows = []
    for t in range(STEPS, len(bars)):
        future = ret[t + 1:t + 1 + HORIZON]
        past = ret[t - HORIZON + 1:t + 1]
        rows.append({
            "row_key": f"{ticker}#{bars['Date'].iloc[t]}", "ticker": ticker,
            "date": bars["Date"].iloc[t],
            "raw": np.stack([ret[t - STEPS + 1:t + 1], rng[t - STEPS + 1:t + 1]], axis=1),
            "target": 100 * np.sqrt(np.sum(future ** 2)) if len(future) == HORIZON else np.nan,
            "baseline": 100 * np.sqrt(np.sum(past ** 2)),
        })
    return pd.DataFrame(rows)


def build_dataset(root: Path) -> dict[str, Any]:
    """Write a windowed regression dataset (train/validation/test + quarantine) and manifest."""
    frame = pd.concat([ticker_rows(t) for t in TICKERS], ignore_index=True)
    raw = np.stack(frame["raw"].to_numpy())
    split = np.where(frame["date"] <= "2015-12-31", "train",
                     np.where(frame["date"] <= "2016-08-31", "validation", "test"))
    train = raw[split == "train"].reshape(-1, len(CHANNELS))
    mean, std = train.mean(axis=0), train.std(axis=0)
    features = ((raw - mean) / std).astype(np.float32).reshape(len(frame), -1)
    splits = {}
    for name in ("train", "validation", "test"):
        mask = split == name
        part = frame[mask]
        values = [list(map(float, f)) for f in features[mask]]
        keys, tickers, dates = list(part["row_key"]), list(part["ticker"]), list(part["date"])
        targets, baselines = list(part["target"]), list(part["baseline"])
        if name == "test":
            for key, (value, _) in BAD_ROWS.items():
                keys.append(key), tickers.append("ZZZ"), dates.append(key[4:])
                values.append(value), targets.append(1.0), baselines.append(1.0)
        table = pa.table({
            "row_key": keys, "ticker": tickers, "date": dates,
            "features": pa.array(values, type=pa.list_(pa.float32())),
            "target": pa.array(targets, type=pa.float64(), from_pandas=True),
            "baseline": pa.array(baselines, type=pa.float64(), from_pandas=True),
        })
        (root / name).mkdir(parents=True)
        pq.write_table(table, root / name / "part-00000.parquet")
        splits[name] = {"path": name, "rows": table.num_rows,
                        "labelled_rows": int(pd.Series(targets).notna().sum())}
    quarantine = pa.table({"row_key": ["AAPL#2012-08-13"], "reason": ["missing close"],
                           "stage": ["preprocess"]})
    (root / "quarantine").mkdir()
    pq.write_table(quarantine, root / "quarantine" / "part-00000.parquet")
    manifest = {
        "format_version": 1, "pipeline": "predict_test", "config_hash": "0" * 64,
        "created_at": "2026-12-04T16:00:00Z", "task": "regression", "num_classes": None,
        "key_columns": ["row_key", "ticker", "date"],
        "feature_names": [f"{c}_t-{STEPS - 1 - s}" for s in range(STEPS) for c in CHANNELS],
        "feature_shape": [STEPS, len(CHANNELS)], "target_name": "rv5", "splits": splits,
        "quarantine": {"path": "quarantine", "rows": 1, "reasons": {"missing close": 1}},
        "statistics": {"method": "zscore", "columns": {
            c: {"mean": float(m), "std": float(s)} for c, m, s in zip(CHANNELS, mean, std)}},
        "baseline": {"name": "persistence", "column": "baseline"},
        "source": {"table": "sp500_daily_bars", "row_start": None, "row_stop": None},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def split_arrays(root: Path, split: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Return a split's rows with full-width finite features, and those features."""
    frame = pq.read_table(root / split).to_pandas()
    ok = frame["features"].map(lambda f: f is not None and len(f) == STEPS * 2
                               and bool(np.isfinite(f).all()))
    frame = frame[ok].reset_index(drop=True)
    return frame, np.stack(frame["features"].to_numpy()).astype(np.float32)


def save_model_dir(folder: Path, model, manifest: dict[str, Any], version: str,
                   model_type: str, encoder=None) -> Path:
    """Save a Keras model as a HOYA model directory (saved_model/, encoder/, model.json)."""
    folder.mkdir(parents=True)
    model.save(folder / "saved_model")
    if encoder is not None:
        encoder.save(folder / "encoder")
    info = {
        "format_version": 1, "pipeline": manifest["pipeline"], "version": version,
        "model_type": model_type, "task": manifest["task"],
        "feature_shape": manifest["feature_shape"], "feature_names": manifest["feature_names"],
        "target_name": manifest["target_name"], "statistics": manifest["statistics"],
        "dataset_uri": "fixture", "config_hash": "0" * 64, "command": ["fixture"],
        "created_at": "2026-12-04T16:00:00Z", "metrics": {"epochs": [], "best_val_loss": None},
    }
    (folder / "model.json").write_text(json.dumps(info, indent=2))
    return folder


def linear_model(weights: np.ndarray, bias: float):
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(len(weights),), name="features")
    layer = tf.keras.layers.Dense(1, name="output")
    model = tf.keras.Model(inputs, layer(inputs))
    layer.set_weights([weights.reshape(-1, 1).astype(np.float32),
                       np.array([bias], dtype=np.float32)])
    return model


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("predict") / "dataset"
    return root, build_dataset(root)


@pytest.fixture(scope="session")
def models(dataset, tmp_path_factory) -> dict[str, Path]:
    """A least-squares linear model, a constant model far off, and an untrained autoencoder."""
    import tensorflow as tf

    root, manifest = dataset
    train, features = split_arrays(root, "train")
    labelled = train["target"].notna().to_numpy()
    design = np.c_[features[labelled], np.ones(labelled.sum())]
    solution = np.linalg.lstsq(design, train["target"].to_numpy()[labelled], rcond=None)[0]
    folder = tmp_path_factory.mktemp("models")
    good = save_model_dir(folder / "good", linear_model(solution[:-1], solution[-1]),
                          manifest, VERSION_GOOD, "linear_regression")
    bad = save_model_dir(folder / "bad", linear_model(np.zeros(STEPS * 2), 50.0),
                         manifest, VERSION_BAD, "linear_regression")
    tf.keras.utils.set_random_seed(7)
    inputs = tf.keras.Input(shape=(STEPS * 2,), name="features")
    code = tf.keras.layers.Dense(3, name="code")(inputs)
    outputs = tf.keras.layers.Dense(STEPS * 2, name="reconstruction")(code)
    autoencoder = save_model_dir(
        folder / "autoencoder", tf.keras.Model(inputs, outputs), manifest, VERSION_AE,
        "autoencoder", encoder=tf.keras.Model(inputs, code),
    )
    return {"good": good, "bad": bad, "autoencoder": autoencoder}


def write_pipeline(folder: Path, evaluate: dict[str, Any], output: dict[str, Any]) -> Path:
    path = folder / "predict_test.yaml"
    path.write_text(yaml.safe_dump({
        "name": "predict_test", "storage": {"root": str(folder / "store")},
        "evaluate": evaluate, "output": output,
    }))
    return path


@pytest.fixture
def tables(stack, tmp_path):
    """Create uniquely named predictions and registry tables; drop them afterwards."""
    from pipelines.tables.admin import apply_schema, drop_table
    from pipelines.tables.schema import SCHEMA_DIR, load_table_schema

    suffix = uuid.uuid4().hex[:8]
    paths = {}
    for name in ("sp500_predictions", "hoya_registry"):
        data = yaml.safe_load((SCHEMA_DIR / f"{name}.yaml").read_text())
        data["table"] = f"test_{name}_{suffix}"
        for family in data["families"].values():
            family["max_versions"] = 5  # so a rerun that added versions would show them
        path = tmp_path / f"{name}_{suffix}.yaml"
        path.write_text(yaml.safe_dump(data))
        apply_schema(stack, load_table_schema(path))
        paths[name] = path
    yield paths
    for path in paths.values():
        drop_table(stack, load_table_schema(path).table_name)
