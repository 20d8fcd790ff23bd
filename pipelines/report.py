"""The main job's summary and its HTML report with plots.

The summary gathers what the stages wrote: the import counts, ``ingest.json``, the
dataset manifests, ``model.json``, ``evaluation.json``, the registry row and one
prediction read back from HBase. The report is one self-contained HTML file (plots
embedded as PNG) beside ``summary.json`` in ``<storage root>/runs/<logical date>/``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

from pipelines.config import HoyaConfig
from pipelines.io.storage import read_text
from pipelines.spec import PipelineSpec

log = logging.getLogger(__name__)

PLOT_TICKERS = ("AAPL", "JPM", "XOM", "NFLX")


def _read_json(uri: str, config: HoyaConfig) -> dict[str, Any] | None:
    try:
        return json.loads(read_text(uri, config))
    except FileNotFoundError:
        return None


def model_version(logical_date: str) -> str:
    """Return the model version the DAG gives a run of ``logical_date`` (v + ts_nodash)."""
    return "v" + logical_date.replace("-", "") + "T000000"


def _example_prediction(
    config: HoyaConfig, pipeline: PipelineSpec, key: str | None
) -> dict[str, Any] | None:
    """Read one row of the result table back from HBase, cells decoded."""
    import happybase

    if key is None:
        return None
    connection = happybase.Connection(config.hbase.thrift_host, config.hbase.thrift_port)
    try:
        from pipelines.tables.schema import load_table_schema

        schema = load_table_schema(pipeline.output.table)
        cells = connection.table(schema.table_name).row(key.encode())
        if not cells:
            return {"row_key": key, "cells": {}}
        return {"row_key": key, "cells": schema.decode_row(key.encode(), cells)}
    finally:
        connection.close()


def build_summary(
    config: HoyaConfig,
    pipeline: PipelineSpec,
    logical_date: str,
    imported: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    """Collect the run's counts, metrics, model version and timings into one dict."""
    version = model_version(logical_date)
    model_dir = pipeline.uri("models", pipeline.name, version)
    ingest = _read_json(pipeline.uri("raw", "ingest.json"), config)
    dataset = _read_json(pipeline.uri("dataset", "manifest.json"), config)
    encoded = _read_json(pipeline.uri("dataset_encoded", "manifest.json"), config)
    model = _read_json(f"{model_dir}/model.json", config)
    evaluation = _read_json(f"{model_dir}/evaluation.json", config) or {}
    predicted = _read_json(pipeline.uri("predictions", version, "predict.json"), config)
    example_key = _last_test_key(pipeline)
    return {
        "pipeline": pipeline.name,
        "logical_date": logical_date,
        "model_version": version,
        "model_dir": model_dir,
        "import": imported,
        "ingest": ingest,
        "dataset": _manifest_counts(dataset),
        "encoded": _manifest_counts(encoded),
        "training": (model or {}).get("metrics"),
        "evaluation": evaluation.get("metrics"),
        "predictions": predicted,
        "gate": evaluation.get("gate") or {"passed": False, "message": "no evaluation found"},
        "result_table": pipeline.output.table,
        "example": _example_prediction(config, pipeline, example_key),
        "timings_s": timings,
    }


def _manifest_counts(manifest: dict[str, Any] | None) -> dict[str, Any] | None:
    if manifest is None:
        return None
    return {
        "rows_read": manifest.get("rows_read"),
        "splits": {name: split["rows"] for name, split in manifest["splits"].items()},
        "quarantined": manifest["quarantine"]["rows"],
        "quarantine_reasons": manifest["quarantine"]["reasons"],
        "feature_shape": manifest.get("feature_shape"),
    }


def _last_test_key(pipeline: PipelineSpec) -> str | None:
    """Return the newest test-split row key of AAPL (or of any ticker), for the example."""
    frame = _test_split(pipeline, ["row_key", "ticker", "date"])
    if frame is None or frame.empty:
        return None
    aapl = frame[frame["ticker"] == "AAPL"]
    chosen = aapl if not aapl.empty else frame
    return str(chosen.sort_values("date")["row_key"].iloc[-1])


