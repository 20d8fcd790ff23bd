"""The ``autoencoder``, ``evaluate`` and ``output`` sections of a pipeline file.

Only pydantic is imported here, because ``pipelines/spec.py`` imports this module and the
Airflow environment imports that file to build DAGs.

Example::

    autoencoder:                     # optional: code features for the supervised model
      model: {type: autoencoder, encoder: [32], code_size: 4}
      train: {epochs: 10, batch_size: 128}
    evaluate:
      baseline: persistence          # persistence, trailing_mean, mean, majority or auto
      gate: {metric: rmse, must_beat_baseline: true, max_ratio: 1.0}
    output:
      table: sp500_predictions       # hbase_schema name of the result table
      registry_table: hoya_registry  # hbase_schema name of the registry table
      batch_size: 1000               # rows per HBase put request
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.train.spec import AutoencoderSpec, TrainSettings

REGRESSION_METRICS = ("rmse", "mae")
CLASSIFICATION_METRICS = ("accuracy", "log_loss", "auc")
# Metrics where a larger value is better; for the others a smaller value is better.
HIGHER_IS_BETTER = {"accuracy", "auc"}
Metric = Literal["rmse", "mae", "accuracy", "log_loss", "auc"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AutoencoderStage(_Section):
    """The autoencoder trained on the training period's features before the supervised model."""

    model: AutoencoderSpec = Field(
        description="an autoencoder model spec: {type: autoencoder, encoder: [..], code_size: k}"
    )
    train: TrainSettings = Field(
        default_factory=TrainSettings, description="training settings of the autoencoder"
    )


class GateSpec(_Section):
    """The rule that decides whether a model's predictions are published."""

    metric: Metric = Field(
        description="rmse or mae for regression; accuracy, log_loss or auc for classification"
    )
    must_beat_baseline: bool = Field(
        True, description="true to require the model's metric to be better than the baseline's"
    )
    max_ratio: float | None = Field(
        None,
        gt=0.0,
        description="rmse, mae and log_loss only: the largest allowed model/baseline ratio, "
        "e.g. 0.95, or null for none",
    )
    min_ratio: float | None = Field(
        None,
        gt=0.0,
        description="accuracy and auc only: the smallest allowed model/baseline ratio, "
        "e.g. 1.02, or null for none",
    )

    @model_validator(mode="after")
    def _ratio_fits_metric(self) -> "GateSpec":
        if self.metric in HIGHER_IS_BETTER and self.max_ratio is not None:
            raise ValueError(
                f"gate.max_ratio applies to error metrics; for metric {self.metric} "
                "use gate.min_ratio"
            )
        if self.metric not in HIGHER_IS_BETTER and self.min_ratio is not None:
            raise ValueError(
                f"gate.min_ratio applies to accuracy and auc; for metric {self.metric} "
                "use gate.max_ratio"
            )
        return self


class EvaluateSpec(_Section):
    baseline: Literal["auto", "persistence", "trailing_mean", "mean", "majority"] = Field(
        "auto",
        description="persistence or trailing_mean (the dataset's baseline column), mean of the "
        "train targets (regression), majority class (classification), or auto: the dataset's "
        "baseline column when it has one, else mean or majority",
    )
    split: Literal["test", "validation"] = Field("test", description="the split to score")
    gate: GateSpec | None = Field(None, description="the publishing gate, or null for none")


class OutputSpec(_Section):
    table: str = Field(
        "sp500_predictions", description="the hbase_schema name of the predictions table"
    )
    registry_table: str = Field(
        "hoya_registry", description="the hbase_schema name of the model registry table"
    )
    batch_size: int = Field(1000, ge=1, le=100_000, description="rows per put, 1 to 100000")
    splits: list[Literal["train", "validation", "test"]] = Field(
        default_factory=lambda: ["train", "validation", "test"],
        min_length=1,
        description="dataset splits to score and write back",
    )

    @model_validator(mode="after")
    def _unique_splits(self) -> "OutputSpec":
        if len(set(self.splits)) != len(self.splits):
            raise ValueError(f"output.splits = {self.splits} lists a split twice")
        return self


def metrics_for(task: str) -> tuple[str, ...]:
    return REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS


def check_gate_task(gate: GateSpec | None, task: str) -> list[str]:
    """Return the problems of using ``gate`` on a dataset of ``task``; empty when it fits."""
    if gate is None or gate.metric in metrics_for(task):
        return []
    return [
        f"evaluate.gate.metric = {gate.metric!r} does not fit a {task} dataset; allowed: "
        f"{', '.join(metrics_for(task))}"
    ]


__all__: list[Any] = [
    "AutoencoderStage", "EvaluateSpec", "GateSpec", "HIGHER_IS_BETTER", "OutputSpec",
    "check_gate_task", "metrics_for",
]
