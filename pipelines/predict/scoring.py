"""Apply a model directory to a Spark DataFrame of ``features`` with ``mapInPandas``.

Each Python worker loads a model directory once (a module-level cache keyed by its URI)
and scores whole Arrow batches. A row that cannot be scored (null features, a wrong
width, a NaN or infinite value) gets a ``reason`` instead of a score, and callers send
it to the quarantine.

Two modes share this mechanism:

* ``predict`` adds ``prediction`` (double) and, for multiclass models, ``probabilities``.
* ``encode`` (autoencoders) replaces ``features`` with the input followed by the
  encoder's code and the mean squared reconstruction error.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pandas as pd

from pipelines.config import HoyaConfig

log = logging.getLogger(__name__)

REASON = "reason"
PREDICTION = "prediction"
PROBABILITIES = "probabilities"
# Threads TensorFlow may use in one Spark Python worker. Executors usually run one task
# per core, so more threads would compete with the other tasks' workers.
WORKER_THREADS = 2
# Rows per model call inside one Arrow batch, to bound the memory of one forward pass.
CHUNK_ROWS = 8192

_MODELS: dict[str, "LoadedModel"] = {}
_threads_set = False


class ScoringError(ValueError):
    """A model does not fit a dataset; the message names both and the fix."""


@dataclass
class LoadedModel:
    model: Any
    encoder: Any | None
    info: dict[str, Any]

    @property
    def width(self) -> int:
        return math.prod(self.info["feature_shape"])


def limit_tf_threads(threads: int = WORKER_THREADS) -> None:
    """Limit TensorFlow's thread pools; effective only before its runtime starts."""
    global _threads_set
    if _threads_set:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime already started in this process: keep its pools
        log.debug("TensorFlow runtime already initialized; thread limits unchanged")
    _threads_set = True


def cached_model(uri: str, config: HoyaConfig | None = None) -> LoadedModel:
    """Return the model directory at ``uri``, loading it once per Python process."""
    loaded = _MODELS.get(uri)
    if loaded is None:
        limit_tf_threads()
        from pipelines.train import load_model_dir

        model, info = load_model_dir(uri, config)
        encoder = info.pop("encoder", None)
        loaded = LoadedModel(model, encoder, info)
        _MODELS[uri] = loaded
    return loaded


def check_model_fits(info: dict[str, Any], manifest: dict[str, Any], model_uri: str) -> None:
    """Raise ScoringError when the model's feature shape or names differ from the dataset's."""
    problems = []
    if list(info.get("feature_shape") or []) != list(manifest.get("feature_shape") or []):
        problems.append(
            f"feature_shape {info.get('feature_shape')} of the model differs from the "
            f"dataset's {manifest.get('feature_shape')}"
        )
    model_names = list(info.get("feature_names") or [])
    data_names = list(manifest.get("feature_names") or [])
    if model_names != data_names:
        first = next(
            (i for i, pair in enumerate(zip(model_names, data_names)) if pair[0] != pair[1]),
            min(len(model_names), len(data_names)),
        )
        problems.append(
            f"feature_names differ from index {first} on (model has {len(model_names)}, "
            f"dataset has {len(data_names)})"
        )
    if problems:
        raise ScoringError(
            f"model {model_uri} does not fit dataset {manifest.get('pipeline')!r}: "
            + "; ".join(problems)
            + ". Preprocess the data with --fitted-from the model's training dataset, or "
            "score with the model trained on this dataset"
        )


