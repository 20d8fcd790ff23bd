"""One rank's training run: data shards, model, resume from checkpoint, fit, model directory."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import horovod.tensorflow as hvd_tf
import numpy as np
import tensorflow as tf

from pipelines.train import data as tdata
from pipelines.train.models import build_model, make_optimizer
from pipelines.train.modeldir import upload_tree, write_model_json

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
CRASH_EXIT_CODE = 17


def _write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2), "utf-8")
    os.replace(tmp, path)  # a crash mid-write leaves the previous state intact


def _clean_logs(epoch: int, logs: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": epoch, **{k: float(v) for k, v in logs.items() if k != "lr"}}


class CheckpointCallback(tf.keras.callbacks.Callback):
    """Rank 0: save weights and optimizer state after each epoch, then the resume state."""

    def __init__(self, run: "TrainingRun"):
        super().__init__()
        self.run = run

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        run = self.run
        record = _clean_logs(epoch + 1, logs or {})
        # Training and validation time of the epoch, before the checkpoint is written.
        record["seconds"] = round(time.perf_counter() - self.started, 4)
        run.history.append(record)
        prefix = run.checkpoint_dir / f"epoch-{epoch + 1:04d}"
        run.checkpoint.write(str(prefix))
        monitored = record.get(run.monitor)
        if monitored is not None and (run.best is None or monitored < run.best):
            run.best = monitored
            self.model.save_weights(str(run.checkpoint_dir / "best"))
        _write_json_atomic(
            run.checkpoint_dir / STATE_FILE,
            {"epoch": epoch + 1, "checkpoint": prefix.name, "history": run.history,
             "best": run.best},
        )
        log.info("epoch %d checkpoint %s: %s", epoch + 1, prefix, record)
        if run.args.crash_after_epoch == epoch + 1:
            log.warning("exiting after epoch %d as --crash-after-epoch requests", epoch + 1)
            logging.shutdown()
            os._exit(CRASH_EXIT_CODE)


class ResumableEarlyStopping(tf.keras.callbacks.Callback):
    """Stop when the monitored, rank-averaged loss has not improved for ``patience`` epochs.

    Unlike Keras' EarlyStopping it starts from the history of a resumed run, and every rank
    takes the same decision because MetricAverageCallback runs first.
    """

    def __init__(self, monitor: str, patience: int, history: list[dict[str, Any]]):
        super().__init__()
        self.monitor, self.patience = monitor, patience
        values = [h[monitor] for h in history if monitor in h]
        self.best = min(values) if values else math.inf
        self.wait = len(values) - 1 - int(np.argmin(values)) if values else 0
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        if value < self.best:
            self.best, self.wait = float(value), 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True
            log.info("early stopping after epoch %d: %s did not improve for %d epochs",
                     epoch + 1, self.monitor, self.patience)


class TrainingRun:
    """The steps of one rank's run; rank 0 also owns checkpoints and the model directory."""

    def __init__(self, args: Any, model_spec: Any, settings: Any, manifest: dict[str, Any], hvd):
        self.args, self.spec, self.settings, self.manifest, self.hvd = (
            args, model_spec, settings, manifest, hvd
        )
        self.rank, self.size = hvd.rank(), hvd.size()
        self.run_dir = Path(args.run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.width = math.prod(manifest["feature_shape"])
        self.history: list[dict[str, Any]] = []
        self.best: float | None = None
        self.monitor = "val_loss"
        self.initial_epoch = 0

    # Data.

    def _shard(self, split: str, per_rank: bool) -> tdata.Shard:
        rank, size = (self.rank, self.size) if per_rank else (0, 1)
        # Copies of HDFS part files are needed only until the rows are in memory.
        with tempfile.TemporaryDirectory(prefix=f"hoya-{split}-") as tmp:
            files = tdata.local_split_files(self.args.dataset, split, cache_dir=Path(tmp))
            where = f"{self.args.dataset}/{split}"
            shard = tdata.load_shard(files, self.width, rank, size, where)
        return shard if self.built.reconstructs_input else tdata.labelled(shard)

    def _max_over_ranks(self, value: int, name: str) -> int:
        return int(hvd_tf.allreduce(tf.constant(value), op=hvd_tf.Max, name=name).numpy())

    def load_data(self) -> None:
        batch = self.settings.batch_size
        train = self._shard("train", per_rank=True)
        fewest = -self._max_over_ranks(-train.rows, "hoya_min_rows")
        if fewest == 0:
            raise tdata.DatasetError(
                f"a rank has no usable training rows ({train.total_rows} rows in the train "
                f"split for {self.size} ranks); train with fewer ranks (--np) or more data"
            )
        # The rank with the most rows sets the step count; the others repeat their shard.
        self.steps = self._max_over_ranks(tdata.steps_for(train.rows, batch), "hoya_steps")
        self.train_ds = tdata.make_dataset(
            train, batch, self.built.reconstructs_input, self.settings.shuffle,
            seed=self.settings.seed + self.rank, repeat=True,
        )
        splits = self.manifest.get("splits", {})
        val_rows = int(splits.get("validation", {}).get("rows", 0))
        self.val_ds = None
        if val_rows:
            # Tiny validation splits are evaluated whole on every rank, so no rank gets none.
            val = self._shard("validation", per_rank=val_rows >= self.size * batch)
            if val.rows:
                self.val_ds = tdata.make_dataset(val, batch, self.built.reconstructs_input)
        if self.val_ds is None:
            self.monitor = "loss"
            log.warning("no validation rows; early stopping watches the training loss")
        self.train_rows = train.rows
        log.info("rank %d trains on %d rows, %d steps of %d per epoch",
                 self.rank, train.rows, self.steps, batch)

    # Model.

    def build(self) -> None:
        tf.keras.utils.set_random_seed(self.settings.seed)
        self.built = build_model(self.spec, self.manifest)
        self.scaled_lr = self.settings.learning_rate * self.size
        base = make_optimizer(self.settings.optimizer, self.scaled_lr)
        # One rank has no gradients to average, and Horovod's allreduce still costs a round
        # trip through its background thread on every step (about 4 ms on 2 CPU cores).
        self.optimizer = self.hvd.DistributedOptimizer(base) if self.size > 1 else base
        metrics = {"regression": ["mae"], "binary": ["accuracy"], "multiclass": ["accuracy"]}
        task_metrics = [] if self.built.reconstructs_input else metrics[self.manifest["task"]]
        self.built.model.compile(optimizer=self.optimizer, loss=self.built.loss,
                                 metrics=task_metrics)
        self.checkpoint = tf.train.Checkpoint(model=self.built.model, optimizer=self.optimizer)

    def restore(self) -> None:
        """On rank 0 load the last checkpoint, then share the epoch and weights with all ranks."""
        # Create the optimizer's slots and hyper-parameter variables now, on every rank, so
        # the checkpoint restores into them and all ranks broadcast the same variable list.
        self.optimizer._create_all_weights(self.built.model.trainable_variables)  # noqa: SLF001
        state = None
        if self.rank == 0:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            path = self.checkpoint_dir / STATE_FILE
            if path.is_file():
                state = json.loads(path.read_text("utf-8"))
                status = self.checkpoint.read(str(self.checkpoint_dir / state["checkpoint"]))
                status.assert_existing_objects_matched()
                self.history, self.best = state["history"], state["best"]
                log.info("resuming %s from epoch %d", self.run_dir, state["epoch"])
        state = hvd_tf.broadcast_object(state, root_rank=0, name="hoya_resume_state")
        if state:
            self.initial_epoch = int(state["epoch"])
            self.history = state["history"]
        hvd_tf.broadcast_variables(self.built.model.variables, root_rank=0)
        hvd_tf.broadcast_variables(self.optimizer.variables(), root_rank=0)

    def callbacks(self) -> list[tf.keras.callbacks.Callback]:
        hvd = self.hvd
        # restore() has already broadcast rank 0's weights and optimizer state.
        callbacks: list[tf.keras.callbacks.Callback] = [hvd.callbacks.MetricAverageCallback()]
        if self.settings.warmup_epochs and self.size > 1:
            callbacks.append(hvd.callbacks.LearningRateWarmupCallback(
                initial_lr=self.scaled_lr, warmup_epochs=self.settings.warmup_epochs,
                steps_per_epoch=self.steps,
            ))
        if self.settings.early_stopping_patience:
            callbacks.append(ResumableEarlyStopping(
                self.monitor, self.settings.early_stopping_patience, self.history
            ))
        if self.rank == 0:
            callbacks.append(CheckpointCallback(self))
            callbacks.append(tf.keras.callbacks.TensorBoard(
                str(self.run_dir / "tensorboard"), update_freq="epoch", profile_batch=0
            ))
        return callbacks

    # Steps.

    def fit(self) -> None:
        epochs = self.settings.epochs
        if self.initial_epoch >= epochs:
            log.info("checkpoint is at epoch %d of %d; nothing left to train",
                     self.initial_epoch, epochs)
            return
        self.built.model.fit(
            self.train_ds, steps_per_epoch=self.steps, epochs=epochs,
            initial_epoch=self.initial_epoch, validation_data=self.val_ds,
            callbacks=self.callbacks(), verbose=self.args.verbose if self.rank == 0 else 0,
        )

    def dump_weights(self) -> None:
        folder = Path(self.args.dump_weights)
        folder.mkdir(parents=True, exist_ok=True)
        weights = self.built.model.get_weights()
        np.savez(folder / f"weights-rank{self.rank}.npz", *weights)

    def publish(self) -> None:
        """Rank 0: save the best weights as the model directory and upload it if on HDFS."""
        model = self.built.model
        best = self.checkpoint_dir / "best.index"
        if best.is_file():
            model.load_weights(str(self.checkpoint_dir / "best"))
        model.save(str(self.run_dir / "saved_model"), include_optimizer=False)
        if self.built.encoder is not None:
            self.built.encoder.save(str(self.run_dir / "encoder"), include_optimizer=False)
        write_model_json(self.run_dir, self.model_info())
        log.info("wrote model directory %s (%d epochs)", self.run_dir, len(self.history))
        if self.args.publish_uri:
            upload_tree(self.run_dir, self.args.publish_uri)

    def model_info(self) -> dict[str, Any]:
        m = self.manifest
        values = [h[self.monitor] for h in self.history if self.monitor in h]
        return {
            "pipeline": m.get("pipeline"), "version": self.args.version,
            "model_type": self.spec.type, "task": m["task"], "num_classes": m.get("num_classes"),
            "feature_shape": m["feature_shape"], "feature_names": m.get("feature_names"),
            "target_name": m.get("target_name"), "statistics": m.get("statistics"),
            "dataset_uri": self.args.dataset, "dataset_config_hash": m.get("config_hash"),
            "config_hash": file_sha256(self.args.pipeline), "command": command_of(self.args),
            "created_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "model_spec": self.spec.model_dump(mode="json"),
            "train_settings": self.settings.model_dump(mode="json"),
            "ranks": self.size, "steps_per_epoch": self.steps, "loss": self.built.loss,
            "metrics": {"epochs": self.history, "monitor": self.monitor,
                        "best_val_loss": min(values) if values and self.monitor == "val_loss"
                        else None},
        }

    def execute(self) -> None:
        self.build()
        self.load_data()
        self.restore()
        self.fit()
        if self.args.dump_weights:
            self.dump_weights()
        if self.rank == 0:
            self.publish()


def file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def command_of(args: argparse.Namespace) -> list[str]:
    return list(json.loads(args.command_json)) or [sys.executable, "-m", "pipelines.train.worker"]
