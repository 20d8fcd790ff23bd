"""Checks of a pipeline file against what it names: tables, columns, locations, metrics.

``load_spec`` validates each section on its own. These checks relate the sections to
each other and to ``hbase_schema/``, so ``hoya pipeline validate`` catches a misspelt
column or table before any job starts.
"""

from __future__ import annotations

from pipelines.predict.spec import CLASSIFICATION_METRICS, REGRESSION_METRICS
from pipelines.spec import PipelineSpec


def _source_columns(spec: PipelineSpec) -> tuple[set[str] | None, list[str]]:
    """Return the columns the source provides (None when unknown) and any errors."""
    source = spec.source
    if source is None:
        return None, []
    if source.kind == "files":
        if not source.columns:
            return None, []
        return {"row_key", *source.columns}, []

    from pipelines.tables.schema import SchemaError, load_table_schema

    try:
        schema = load_table_schema(source.table)
    except SchemaError as err:
        return None, [f"source.table = {source.table!r}: {err}"]
    known = {"row_key", *schema.row_key_fields, *schema.columns}
    unknown = [c for c in source.columns or [] if c not in known]
    errors = [
        f"source.columns: {c!r} is not a column of {source.table}; known: {sorted(known)}"
        for c in unknown
    ]
    return ({"row_key", *schema.row_key_fields, *(source.columns or schema.columns)}, errors)


def _table_errors(spec: PipelineSpec) -> list[str]:
    from pipelines.tables.schema import SchemaError, load_table_schema

    errors = []
    for key, name in (("output.table", spec.output.table),
                      ("output.registry_table", spec.output.registry_table)):
        try:
            load_table_schema(name)
        except SchemaError as err:
            errors.append(f"{key} = {name!r}: {err}")
    return errors


def _task(spec: PipelineSpec) -> str | None:
    preprocess = spec.preprocess
    if preprocess is None:
        return None
    if preprocess.window is not None:
        return "binary" if preprocess.window.target.expr == "future_direction" else "regression"
    return preprocess.target.task if preprocess.target else None


def cross_check(spec: PipelineSpec) -> list[str]:
    """Return one message per inconsistency in the pipeline file; empty when none."""
    errors: list[str] = []
    available, source_errors = _source_columns(spec)
    errors += source_errors
    if spec.source is not None and available is not None:
        for column in spec.source.required:
            if column not in available:
                errors.append(f"source.required: column {column!r} is not read from the source")
        interval = spec.source.interval_column
        if interval and interval not in available:
            errors.append(f"source.interval_column: column {interval!r} is not read")
        if spec.source.time_range and spec.source.time_range[0] >= spec.source.time_range[1]:
            errors.append(f"source.time_range = {list(spec.source.time_range)}: start must be "
                          "before end")
    if spec.preprocess is not None and available is not None:
        errors += spec.preprocess.missing_columns(available)

    root = spec.storage.root
    if root and "://" in root and not root.startswith("hdfs://"):
        errors.append(f"storage.root = {root!r}: use a local folder or an hdfs:// URI")

    task = _task(spec)
    gate = spec.evaluate.gate
    if gate is not None and task is not None:
        allowed = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
        if gate.metric not in allowed:
            errors.append(f"evaluate.gate.metric = {gate.metric!r} does not fit a {task} "
                          f"target; use one of {', '.join(allowed)}")
    errors += _table_errors(spec)
    return errors
