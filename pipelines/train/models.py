"""Build Keras models from a validated model spec and a dataset manifest.

Every model takes the flat ``features`` array, shape ``(batch, prod(feature_shape))``, and
reshapes it itself, so the predict stage feeds the Parquet column as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from pipelines.train.spec import DenseLayer, resolved_loss


@dataclass
class BuiltModel:
    model: tf.keras.Model
    encoder: tf.keras.Model | None
    loss: str
    # True when the model learns to reproduce its input, so the target column is unused.
    reconstructs_input: bool


def _output_layer(task: str, num_classes: int | None) -> tf.keras.layers.Layer:
    if task == "binary":
        return tf.keras.layers.Dense(1, activation="sigmoid", name="output")
    if task == "multiclass":
        return tf.keras.layers.Dense(num_classes, activation="softmax", name="output")
    return tf.keras.layers.Dense(1, name="output")


def _dense_stack(x: tf.Tensor, layers: list[DenseLayer], prefix: str) -> tf.Tensor:
    for index, layer in enumerate(layers):
        x = tf.keras.layers.Dense(
            layer.units, activation=layer.activation, name=f"{prefix}_dense_{index}"
        )(x)
        if layer.batch_norm:
            x = tf.keras.layers.BatchNormalization(name=f"{prefix}_bn_{index}")(x)
        if layer.dropout:
            x = tf.keras.layers.Dropout(layer.dropout, name=f"{prefix}_dropout_{index}")(x)
    return x


def _windowed(x: tf.Tensor, shape: list[int]) -> tf.Tensor:
    # Flat features are time-major (step 0's channels, then step 1's), so this is a plain
    # row-major reshape to [steps, channels].
    return tf.keras.layers.Reshape(tuple(shape), name="window")(x)


def _cnn1d_body(spec: Any, x: tf.Tensor, shape: list[int]) -> tf.Tensor:
    x = _windowed(x, shape)
    for index, conv in enumerate(spec.conv_layers):
        x = tf.keras.layers.Conv1D(
            conv.filters, conv.kernel, activation=conv.activation, name=f"conv_{index}"
        )(x)
        if conv.pooling == "max":
            x = tf.keras.layers.MaxPooling1D(conv.pool_size, name=f"pool_{index}")(x)
        elif conv.pooling == "avg":
            x = tf.keras.layers.AveragePooling1D(conv.pool_size, name=f"pool_{index}")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    return _dense_stack(x, spec.dense, "head")


def _recurrent_body(spec: Any, x: tf.Tensor, shape: list[int]) -> tf.Tensor:
    x = _windowed(x, shape)
    cell = tf.keras.layers.LSTM if spec.type == "lstm" else tf.keras.layers.GRU
    for index in range(spec.layers):
        last = index == spec.layers - 1
        x = cell(spec.units, return_sequences=not last, name=f"{spec.type}_{index}")(x)
    if spec.dropout:
        x = tf.keras.layers.Dropout(spec.dropout, name="dropout")(x)
    return x


def _autoencoder(spec: Any, inputs: tf.Tensor, width: int) -> tuple[tf.keras.Model, tf.keras.Model]:
    x = inputs
    if spec.denoising:
        # GaussianNoise is active only in training, so the saved model reconstructs clean input.
        x = tf.keras.layers.GaussianNoise(spec.noise_stddev, name="noise")(x)
    for index, units in enumerate(spec.encoder):
        x = tf.keras.layers.Dense(units, activation=spec.activation, name=f"encoder_{index}")(x)
    code = tf.keras.layers.Dense(spec.code_size, name="code")(x)
    y = code
    for index, units in enumerate(reversed(spec.encoder)):
        y = tf.keras.layers.Dense(units, activation=spec.activation, name=f"decoder_{index}")(y)
    outputs = tf.keras.layers.Dense(width, name="reconstruction")(y)
    model = tf.keras.Model(inputs, outputs, name="autoencoder")
    encoder = tf.keras.Model(inputs, code, name="encoder")
    return model, encoder


def build_model(spec: Any, manifest: dict[str, Any]) -> BuiltModel:
    """Build the uncompiled Keras model that ``spec`` describes for the manifest's dataset."""
    shape = list(manifest["feature_shape"])
    width = math.prod(shape)
    task = manifest["task"]
    loss = resolved_loss(spec, task)
    inputs = tf.keras.Input(shape=(width,), name="features")

    if spec.type == "autoencoder":
        model, encoder = _autoencoder(spec, inputs, width)
        return BuiltModel(model, encoder, loss, reconstructs_input=True)

    if spec.type == "mlp":
        body = _dense_stack(inputs, spec.layers, "hidden")
    elif spec.type == "cnn1d":
        body = _cnn1d_body(spec, inputs, shape)
    elif spec.type in {"lstm", "gru"}:
        body = _recurrent_body(spec, inputs, shape)
    else:  # linear_regression, logistic_regression, softmax: the output layer alone
        body = inputs
    outputs = _output_layer(task, manifest.get("num_classes"))(body)
    model = tf.keras.Model(inputs, outputs, name=spec.type)
    return BuiltModel(model, None, loss, reconstructs_input=False)


def make_optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
    """Return a legacy Keras optimizer.

    The legacy classes can create every slot variable before the first step
    (``_create_all_weights``), so a checkpoint restores into them and all ranks broadcast
    the same variables before training starts.
    """
    classes = {
        "adam": tf.keras.optimizers.legacy.Adam,
        "sgd": tf.keras.optimizers.legacy.SGD,
        "rmsprop": tf.keras.optimizers.legacy.RMSprop,
    }
    return classes[name](learning_rate=learning_rate)
