"""Shared fixtures: the configuration and the running local stack.

The tests run against the real services that ``bin/test`` starts with
``hoya stack up``; a missing service fails the test that needs it, naming the fix.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pipelines.config import REPO_ROOT, HoyaConfig, load_config

JOB_PYTHON = Path(sys.executable)


@pytest.fixture(scope="session")
def config() -> HoyaConfig:
    return load_config()


@pytest.fixture(scope="session")
def stack(config: HoyaConfig) -> HoyaConfig:
    """Require every local service to be healthy; return the configuration."""
    from pipelines.localstack import LocalStack

    unhealthy = [row for row in LocalStack(config).status() if row["state"] != "healthy"]
    if unhealthy:
        names = ", ".join(f"{row['service']} ({row['state']})" for row in unhealthy)
        pytest.fail(f"local services not healthy: {names}; start them with bin/hoya stack up")
    return config


@pytest.fixture(scope="session")
def spark(config: HoyaConfig):
    from pipelines.io.spark import spark_session

    session = spark_session(config, "hoya-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def airflow_python() -> Path:
    path = Path(os.environ.get("HOYA_AIRFLOW_PYTHON", REPO_ROOT / ".hoya/airflow-env/bin/python"))
    if not path.exists():
        pytest.fail(f"Airflow environment not found at {path}; run bin/bootstrap")
    return path
