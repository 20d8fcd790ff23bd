"""Export arguments rejected before Spark starts."""

from __future__ import annotations

from click.testing import CliRunner

from pipelines.cli import cli


def test_existing_target_needs_overwrite(tmp_path):
    result = CliRunner().invoke(cli, ["export", "sp500_daily_bars", str(tmp_path)], obj={})
    assert result.exit_code == 2
    assert f"{tmp_path} already exists; pass --overwrite to replace it" in result.output


def test_reversed_row_range_is_rejected(tmp_path):
    result = CliRunner().invoke(
        cli, ["export", "sp500_daily_bars", str(tmp_path / "out"), "--row-start", "Z",
              "--row-stop", "A"], obj={},
    )
    assert result.exit_code == 2
    assert "--row-start 'Z' must sort before --row-stop 'A'" in result.output
