"""Connections to HBase: happybase over Thrift1 for data, thriftpy2 over Thrift2 for DDL.

Thrift1 cannot create namespaces or pre-split tables; HBase's Thrift2 server can. Its
IDL ships inside the ``hbase-thrift`` jar, so the client loads it from there at run time
rather than keeping a copy in this repository.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

from pipelines.config import REPO_ROOT, HoyaConfig

log = logging.getLogger(__name__)

THRIFT2_IDL = "org/apache/hadoop/hbase/thrift2/hbase.thrift"
_thrift2_module: Any = None


class HBaseError(RuntimeError):
    """An HBase request failed; the message names the table, the endpoint and the fix."""


def connect(config: HoyaConfig, port: int | None = None, timeout_ms: int | None = None):
    """Open a happybase connection to the Thrift1 server in ``config.hbase``."""
    import happybase

    settings = config.hbase
    return happybase.Connection(
        settings.thrift_host,
        port or settings.thrift_port,
        timeout=timeout_ms or settings.timeout_ms,
        transport=settings.transport,
        protocol=settings.protocol,
        autoconnect=True,
    )


def _jars_dir() -> Path:
    return Path(os.environ.get("HOYA_JARS", REPO_ROOT / ".hoya" / "jars"))


def thrift2_module() -> Any:
    """Load the Thrift2 IDL from the hbase-thrift jar once per process and return it."""
    global _thrift2_module
    if _thrift2_module is not None:
        return _thrift2_module
    import thriftpy2

    jars = sorted(_jars_dir().glob("hbase-thrift-*.jar"))
    if not jars:
        raise HBaseError(
            f"no hbase-thrift-*.jar in {_jars_dir()}; run bin/bootstrap or set HOYA_JARS "
            "to the folder with the HBase jars"
        )
    with zipfile.ZipFile(jars[-1]) as jar:
        idl = jar.read(THRIFT2_IDL)
    with tempfile.TemporaryDirectory(prefix="hoya-thrift2-") as folder:
        path = Path(folder) / "hbase.thrift"
        path.write_bytes(idl)
        _thrift2_module = thriftpy2.load(str(path), module_name="hbase2_thrift")
    log.debug("loaded the Thrift2 IDL from %s", jars[-1])
    return _thrift2_module


@contextlib.contextmanager
def thrift2_client(config: HoyaConfig) -> Iterator[Any]:
    """Yield a client of HBase's Thrift2 service (THBaseService) and close it after."""
    from thriftpy2.protocol import TBinaryProtocolFactory, TCompactProtocolFactory
    from thriftpy2.rpc import make_client
    from thriftpy2.transport import TBufferedTransportFactory, TFramedTransportFactory

    module = thrift2_module()
    settings = config.hbase
    transport = (
        TFramedTransportFactory() if settings.transport == "framed" else TBufferedTransportFactory()
    )
    protocol = (
        TCompactProtocolFactory() if settings.protocol == "compact" else TBinaryProtocolFactory()
    )
    try:
        client = make_client(
            module.THBaseService,
            settings.thrift_host,
            settings.thrift2_port,
            trans_factory=transport,
            proto_factory=protocol,
            timeout=settings.timeout_ms,
        )
    except Exception as err:  # thriftpy2 raises TTransportException or OSError subclasses
        raise HBaseError(
            f"cannot connect to the HBase Thrift2 server at {settings.thrift_host}:"
            f"{settings.thrift2_port} ({err}); start it with bin/hoya stack up, or set "
            "hbase.thrift2_port"
        ) from err
    try:
        yield client
    finally:
        client.close()