def _test_split(pipeline: PipelineSpec, columns: list[str]):
    """Return the dataset's test split as pandas, or None when it is not on a local disk."""
    import pyarrow.parquet as pq

    folder = Path(pipeline.uri("dataset", "test"))
    if not folder.exists():
        # NOTE: the report reads local datasets only; an hdfs:// storage root gets no plots.
        return None
    return pq.read_table(folder, columns=columns).to_pandas()


def print_summary(summary: dict[str, Any]) -> None:
    """Print the summary for a person at a terminal."""
    lines = [f"HOYA main job: pipeline {summary['pipeline']}, logical date "
             f"{summary['logical_date']}"]

    imported = summary["import"]
    if imported.get("skipped"):
        lines.append(f"import: skipped, the raw table already contains {imported['rows_in_table']:,} rows")
    else:
        lines.append(
            f"import: read {imported['rows_read']:,}, written {imported['rows_written']:,}, "
            f"quarantined {imported['rows_quarantined']:,} {imported['reasons']}"
        )

    ingest = summary["ingest"] or {}
    lines.append(
        f"ingest: read {ingest.get('rows_read', 0):,}, written {ingest.get('rows_written', 0):,}, "
        f"quarantined {ingest.get('rows_quarantined', 0):,} {ingest.get('quarantine_reasons', {})}"
    )
    for name in ("dataset", "encoded"):
        counts = summary[name]
        if counts:
            lines.append(
                f"{name}: read {counts['rows_read']:,}, splits {counts['splits']}, quarantined "
                f"{counts['quarantined']:,}"
            )
            for reason, count in sorted(counts["quarantine_reasons"].items()):
                lines.append(f"    {count:,} x {reason}")

    predicted = summary.get("predictions")
    if predicted:
        lines.append(
            f"predict: read {predicted['rows_read']:,}, written {predicted['rows_written']:,} to "
            f"{predicted['table']}, quarantined {predicted['rows_quarantined']:,} "
            f"{predicted['quarantine_reasons']}"
        )

    evaluation = summary["evaluation"] or {}
    lines.append(f"model {summary['model_version']}: {evaluation.get('model')}")
    lines.append(f"baseline: {evaluation.get('baseline')}")
    lines.append(summary["gate"].get("message", ""))

    example = summary["example"]
    lines.append(f"result table {summary['result_table']}, example row: {example}")
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in summary["timings_s"].items())
    lines.append(f"time per stage: {timings}")
    lines.append(f"report: {summary.get('report')}")
    print("\n".join(lines))


# The HTML report.


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _loss_plot(summary: dict[str, Any]):
    import matplotlib.pyplot as plt

    epochs = (summary.get("training") or {}).get("epochs") or []
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot([e["epoch"] for e in epochs], [e.get("loss") for e in epochs], "o-", label="training")
    axis.plot([e["epoch"] for e in epochs], [e.get("val_loss") for e in epochs], "s-",
              label="validation")
    axis.set(xlabel="epoch", ylabel="loss (MSE)", title="Training and validation loss")
    axis.legend()
    return figure


def predictions_frame(config: HoyaConfig, pipeline: PipelineSpec, summary: dict[str, Any]):
    """Return the test split's targets and baselines joined with the predictions in HBase."""
    import happybase
    import pandas as pd

    from pipelines.tables.schema import load_table_schema

    test = _test_split(pipeline, ["row_key", "ticker", "date", "target", "baseline"])
    if test is None or test.empty:
        return None
    schema = load_table_schema(pipeline.output.table)
    connection = happybase.Connection(config.hbase.thrift_host, config.hbase.thrift_port)
    predictions: dict[str, float] = {}
    try:
        table = connection.table(schema.table_name)
        for ticker, dates in test.groupby("ticker")["date"]:
            start, stop = f"{ticker}#{dates.min()}", f"{ticker}#{dates.max()}~"
            for key, cells in table.scan(row_start=start.encode(), row_stop=stop.encode()):
                decoded = schema.decode_row(key, cells)
                value = _prediction_value(decoded, summary["model_version"])
                if value is not None:
                    predictions[key.decode()] = value
    finally:
        connection.close()
    test["prediction"] = test["row_key"].map(predictions)
    return test.dropna(subset=["prediction", "target"]).pipe(pd.DataFrame)


