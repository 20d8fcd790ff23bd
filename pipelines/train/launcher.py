"""Validate a training run, then start ``horovodrun`` with one worker per rank.

The ``horovodrun`` command is built as an argument list from ``config.horovod``
(``conf/cluster.yaml``), so no configuration value ever passes through a shell.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pipelines.config import REPO_ROOT, HorovodSettings, HoyaConfig
from pipelines.dataset import is_hdfs, read_manifest
from pipelines.spec import load_spec
from pipelines.train.modeldir import model_uri, new_version, staging_dir
from pipelines.train.spec import ModelSpecError, validate_against_manifest

log = logging.getLogger(__name__)
VERSION = re.compile(r"v\d{8}T\d{6}")


class TrainingError(RuntimeError):
    """horovodrun exited with a non-zero status."""


@dataclass
class TrainResult:
    model_uri: str  # the model directory, local path or hdfs:// URI
    version: str
    run_dir: Path  # the local folder the ranks wrote to
    command: list[str]


def horovodrun_path() -> str:
    """Return the horovodrun next to this Python, so ranks use the same environment."""
    candidate = Path(sys.executable).parent / "horovodrun"
    return str(candidate) if candidate.exists() else "horovodrun"


def build_horovod_command(
    horovod: HorovodSettings, worker_args: Sequence[str], num_ranks: int | None = None,
    python: str | None = None,
) -> list[str]:
    """Return the ``horovodrun`` argument list that starts the worker on ``num_ranks`` ranks.

    ``num_ranks`` defaults to every slot of ``horovod.hosts``; more than that is rejected.
    """
    slots = horovod.num_ranks
    ranks = num_ranks or slots
    if not 1 <= ranks <= slots:
        hosts = ",".join(f"{h.host}:{h.slots}" for h in horovod.hosts)
        raise ModelSpecError(
            f"--np = {ranks} is invalid: horovod.hosts ({hosts}) has {slots} slots; "
            f"use --np from 1 to {slots} or add hosts to conf/cluster.yaml"
        )
    command = [horovodrun_path(), "-np", str(ranks), "-H", _host_list(horovod, ranks),
               f"--{horovod.controller}"]
    if horovod.network_interface:
        command += ["--network-interface", horovod.network_interface]
    if horovod.ssh_port:
        command += ["-p", str(horovod.ssh_port)]
    return command + [python or sys.executable, "-m", "pipelines.train.worker", *worker_args]


def _host_list(horovod: HorovodSettings, ranks: int) -> str:
    """Return ``host:slots,...`` filling hosts in order with exactly ``ranks`` slots.

    horovodrun 0.28 with Gloo starts a process on every listed slot even when -np is
    smaller (``-np 1 -H localhost:2`` runs two ranks), so unused slots are left out.
    """
    parts, left = [], ranks
    for host in horovod.hosts:
        if left == 0:
            break
        used = min(host.slots, left)
        parts.append(f"{host.host}:{used}")
        left -= used
    return ",".join(parts)


def rank_environment(
    horovod: HorovodSettings, num_ranks: int, base: dict[str, str] | None = None
) -> dict[str, str]:
    """Return the environment for horovodrun: repository on PYTHONPATH, CPU threads per rank.

    CPU ranks get ``OMP_NUM_THREADS`` = cores / ranks per host (at least 1), so two ranks
    on a 2-core machine use one core each instead of fighting over both. An
    ``OMP_NUM_THREADS`` already set is kept.
    """
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if horovod.num_gpus == 0 and "OMP_NUM_THREADS" not in env:
        # horovodrun fills hosts in order, so the first host runs the most ranks.
        local_ranks = min(num_ranks, horovod.hosts[0].slots)
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // local_ranks))
    return env


def validate_run(pipeline_file: str | Path, dataset_uri: str, config: HoyaConfig) -> Any:
    """Check the pipeline file's model section against the dataset; return the pipeline spec.

    Raises SpecError, ManifestError or ModelSpecError, before any rank starts.
    """
    spec = load_spec(pipeline_file)
    if spec.model is None:
        raise ModelSpecError(
            f"{Path(pipeline_file).name}: missing key 'model'; add a model section, for "
            "example model: {type: mlp, layers: [{units: 32}]}"
        )
    validate_against_manifest(spec.model, read_manifest(dataset_uri, config))
    return spec


def _run_fingerprint(spec: Any, dataset_uri: str, epochs: int | None, config: HoyaConfig) -> str:
    """Return a hash of what a run trains on: the pipeline file, the dataset and epochs."""
    manifest = read_manifest(dataset_uri, config)
    parts = [spec.config_hash, dataset_uri, manifest.get("created_at", ""),
             manifest.get("config_hash", ""), str(epochs)]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def _discard_foreign_checkpoints(run_dir: Path, fingerprint: str) -> None:
    """Keep checkpoints only when they were written by a run of the same inputs.

    A retry of the same run resumes. A new run that reuses the version trains from
    scratch, for example a re-run of the same logical date after the dataset was rebuilt.
    """
    marker = run_dir / "run-fingerprint.txt"
    previous = marker.read_text().strip() if marker.exists() else None
    checkpoints = run_dir / "checkpoints"
    if previous != fingerprint and checkpoints.exists():
        log.warning("checkpoints in %s come from a run of other inputs; training from scratch",
                    checkpoints)
        shutil.rmtree(checkpoints)
    marker.write_text(fingerprint + "\n")


def run_training(
    config: HoyaConfig,
    pipeline_file: str | Path,
    dataset_uri: str,
    models_root: str,
    epochs: int | None = None,
    num_ranks: int | None = None,
    version: str | None = None,
    command: Sequence[str] | None = None,
    extra_worker_args: Sequence[str] = (),
    timeout_s: float | None = None,
) -> TrainResult:
    """Validate, then train with horovodrun and write ``<models_root>/<pipeline>/<version>``.

    Pass the ``version`` of an interrupted run to resume it from its last checkpoint.
    Raises TrainingError when horovodrun fails.
    """
    spec = validate_run(pipeline_file, dataset_uri, config)
    version = version or new_version()
    if not VERSION.fullmatch(version):
        raise ModelSpecError(
            f"--version = {version!r} is invalid; use v<UTC yyyymmddTHHMMSS> such as "
            "v20261204T160000, the version of the run to resume"
        )
    uri = model_uri(models_root, spec.name, version)
    run_dir = staging_dir(config, spec.name, version) if is_hdfs(models_root) else Path(uri)
    run_dir.mkdir(parents=True, exist_ok=True)
    _discard_foreign_checkpoints(run_dir, _run_fingerprint(spec, dataset_uri, epochs, config))
    worker_args = [
        "--pipeline", str(Path(pipeline_file).resolve()), "--dataset", dataset_uri,
        "--run-dir", str(run_dir.resolve()), "--version", version,
        "--command-json", json.dumps(list(command or sys.argv)),
    ]
    if is_hdfs(models_root):
        worker_args += ["--publish-uri", uri]
    if epochs:
        worker_args += ["--epochs", str(epochs)]
    argv = build_horovod_command(config.horovod, [*worker_args, *extra_worker_args], num_ranks)
    env = rank_environment(config.horovod, int(argv[argv.index("-np") + 1]))
    log.info("starting training of %s version %s: %s (OMP_NUM_THREADS=%s)",
             spec.name, version, shlex.join(argv), env.get("OMP_NUM_THREADS", "unset"))
    result = subprocess.run(argv, env=env, cwd=REPO_ROOT, timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise TrainingError(
            f"horovodrun exited with status {result.returncode} for {spec.name} version "
            f"{version}; see the rank logs above. Rerun with --version {version} to resume "
            "from the last checkpoint"
        )
    log.info("finished training %s version %s; model directory %s", spec.name, version, uri)
    return TrainResult(uri, version, run_dir, argv)
