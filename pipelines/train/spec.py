"""The ``model`` and ``train`` sections of a pipeline file, and their checks against a dataset.

This module needs only pydantic, because ``pipelines/spec.py`` imports it and the Airflow
environment imports that file to build DAGs.

Example::

    model:
      type: mlp
      input_width: 90            # optional; must equal prod(feature_shape) of the dataset
      layers:
        - {units: 64, activation: relu, dropout: 0.1, batch_norm: true}
        - {units: 32, activation: tanh}
      loss: mse
    train:
      optimizer: adam
      learning_rate: 0.001       # per rank; HOYA multiplies it by the number of ranks
      warmup_epochs: 2
      batch_size: 64             # per rank
      epochs: 20
      early_stopping_patience: 3
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

Activation = Literal["relu", "sigmoid", "tanh"]
Task = Literal["regression", "binary", "multiclass"]

REGRESSION_LOSSES = ("mse", "mae", "huber", "log_cosh")
LOSSES_BY_TASK: dict[str, tuple[str, ...]] = {
    "regression": REGRESSION_LOSSES,
    "binary": ("binary_crossentropy",),
    "multiclass": ("sparse_categorical_crossentropy",),
}
ALL_LOSSES = Literal[
    "mse", "mae", "huber", "log_cosh", "binary_crossentropy",
    "sparse_categorical_crossentropy", "categorical_crossentropy",
]


class ModelSpecError(ValueError):
    """A model or train section does not fit; the message names the key, the value and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DenseLayer(_Section):
    units: int = Field(ge=1, le=65536, description="neurons in the layer, from 1 to 65536")
    activation: Activation = Field("relu", description="relu, sigmoid or tanh")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout rate after the layer, 0 to <1")
    batch_norm: bool = Field(False, description="true to add batch normalization after the layer")


class ConvLayer(_Section):
    filters: int = Field(ge=1, le=4096, description="output channels, from 1 to 4096")
    kernel: int = Field(3, ge=1, le=256, description="kernel length in time steps, 1 to 256")
    activation: Activation = Field("relu", description="relu, sigmoid or tanh")
    pooling: Literal["max", "avg", "none"] = Field("max", description="max, avg or none")
    pool_size: int = Field(2, ge=1, le=64, description="pooling window in time steps, 1 to 64")


class _ModelBase(_Section):
    input_width: int | None = Field(
        None, ge=1, description="flat feature count, prod(feature_shape) of the dataset, or null"
    )
    loss: ALL_LOSSES | None = Field(
        None,
        description="mse, mae, huber or log_cosh for regression; binary_crossentropy for "
        "binary; sparse_categorical_crossentropy for multiclass; null picks the default",
    )


class LinearRegressionSpec(_ModelBase):
    type: Literal["linear_regression"]


class LogisticRegressionSpec(_ModelBase):
    type: Literal["logistic_regression"]


class SoftmaxSpec(_ModelBase):
    type: Literal["softmax"]


class MlpSpec(_ModelBase):
    type: Literal["mlp"]
    layers: list[DenseLayer] = Field(min_length=1, description="at least one dense layer")


class AutoencoderSpec(_ModelBase):
    type: Literal["autoencoder"]
    encoder: list[int] = Field(
        default_factory=list, description="units of the encoder's dense layers, outer first"
    )
    code_size: int = Field(ge=1, le=65536, description="width of the code layer")
    activation: Activation = Field("relu", description="relu, sigmoid or tanh")
    denoising: bool = Field(False, description="true to add Gaussian noise to inputs in training")
    noise_stddev: float = Field(0.1, gt=0.0, le=10.0, description="noise stddev, >0 to 10")


class Cnn1dSpec(_ModelBase):
    type: Literal["cnn1d"]
    conv_layers: list[ConvLayer] = Field(min_length=1, description="at least one conv layer")
    dense: list[DenseLayer] = Field(default_factory=list, description="dense layers after conv")


class RecurrentSpec(_ModelBase):
    type: Literal["lstm", "gru"]
    units: int = Field(32, ge=1, le=4096, description="units per recurrent layer, 1 to 4096")
    layers: int = Field(1, ge=1, le=8, description="stacked recurrent layers, 1 to 8")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the last output, 0 to <1")