def _prediction_value(decoded: dict[str, Any], version: str) -> float | None:
    """Return the prediction of ``version`` from a decoded result row, if present."""
    for name, value in decoded.items():
        if isinstance(name, str) and name.endswith(f"@{version}") and value is not None:
            return float(value)
    values = decoded.get("prediction")
    if isinstance(values, dict):
        for qualifier, value in values.items():
            if str(qualifier).endswith(f"@{version}"):
                return float(value)
    return None


def _ticker_plot(frame):
    import matplotlib.pyplot as plt

    present = list(frame["ticker"].unique())
    tickers = [t for t in PLOT_TICKERS if t in present]
    tickers += [t for t in present if t not in tickers][: len(PLOT_TICKERS) - len(tickers)]
    figure, axes = plt.subplots(len(tickers), 1, figsize=(8, 2.4 * len(tickers)), sharex=False)
    axes = [axes] if len(tickers) == 1 else axes
    for axis, ticker in zip(axes, tickers):
        rows = frame[frame["ticker"] == ticker].sort_values("date")
        dates = rows["date"].astype("datetime64[ns]")
        axis.plot(dates, rows["target"], label="actual", color="black", linewidth=1)
        axis.plot(dates, rows["prediction"], label="model", color="tab:blue", linewidth=1)
        axis.plot(dates, rows["baseline"], label="persistence", color="tab:orange",
                  linewidth=0.8, alpha=0.7)
        axis.set(title=f"{ticker}: 5-day realized volatility (%)", ylabel="%")
        axis.legend(loc="upper right", fontsize=7)
    figure.tight_layout()
    return figure


def _error_plot(frame):
    import matplotlib.pyplot as plt

    import numpy as np

    model = frame["prediction"] - frame["target"]
    baseline = (frame["baseline"] - frame["target"]).dropna()
    # A few volatility spikes give errors of 100 points; the central 99% shows the shape.
    low, high = np.percentile(np.concatenate([model, baseline]), [0.5, 99.5])
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.hist(model, bins=80, range=(low, high), alpha=0.7, label="model")
    axis.hist(baseline, bins=80, range=(low, high), alpha=0.5, label="persistence")
    axis.set(xlabel="error (prediction - actual, % points)", ylabel="windows",
             title="Error distribution on the test split (central 99%)")
    axis.legend()
    return figure


def _timing_plot(summary: dict[str, Any]):
    import matplotlib.pyplot as plt

    timings = {k: v for k, v in summary["timings_s"].items() if k != "total"}
    figure, axis = plt.subplots(figsize=(6, 0.35 * len(timings) + 1))
    axis.barh(list(timings), list(timings.values()))
    axis.invert_yaxis()
    axis.set(xlabel="seconds", title=f"Time per stage (total {summary['timings_s'].get('total', 0):.0f} s)")
    return figure


def write_report(
    summary: dict[str, Any], run_dir: Path, config: HoyaConfig, pipeline: PipelineSpec
) -> Path:
    """Write report.html with the plots and the summary's numbers; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = predictions_frame(config, pipeline, summary)
    figures = [("Loss per epoch", _loss_plot(summary))]
    if frame is not None and not frame.empty:
        figures.append(("Predicted against actual, test period", _ticker_plot(frame)))
        figures.append(("Error distribution", _error_plot(frame)))
        summary["plotted_test_rows"] = int(len(frame))
    figures.append(("Time per stage", _timing_plot(summary)))

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>HOYA run {html.escape(summary['pipeline'])} {summary['logical_date']}</title>",
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}"
        "pre{background:#f4f4f4;padding:1em;overflow-x:auto}</style></head><body>",
        f"<h1>{html.escape(summary['pipeline'])}: run of {summary['logical_date']}</h1>",
        f"<p><b>{html.escape(summary['gate'].get('message', ''))}</b></p>",
    ]
    for title, figure in figures:
        parts.append(f"<h2>{html.escape(title)}</h2><img src='data:image/png;base64,{_png(figure)}'>")
        plt.close(figure)
    parts.append("<h2>Summary</h2><pre>")
    parts.append(html.escape(json.dumps(summary, indent=2, default=str)))
    parts.append("</pre></body></html>")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    log.info("wrote report %s", path)
    return path
