"""Batched, retried puts of encoded rows into one HBase table over Thrift1.

A batch is written with one ``mutateRows`` call at a fixed cell timestamp, so sending
it again after a dropped connection writes the same cells (same row, column and
timestamp) instead of new versions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pipelines.config import HoyaConfig
from pipelines.tables.hbase import HBaseError, connect

log = logging.getLogger(__name__)


def transient_errors() -> tuple[type[BaseException], ...]:
    """Return the exception types of a dropped or refused Thrift connection."""
    from thriftpy2.protocol.exc import TProtocolException
    from thriftpy2.transport import TTransportException

    # A connection cut mid-reply can surface as a protocol error on a partial frame.
    return (TTransportException, TProtocolException, OSError, EOFError)


@dataclass
class RetryPolicy:
    """How often and how long to retry a batch after a transient connection failure."""

    max_attempts: int = 6
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0

    def backoff(self, attempt: int) -> float:
        return min(self.initial_backoff_s * (2 ** (attempt - 1)), self.max_backoff_s)


@dataclass
class BatchWriter:
    """Write ``(row_key, cells)`` batches to ``table_name``, reconnecting on failures."""

    config: HoyaConfig
    table_name: str
    timestamp_ms: int | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    last_good_row_key: bytes | None = None
    retries: int = 0
    _connection: Any = None

    def write(self, rows: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Put ``rows`` in one request; retry with backoff and raise HBaseError at the end."""
        if not rows:
            return
        attempt = 0
        while True:
            attempt += 1
            try:
                self._send(rows)
                self.last_good_row_key = rows[-1][0]
                return
            except transient_errors() as err:
                self._close()
                if attempt >= self.retry.max_attempts:
                    raise HBaseError(self._failure_message(attempt, err)) from err
                delay = self.retry.backoff(attempt)
                self.retries += 1
                log.warning(
                    "put of %d rows into %s failed (attempt %d of %d: %s); retrying in %.1f s",
                    len(rows), self.table_name, attempt, self.retry.max_attempts, err, delay,
                )
                time.sleep(delay)

    def _failure_message(self, attempts: int, err: BaseException) -> str:
        last = self.last_good_row_key.decode(errors="replace") if self.last_good_row_key else None
        settings = self.config.hbase
        return (
            f"writing to {self.table_name} at {settings.thrift_host}:{settings.thrift_port} "
            f"failed {attempts} times ({type(err).__name__}: {err}); last row key written: "
            f"{last!r}. Check the HBase Thrift server, then rerun: the import rewrites "
            "the same cells"
        )

    def _send(self, rows: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        if self._connection is None:
            self._connection = connect(self.config)
        batch = self._connection.table(self.table_name).batch(timestamp=self.timestamp_ms)
        for row_key, cells in rows:
            batch.put(row_key, cells)
        batch.send()

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001 - the socket is already broken
                pass
            self._connection = None

    def close(self) -> None:
        self._close()


def with_reconnect(
    config: HoyaConfig,
    action: Callable[[Any], Any],
    retry: RetryPolicy | None = None,
    what: str = "HBase request",
) -> Any:
    """Run ``action(connection)``, reconnecting with backoff on transient failures."""
    policy = retry or RetryPolicy()
    attempt = 0
    while True:
        attempt += 1
        connection = None
        try:
            connection = connect(config)
            return action(connection)
        except transient_errors() as err:
            if attempt >= policy.max_attempts:
                raise HBaseError(f"{what} failed {attempt} times: {err}") from err
            log.warning("%s failed (attempt %d: %s); retrying", what, attempt, err)
            time.sleep(policy.backoff(attempt))
        finally:
            if connection is not None:
                try:
                    connection.close()
                except Exception:  # noqa: BLE001 - closing a broken socket
                    pass
