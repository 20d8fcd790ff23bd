"""The training program that ``horovodrun`` starts on every rank.

Run through :mod:`pipelines.train.launcher`; by hand::

    horovodrun -np 2 -H localhost:2 --gloo python -m pipelines.train.worker \\
        --pipeline conf/pipelines/x.yaml --dataset /data/x --run-dir /models/x/v1 ...

Rank 0 writes checkpoints, TensorBoard logs and the model directory. Every rank reads its
own contiguous shard of the Parquet split and runs the same number of steps per epoch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("pipelines.train.worker")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.train.worker")
    parser.add_argument("--pipeline", required=True, help="pipeline YAML file")
    parser.add_argument("--dataset", required=True, help="dataset folder, local or hdfs://")
    parser.add_argument("--run-dir", required=True, help="local folder the run writes to")
    parser.add_argument("--publish-uri", help="hdfs:// model directory to upload the run to")
    parser.add_argument("--version", required=True, help="model version, v<yyyymmddTHHMMSS>")
    parser.add_argument("--epochs", type=int, help="override train.epochs")
    parser.add_argument("--command-json", default="[]", help="the user's command as JSON")
    parser.add_argument("--dump-weights", help="folder where every rank saves its final weights")
    parser.add_argument(
        "--crash-after-epoch", type=int,
        help="fault injection for tests: rank 0 exits with code 17 after this epoch's checkpoint",
    )
    parser.add_argument("--verbose", type=int, default=2, help="Keras fit verbosity on rank 0")
    return parser.parse_args(argv)


def configure_devices(hvd: Any, tf: Any) -> str:
    """Pin this rank to its local GPU, or cap CPU threads so ranks share the cores."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        gpu = gpus[hvd.local_rank() % len(gpus)]
        tf.config.set_visible_devices(gpu, "GPU")
        tf.config.experimental.set_memory_growth(gpu, True)
        return f"GPU {gpu.name}"
    default = max(1, (os.cpu_count() or 1) // hvd.local_size())
    threads = int(os.environ.get("OMP_NUM_THREADS") or default)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    return f"CPU, {threads} intra-op threads"


def load_inputs(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """Return (model spec, train settings, manifest), validated against each other."""
    from pipelines.dataset import read_manifest
    from pipelines.spec import load_spec
    from pipelines.train.spec import ModelSpecError, validate_against_manifest

    spec = load_spec(args.pipeline)
    if spec.model is None:
        raise ModelSpecError(f"{args.pipeline}: missing key 'model'; add a model section")
    manifest = read_manifest(args.dataset)
    validate_against_manifest(spec.model, manifest)
    settings = spec.train
    if args.epochs:
        settings = settings.model_copy(update={"epochs": args.epochs})
    return spec.model, settings, manifest


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    hvd.init()
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s rank{hvd.rank()} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    device = configure_devices(hvd, tf)
    log.info("rank %d of %d starts on %s", hvd.rank(), hvd.size(), device)

    from pipelines.dataset import ManifestError
    from pipelines.spec import SpecError
    from pipelines.train.data import DatasetError
    from pipelines.train.loop import TrainingRun
    from pipelines.train.spec import ModelSpecError

    try:
        model_spec, settings, manifest = load_inputs(args)
        TrainingRun(args, model_spec, settings, manifest, hvd).execute()
    except (SpecError, ManifestError, ModelSpecError, DatasetError) as err:
        log.error("rank %d stopped: %s", hvd.rank(), err)
        return 2
    log.info("rank %d finished", hvd.rank())
    return 0


if __name__ == "__main__":
    sys.exit(main())
