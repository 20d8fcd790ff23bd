"""Benchmark HOYA's preprocessing against Spark ML and across data sizes, in one run.

1. Normalization: HOYA's z-score step (fit on the training split, apply to every row)
   against Spark ML's VectorAssembler plus StandardScaler (withMean, withStd) fitted
   on the same rows, both materialized with Spark's noop writer. Goal: HOYA no slower.
2. The whole preprocess transform (derive, missing values, clipping, z-score, 30-step
   windows, splits, Parquet output) at 1x, 2x and 4x the S&P 500 data, the larger
   sizes made by copying every series under new ticker names. Goal: time grows no
   faster than the data.

Run: .hoya/job-env/bin/python benchmarks/bench_preprocess.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.sql import functions as F  # noqa: E402

from pipelines.config import REPO_ROOT, load_config  # noqa: E402
from pipelines.io.spark import spark_session  # noqa: E402
from pipelines.io.storage import spark_path  # noqa: E402
from pipelines.preprocess import steps  # noqa: E402
from pipelines.preprocess.job import transform, write_dataset  # noqa: E402
from pipelines.spec import load_spec  # noqa: E402

PIPELINE = REPO_ROOT / "conf" / "pipelines" / "sp500_volatility.yaml"
COLUMNS = ["ret", "volume_change", "range"]


def load_bars(spark):
    """Return the S&P 500 bars as the ingest job writes them (files without ':' only)."""
    files = [p for p in sorted(glob.glob(str(REPO_ROOT / "data/sp500_5yr/*.csv"))) if ":" not in p]
    frame = spark.read.csv([spark_path(p) for p in files], header=True)
    names = {"Date": "date", "Open": "open", "High": "high", "Low": "low", "Close": "close",
             "Volume": "volume", "Name": "ticker"}
    for old, new in names.items():
        frame = frame.withColumnRenamed(old, new)
    for column in ("open", "high", "low", "close", "volume"):
        frame = frame.withColumn(column, F.col(column).cast("double"))
    return frame.withColumn("row_key", F.concat_ws("#", "ticker", "date"))


def timed(function, repeats: int) -> float:
    """Return the median wall time of ``function`` over ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_normalization(spark, spec, repeats: int) -> tuple[float, float]:
    from pyspark.ml.feature import StandardScaler, VectorAssembler

    prepared = steps.derive_columns(steps.add_split_column(load_bars(spark), spec), spec)
    prepared = prepared.dropna(subset=COLUMNS).select("row_key", steps.SPLIT_COLUMN, *COLUMNS)
    prepared = prepared.persist()
    rows = prepared.count()

    def hoya():
        scaled, _ = steps.normalize(prepared, spec, None)
        scaled.write.format("noop").mode("overwrite").save()

    def spark_ml():
        assembled = VectorAssembler(inputCols=COLUMNS, outputCol="vector").transform(prepared)
        scaler = StandardScaler(inputCol="vector", outputCol="scaled", withMean=True, withStd=True)
        model = scaler.fit(assembled.filter(F.col(steps.SPLIT_COLUMN) == "train"))
        model.transform(assembled).write.format("noop").mode("overwrite").save()

    hoya(), spark_ml()  # warm up the JVM and the cache
    result = timed(hoya, repeats), timed(spark_ml, repeats)
    prepared.unpersist()
    print(f"normalization over {rows} rows: HOYA {result[0]:.2f} s, "
          f"VectorAssembler+StandardScaler {result[1]:.2f} s, ratio {result[1] / result[0]:.2f}")
    return result


def scaled_bars(spark, factor: int, folder: Path) -> str:
    """Write the bars copied ``factor`` times (ticker suffixes _0.._k) as Parquet."""
    bars = load_bars(spark)
    copies = [
        bars.withColumn("ticker", F.concat(F.col("ticker"), F.lit(f"_{i}")))
        .withColumn("row_key", F.concat_ws("#", "ticker", "date"))
        for i in range(factor)
    ]
    frame = copies[0]
    for copy in copies[1:]:
        frame = frame.unionByName(copy)
    path = str(folder / f"raw{factor}")
    frame.write.mode("overwrite").parquet(spark_path(path))
    return path


def bench_scaling(spark, spec, folder: Path, repeats: int) -> list[tuple[int, int, float]]:
    results = []
    for factor in (1, 2, 4):
        raw = spark.read.parquet(spark_path(scaled_bars(spark, factor, folder)))
        rows = raw.count()

        def run():
            frame, quarantined, _, _ = transform(raw, spec)
            write_dataset(frame, quarantined, spec, str(folder / f"dataset{factor}"))

        seconds = timed(run, repeats)
        results.append((factor, rows, seconds))
        print(f"preprocess {factor}x: {rows} rows in {seconds:.1f} s "
              f"({rows / seconds:,.0f} rows/s)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median counts")
    args = parser.parse_args()

    config = load_config()
    spec = load_spec(PIPELINE).preprocess
    spark = spark_session(config, "hoya-bench-preprocess")
    folder = Path(tempfile.mkdtemp(prefix="hoya-bench-"))
    try:
        hoya, spark_ml = bench_normalization(spark, spec, args.repeats)
        scaling = bench_scaling(spark, spec, folder, max(1, args.repeats - 2))
    finally:
        spark.stop()
        shutil.rmtree(folder, ignore_errors=True)

    base_factor, base_rows, base_seconds = scaling[0]
    print(f"\n## Preprocess ({dt.date.today()}, median of {args.repeats} runs)")
    print("| figure | HOYA | baseline | ratio |\n|---|---|---|---|")
    print(f"| z-score normalization | {hoya:.2f} s | {spark_ml:.2f} s (Spark ML) | "
          f"{spark_ml / hoya:.2f}x |")
    for factor, rows, seconds in scaling:
        growth = (seconds / base_seconds) / (rows / base_rows)
        print(f"| preprocess {factor}x ({rows:,} rows) | {seconds:.1f} s | "
              f"{base_seconds * factor:.1f} s (linear from 1x) | {growth:.2f} time/data growth |")


if __name__ == "__main__":
    main()