ModelSpec = Annotated[
    Union[
        LinearRegressionSpec, LogisticRegressionSpec, SoftmaxSpec, MlpSpec,
        AutoencoderSpec, Cnn1dSpec, RecurrentSpec,
    ],
    Field(discriminator="type"),
]
MODEL_TYPES = (
    "linear_regression", "logistic_regression", "softmax", "mlp", "autoencoder", "cnn1d",
    "lstm", "gru",
)
WINDOWED_TYPES = {"cnn1d", "lstm", "gru"}
# The task each single-purpose model type is for; the others fit every task.
TASK_OF_TYPE = {
    "linear_regression": "regression", "logistic_regression": "binary", "softmax": "multiclass",
}


class TrainSettings(_Section):
    optimizer: Literal["adam", "sgd", "rmsprop"] = Field("adam", description="adam, sgd or rmsprop")
    learning_rate: float = Field(
        0.001, gt=0.0, le=10.0, description="per-rank rate, >0 to 10; scaled by the rank count"
    )
    warmup_epochs: int = Field(
        1, ge=0, le=100, description="epochs to ramp the rate from 1x to N ranks x, 0 to 100"
    )
    batch_size: int = Field(64, ge=1, le=1_000_000, description="rows per batch on each rank")
    epochs: int = Field(10, ge=1, le=100_000, description="maximum epochs, at least 1")
    early_stopping_patience: int | None = Field(
        3, ge=1, description="epochs without a lower val_loss before stopping, or null for none"
    )
    shuffle: bool = Field(
        True, description="true to visit each rank's rows in a new order every epoch"
    )
    seed: int = Field(42, ge=0, description="random seed for weights, shuffling and noise")


_MODEL_ADAPTER: TypeAdapter[Any] = TypeAdapter(ModelSpec)


