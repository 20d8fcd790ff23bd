"""Distributed training with Horovod from the pipeline file's ``model`` and ``train`` sections.

``load_model_dir`` is imported lazily, so importing ``pipelines.train.spec`` (as the Airflow
environment does) does not import TensorFlow.
"""

from __future__ import annotations

from typing import Any


def load_model_dir(uri: str, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Load a model directory; see :func:`pipelines.train.modeldir.load_model_dir`."""
    from pipelines.train.modeldir import load_model_dir as load

    return load(uri, *args, **kwargs)
