"""Real two-rank horovodrun training on small S&P 500 datasets (about 3 minutes in all)."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from pipelines.cli import cli
from pipelines.io.webhdfs import WebHdfs
from pipelines.train import load_model_dir
from pipelines.train.launcher import TrainingError, run_training

from .conftest import build_dataset, write_pipeline

MLP = {"type": "mlp", "layers": [{"units": 32, "activation": "relu"}]}


def split_arrays(dataset: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(dataset / split)
    features = np.stack(table.column("features").to_numpy(zero_copy_only=False))
    return features.astype(np.float32), table.column("target").to_numpy()


def test_mlp_trains_and_ranks_agree(tmp_path, config, regression_dataset):
    dataset, manifest = regression_dataset
    pipeline = write_pipeline(tmp_path, MLP, {"epochs": 5, "learning_rate": 0.002,
                                              "early_stopping_patience": None})
    result = run_training(config, pipeline, str(dataset), str(tmp_path / "models"),
                          extra_worker_args=["--dump-weights", str(tmp_path / "weights")])

    ranks = [np.load(tmp_path / "weights" / f"weights-rank{r}.npz") for r in (0, 1)]
    assert ranks[0].files == ranks[1].files
    for name in ranks[0].files:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name])

    model, info = load_model_dir(result.model_uri)
    epochs = info["metrics"]["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5]
    features, target = split_arrays(dataset, "validation")
    _, train_target = split_arrays(dataset, "train")
    # Bound: 80% of the error of always predicting the training mean; 5 epochs reach ~65%.
    mean_baseline = float(np.mean((target - np.nanmean(train_target)) ** 2))
    assert info["metrics"]["best_val_loss"] < 0.8 * mean_baseline
    # The saved model contains the best epoch's weights, and the two ranks' validation halves
    # are equal in size, so the rank-averaged val_loss equals the MSE over the whole split.
    mse = float(np.mean((model.predict(features, verbose=0).ravel() - target) ** 2))
    assert mse == pytest.approx(info["metrics"]["best_val_loss"], rel=1e-4)

    assert info["version"] == result.version
    assert info["feature_shape"] == [10, 3]
    assert info["feature_names"] == manifest["feature_names"]
    assert info["statistics"] == manifest["statistics"]
    assert info["dataset_uri"] == str(dataset)
    assert len(info["config_hash"]) == 64
    assert info["ranks"] == 2
    run_dir = Path(result.model_uri)
    assert (run_dir / "checkpoints" / "epoch-0005.index").is_file()
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))


def test_killed_run_resumes(tmp_path, config, regression_dataset):
    dataset, _ = regression_dataset
    pipeline = write_pipeline(tmp_path, MLP, {"epochs": 3, "early_stopping_patience": None})
    models = str(tmp_path / "models")
    with pytest.raises(TrainingError, match="Rerun with --version v"):
        run_training(config, pipeline, str(dataset), models, version="v20260101T000000",
                     extra_worker_args=["--crash-after-epoch", "1"])
    run_dir = Path(models) / "train_test" / "v20260101T000000"
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1
    assert not (run_dir / "model.json").exists()

    run_training(config, pipeline, str(dataset), models, version="v20260101T000000")
    _, info = load_model_dir(str(run_dir))
    epochs = info["metrics"]["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert epochs[0] == state["history"][0]  # epoch 1 comes from the killed run
    assert epochs[2]["loss"] < epochs[0]["loss"]


CASES = {
    # model type: (task, windowed, model section)
    "linear_regression": ("regression", False, {"type": "linear_regression"}),
    "logistic_regression": ("binary", False, {"type": "logistic_regression"}),
    "softmax": ("multiclass", False, {"type": "softmax"}),
    "mlp_bn_dropout": ("binary", True, {"type": "mlp", "layers": [
        {"units": 16, "activation": "tanh", "dropout": 0.2, "batch_norm": True}]}),
    "autoencoder": ("regression", False, {"type": "autoencoder", "encoder": [16],
                                          "code_size": 4, "denoising": True}),
    "cnn1d": ("regression", True, {"type": "cnn1d", "conv_layers": [
        {"filters": 8, "kernel": 3, "pooling": "max"}], "dense": [{"units": 8}]}),
    "lstm": ("regression", True, {"type": "lstm", "units": 8}),
    "gru": ("multiclass", True, {"type": "gru", "units": 8, "layers": 2}),
}
OUTPUT_WIDTH = {"regression": 1, "binary": 1, "multiclass": 3}


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(CASES))
def test_model_type_trains(case, tmp_path, config):
    task, windowed, model_section = CASES[case]
    dataset = tmp_path / "dataset"
    build_dataset(dataset, task, windowed=windowed, tickers=("AAPL",), train_parts=1)
    pipeline = write_pipeline(tmp_path, model_section, {"epochs": 2, "batch_size": 32,
                                                        "learning_rate": 0.003})
    result = run_training(config, pipeline, str(dataset), str(tmp_path / "models"))

    model, info = load_model_dir(result.model_uri)
    losses = [e["loss"] for e in info["metrics"]["epochs"]]
    assert len(losses) == 2
    assert all(math.isfinite(v) for v in losses)
    assert losses[1] < losses[0]
    features, _ = split_arrays(dataset, "test")
    predictions = model.predict(features, verbose=0)
    if model_section["type"] == "autoencoder":
        assert predictions.shape == features.shape
        assert info["encoder"].predict(features, verbose=0).shape == (len(features), 4)
    else:
        assert predictions.shape == (len(features), OUTPUT_WIDTH[task])


def test_hdfs_dataset_and_models_root(tmp_path, stack, regression_dataset):
    dataset, _ = regression_dataset
    client = WebHdfs.from_config(stack)
    root = f"{stack.hdfs.uri}/tmp/hoya-train-test-{uuid.uuid4().hex[:8]}"
    try:
        for path in sorted(dataset.rglob("*")):
            if path.is_file():
                client.write(f"{root}/dataset/{path.relative_to(dataset).as_posix()}",
                             path.read_bytes())
        pipeline = write_pipeline(tmp_path, {"type": "linear_regression"}, {"epochs": 1})
        result = run_training(stack, pipeline, f"{root}/dataset", f"{root}/models")
        assert result.model_uri == f"{root}/models/train_test/{result.version}"
        assert client.exists(f"{result.model_uri}/checkpoints/state.json")
        model, info = load_model_dir(result.model_uri, stack, cache_dir=tmp_path / "copy")
        assert info["dataset_uri"] == f"{root}/dataset"
        assert model.predict(np.zeros((2, 30), np.float32), verbose=0).shape == (2, 1)
    finally:
        client.delete(root, recursive=True)


def test_cli_rejects_invalid_spec(tmp_path, regression_dataset):
    dataset, _ = regression_dataset
    pipeline = write_pipeline(tmp_path, {"type": "lstm", "units": 4, "input_width": 12}, {})
    result = CliRunner().invoke(cli, [
        "train", "--pipeline", str(pipeline), "--dataset", str(dataset),
        "--models-root", str(tmp_path / "models")], obj={})
    assert result.exit_code == 2
    assert "model.input_width = 12 does not match" in result.output
    assert not (tmp_path / "models").exists()


def test_cli_rejects_bad_version(tmp_path, regression_dataset):
    dataset, _ = regression_dataset
    pipeline = write_pipeline(tmp_path, MLP, {})
    result = CliRunner().invoke(cli, [
        "train", "--pipeline", str(pipeline), "--dataset", str(dataset),
        "--models-root", str(tmp_path / "models"), "--version", "../v1"], obj={})
    assert result.exit_code == 2
    assert "--version = '../v1' is invalid" in result.output
    assert not (tmp_path / "models").exists()
