"""Spark sessions built from the HOYA configuration."""

from __future__ import annotations

import logging
import os
import sys

from pipelines.config import REPO_ROOT, HoyaConfig

log = logging.getLogger(__name__)


def spark_session(config: HoyaConfig, app_name: str):
    """Return a SparkSession for ``config.spark``, reusing an active one.

    Under ``spark-submit`` the master and memory come from the command line, and the
    builder keeps them; in-process (tests, small jobs) they come from the config.
    """
    from pyspark.sql import SparkSession

    # Executors run this interpreter and import ``pipelines`` from the checkout.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    python_path = os.environ.get("PYTHONPATH", "")
    if str(REPO_ROOT) not in python_path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), python_path]))

    builder = (
        SparkSession.builder.appName(app_name)
        .master(config.spark.master)
        .config("spark.driver.memory", config.spark.driver_memory)
        .config("spark.hadoop.fs.defaultFS", config.hdfs.uri)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.executorEnv.PYTHONPATH", os.environ["PYTHONPATH"])
    )
    for key, value in config.spark.conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    log.info("Spark session %s on %s", app_name, session.sparkContext.master)
    return session
