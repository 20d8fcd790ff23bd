"""Benchmark HOYA training against plain Keras ``fit`` on the same data, in one run.

Run from the repository root::

    .hoya/job-env/bin/python benchmarks/bench_train.py [--tickers 40] [--epochs 4] [--repeats 3]

Builds a dataset of 30-day windows (returns, log volume change, daily range; 90 features)
from the first ``--tickers`` files of ``data/sp500_5yr``, with next-day volatility as the
regression target, written as Parquet plus manifest.json. Then, with one MLP (64-32-1):

1. plain Keras ``model.fit`` on in-memory numpy arrays in this process;
2. HOYA with one rank (``horovodrun -np 1``) and with two ranks (``-np 2``);
3. HOYA's input pipeline alone (iterating the rank's ``tf.data`` dataset), against the
   rate at which the one-rank model consumes samples.

Speeds are training samples per second over the epochs after the first, because the
first includes tracing. Validation is included on every side. Each side reports its
median over ``--repeats`` interleaved runs. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.config import REPO_ROOT, load_config  # noqa: E402
from pipelines.train import data as tdata  # noqa: E402
from pipelines.train.launcher import run_training  # noqa: E402
from pipelines.train.modeldir import MODEL_JSON  # noqa: E402

log = logging.getLogger("bench_train")
STEPS = 30
MODEL = {"type": "mlp", "layers": [{"units": 64}, {"units": 32}]}


def series_windows(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    bars = pd.read_csv(path).dropna(subset=["Open", "High", "Low", "Close"])
    if len(bars) <= STEPS + 1:
        return None
    ret = np.diff(np.log(bars["Close"].to_numpy()), prepend=np.nan)
    vol = np.diff(np.log(np.clip(bars["Volume"].to_numpy(float), 1, None)), prepend=np.nan)
    rng = ((bars["High"] - bars["Low"]) / bars["Close"]).to_numpy()
    channels = np.stack([ret, vol, rng], axis=1)[1:]  # drop the first day's NaN diff
    windows = np.lib.stride_tricks.sliding_window_view(channels, STEPS, axis=0)
    windows = windows.transpose(0, 2, 1)[:-1]  # (n, steps, channels), time-major
    target = np.abs(channels[STEPS:, 0]) * 100.0  # next day's absolute return, percent
    keep = ~np.isnan(windows).any(axis=(1, 2))
    return windows[keep], target[keep]


def build_dataset(root: Path, tickers: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Write train/validation Parquet splits and manifest.json; return the train arrays."""
    files = sorted((REPO_ROOT / "data" / "sp500_5yr").glob("*_data.csv"))[:tickers]
    parts = [w for w in map(series_windows, files) if w is not None]
    x = np.concatenate([p[0] for p in parts]).astype(np.float32)
    y = np.concatenate([p[1] for p in parts])
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    mean, std = x.reshape(-1, 3).mean(axis=0), x.reshape(-1, 3).std(axis=0)
    x = ((x - mean) / std).reshape(len(x), -1).astype(np.float32)
    cut = int(len(x) * 0.9)
    splits = {}
    for name, rows in (("train", slice(0, cut)), ("validation", slice(cut, None))):
        (root / name).mkdir(parents=True)
        table = pa.table({"features": pa.array(list(x[rows]), pa.list_(pa.float32())),
                          "target": pa.array(y[rows], pa.float64())})
        half = table.num_rows // 2
        pq.write_table(table.slice(0, half), root / name / "part-00000.parquet")
        pq.write_table(table.slice(half), root / name / "part-00001.parquet")
        splits[name] = {"path": name, "rows": table.num_rows, "labelled_rows": table.num_rows}
    manifest = {
        "format_version": 1, "pipeline": "bench_train", "config_hash": "0" * 64,
        "task": "regression", "num_classes": None, "key_columns": [],
        "feature_names": [f"{c}_t-{STEPS - 1 - s}" for s in range(STEPS)
                          for c in ("ret", "log_volume_change", "range")],
        "feature_shape": [STEPS * 3], "target_name": "abs_next_ret_pct", "splits": splits,
        "statistics": {"method": "zscore", "columns": {}},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return x[:cut], y[:cut], manifest


def plain_keras(x, y, vx, vy, batch: int, epochs: int) -> float:
    """Return samples/s of model.fit on in-memory arrays, epochs after the first."""
    import tensorflow as tf

    from pipelines.train.models import build_model, make_optimizer
    from pipelines.train.spec import parse_model_spec

    tf.keras.utils.set_random_seed(0)
    built = build_model(parse_model_spec(MODEL), {"feature_shape": [STEPS * 3],
                                                  "task": "regression"})
    built.model.compile(make_optimizer("adam", 0.001), "mse", metrics=["mae"])

    class Timer(tf.keras.callbacks.Callback):
        seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    timer = Timer()
    built.model.fit(x, y, batch_size=batch, epochs=epochs, validation_data=(vx, vy),
                    verbose=0, callbacks=[timer])
    return len(x) / float(np.mean(timer.seconds[1:]))


def hoya(config, pipeline: Path, dataset: Path, models: Path, ranks: int) -> dict:
    result = run_training(config, pipeline, str(dataset), str(models), num_ranks=ranks,
                          extra_worker_args=["--verbose", "0"])
    info = json.loads((Path(result.model_uri) / MODEL_JSON).read_text())
    samples = info["steps_per_epoch"] * info["train_settings"]["batch_size"] * ranks
    seconds = [e["seconds"] for e in info["metrics"]["epochs"]][1:]
    return {"samples_per_s": samples / float(np.mean(seconds)),
            "last_val_loss": info["metrics"]["epochs"][-1]["val_loss"]}


def input_pipeline(dataset: Path, batch: int, width: int) -> float:
    """Return samples/s of iterating one rank's tf.data pipeline (shuffle, batch, prefetch)."""
    files = tdata.local_split_files(str(dataset), "train")
    shard = tdata.load_shard(files, width, 0, 1, "bench")
    ds = tdata.make_dataset(shard, batch, False, shuffle=True, repeat=True)
    steps = tdata.steps_for(shard.rows, batch)
    iterator = iter(ds)
    for _ in range(steps):  # a warm-up epoch traces the functions
        next(iterator)
    start = time.perf_counter()
    for _ in range(3 * steps):
        next(iterator)
    return 3 * steps * batch / (time.perf_counter() - start)


def measure(config, root: Path, args: argparse.Namespace) -> tuple[dict, int, int]:
    """Return every repeat's samples/s of each side, and the train and validation rows."""
    x, y, _ = build_dataset(root / "dataset", args.tickers)
    val = pq.read_table(root / "dataset" / "validation")
    vx = np.stack(val.column("features").to_numpy(zero_copy_only=False)).astype(np.float32)
    vy = val.column("target").to_numpy()
    pipeline = root / "bench_train.yaml"
    pipeline.write_text(yaml.safe_dump({"name": "bench_train", "model": MODEL, "train": {
        "epochs": args.epochs, "batch_size": args.batch_size, "warmup_epochs": 1,
        "early_stopping_patience": None}}))
    # Interleaved repeats, medians reported: the 2 cores are shared, so the load from
    # other processes changes during the run and hits every side alike.
    rates: dict[str, list[float]] = {"keras": [], "one": [], "two": [], "feed": []}
    for repeat in range(args.repeats):
        rates["keras"].append(plain_keras(x, y, vx, vy, args.batch_size, args.epochs))
        rates["one"].append(hoya(config, pipeline, root / "dataset",
                                 root / f"models1-{repeat}", 1)["samples_per_s"])
        rates["two"].append(hoya(config, pipeline, root / "dataset",
                                 root / f"models2-{repeat}", 2)["samples_per_s"])
        rates["feed"].append(input_pipeline(root / "dataset", args.batch_size, STEPS * 3))
    log.info("samples/s of every repeat: %s", rates)
    return rates, len(x), len(vx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=40, help="S&P 500 files to use")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per measurement (>= 2)")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per batch per rank")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    config = load_config()
    with tempfile.TemporaryDirectory(prefix="hoya-bench-train-") as tmp:
        rates, train_rows, validation_rows = measure(config, Path(tmp), args)
    keras_rate, one_rate, two_rate, feed = (
        float(np.median(rates[k])) for k in ("keras", "one", "two", "feed")
    )
    summary = {
        "date": dt.date.today().isoformat(), "train_rows": train_rows,
        "validation_rows": validation_rows, "features": STEPS * 3, "batch_size": args.batch_size,
        "epochs": args.epochs, "plain_keras_samples_per_s": round(keras_rate),
        "repeats": args.repeats,
        "hoya_1_rank_samples_per_s": round(one_rate),
        "hoya_2_ranks_samples_per_s": round(two_rate),
        "ratio_1_rank_vs_keras": round(one_rate / keras_rate, 3),
        "ratio_2_ranks_vs_keras": round(two_rate / keras_rate, 3),
        "input_pipeline_samples_per_s": round(feed),
        "ratio_input_vs_1_rank_consumption": round(feed / one_rate, 1),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
