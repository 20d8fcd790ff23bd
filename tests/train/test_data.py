"""Rank shards and the tf.data pipeline, on a small real dataset; no ranks are started."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from pipelines.train import data as tdata


def test_shards_are_disjoint_and_complete(regression_dataset):
    dataset, manifest = regression_dataset
    files = tdata.local_split_files(str(dataset), "train")
    assert [f.name for f in files] == ["part-00000.parquet", "part-00001.parquet"]
    shards = [tdata.load_shard(files, 30, rank, 3, "train") for rank in range(3)]
    rows = manifest["splits"]["train"]["rows"]
    assert [s.rows for s in shards] == [rows * (r + 1) // 3 - rows * r // 3 for r in range(3)]
    assert all(s.total_rows == rows for s in shards)
    table = pq.read_table(dataset / "train")
    expected = np.stack(table.column("features").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(np.concatenate([s.features for s in shards]), expected)


def test_labelled_drops_null_targets(regression_dataset):
    dataset, manifest = regression_dataset
    files = tdata.local_split_files(str(dataset), "test")
    shard = tdata.load_shard(files, 30, 0, 1, "test")
    kept = tdata.labelled(shard)
    assert shard.rows == manifest["splits"]["test"]["rows"]
    assert kept.rows == manifest["splits"]["test"]["labelled_rows"]
    assert not np.isnan(kept.target).any()


def test_dataset_visits_every_row_each_epoch():
    features = np.arange(50, dtype=np.float32).reshape(25, 2)
    shard = tdata.Shard(features, np.arange(25, dtype=np.float32), 25)
    dataset = tdata.make_dataset(shard, 8, False, shuffle=True, seed=3, repeat=True)
    batches = list(dataset.take(8).as_numpy_iterator())  # 4 batches per epoch: 8, 8, 8, 1
    assert [len(x) for x, _ in batches] == [8, 8, 8, 1, 8, 8, 8, 1]
    epochs = [np.concatenate([y.ravel() for _, y in batches[i:i + 4]]) for i in (0, 4)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(25))
    assert epochs[0].tolist() != epochs[1].tolist()  # reshuffled
    for x, y in batches:
        np.testing.assert_array_equal(x[:, 0], y.ravel() * 2)  # rows stay paired with targets


def test_autoencoder_dataset_targets_are_features():
    features = np.ones((5, 3), np.float32) * np.arange(5, dtype=np.float32)[:, None]
    shard = tdata.Shard(features, np.full(5, np.nan, np.float32), 5)
    x, y = next(tdata.make_dataset(shard, 5, True).as_numpy_iterator())
    np.testing.assert_array_equal(x, features)
    np.testing.assert_array_equal(y, features)