def validate_features(
    features: pd.Series, width: int, names: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Split a batch's ``features`` into a float32 matrix of valid rows and reasons.

    Returns ``(matrix, valid_mask, reasons)``; ``reasons[i]`` is None for a valid row.
    """
    values = features.to_numpy(dtype=object)
    lengths = np.array([-1 if v is None else np.size(v) for v in values], dtype=np.int64)
    full = lengths == width
    matrix = (
        np.concatenate([np.asarray(v, dtype=np.float32) for v in values[full]]).reshape(-1, width)
        if full.any() else np.zeros((0, width), np.float32)
    )
    finite = np.isfinite(matrix).all(axis=1)
    valid = full.copy()
    valid[np.flatnonzero(full)[~finite]] = False
    reasons: list[str | None] = [None] * len(values)
    # Only invalid rows take the slow path that names the first bad value.
    for position in np.flatnonzero(~valid):
        reasons[position] = _check_row(values[position], width, names)[0]
    return matrix[finite], valid, reasons


def _check_row(
    value: Any, width: int, names: list[str] | None
) -> tuple[str | None, np.ndarray | None]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing features", None
    row = np.asarray(value, dtype=np.float64)
    if row.ndim != 1 or row.shape[0] != width:
        return f"features have {row.size} values, the model needs {width}", None
    bad = np.flatnonzero(~np.isfinite(row))
    if bad.size:
        index = int(bad[0])
        name = names[index] if names and index < len(names) else f"index {index}"
        return f"null, NaN or infinite feature {name} ({bad.size} such values)", None
    return None, row


def predict_matrix(loaded: LoadedModel, matrix: np.ndarray) -> np.ndarray:
    """Return the model's outputs for a float32 matrix, in chunks of CHUNK_ROWS rows."""
    outputs = [
        np.asarray(loaded.model(matrix[start:start + CHUNK_ROWS], training=False))
        for start in range(0, matrix.shape[0], CHUNK_ROWS)
    ]
    if not outputs:
        return np.zeros((0, 1), np.float32)
    return np.concatenate(outputs)


def encode_matrix(loaded: LoadedModel, matrix: np.ndarray) -> np.ndarray:
    """Return ``[input, code, reconstruction MSE]`` per row for an autoencoder."""
    if loaded.encoder is None:
        raise ScoringError(
            f"model {loaded.info.get('version')} of type {loaded.info.get('model_type')!r} "
            "has no encoder/; train an autoencoder (model type autoencoder) first"
        )
    codes, errors = [], []
    for start in range(0, matrix.shape[0], CHUNK_ROWS):
        chunk = matrix[start:start + CHUNK_ROWS]
        codes.append(np.asarray(loaded.encoder(chunk, training=False)))
        reconstruction = np.asarray(loaded.model(chunk, training=False))
        errors.append(np.mean((reconstruction - chunk) ** 2, axis=1, keepdims=True))
    if not codes:
        return np.zeros((0, matrix.shape[1] + code_size(loaded) + 1), np.float32)
    return np.concatenate([matrix, np.concatenate(codes), np.concatenate(errors)], axis=1)


def code_size(loaded: LoadedModel) -> int:
    return int(loaded.encoder.output_shape[-1])


def outputs_to_columns(task: str, outputs: np.ndarray) -> tuple[np.ndarray, list | None]:
    """Return (prediction, probabilities) from raw model outputs.

    Regression: the value; binary: the probability of class 1; multiclass: the index of
    the most probable class, with the class probabilities as a list per row.
    """
    if task == "multiclass":
        return outputs.argmax(axis=1).astype(np.float64), [list(map(float, p)) for p in outputs]
    return outputs.reshape(outputs.shape[0], -1)[:, 0].astype(np.float64), None


def score_batches(
    batches: Iterator[pd.DataFrame],
    model_uri: str,
    config: HoyaConfig | None,
    mode: str,
    task: str,
) -> Iterator[pd.DataFrame]:
    """The ``mapInPandas`` function: score each batch; bad rows get a reason."""
    loaded = cached_model(model_uri, config)
    names = loaded.info.get("feature_names")
    for batch in batches:
        matrix, valid, reasons = validate_features(batch["features"], loaded.width, names)
        batch = batch.copy()
        batch[REASON] = reasons
        if mode == "encode":
            encoded = encode_matrix(loaded, matrix).astype(np.float32)
            column: list[Any] = [None] * len(batch)
            for position, row in zip(np.flatnonzero(valid), encoded):
                column[position] = row
            batch["features"] = column
        else:
            prediction, probabilities = outputs_to_columns(task, predict_matrix(loaded, matrix))
            values = np.full(len(batch), np.nan)
            values[valid] = prediction
            for position in np.flatnonzero(valid & ~np.isfinite(values)):
                reasons[position] = "the model returned a NaN or infinite prediction"
            batch[REASON] = reasons
            # A Float64 array turns NaN into null, so unscored rows read back as null.
            batch[PREDICTION] = pd.array(values, dtype="Float64")
            if task == "multiclass":
                column = [None] * len(batch)
                for position, row in zip(np.flatnonzero(valid), probabilities or []):
                    column[position] = row
                batch[PROBABILITIES] = column
        yield batch


def score_frame(frame: Any, model_uri: str, config: HoyaConfig | None, mode: str, task: str):
    """Return ``frame`` with the scoring columns of ``mode`` added, computed by mapInPandas."""
    from pyspark.sql import types as T

    fields = list(frame.schema.fields)
    if mode == "encode":
        fields = [f for f in fields if f.name != REASON]
    else:
        fields.append(T.StructField(PREDICTION, T.DoubleType(), True))
        if task == "multiclass":
            fields.append(T.StructField(PROBABILITIES, T.ArrayType(T.DoubleType()), True))
    fields.append(T.StructField(REASON, T.StringType(), True))
    schema = T.StructType(fields)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        yield from score_batches(batches, model_uri, config, mode, task)

    return frame.mapInPandas(run, schema)


def score_locally(model_uri: str, features: np.ndarray, config: HoyaConfig | None = None):
    """Return the raw model outputs for a matrix in this process (the reference for Spark)."""
    return predict_matrix(cached_model(model_uri, config), features.astype(np.float32))