def _describe(error: dict[str, Any], prefix: str) -> str:
    key = ".".join([prefix, *(str(part) for part in error["loc"])])
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'; remove it or check its spelling"
    if error["type"] == "missing":
        return f"missing key '{key}'; add it"
    if error["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        raw = error.get("input")
        value = raw.get("type") if isinstance(raw, dict) else raw
        return f"{key}.type = {value!r} is invalid; allowed: {', '.join(MODEL_TYPES)}"
    return f"{key} = {error.get('input')!r} is invalid: {error['msg']}"


def parse_model_spec(data: Any) -> Any:
    """Validate a ``model`` mapping into one of the model spec classes; raise ModelSpecError."""
    try:
        return _MODEL_ADAPTER.validate_python(data)
    except ValidationError as err:
        raise ModelSpecError("\n".join(_describe(e, "model") for e in err.errors())) from None


def parse_train_settings(data: Any) -> TrainSettings:
    """Validate a ``train`` mapping; raise ModelSpecError naming every bad key."""
    try:
        return TrainSettings.model_validate(data or {})
    except ValidationError as err:
        raise ModelSpecError("\n".join(_describe(e, "train") for e in err.errors())) from None


def default_loss(model_type: str, task: str) -> str:
    """Return the loss used when the spec gives none."""
    if model_type == "autoencoder":
        return "mse"
    return LOSSES_BY_TASK[task][0]


def resolved_loss(spec: Any, task: str) -> str:
    return spec.loss or default_loss(spec.type, task)


def validate_against_manifest(spec: Any, manifest: dict[str, Any]) -> None:
    """Check that ``spec`` fits the dataset described by ``manifest``; raise ModelSpecError.

    Collects every mismatch (input width, windowing, task and loss) into one message, so a
    pipeline file can be fixed in one pass before any rank starts.
    """
    problems = (
        _check_shape(spec, manifest) + _check_task(spec, manifest) + _check_loss(spec, manifest)
    )
    if problems:
        raise ModelSpecError("\n".join(problems))


def _check_shape(spec: Any, manifest: dict[str, Any]) -> list[str]:
    shape = manifest.get("feature_shape")
    if not isinstance(shape, list) or not shape or not all(
        isinstance(n, int) and n >= 1 for n in shape
    ):
        return [f"manifest feature_shape = {shape!r} is invalid; rebuild the dataset"]
    width = math.prod(shape)
    problems = []
    if spec.input_width is not None and spec.input_width != width:
        problems.append(
            f"model.input_width = {spec.input_width} does not match the dataset, whose "
            f"feature_shape {shape} has {width} features; set model.input_width: {width} "
            "or remove the key"
        )
    if spec.type in WINDOWED_TYPES and len(shape) != 2:
        problems.append(
            f"model.type = {spec.type!r} needs a windowed dataset with feature_shape "
            f"[steps, channels], but the dataset has feature_shape {shape}; use type mlp, "
            "or preprocess with a window"
        )
    if spec.type == "cnn1d" and len(shape) == 2:
        problems += _check_conv_length(spec, shape[0])
    if spec.type == "autoencoder" and spec.code_size >= width:
        problems.append(
            f"model.code_size = {spec.code_size} must be smaller than the input width {width}; "
            "choose a smaller code_size"
        )
    return problems


def _check_conv_length(spec: Cnn1dSpec, steps: int) -> list[str]:
    """Reject conv stacks whose kernels and pooling shrink the window below one step."""
    length = steps
    for index, layer in enumerate(spec.conv_layers):
        if layer.kernel > length:
            return [
                f"model.conv_layers.{index}.kernel = {layer.kernel} is longer than the "
                f"{length} time steps left at that layer (window {steps}); use a smaller "
                "kernel or pool_size, or fewer conv layers"
            ]
        length -= layer.kernel - 1
        if layer.pooling != "none":
            length //= layer.pool_size
        if length < 1:
            return [
                f"model.conv_layers.{index}.pool_size = {layer.pool_size} leaves no time "
                f"steps of the window of {steps}; use a smaller pool_size or pooling: none"
            ]
    return []


def _check_task(spec: Any, manifest: dict[str, Any]) -> list[str]:
    task = manifest.get("task")
    if task not in LOSSES_BY_TASK:
        return [
            f"manifest task = {task!r} is invalid; allowed: regression, binary, multiclass; "
            "rebuild the dataset"
        ]
    if task == "multiclass" and not (
        isinstance(manifest.get("num_classes"), int) and manifest["num_classes"] >= 2
    ):
        return [
            f"manifest num_classes = {manifest.get('num_classes')!r} is invalid for a "
            "multiclass dataset; it must be an integer of at least 2, so rebuild the dataset"
        ]
    wanted = TASK_OF_TYPE.get(spec.type)
    if wanted and wanted != task:
        better = {v: k for k, v in TASK_OF_TYPE.items()}[task]
        return [
            f"model.type = {spec.type!r} is for {wanted} targets, but the dataset's task is "
            f"{task!r} (target {manifest.get('target_name')!r}); use type {better} or mlp"
        ]
    return []


def _check_loss(spec: Any, manifest: dict[str, Any]) -> list[str]:
    task = manifest.get("task")
    if spec.loss is None or task not in LOSSES_BY_TASK:
        return []
    allowed = REGRESSION_LOSSES if spec.type == "autoencoder" else LOSSES_BY_TASK[task]
    if spec.loss in allowed:
        return []
    what = "an autoencoder's reconstruction" if spec.type == "autoencoder" else f"a {task} target"
    hint = ""
    if spec.loss == "categorical_crossentropy" and task == "multiclass":
        hint = " (targets are class indices, not one-hot vectors)"
    return [
        f"model.loss = {spec.loss!r} does not fit {what}{hint}; allowed: "
        f"{', '.join(allowed)}; set one of them or remove model.loss for the default "
        f"{default_loss(spec.type, task)}"
    ]


__all__ = [
    "AutoencoderSpec", "Cnn1dSpec", "ConvLayer", "DenseLayer", "LinearRegressionSpec",
    "LogisticRegressionSpec", "MlpSpec", "ModelSpec", "ModelSpecError", "RecurrentSpec",
    "SoftmaxSpec", "TrainSettings", "parse_model_spec", "parse_train_settings",
    "resolved_loss", "validate_against_manifest",
]
