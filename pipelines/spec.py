"""The pipeline file: one YAML file per pipeline in ``conf/pipelines/``.

This module needs only pydantic and PyYAML, so the Airflow environment can import it
to build DAGs without Spark or TensorFlow.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from pipelines.config import REPO_ROOT
from pipelines.train.spec import ModelSpec, TrainSettings
from pipelines.preprocess.spec import PreprocessSpec, SourceSpec
from pipelines.predict.spec import AutoencoderStage, EvaluateSpec, OutputSpec

PIPELINES_DIR = REPO_ROOT / "conf" / "pipelines"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PRESETS = {"@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly"}


_CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = re.compile(r"^[a-z]{3}(-[a-z]{3})?$", re.IGNORECASE)  # jan, mon-fri


def _check_cron_field(field: str, name: str, low: int, high: int) -> None:
    """Raise ValueError when a cron field has a number outside its range or odd syntax."""
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and not step.isdigit():
            raise ValueError(f"cron {name} step {step!r} is not a number")
        if base == "*" or _CRON_NAMES.match(base):
            continue
        bounds = base.split("-")
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            raise ValueError(f"cron {name} field {part!r} is not valid")
        if not all(low <= int(b) <= high for b in bounds):
            raise ValueError(f"cron {name} {part!r} is outside {low}-{high}")


class SpecError(ValueError):
    """A pipeline file is invalid; the message names the file, key, value and fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DagSettings(_Section):
    schedule: str | None = Field(
        None, description="a cron expression, an @preset such as @daily, or null for manual runs"
    )
    start_date: dt.date = Field(
        dt.date(2018, 1, 1), description="a date, YYYY-MM-DD, of the first data interval"
    )
    catchup: bool = Field(False, description="true to run every interval since start_date")
    owner: str = Field("hoya", description="the owner shown in Airflow")
    tags: list[str] = Field(default_factory=list, description="a list of tag strings")
    retries: int = Field(2, ge=0, le=10, description="task retries, from 0 to 10")
    retry_delay_s: int = Field(60, ge=1, le=3600, description="seconds from 1 to 3600")
    max_active_runs: int = Field(1, ge=1, le=16, description="from 1 to 16")

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None) -> str | None:
        if value is None or value in _PRESETS:
            return value
        fields = value.split()
        if len(fields) != 5:
            raise ValueError("is neither an @preset nor a 5-field cron expression")
        for field, name, (low, high) in zip(fields, _CRON_FIELDS, _CRON_RANGES):
            _check_cron_field(field, name, low, high)
        return value


class StorageSpec(_Section):
    root: str | None = Field(
        None,
        description="a local folder or hdfs:// URI holding the pipeline's raw data, dataset, "
        "models and reports; null means .hoya/pipelines/<name> in the checkout",
    )


class PipelineSpec(_Section):
    name: str = Field(description="lower-case letters, digits and _, starting with a letter")
    description: str = ""
    dag: DagSettings = Field(default_factory=DagSettings)
    model: ModelSpec | None = None
    train: TrainSettings = Field(default_factory=TrainSettings)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    source: SourceSpec | None = None
    preprocess: PreprocessSpec | None = None
    autoencoder: AutoencoderStage | None = None
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    _config_hash: str = PrivateAttr("")
    _path: str = PrivateAttr("")

    @property
    def config_hash(self) -> str:
        """SHA-256 of the pipeline file's text, recorded in every artifact it produces."""
        return self._config_hash

    @property
    def path(self) -> str:
        return self._path

    def storage_root(self) -> str:
        """Return the storage root; relative local paths start at the repository root."""
        root = self.storage.root or f".hoya/pipelines/{self.name}"
        if "://" in root or root.startswith("/"):
            return root.rstrip("/")
        return str(REPO_ROOT / root)

    def uri(self, *parts: str) -> str:
        """Return a location under the storage root, e.g. uri("dataset")."""
        return "/".join([self.storage_root(), *parts])

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower-case letters, digits and _, starting with a letter")
        return value


def _describe(error: dict[str, Any], path: Path) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{path.name}: unknown key '{key}'; remove it or check its spelling"
    if error["type"] == "missing":
        return f"{path.name}: missing key '{key}'; add it"
    hint = _field_description(error["loc"])
    suffix = f"; allowed: {hint}" if hint else ""
    return f"{path.name}: {key} = {error.get('input')!r} is invalid: {error['msg']}{suffix}"


def _field_description(loc: tuple[Any, ...]) -> str:
    model: Any = PipelineSpec
    description = ""
    for part in loc:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return ""
        description = field.description or ""
        model = field.annotation
    return description


def load_spec(path: Path | str) -> PipelineSpec:
    """Load and validate one pipeline file; raise SpecError naming every bad key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except FileNotFoundError as err:
        raise SpecError(f"{path}: file not found") from err
    except yaml.YAMLError as err:
        raise SpecError(f"{path.name}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise SpecError(f"{path.name}: the top level must be a mapping with a 'name' key")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError("\n".join(_describe(e, path) for e in err.errors())) from None
    if spec.name != path.stem:
        raise SpecError(
            f"{path.name}: name = {spec.name!r} must equal the file name without .yaml "
            f"({path.stem!r}); rename the file or the pipeline"
        )
    spec._config_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    spec._path = str(path.resolve())
    return spec


def pipeline_files(folder: Path | None = None) -> list[Path]:
    """Return the pipeline files in ``folder``, sorted.

    The default folder is ``$HOYA_PIPELINES_DIR``, or ``conf/pipelines`` when unset.
    """
    default = Path(os.environ.get("HOYA_PIPELINES_DIR", PIPELINES_DIR))
    return sorted((folder or default).glob("*.yaml"))
