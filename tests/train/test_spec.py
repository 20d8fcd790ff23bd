"""Model spec validation and the horovodrun command line; no ranks are started."""

from __future__ import annotations

import pytest

from pipelines.config import HorovodHost, HorovodSettings
from pipelines.spec import SpecError, load_spec
from pipelines.train.launcher import build_horovod_command
from pipelines.train.spec import (
    ModelSpecError, parse_model_spec, parse_train_settings, validate_against_manifest,
)

WINDOWED = {
    "task": "regression", "feature_shape": [10, 3], "target_name": "rv5", "num_classes": None,
}
FLAT = {**WINDOWED, "feature_shape": [30]}
MLP = {"type": "mlp", "layers": [{"units": 8}]}


def rejected(model: dict, manifest: dict | None = None) -> str:
    with pytest.raises(ModelSpecError) as info:
        spec = parse_model_spec(model)
        validate_against_manifest(spec, manifest or WINDOWED)
    return str(info.value)


def test_valid_specs_pass():
    for model in (
        MLP,
        {"type": "cnn1d", "conv_layers": [{"filters": 4, "kernel": 3}], "input_width": 30},
        {"type": "lstm", "units": 8, "layers": 2},
        {"type": "autoencoder", "encoder": [16], "code_size": 4, "denoising": True},
        {"type": "linear_regression", "loss": "huber"},
    ):
        validate_against_manifest(parse_model_spec(model), WINDOWED)


def test_unknown_model_type():
    message = rejected({"type": "transformer"})
    assert "model.type = 'transformer' is invalid" in message
    assert "mlp" in message
    assert "lstm" in message


def test_unknown_activation():
    message = rejected({"type": "mlp", "layers": [{"units": 8, "activation": "gelu"}]})
    assert "model.mlp.layers.0.activation = 'gelu' is invalid" in message
    assert "'relu', 'sigmoid' or 'tanh'" in message


def test_unknown_layer_key():
    message = rejected({"type": "mlp", "layers": [{"units": 8, "kind": "conv"}]})
    assert "unknown key 'model.mlp.layers.0.kind'" in message


def test_input_width_mismatch():
    message = rejected({**MLP, "input_width": 20})
    assert "model.input_width = 20 does not match" in message
    assert "set model.input_width: 30" in message


def test_loss_wrong_for_regression():
    message = rejected({**MLP, "loss": "categorical_crossentropy"})
    assert "model.loss = 'categorical_crossentropy' does not fit a regression target" in message
    assert "allowed: mse, mae, huber, log_cosh" in message


def test_categorical_loss_on_class_indices():
    manifest = {**WINDOWED, "task": "multiclass", "num_classes": 3}
    message = rejected({**MLP, "loss": "categorical_crossentropy"}, manifest)
    assert "class indices" in message
    assert "allowed: sparse_categorical_crossentropy" in message


def test_lstm_needs_windowed_dataset():
    message = rejected({"type": "lstm", "units": 8}, FLAT)
    assert "model.type = 'lstm' needs a windowed dataset" in message
    assert "feature_shape [30]" in message


def test_model_type_task_mismatch():
    message = rejected({"type": "logistic_regression"})
    assert "is for binary targets, but the dataset's task is 'regression'" in message
    assert "use type linear_regression" in message


def test_conv_kernel_longer_than_window():
    message = rejected({"type": "cnn1d", "conv_layers": [
        {"filters": 4, "kernel": 3, "pool_size": 4}, {"filters": 4, "kernel": 3}]})
    assert "model.conv_layers.1.kernel = 3 is longer than the 2 time steps" in message


def test_autoencoder_code_not_smaller():
    message = rejected({"type": "autoencoder", "code_size": 30})
    assert "model.code_size = 30 must be smaller than the input width 30" in message


def test_several_problems_reported_together():
    message = rejected({"type": "lstm", "input_width": 7, "loss": "binary_crossentropy"}, FLAT)
    assert len(message.splitlines()) == 3


def test_train_settings_bounds():
    with pytest.raises(ModelSpecError) as info:
        parse_train_settings({"optimizer": "adagrad", "batch_size": 0})
    message = str(info.value)
    assert "train.optimizer = 'adagrad' is invalid" in message
    assert "train.batch_size = 0 is invalid" in message


def test_pipeline_file_model_section(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("name: demo\nmodel: {type: gru, units: 4}\ntrain: {epochs: 2}\n")
    spec = load_spec(path)
    assert spec.model.type == "gru"
    assert spec.train.epochs == 2
    path.write_text("name: demo\nmodel: {type: gru, unit: 4}\n")
    with pytest.raises(SpecError, match="unknown key 'model.gru.unit'"):
        load_spec(path)


def test_horovod_command_is_argument_list():
    horovod = HorovodSettings(
        hosts=[HorovodHost(host="gpu-1", slots=4, gpus=4), HorovodHost(host="gpu-2", slots=4)],
        network_interface="eth0", ssh_port=2222,
    )
    command = build_horovod_command(horovod, ["--dataset", "/d x; rm -rf /"], python="py")
    assert command[1:] == [
        "-np", "8", "-H", "gpu-1:4,gpu-2:4", "--gloo", "--network-interface", "eth0",
        "-p", "2222", "py", "-m", "pipelines.train.worker", "--dataset", "/d x; rm -rf /",
    ]
    # Only the slots in use are listed: horovodrun with Gloo starts one rank per listed slot.
    assert build_horovod_command(horovod, [], num_ranks=3, python="py")[1:5] == [
        "-np", "3", "-H", "gpu-1:3"]
    assert build_horovod_command(horovod, [], num_ranks=6, python="py")[4] == "gpu-1:4,gpu-2:2"
    with pytest.raises(ModelSpecError, match="--np = 9 is invalid"):
        build_horovod_command(horovod, [], num_ranks=9)
