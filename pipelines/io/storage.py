"""Small text files (manifests, summaries, reports) on a local path or ``hdfs://``."""

from __future__ import annotations

from pathlib import Path

from pipelines.config import HoyaConfig, load_config
from pipelines.io.webhdfs import WebHdfs


def is_hdfs(uri: str) -> bool:
    return uri.startswith("hdfs://")


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local path or an ``hdfs://`` URI."""
    return "/".join([base.rstrip("/"), *(part.strip("/") for part in parts)])


def read_text(uri: str, config: HoyaConfig | None = None) -> str:
    """Return the file's text; raise FileNotFoundError when it does not exist."""
    if is_hdfs(uri):
        hdfs = WebHdfs.from_config(config or load_config())
        if not hdfs.exists(uri):
            raise FileNotFoundError(uri)
        return hdfs.read(uri).decode("utf-8")
    return Path(uri).read_text(encoding="utf-8")


def write_text(uri: str, text: str, config: HoyaConfig | None = None) -> None:
    """Create or replace the file at ``uri``, creating local parent folders."""
    if is_hdfs(uri):
        WebHdfs.from_config(config or load_config()).write(uri, text.encode("utf-8"))
        return
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    Path(uri).write_text(text, encoding="utf-8")


def spark_path(uri: str) -> str:
    """Return ``uri`` in the form Spark reads: local paths become absolute file: URIs."""
    if "://" in uri:
        return uri
    return Path(uri).resolve().as_uri()
