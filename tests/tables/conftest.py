"""Fixtures of the table tests: a small slice of the real data and throwaway tables."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from pipelines.config import REPO_ROOT, HoyaConfig
from pipelines.tables.admin import apply_schema, drop_table
from pipelines.tables.schema import TableSchema, load_table_schema

DATA = REPO_ROOT / "data" / "sp500_5yr"
# AAPL, MSFT: complete; GOOG: 406 rows without volume; AMT: header only;
# NYSE:LMT: a ':' in the name and one row without open and low.
SLICE = ["AAPL_data.csv", "GOOG_data.csv", "AMT_data.csv", "MSFT_data.csv", "NYSE:LMT_data.csv"]


@pytest.fixture(scope="session")
def bars_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bars_slice")
    for name in SLICE:
        shutil.copy2(DATA / name, folder / name)
    return folder


@pytest.fixture
def make_table(stack: HoyaConfig) -> Iterator[Callable[..., TableSchema]]:
    """Create uniquely named copies of schema tables; drop them after the test."""
    created: list[str] = []

    def make(name: str = "sp500_daily_bars", prefix: str = "hoya_t") -> TableSchema:
        table = f"{prefix}_{uuid.uuid4().hex[:8]}"
        schema = load_table_schema(name).model_copy(update={"table": table})
        apply_schema(stack, schema)
        created.append(schema.table_name)
        return schema

    yield make
    for table_name in created:
        drop_table(stack, table_name)
