"""A real two-rank horovodrun job with Gloo on localhost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def test_two_rank_horovodrun_averages_gradients(tmp_path):
    horovodrun = Path(sys.executable).parent / "horovodrun"
    command = [
        str(horovodrun), "-np", "2", "-H", "localhost:2", "--gloo",
        sys.executable, str(HERE / "horovod_smoke_job.py"), str(tmp_path),
    ]
    env = {**os.environ, "PATH": f"{horovodrun.parent}:{os.environ['PATH']}",
           "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    reports = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    for size, total, loss in reports:
        assert size == "2"
        assert float(total) == 3.0  # allreduce sum of rank+1 over ranks 0 and 1
        assert float(loss) < 0.01  # y is an exact linear function of x
    weights = [np.load(tmp_path / f"weights-rank{r}.npy") for r in (0, 1)]
    np.testing.assert_array_equal(weights[0], weights[1])
    np.testing.assert_allclose(weights[0], [1.0, -2.0, 0.5, 3.0, 0.25], atol=0.05)
