"""Checkpoints are resumed only by a run of the same inputs."""

from __future__ import annotations

from pipelines.train.launcher import _discard_foreign_checkpoints


def make_run_dir(tmp_path, fingerprint: str | None):
    run_dir = tmp_path / "v20170811T000000"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "state.json").write_text("{}")
    if fingerprint is not None:
        (run_dir / "run-fingerprint.txt").write_text(fingerprint + "\n")
    return run_dir


def test_same_inputs_keep_checkpoints(tmp_path):
    run_dir = make_run_dir(tmp_path, "abc")
    _discard_foreign_checkpoints(run_dir, "abc")
    assert (run_dir / "checkpoints" / "state.json").exists()
    assert (run_dir / "run-fingerprint.txt").read_text() == "abc\n"


def test_other_inputs_discard_checkpoints(tmp_path, caplog):
    run_dir = make_run_dir(tmp_path, "abc")
    with caplog.at_level("WARNING"):
        _discard_foreign_checkpoints(run_dir, "def")
    assert not (run_dir / "checkpoints").exists()
    assert (run_dir / "run-fingerprint.txt").read_text() == "def\n"
    assert "come from a run of other inputs; training from scratch" in caplog.text


def test_unmarked_checkpoints_are_discarded(tmp_path):
    run_dir = make_run_dir(tmp_path, None)
    _discard_foreign_checkpoints(run_dir, "abc")
    assert not (run_dir / "checkpoints").exists()
