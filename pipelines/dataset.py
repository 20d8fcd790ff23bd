"""The preprocessed dataset: Parquet splits plus ``manifest.json``, local or on HDFS.

The manifest is the only coupling between stages: training and prediction read the
feature names, shapes, fitted statistics and split sizes from it.

Layout of a dataset folder::

    <dataset>/manifest.json
    <dataset>/train/part-*.parquet        (also validation/, test/)
    <dataset>/quarantine/part-*.parquet   (row_key, reason, stage)
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pipelines.config import HoyaConfig
from pipelines.io.storage import is_hdfs, join_uri, read_text, write_text  # noqa: F401
from pipelines.io.webhdfs import WebHdfsError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
SPLITS = ("train", "validation", "test")


class ManifestError(ValueError):
    """A manifest is missing, unreadable or of an unsupported version."""


def split_uri(dataset_uri: str, split: str) -> str:
    """Return the folder of one split (train, validation, test or quarantine)."""
    return join_uri(dataset_uri, split)


def read_manifest(dataset_uri: str, config: HoyaConfig | None = None) -> dict[str, Any]:
    """Return the manifest of the dataset at ``dataset_uri``."""
    uri = join_uri(dataset_uri, MANIFEST_NAME)
    try:
        manifest = json.loads(read_text(uri, config))
    except FileNotFoundError as err:
        raise ManifestError(
            f"no manifest at {uri}; run the preprocess job for this dataset first"
        ) from err
    except (OSError, ValueError, WebHdfsError) as err:
        raise ManifestError(f"cannot read the manifest at {uri}: {err}") from err
    version = manifest.get("format_version")
    if version != MANIFEST_VERSION:
        raise ManifestError(
            f"{uri}: format_version {version!r} is not supported; this HOYA reads version "
            f"{MANIFEST_VERSION}, so rebuild the dataset with the preprocess job"
        )
    return manifest


def write_manifest(
    dataset_uri: str, manifest: dict[str, Any], config: HoyaConfig | None = None
) -> str:
    """Write ``manifest`` (stamped with the format version) and return its URI."""
    manifest = {"format_version": MANIFEST_VERSION, **manifest}
    text = json.dumps(manifest, indent=2, sort_keys=False, default=str)
    uri = join_uri(dataset_uri, MANIFEST_NAME)
    write_text(uri, text, config)
    log.info("wrote manifest %s", uri)
    return uri
