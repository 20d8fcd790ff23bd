"""A small WebHDFS client, so the driver can read and write HDFS files without libhdfs.

pyarrow's HadoopFileSystem needs ``libhdfs.so``, which only Hadoop's binary release
ships; WebHDFS is plain HTTP on the NameNode's web port and works with the Maven jars.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import requests

from pipelines.config import HoyaConfig

log = logging.getLogger(__name__)


class WebHdfsError(RuntimeError):
    """A WebHDFS request failed; the message has the operation, path and server reply."""


class WebHdfs:
    """Read, write and list HDFS paths through the NameNode's WebHDFS REST API."""

    def __init__(self, base_url: str, user: str = "hoya", timeout_s: float = 60.0):
        self.base = base_url.rstrip("/") + "/webhdfs/v1"
        self.user = user
        self.timeout_s = timeout_s

    @classmethod
    def from_config(cls, config: HoyaConfig) -> "WebHdfs":
        return cls(config.hdfs.webhdfs_url)

    @staticmethod
    def path_of(uri: str) -> str:
        """Return the path part of ``hdfs://host:port/path`` (or a bare ``/path``)."""
        path = urlsplit(uri).path if uri.startswith("hdfs://") else uri
        if not path.startswith("/"):
            raise WebHdfsError(f"HDFS path {uri!r} must be absolute, for example /data/x.csv")
        return path

    def _url(self, uri: str, op: str, **params: object) -> tuple[str, dict[str, object]]:
        return self.base + self.path_of(uri), {"op": op, "user.name": self.user, **params}

    def _check(self, response: requests.Response, op: str, uri: str) -> requests.Response:
        if response.status_code >= 400:
            raise WebHdfsError(
                f"WebHDFS {op} {uri} failed with HTTP {response.status_code}: "
                f"{response.text[:300]}"
            )
        return response

    def write(self, uri: str, data: bytes, overwrite: bool = True) -> None:
        """Create or replace the file at ``uri`` with ``data``."""
        url, params = self._url(uri, "CREATE", overwrite=str(overwrite).lower())
        # The NameNode replies 307 with the address of the DataNode that takes the bytes.
        first = requests.put(url, params=params, allow_redirects=False, timeout=self.timeout_s)
        self._check(first, "CREATE", uri)
        location = first.headers.get("Location")
        if not location:
            raise WebHdfsError(f"WebHDFS CREATE {uri}: the NameNode sent no DataNode location")
        second = requests.put(location, data=data, timeout=self.timeout_s)
        self._check(second, "CREATE", uri)
        log.debug("wrote %d bytes to %s", len(data), uri)

    def read(self, uri: str) -> bytes:
        """Return the bytes of the file at ``uri``."""
        url, params = self._url(uri, "OPEN")
        response = requests.get(url, params=params, timeout=self.timeout_s)
        return self._check(response, "OPEN", uri).content

    def list(self, uri: str) -> list[str]:
        """Return the names in the folder at ``uri``, sorted."""
        url, params = self._url(uri, "LISTSTATUS")
        response = self._check(requests.get(url, params=params, timeout=self.timeout_s), "LISTSTATUS", uri)
        statuses = response.json()["FileStatuses"]["FileStatus"]
        return sorted(status["pathSuffix"] for status in statuses)

    def exists(self, uri: str) -> bool:
        url, params = self._url(uri, "GETFILESTATUS")
        response = requests.get(url, params=params, timeout=self.timeout_s)
        if response.status_code == 404:
            return False
        self._check(response, "GETFILESTATUS", uri)
        return True

    def mkdirs(self, uri: str) -> None:
        url, params = self._url(uri, "MKDIRS")
        self._check(requests.put(url, params=params, timeout=self.timeout_s), "MKDIRS", uri)

    def delete(self, uri: str, recursive: bool = False) -> bool:
        """Delete ``uri``; return False when it did not exist."""
        url, params = self._url(uri, "DELETE", recursive=str(recursive).lower())
        response = self._check(requests.delete(url, params=params, timeout=self.timeout_s), "DELETE", uri)
        return bool(response.json().get("boolean"))
