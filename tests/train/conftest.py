"""Small real datasets from data/sp500_5yr, in the preprocessed Parquet + manifest layout."""

from __future__ import annotations

import json
import math
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
CHANNELS = ["ret", "log_volume_change", "range"]


def ticker_windows(ticker: str, steps: int) -> pd.DataFrame:
    """Return one row per day: the last ``steps`` days of 3 channels and next-5-day volatility."""
    bars = pd.read_csv(DATA / f"{ticker}_data.csv").dropna(subset=["Open", "High", "Low"])
    ret = np.log(bars["Close"]).diff()
    channels = pd.DataFrame({
        "ret": ret,
        "log_volume_change": np.log(bars["Volume"].clip(lower=1)).diff(),
        "range": (bars["High"] - bars["Low"]) / bars["Close"],
    })
    # Realized volatility of the next five returns; null for the last five days.
    rv5 = ret[::-1].rolling(5).std()[::-1].shift(-1)
    values = channels.to_numpy(dtype=np.float64)
    rows = []
    for end in range(steps, len(bars)):  # row `end` uses days end-steps+1 .. end
        window = values[end - steps + 1:end + 1]
        if np.isnan(window).any():
            continue
        rows.append({
            "ticker": ticker, "date": bars["Date"].iloc[end],
            "row_key": f"{ticker}#{bars['Date'].iloc[end]}",
            "raw": window, "rv5": rv5.iloc[end], "next_ret": ret.shift(-1).iloc[end],
        })
    return pd.DataFrame(rows)


def build_dataset(
    root: Path, task: str = "regression", steps: int = 10, windowed: bool = True,
    tickers: tuple[str, ...] = ("AAPL", "MSFT"), train_parts: int = 2,
) -> dict[str, Any]:
    """Write a dataset folder and return its manifest; z-score features with train statistics."""
    frame = pd.concat([ticker_windows(t, steps) for t in tickers], ignore_index=True)
    frame = frame.sort_values(["date", "ticker"], ignore_index=True)
    raw = np.stack(frame["raw"].to_numpy())  # (rows, steps, channels)
    dates = frame["date"].to_numpy()
    split = np.where(dates < "2016-07-01", "train",
                     np.where(dates < "2017-07-01", "validation", "test"))
    train_raw = raw[split == "train"].reshape(-1, len(CHANNELS))
    mean, std = train_raw.mean(axis=0), train_raw.std(axis=0)
    scaled = ((raw - mean) / std).astype(np.float32).reshape(len(frame), -1)

    if task == "regression":
        rv5 = frame["rv5"].to_numpy()
        in_train = rv5[split == "train"]
        target = (rv5 - np.nanmean(in_train)) / np.nanstd(in_train)
    elif task == "binary":
        target = np.where(frame["next_ret"].isna(), np.nan, (frame["next_ret"] > 0) * 1.0)
    else:  # multiclass: down, flat, up by +-0.5% next-day return
        nxt = frame["next_ret"].to_numpy()
        target = np.where(np.isnan(nxt), np.nan, np.digitize(nxt, [-0.005, 0.005]) * 1.0)
    shape = [steps, len(CHANNELS)] if windowed else [steps * len(CHANNELS)]
    splits = {}
    for name in ("train", "validation", "test"):
        mask = split == name
        table = pa.table({
            "row_key": frame["row_key"][mask].tolist(), "ticker": frame["ticker"][mask].tolist(),
            "date": frame["date"][mask].tolist(),
            "features": pa.array(list(scaled[mask]), type=pa.list_(pa.float32())),
            "target": pa.array(target[mask], type=pa.float64(), from_pandas=True),
        })
        folder = root / name
        folder.mkdir(parents=True)
        parts = train_parts if name == "train" else 1
        bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
        for index in range(parts):
            pq.write_table(table.slice(bounds[index], bounds[index + 1] - bounds[index]),
                           folder / f"part-{index:05d}.parquet")
        splits[name] = {"path": name, "rows": int(mask.sum()),
                        "labelled_rows": int((~np.isnan(target[mask])).sum())}
    manifest = {
        "format_version": 1, "pipeline": "train_test", "config_hash": "0" * 64,
        "created_at": "2026-12-04T16:00:00Z", "task": task,
        "num_classes": 3 if task == "multiclass" else None,
        "key_columns": ["row_key", "ticker", "date"],
        "feature_names": [f"{c}_t-{steps - 1 - s}" for s in range(steps) for c in CHANNELS],
        "feature_shape": shape, "target_name": {"regression": "rv5_zscore"}.get(task, "next_move"),
        "splits": splits, "quarantine": {"path": "quarantine", "rows": 0, "reasons": {}},
        "statistics": {"method": "zscore", "columns": {
            c: {"mean": float(m), "std": float(s)} for c, m, s in zip(CHANNELS, mean, std)}},
        "source": {"table": "sp500_daily_bars", "row_start": None, "row_stop": None},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    assert math.prod(shape) == scaled.shape[1]
    return manifest


def write_pipeline(folder: Path, model: dict[str, Any], train: dict[str, Any]) -> Path:
    path = folder / "train_test.yaml"
    path.write_text(yaml.safe_dump({"name": "train_test", "model": model, "train": train}))
    return path


@pytest.fixture(scope="session")
def regression_dataset(tmp_path_factory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("regression") / "dataset"
    return root, build_dataset(root, "regression")
