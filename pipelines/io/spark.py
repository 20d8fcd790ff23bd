"""Spark sessions built from the HOYA configuration."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

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


def package_zip() -> Path:
    """Zip the ``pipelines`` package for ``--py-files``, so cluster executors can import it."""
    import zipfile

    target = REPO_ROOT / ".hoya" / "build" / "pipelines.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    sources = sorted((REPO_ROOT / "pipelines").rglob("*.py"))
    newest = max(path.stat().st_mtime for path in sources)
    if target.exists() and target.stat().st_mtime >= newest:
        return target
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sources:
            archive.write(path, path.relative_to(REPO_ROOT))
    return target


def spark_submit_command(config: HoyaConfig, script: Path, args: list[str]) -> list[str]:
    """Return the spark-submit argument list that runs ``script`` with ``args``.

    Values from the configuration go in as separate arguments, never through a shell.
    """
    spark_submit = Path(sys.executable).parent / "spark-submit"
    command = [
        str(spark_submit),
        "--master", config.spark.master,
        "--driver-memory", config.spark.driver_memory,
        "--conf", f"spark.hadoop.fs.defaultFS={config.hdfs.uri}",
        "--conf", "spark.sql.session.timeZone=UTC",
        "--conf", f"spark.pyspark.python={sys.executable}",
    ]
    for key, value in config.spark.conf.items():
        command += ["--conf", f"{key}={value}"]
    command += ["--py-files", str(package_zip()), str(script), *args]
    return command


def run_spark_submit(config: HoyaConfig, script: Path, args: list[str]) -> int:
    """Run spark-submit in the foreground and return its exit code."""
    import subprocess

    command = spark_submit_command(config, script, args)
    log.info("running %s", " ".join(command))
    # spark-submit's launcher scripts run "python3" from PATH to find pyspark, so the job
    # environment's bin/ goes first; the driver and executors use the same interpreter.
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
        ),
    }
    return subprocess.run(command, env=env, check=False).returncode


def run_job(stage: str, pipeline_file: str, work, expected_errors: tuple[type[Exception], ...]) -> int:
    """Run one Spark job's ``work(spark, pipeline, config)`` and return its exit code.

    Returns 2 when the configuration or pipeline file is invalid (before Spark starts),
    1 when ``work`` raises one of ``expected_errors`` (logged as one line), 0 otherwise.
    """
    from pipelines.config import load_config
    from pipelines.spec import SpecError, load_spec

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = load_config()
        pipeline = load_spec(pipeline_file)
    except (SpecError, ValueError) as err:
        log.error("%s", err)
        return 2
    spark = spark_session(config, f"hoya-{stage}-{pipeline.name}")
    try:
        work(spark, pipeline, config)
    except expected_errors as err:
        log.error("%s failed: %s", stage, err)
        return 1
    finally:
        spark.stop()
    return 0
