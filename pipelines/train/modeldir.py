"""The versioned model directory that training writes and batch prediction reads.

Layout of ``<models_root>/<pipeline>/<version>/``::

    saved_model/   the Keras model (SavedModel format, Keras 2.15)
    encoder/       autoencoders only: the encoder as its own SavedModel
    model.json     pipeline, version, model type, task, feature shape and names, target,
                   statistics from the manifest, dataset URI, config hash, command, metrics
    checkpoints/   per-epoch checkpoints and the training state used to resume
    tensorboard/   TensorBoard event files
    files.txt      HDFS only: the relative path of every file, one per line

For an ``hdfs://`` models root, training writes to a local folder and uploads it here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from pipelines.config import HoyaConfig, load_config
from pipelines.dataset import is_hdfs, join_uri
from pipelines.io.webhdfs import WebHdfs

log = logging.getLogger(__name__)

MODEL_JSON = "model.json"
FILE_LIST = "files.txt"
MODEL_PARTS = ("saved_model", "encoder")
FORMAT_VERSION = 1


class ModelDirError(ValueError):
    """A model directory is missing or incomplete."""


def new_version(now: dt.datetime | None = None) -> str:
    """Return a version name ``v<UTC yyyymmddTHHMMSS>``."""
    moment = (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc)
    return "v" + moment.strftime("%Y%m%dT%H%M%S")


def model_uri(models_root: str, pipeline: str, version: str) -> str:
    return join_uri(models_root, pipeline, version)


def upload_tree(local: Path, uri: str, config: HoyaConfig | None = None) -> int:
    """Copy every file under ``local`` to the HDFS folder ``uri``; return the file count.

    Also writes ``files.txt`` there, the relative paths one per line, so readers can fetch
    the tree without listing folders recursively.
    """
    client = WebHdfs.from_config(config or load_config())
    names = []
    for path in sorted(local.rglob("*")):
        if path.is_file() and path.name != FILE_LIST:
            name = path.relative_to(local).as_posix()
            client.write(join_uri(uri, name), path.read_bytes())
            names.append(name)
    client.write(join_uri(uri, FILE_LIST), ("\n".join(names) + "\n").encode("utf-8"))
    log.info("uploaded %d files from %s to %s", len(names), local, uri)
    return len(names)


def _download_model_files(client: WebHdfs, uri: str, local: Path) -> int:
    """Copy model.json, saved_model/ and encoder/ of the HDFS model directory ``uri``."""
    listed = client.read(join_uri(uri, FILE_LIST)).decode("utf-8").split()
    wanted = [n for n in listed if n == MODEL_JSON or n.split("/")[0] in MODEL_PARTS]
    for name in wanted:
        target = local / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.read(join_uri(uri, name)))
    return len(wanted)


def write_model_json(run_dir: Path, info: dict[str, Any]) -> Path:
    path = run_dir / MODEL_JSON
    path.write_text(json.dumps({"format_version": FORMAT_VERSION, **info}, indent=2), "utf-8")
    return path


def load_model_dir(
    uri: str, config: HoyaConfig | None = None, cache_dir: Path | None = None
) -> tuple[Any, dict[str, Any]]:
    """Load a model directory (local path or ``hdfs://``); return ``(keras_model, info)``.

    ``info`` is model.json; for autoencoders ``info["encoder"]`` is the loaded encoder model.
    HDFS directories are copied (without checkpoints and TensorBoard logs) into ``cache_dir``.
    """
    import tensorflow as tf

    if is_hdfs(uri):
        client = WebHdfs.from_config(config or load_config())
        if not client.exists(join_uri(uri, FILE_LIST)):
            raise ModelDirError(f"no {FILE_LIST} in {uri}; train the model first")
        local = Path(cache_dir or tempfile.mkdtemp(prefix="hoya-model-"))
        count = _download_model_files(client, uri, local)
        log.info("copied %d model files from %s to %s", count, uri, local)
    else:
        local = Path(uri)
    info_path = local / MODEL_JSON
    if not info_path.is_file():
        raise ModelDirError(f"no {MODEL_JSON} in {uri}; train the model first")
    info = json.loads(info_path.read_text("utf-8"))
    if info.get("format_version") != FORMAT_VERSION:
        raise ModelDirError(
            f"{uri}: model.json format_version {info.get('format_version')!r} is not "
            f"supported; this HOYA reads version {FORMAT_VERSION}, so retrain the model"
        )
    model = tf.keras.models.load_model(local / "saved_model", compile=False)
    if (local / "encoder").is_dir():
        info["encoder"] = tf.keras.models.load_model(local / "encoder", compile=False)
    log.info("loaded model %s (%s, version %s)", uri, info.get("model_type"), info.get("version"))
    return model, info


def staging_dir(config: HoyaConfig, pipeline: str, version: str) -> Path:
    """Return the local folder where a run for an ``hdfs://`` models root writes first.

    The path depends only on the pipeline and version, so a resumed run finds the checkpoints.
    """
    root = Path(os.environ.get("HOYA_TRAIN_STAGING", config.state_dir / "train-runs"))
    return root / pipeline / version
