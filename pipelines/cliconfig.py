"""The configuration of a ``hoya`` command, loaded once per click context."""

from __future__ import annotations

import click

from pipelines.config import ConfigError, HoyaConfig, load_config


def load_context_config(ctx: click.Context) -> HoyaConfig:
    """Return the command's configuration; exit 2 with the message when it is invalid.

    ``--conf`` of the top-level command, stored in ``ctx.obj["conf_path"]``, names the file.
    """
    obj = ctx.find_root().obj
    if obj is None:
        obj = ctx.find_root().obj = {}
    if "config" not in obj:
        try:
            obj["config"] = load_config(obj.get("conf_path"))
        except ConfigError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)
    return obj["config"]
